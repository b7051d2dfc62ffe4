"""Fault injection for `cosfs serve --fault SPEC` (pure parsing plus a seeded dice roller).

SPEC is a comma-separated list of ``name=value``:

- ``503=P``      answer 503 SlowDown with probability P (0..1)
- ``500=P``      answer 500 InternalError with probability P
- ``reset=P``    reset the connection (RST) without answering, with probability P
- ``truncate=P`` for GET bodies: send the headers (full Content-Length) but close after
                 half of the body, with probability P
- ``delay=D``    wait D before every response: ``50ms``, ``0.2s`` or a bare number of ms
- ``rate=R``     cap each connection's bytes, each way, at R per second: ``50MB`` (10**6),
                 ``8MiB`` (2**20), ``500KB``, or a bare number of bytes (a WAN link's bandwidth;
                 with ``delay=``, a network profile)
- ``frame=M+M``  write every response re-framed (cosfs/server/framing.py): chunked,
                 extensions, split, continue, close, idle-close
- ``seed=N``     seed of the random generator, for reproducible runs

Faults apply to bucket and object requests only.
"""

from __future__ import annotations

import dataclasses
import random
import re
from typing import Any

from cosfs.server import framing

_PROBABILITIES = {"503": "slowdown", "500": "internal", "reset": "reset", "truncate": "truncate"}


class FaultSpecError(ValueError):
    pass


@dataclasses.dataclass(frozen=True)
class FaultSpec:
    slowdown: float = 0.0
    internal: float = 0.0
    reset: float = 0.0
    truncate: float = 0.0
    delay_s: float = 0.0
    rate_bps: float = 0.0  # bytes per second per connection and direction; 0: no cap
    frame: frozenset[str] = frozenset()
    seed: int | None = None

    @property
    def active(self) -> bool:
        return any((self.slowdown, self.internal, self.reset, self.truncate, self.delay_s, self.rate_bps, self.frame))


def _parse_delay(value: str) -> float:
    match = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]*)?)\s*(ms|s)?\s*", value)
    if not match:
        raise FaultSpecError(f"bad delay {value!r} (use e.g. 50ms or 0.2s)")
    number = float(match.group(1))
    return number if match.group(2) == "s" else number / 1000.0


_RATE_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "kib": 2**10, "mib": 2**20, "gib": 2**30}


def _parse_rate(value: str) -> float:
    match = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]*)?)\s*([kmg]i?b|b)?\s*(?:/s)?\s*", value, re.IGNORECASE)
    if not match or float(match.group(1)) <= 0:
        raise FaultSpecError(f"bad rate {value!r} (use e.g. 50MB, 8MiB or 500KB: bytes per second)")
    return float(match.group(1)) * _RATE_UNITS[(match.group(2) or "").lower()]


def parse_fault_spec(text: str) -> FaultSpec:
    """Parse '503=0.1,reset=0.02,delay=50ms,seed=7' into a FaultSpec; raise FaultSpecError."""
    values: dict[str, Any] = {}  # FaultSpec's fields: floats, the frame modes, the seed
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        name, sep, value = item.partition("=")
        name = name.strip().lower()
        if not sep:
            raise FaultSpecError(f"fault {item!r} needs a value (name=value)")
        probability: float | frozenset[str]  # the field's value: the frame's modes, the seed (an int)
        if name in _PROBABILITIES:
            try:
                probability = float(value)
            except ValueError:
                raise FaultSpecError(f"fault {name}: {value!r} is not a number") from None
            if not 0.0 <= probability <= 1.0:
                raise FaultSpecError(f"fault {name}: probability {probability} is not within 0..1")
            field = _PROBABILITIES[name]
        elif name == "delay":
            probability = _parse_delay(value)
            field = "delay_s"
        elif name == "rate":
            probability = _parse_rate(value)
            field = "rate_bps"
        elif name == "frame":
            modes = frozenset(m.strip().lower() for m in value.split("+") if m.strip())
            unknown = modes - framing.MODES
            if not modes or unknown:
                raise FaultSpecError(f"fault frame: unknown mode(s) {sorted(unknown) or value!r} "
                                     f"(known: {', '.join(sorted(framing.MODES))})")
            probability = modes
            field = "frame"
        elif name == "seed":
            try:
                probability = int(value)
            except ValueError:
                raise FaultSpecError(f"fault seed: {value!r} is not an integer") from None
            field = "seed"
        else:
            raise FaultSpecError(f"unknown fault {name!r} (known: 503, 500, reset, truncate, delay, rate, frame, seed)")
        if field in values:
            raise FaultSpecError(f"fault {name} given twice")
        values[field] = probability
    spec = FaultSpec(**values)
    if spec.slowdown + spec.internal + spec.reset > 1.0 + 1e-9:
        raise FaultSpecError("503 + 500 + reset probabilities add up to more than 1")
    return spec


class FaultInjector:
    """Decides, per request, which fault (if any) to inject."""

    def __init__(self, spec: FaultSpec) -> None:
        self.spec = spec
        self._random = random.Random(spec.seed)

    def choose(self) -> str | None:
        """'503', '500', 'reset' or None for the response itself."""
        spec = self.spec
        if not (spec.slowdown or spec.internal or spec.reset):
            return None
        roll = self._random.random()
        if roll < spec.slowdown:
            return "503"
        roll -= spec.slowdown
        if roll < spec.internal:
            return "500"
        roll -= spec.internal
        if roll < spec.reset:
            return "reset"
        return None

    def truncate(self) -> bool:
        return bool(self.spec.truncate) and self._random.random() < self.spec.truncate

    def framed(self, status: int, reason: str, headers: list[tuple[str, str]], body: bytes,
               bodiless: bool) -> tuple[list[bytes], bool]:
        """A response as `frame=` writes it (see framing.frame)."""
        return framing.frame(status, reason, headers, body, bodiless=bodiless, modes=self.spec.frame,
                             rng=self._random)


class Pacer:
    """One connection's bandwidth cap (`rate=`): after n bytes went through, the next may go
    only n / rate seconds after the previous ones could; an idle connection saves no credit."""

    def __init__(self, rate_bps: float) -> None:
        self.rate_bps = rate_bps
        self._free_at = 0.0

    def delay_s(self, nbytes: int, now: float) -> float:
        """Account `nbytes` at `now`; how long to wait before going on."""
        self._free_at = max(self._free_at, now) + nbytes / self.rate_bps
        return max(0.0, self._free_at - now)
