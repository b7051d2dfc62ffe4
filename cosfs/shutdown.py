"""How a mount ends: the one owner of stop signals and of the final drain.

Invariants:
- Signals are watched for the daemon's whole life, from the preflight to exit: no SIGTERM or
  SIGINT ever meets the default handler (which would kill the daemon and leave a dead mount).
- The first SIGTERM/SIGINT of a live mount commits pending changes while the mount still
  answers, then unmounts. Later signals are logged and change nothing: the drain is never
  aborted halfway. SIGKILL is the hard stop (the journal keeps what was acknowledged).
- A drain is bounded: it ends when nothing is pending, or when no upload has made progress
  for `idle_limit_s`. What is left stays staged and journaled for the next mount, and is
  logged. Once the kernel mount is gone, a signal ends the drain at once (nothing can be
  lost: the journal holds it), so an unmounted daemon never lingers.
"""

from __future__ import annotations

import logging
import signal
from collections.abc import Callable
from typing import Protocol

import trio

log = logging.getLogger(__name__)

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
PROGRESS_POLL_S = 0.5


class Drainable(Protocol):
    def progress(self) -> tuple: ...

    def pending_count(self) -> int: ...

    async def drain(self) -> int: ...


async def bounded_drain(fs: Drainable, idle_limit_s: float, cancel_scope: trio.CancelScope | None = None) -> int:
    """Commit what is pending until done, or until `idle_limit_s` pass with no progress, or
    `cancel_scope` is cancelled by a signal. Returns how many files are left."""
    if not fs.pending_count():
        return 0
    scope = cancel_scope or trio.CancelScope()
    with scope:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_watch_progress, fs, idle_limit_s, nursery.cancel_scope)
            await fs.drain()
            nursery.cancel_scope.cancel()
    return fs.pending_count()


async def _watch_progress(fs: Drainable, idle_limit_s: float, scope: trio.CancelScope) -> None:
    last, since = fs.progress(), trio.current_time()
    while True:
        await trio.sleep(PROGRESS_POLL_S)
        now = fs.progress()
        if now != last:
            last, since = now, trio.current_time()
        elif trio.current_time() - since >= idle_limit_s:
            log.warning("no upload progressed for %.0f s: stopping the drain with %d file(s) pending",
                        idle_limit_s, fs.pending_count())
            scope.cancel()
            return


class Stopper:
    """Receives stop signals for the daemon's lifetime and runs the stop sequence once."""

    def __init__(self, fs: Drainable | None, idle_limit_s: float, terminate: Callable[[], None],
                 notify: Callable[[str], None]) -> None:
        self.fs = fs
        self.idle_limit_s = idle_limit_s
        self._terminate = terminate
        self._notify = notify
        self.stopping = False
        self.unmounted = False
        self.before_mount = trio.CancelScope()  # cancelled by a signal during the preflight
        self._final_drain = trio.CancelScope()

    async def watch(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            with trio.open_signal_receiver(*STOP_SIGNALS, signal.SIGHUP) as signals:
                task_status.started()
                async for signum in signals:
                    if signum == signal.SIGHUP:
                        self.on_hangup()
                    else:
                        self._on_stop(signum, nursery)

    def on_hangup(self) -> None:
        """SIGHUP: reopen the log file (logrotate)."""
        from cosfs import logs

        logs.reopen()

    def _on_stop(self, signum: int, nursery: trio.Nursery) -> None:
        name = signal.Signals(signum).name
        if self.fs is None:
            log.warning("%s before the mount was live: stopping", name)
            self.before_mount.cancel()
        elif self.unmounted:
            log.warning("%s after unmount: ending the drain; %d file(s) stay journaled for the next mount",
                        name, self.fs.pending_count())
            self._final_drain.cancel()
        elif self.stopping:
            log.warning("%s again: still committing %d file(s) before unmounting (at most %.0f s without "
                        "progress); SIGKILL stops at once, the journal keeps them", name, self.fs.pending_count(),
                        self.idle_limit_s)
        else:
            self.stopping = True
            nursery.start_soon(self._stop, name)

    async def _stop(self, name: str) -> None:
        assert self.fs is not None
        log.info("%s: committing %d pending file(s), then unmounting", name, self.fs.pending_count())
        self._notify("STOPPING=1")
        await bounded_drain(self.fs, self.idle_limit_s)
        if not self.unmounted:
            self._terminate()

    async def final_drain(self) -> int:
        """After the kernel mount is gone: the last, bounded drain (a signal ends it)."""
        self.unmounted = True
        if self.fs is None:
            return 0
        return await bounded_drain(self.fs, self.idle_limit_s, self._final_drain)
