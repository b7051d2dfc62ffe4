"""Mount lifecycle: preflight checks, daemonising, pyfuse3 init/main/close, signals, readiness.

`mount(settings)` returns only once the mount is live (or failed with one clear message), as
`mount` users expect: the daemon reports back through a pipe before the parent exits.
"""

from __future__ import annotations

import dataclasses
import errno
import fcntl
import logging
import os
import resource
import shutil
import socket
import sys
from pathlib import Path

import pyfuse3
import trio

from cosfs import crashpoints, logs
from cosfs.config import CosConfig, FsConfig, environment
from cosfs.cos.client import CosClient
from cosfs.credentials import CredentialProvider
from cosfs.errors import EXIT_CONFIG, AccessDenied, ConfigError, CosError, CosfsError, NotFound, TransientError
from cosfs.filesystem import CosFilesystem
from cosfs.durable import private_dir
from cosfs.fuse_ops import CosOperations, KernelNotices
from cosfs.shutdown import Stopper

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class MountSettings:
    """Everything a mount needs, resolved by the CLI."""

    mountpoint: Path
    cos: CosConfig
    fs: FsConfig
    credentials: CredentialProvider = dataclasses.field(repr=False)
    cache_dir: Path
    foreground: bool = False
    nonempty: bool = False
    allow_other: bool = False
    allow_root: bool = False
    log_level: int = logging.WARNING
    log_file: str = ""
    kernel_timeout_s: float = 60.0
    read_ahead_kb: int = 4096
    metrics_address: str = ""
    # Log lines owed for options accepted without their effect (options.py), as (level, text).
    notes: tuple[tuple[int, str], ...] = ()
    kernel_options: tuple[str, ...] = ()  # passed to the kernel mount as given (noexec, sync...)
    fsname: str = ""  # /proc/mounts source; "" for cosfs#BUCKET
    subtype: str = ""  # "" for cosfs (type fuse.cosfs)
    http_debug: bool = False  # curldbg: log every HTTP request line
    log_format: str = "text"  # text | json (one object per line, for log shippers)
    # After unmount or SIGTERM, uploads may go on this long without progress before the daemon
    # exits, leaving what is left journaled for the next mount.
    drain_idle_s: float = 30.0


def _is_autofs(path: Path) -> bool:
    """A systemd automount point: listing it would wait for the very mount we are making."""
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return False
    for line in lines:
        before, _, after = line.partition(" - ")
        fields = before.split()
        if len(fields) > 4 and fields[4] == str(path) and after.split()[:1] == ["autofs"]:
            return True
    return False


def check_mountpoint(settings: MountSettings) -> None:
    path = settings.mountpoint
    if not path.exists():
        raise ConfigError(f"mount point {path} does not exist")
    if not path.is_dir():
        raise ConfigError(f"mount point {path} is not a directory")
    if not settings.nonempty and not _is_autofs(path) and any(path.iterdir()):
        raise ConfigError(f"mount point {path} is not empty (use -o nonempty to mount over it)")
    if not os.path.exists("/dev/fuse"):
        raise ConfigError("/dev/fuse does not exist: load the fuse module or, in a container, pass --device /dev/fuse")
    if os.geteuid() != 0 and shutil.which("fusermount3") is None:
        raise ConfigError("fusermount3 is not installed (apt-get install fuse3)")


# The preflight's own bound: a HEAD of the bucket answers in well under a second; an endpoint
# that accepts connections and never answers (a broken load balancer, a firewall swallowing
# packets) must not hold the mount command for the data timeouts times the retries.
PREFLIGHT_TIMEOUT_S = 15.0


async def check_bucket(client: CosClient, cos: CosConfig, timeout_s: float = PREFLIGHT_TIMEOUT_S) -> None:
    """HEAD bucket, turning each way it can fail into one line a user can act on."""
    with trio.move_on_after(timeout_s) as scope:
        await _check_bucket(client, cos)
    if scope.cancelled_caught:
        raise TransientError(f"no answer from {cos.endpoint_url} within {timeout_s:.0f} s "
                             "(check url, proxy and firewall: the endpoint accepted no request or sent no reply)")


async def _check_bucket(client: CosClient, cos: CosConfig) -> None:
    try:
        await client.head_bucket()
    except NotFound:
        await _missing_bucket(client, cos)
    except AccessDenied as exc:
        code = await _denial_code(client, exc)
        if code in ("InvalidAccessKeyId", "SignatureDoesNotMatch"):
            raise ConfigError(f"COS refused the credentials for bucket {cos.bucket} ({code}):"
                              " check SecretId and SecretKey") from None
        if code == "RequestTimeTooSkewed":
            raise ConfigError("COS refused the request because this machine's clock is off: sync it (NTP)") from None
        raise ConfigError(f"access to bucket {cos.bucket} denied ({code or 'AccessDenied'}):"
                          " check the keys' permissions") from None
    except TransientError as exc:
        # Not a configuration error: a service manager may retry it.
        raise TransientError(f"cannot reach {cos.endpoint_url}: {exc}") from None


async def _missing_bucket(client: CosClient, cos: CosConfig) -> None:
    """A 404 to HEAD bucket means a missing bucket only when the endpoint speaks COS/S3: a
    listing answers NoSuchBucket with a request id (every COS and S3 server sends one; a
    bodiless 404 gets the code from the client, not from the server). Any other 404 is an
    endpoint that is not the bucket's (a web server, a wrong servicepath): saying "no such
    bucket" would send the user the wrong way."""
    try:
        await client.list_objects(max_keys=1)
    except CosError as detail:
        if detail.code == "NoSuchBucket" and detail.request_id:
            raise ConfigError(f"bucket {cos.bucket} does not exist at {cos.endpoint_url}") from None
        raise ConfigError(f"{cos.endpoint_url} answered {detail.status} for bucket {cos.bucket}"
                          f"{f' ({detail.code})' if detail.request_id else ' without a COS error code'}: is url "
                          "(and servicepath, use_path_request_style) the bucket's endpoint?") from None
    except CosfsError:
        raise ConfigError(f"{cos.endpoint_url} answered 404 for bucket {cos.bucket} and no listing: is url "
                          "(and servicepath, use_path_request_style) the bucket's endpoint?") from None


async def _denial_code(client: CosClient, exc: AccessDenied) -> str:
    """HEAD replies carry no error body, so ask a GET (a one-key listing) for COS's code."""
    try:
        await client.list_objects(max_keys=1)
    except CosError as detail:
        return detail.code
    except CosfsError:
        pass
    return exc.code if isinstance(exc, CosError) else ""


def fuse_options(settings: MountSettings) -> set[str]:
    """libfuse's mount options: ours, then the kernel options the user gave (noexec, nosuid,
    nodev, sync, dirsync, auto_unmount, max_read, debug...), none of them dropped."""
    options = set(pyfuse3.default_options)
    options.add(f"fsname={settings.fsname or 'cosfs#' + settings.cos.bucket}")
    options.add(f"subtype={settings.subtype or 'cosfs'}")
    if settings.fs.read_only:
        options.add("ro")
    if settings.allow_other:
        options.add("allow_other")
    elif settings.allow_root:
        options.add("allow_root")
    options.update(settings.kernel_options)
    return options


def mount_device(mountpoint: Path) -> tuple[int, int] | None:
    """The (major, minor) of the mount at `mountpoint`, from /proc/self/mountinfo, without
    touching the mount itself (a stat would wait for the daemon that is calling this)."""
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return None
    found = None
    for line in lines:
        fields = line.split()
        if len(fields) > 4 and fields[4] == str(mountpoint):
            major, _, minor = fields[2].partition(":")
            found = (int(major), int(minor))  # the last one wins: stacked mounts
    return found


async def tune_kernel(mountpoint: Path, read_ahead_kb: int) -> None:
    """Raise the kernel's read-ahead for this mount (best effort), so sequential reads arrive
    in larger requests. The kernel sets it from our INIT reply, which is only sent once the
    loop runs, so this waits for the value to stick. Logged, never fatal."""
    device = mount_device(mountpoint)
    if device is None:
        log.debug("could not find %s in mountinfo; kernel read-ahead left as is", mountpoint)
        return
    major, minor = device
    setting = Path(f"/sys/class/bdi/{major}:{minor}/read_ahead_kb")
    try:
        for _ in range(50):
            await trio.sleep(0.05)
            setting.write_text(str(read_ahead_kb))
            if setting.read_text().strip() == str(read_ahead_kb):
                break
        connection = Path(f"/sys/fs/fuse/connections/{minor}/max_background")
        if connection.exists():
            connection.write_text("64")
        log.debug("kernel read-ahead for %s set to %s KiB", mountpoint, setting.read_text().strip())
    except OSError as exc:
        log.debug("could not tune kernel read-ahead: %s", exc)


def sd_notify(message: str) -> None:
    """Tell systemd (Type=notify) about our state, when NOTIFY_SOCKET is set."""
    address = environment().get("NOTIFY_SOCKET")
    if not address:
        return
    if address.startswith("@"):
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.connect(address)
            sock.sendall(message.encode())
    except OSError as exc:
        log.warning("sd_notify failed: %s", exc)


async def serve_mount(settings: MountSettings, report_ready, say=lambda line: None) -> None:
    """Preflight, mount, serve until unmounted or signalled, then close cleanly. `say`
    passes a line to whoever waits for the mount (the foreground's stderr, the parent of a
    background daemon)."""
    crashpoints.arm(environment().get("COSFS_CRASH_AT"))
    stopper = Stopper(None, settings.drain_idle_s, pyfuse3.terminate, sd_notify)
    failure: Exception | None = None
    async with trio.open_nursery() as signals:
        await signals.start(stopper.watch)
        try:
            await _preflight_and_serve(settings, stopper, report_ready, say)
        except Exception as exc:  # raised after the signal watcher stops, not as a group
            failure = exc
        signals.cancel_scope.cancel()
    if failure is not None:
        raise failure


async def _preflight_and_serve(settings: MountSettings, stopper: Stopper, report_ready, say) -> None:
    async with CosClient(settings.cos, settings.credentials) as client:
        cache_dir = settings.cache_dir
        with stopper.before_mount:
            await check_bucket(client, settings.cos)
            private_dir(cache_dir)
            lock_fd = await lock_cache_dir(cache_dir, settings.mountpoint, settings.drain_idle_s, say)
        if stopper.before_mount.cancelled_caught:
            raise CosfsError("stopped by a signal before the mount was live")
        try:
            owner = {"bucket": settings.cos.bucket, "endpoint": settings.cos.endpoint_url}
            fs = CosFilesystem(client, settings.fs, cache_dir, owner=owner)
            fs.labels = {**owner, "mountpoint": str(settings.mountpoint), "prefix": settings.fs.prefix,
                         "cache_dir": str(cache_dir)}
            stopper.fs = fs
            await _serve(settings, fs, cache_dir, report_ready, stopper)
        finally:
            os.close(lock_fd)


# A lock whose holder's mount is gone belongs to a daemon finishing its uploads: a new mount
# waits this long beyond that daemon's own drain bound before giving up.
LOCK_WAIT_MARGIN_S = 10.0


async def lock_cache_dir(cache_dir: Path, mountpoint: Path, drain_idle_s: float, say) -> int:
    """One mount per cache directory for the mount's lifetime: a second mount would replay
    (and drop) the first one's live journals. The lock file names the holder's pid and mount
    point. A holder whose mount point is no longer mounted is a daemon draining after its
    unmount: wait for it (bounded, said in one line) rather than fail an `umount; mount`."""
    fd = os.open(cache_dir / "lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        said = False
        deadline = trio.current_time() + drain_idle_s + LOCK_WAIT_MARGIN_S
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                pid, _, held_at = os.pread(fd, 4096, 0).decode(errors="replace").strip().partition("\n")
                if (held_at and is_mountpoint(Path(held_at))) or trio.current_time() > deadline:
                    raise ConfigError(f"cache directory {cache_dir} is in use by another cosfs mount (pid "
                                      f"{pid or '?'}{f', on {held_at}' if held_at else ''}); give each mount its "
                                      "own cache_dir") from None
                if not said:
                    say(f"waiting for cosfs pid {pid or '?'} (its mount is gone) to finish its uploads and "
                        f"release {cache_dir}")
                    said = True
                await trio.sleep(0.05)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n{mountpoint}\n".encode(), 0)
        return fd
    except BaseException:
        os.close(fd)
        raise


async def _serve(settings: MountSettings, fs: CosFilesystem, cache_dir: Path, report_ready, stopper: Stopper) -> None:
    operations = CosOperations(fs, settings.kernel_timeout_s)
    pyfuse3.init(operations, str(settings.mountpoint), fuse_options(settings))
    clean = False
    try:
        async with trio.open_nursery() as nursery:
            await fs.start(nursery)
            kernel = KernelNotices()
            fs.namespace.kernel = kernel
            nursery.start_soon(kernel.run, name="kernel-notices")
            if settings.metrics_address:
                from cosfs.metrics import serve_metrics

                await nursery.start(serve_metrics, fs.status, settings.metrics_address)
            nursery.start_soon(tune_kernel, settings.mountpoint, settings.read_ahead_kb, name="tune-kernel")
            log.info("mounted %s on %s", settings.cos.bucket, settings.mountpoint)
            report_ready(None)
            sd_notify("READY=1")
            await pyfuse3.main()
            sd_notify("STOPPING=1")
            pending = fs.pending_count()
            if pending:
                log.info("unmounted: committing %d file(s) with pending changes", pending)
            left = await stopper.final_drain()
            refused = fs.refused_count()
            if refused:
                log.warning("%d file(s) COS refused stay staged in %s: at the next mount with this cache directory, "
                            "`cosfs sync --retry-failed` uploads them and `cosfs discard` drops them", refused,
                            cache_dir / "staging")
            if left > refused:
                log.error("%d file(s) are not uploaded; their data stays in %s and the next mount with this "
                          "cache directory uploads it", left - refused, cache_dir / "staging")
            nursery.cancel_scope.cancel()
        clean = True
    finally:
        fs.close()
        pyfuse3.close(unmount=clean)


def mount(settings: MountSettings) -> int:
    """Mount; in the background unless `foreground`. Returns the exit code for the CLI:
    0 once the mount is live, EXIT_CONFIG for configuration errors, 1 otherwise."""
    check_mountpoint(settings)
    if settings.foreground:
        logs.setup_logging(settings)
        return _run(settings, lambda code, error: None if error is None else print(f"cosfs: {error}", file=sys.stderr),
                    lambda line: print(f"cosfs: {line}", file=sys.stderr))
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid:
        os.close(write_fd)
        with os.fdopen(read_fd, "r") as pipe:
            message = ""
            for line in pipe:  # "note TEXT" lines while it starts, then "CODE TEXT" once
                if not line.startswith("note "):
                    message = line
                    break
                print(f"cosfs: {line[5:].strip()}", file=sys.stderr)
        if message.startswith("0 "):
            return 0
        code_text, _, error = message.partition(" ")
        print(f"cosfs: {error.strip() or 'the mount daemon died before it was ready'}", file=sys.stderr)
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:
            pass
        return int(code_text) if code_text.isdigit() else 1
    # The daemon: a new session, no terminal, reports once through the pipe.
    os.close(read_fd)
    os.setsid()
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    pipe = os.fdopen(write_fd, "w")

    def say(line: str) -> None:
        log.info("%s", line)
        if not pipe.closed:
            pipe.write(f"note {line}\n")
            pipe.flush()

    notice: list[str] = []

    def report(code: int, error: str | None) -> None:
        if pipe.closed:
            return
        if code == 0:
            for line in notice:
                pipe.write(f"note {line}\n")
        pipe.write(f"{code} {error or 'mounted'}\n")
        pipe.close()

    try:
        where = logs.setup_logging(settings)
        if not settings.log_file and not where.startswith("logging to syslog"):
            notice.append(where)  # said once mounted: not where an operator looks (no syslog socket)
    except ConfigError as exc:
        report(EXIT_CONFIG, str(exc))
        os._exit(EXIT_CONFIG)
    code = _run(settings, report, say)
    report(code or 1, f"mount failed (exit {code})")
    os._exit(code)


# The daemon's soft limit of open files is raised to this (or the hard limit, if lower): the
# block cache keeps a quarter of it open for random reads, and a default soft limit of 1,024
# is a desktop's, not a server's.
OPEN_FILES_WANTED = 65536


def raise_open_files_limit() -> int:
    """Raise the soft RLIMIT_NOFILE towards OPEN_FILES_WANTED within the hard limit (never
    lower it); the soft limit in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = OPEN_FILES_WANTED if hard == resource.RLIM_INFINITY else min(OPEN_FILES_WANTED, hard)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
        soft = wanted
    return soft


def _run(settings: MountSettings, report, say) -> int:
    """Run the mount; `report(code, error)` is called once: (0, None) when live, else why not."""
    try:
        raise_open_files_limit()
        trio.run(serve_mount, settings, lambda error: report(0, error), say)
        return 0
    except ConfigError as exc:
        log.error("%s", exc)
        report(EXIT_CONFIG, str(exc))
        return EXIT_CONFIG
    except CosfsError as exc:
        log.error("%s", exc)
        report(1, str(exc))
        return 1
    except RuntimeError as exc:  # pyfuse3.init failures (mount refused by the kernel)
        log.error("mount failed: %s", exc)
        report(1, f"mount failed: {exc}")
        return 1
    except KeyboardInterrupt:
        return 130


def unmount(mountpoint: Path) -> int:
    """`cosfs umount`: ask the kernel to unmount; the daemon then drains and exits. A mount
    whose daemon is gone (killed, crashed: "Transport endpoint is not connected") is cleared
    the same way, and said so."""
    dead = False
    try:
        if not mountpoint.is_dir():
            raise ConfigError(f"{mountpoint} is not a directory")
    except OSError as exc:
        if exc.errno != errno.ENOTCONN:
            raise ConfigError(f"{mountpoint}: {exc.strerror}") from None
        dead = True
    helper = shutil.which("fusermount3") or shutil.which("fusermount")
    if helper is None:
        raise ConfigError("fusermount3 is not installed (apt-get install fuse3)")
    result = os.spawnv(os.P_WAIT, helper, [helper, "-u", str(mountpoint)])
    if result != 0:
        raise ConfigError(f"{helper} -u {mountpoint} failed (exit {result})")
    if dead:
        print(f"cosfs: the daemon of {mountpoint} had stopped (killed or crashed); the dead mount is cleared. "
              "What it had journaled goes up at the next mount of the same cache_dir.", file=sys.stderr)
    return 0


def is_mountpoint(path: Path) -> bool:
    """True when something is mounted at `path` (even a dead FUSE mount), without a stat."""
    return mount_device(path.resolve()) is not None
