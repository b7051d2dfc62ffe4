"""The mount's state for operators (`cosfs status`, the metrics endpoint) as typed values;
`to_json` is the one place that names the JSON fields `cosfs status --json` prints."""

from __future__ import annotations

import dataclasses
import os
import time


@dataclasses.dataclass(frozen=True)
class RequestCounts:
    requests: int
    retries: int
    errors: int


@dataclasses.dataclass(frozen=True)
class CacheStatus:
    disk_bytes: int
    disk_capacity_bytes: int
    hits: int
    misses: int

    @property
    def hit_ratio(self) -> float | None:
        lookups = self.hits + self.misses
        return round(self.hits / lookups, 4) if lookups else None


@dataclasses.dataclass(frozen=True)
class PendingFile:
    key: str
    size_bytes: int
    uploaded_bytes: int
    state: str
    error: str
    retry_in_s: float | None = None  # a failed upload's next attempt

    @classmethod
    def of(cls, dirty, state: str) -> PendingFile:
        retry_in_s = None if dirty.retry_at is None else round(max(0.0, dirty.retry_at - time.monotonic()), 1)
        return cls(dirty.key, dirty.size, dirty.uploaded, state, dirty.last_error, retry_in_s)


@dataclasses.dataclass(frozen=True)
class MountStatus:
    labels: dict[str, str]
    pid: int
    uptime_s: float
    requests: dict[str, RequestCounts]
    bytes_in: int
    bytes_out: int
    cache: CacheStatus
    dirty_files: int
    uploads_committed: int
    uploads_failed: int
    conflicts: int
    pending: list[PendingFile]
    latency: dict  # operation -> engine.LatencyHistogram (a copy)
    dirty_bytes: int

    @classmethod
    def collect(cls, labels: dict[str, str], started_s: float, stats, blocks, cache_capacity_bytes: int,
                writeback, pending: list[PendingFile]) -> MountStatus:
        requests = {}
        if stats is not None:
            requests = {op: RequestCounts(stats.requests[op], stats.retries[op], stats.errors[op])
                        for op in sorted(stats.requests)}
        return cls(
            labels=dict(labels),
            pid=os.getpid(),
            uptime_s=round(time.time() - started_s, 1),
            requests=requests,
            bytes_in=stats.bytes_in if stats else 0,
            bytes_out=stats.bytes_out if stats else 0,
            cache=CacheStatus(blocks.used_bytes, cache_capacity_bytes, blocks.hits, blocks.misses),
            dirty_files=len(writeback.staging),
            uploads_committed=writeback.committed_uploads,
            uploads_failed=writeback.failed_uploads,
            conflicts=writeback.conflicts,
            pending=pending,
            latency={op: stats.latency[op].copy() for op in sorted(stats.latency)} if stats is not None else {},
            dirty_bytes=sum(dirty.size for dirty in writeback.staging.files()),
        )

    def to_json(self) -> dict:
        return {
            **self.labels,
            "pid": self.pid,
            "uptime_s": self.uptime_s,
            "requests": {op: dataclasses.asdict(counts) for op, counts in self.requests.items()},
            "bytes_in": self.bytes_in,
            "bytes_out": self.bytes_out,
            "cache": {**dataclasses.asdict(self.cache), "hit_ratio": self.cache.hit_ratio},
            "dirty_files": self.dirty_files,
            "uploads_committed": self.uploads_committed,
            "uploads_failed": self.uploads_failed,
            "conflicts": self.conflicts,
            "pending": [dataclasses.asdict(item) for item in self.pending],
            "latency": {op: dataclasses.asdict(histogram) for op, histogram in self.latency.items()},
            "dirty_bytes": self.dirty_bytes,
        }
