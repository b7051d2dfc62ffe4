"""Retry policy, pure: what is worth another attempt, and how long to wait before it.

Decisions for a failed attempt:

* `RETRY` (with backoff): 5xx except 501, `SlowDown`, `RequestTimeout`, `ServiceUnavailable`,
  `InternalError`, 409 `UploadConflict`, and every transport failure
  (`httpx.TransportError`: connect errors, resets, timeouts, truncated bodies).
* `RESIGN` (once, no wait): the signature expired (`Request has expired`) or
  `RequestTimeTooSkewed`; the client signs again with a fresh (optionally corrected) time.
* `REFRESH` (once, no wait): the session token expired or is invalid (`ExpiredToken`,
  `InvalidToken`..., or a message saying the token expired); the client asks its credential
  provider for fresh keys and tries again.
* `FAIL`: every other 4xx (and 501).

Which answer gets which decision, and which exception, is one table: cosfs.cos.outcomes.

Backoff is exponential with full jitter: attempt n (0-based) waits
`uniform(0, min(max_delay, base * 2**n))`.
"""

from __future__ import annotations

import dataclasses
import random

import httpx

from cosfs.cos.outcomes import Decision, outcome

__all__ = ["Decision", "RetryPolicy", "classify_status", "is_transient_exception"]


def classify_status(status: int, code: str = "", message: str = "") -> Decision:
    """The decision for an HTTP error response with its COS error code and message (the
    table in cosfs.cos.outcomes)."""
    return outcome(status, code, message)[0]


def is_transient_exception(exc: BaseException) -> bool:
    """Transport failures worth retrying: connection errors, resets, timeouts, truncation."""
    return isinstance(exc, httpx.TransportError) and not isinstance(exc, httpx.UnsupportedProtocol)


@dataclasses.dataclass(frozen=True)
class RetryPolicy:
    """`retries` more attempts after the first, with jittered exponential backoff."""

    retries: int = 5
    base_delay_s: float = 0.2
    max_delay_s: float = 10.0

    def __post_init__(self) -> None:
        if self.retries < 0 or self.base_delay_s < 0 or self.max_delay_s < 0:
            raise ValueError("retry settings must not be negative")

    def ceiling_s(self, attempt: int) -> float:
        """The longest wait after failed attempt number `attempt` (0-based)."""
        return min(self.max_delay_s, self.base_delay_s * (2 ** min(attempt, 62)))

    def delay_s(self, attempt: int, rng: random.Random | None = None) -> float:
        """A full-jitter wait in [0, ceiling_s(attempt)]."""
        return (rng or random).uniform(0.0, self.ceiling_s(attempt))

    def should_retry(self, attempt: int) -> bool:
        """Whether failed attempt number `attempt` (0-based) may be followed by another."""
        return attempt < self.retries


def stall_bound_s(policy: RetryPolicy, connect_s: float, read_s: float) -> float:
    """The longest a request can take against a server that accepts and never answers (or a
    network that swallows packets): every attempt waits connect_timeout plus
    readwrite_timeout, with the longest backoff between attempts. The operation then fails
    (EIO). README's semantics table quotes it."""
    attempts = policy.retries + 1
    return attempts * (connect_s + read_s) + sum(policy.ceiling_s(n) for n in range(policy.retries))
