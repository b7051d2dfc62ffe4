"""Optional Prometheus endpoint (`-o metrics_address=127.0.0.1:9464`): the numbers of
`cosfs status`, rendered by prometheus-client from a collector that runs in the trio thread
for each scrape (so no other thread ever reads the filesystem's state).

`EXPORTED` names every series a scrape can hold; docs/grafana/cosfs-dashboard.json queries
only those (tests/unit/test_metrics.py holds it to that)."""

from __future__ import annotations

import logging

import trio
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.utils import floatToGoString

log = logging.getLogger(__name__)

MAX_REQUEST_BYTES = 8192

# States a pending file can be in (`cosfs status`): always exported, 0 when none is.
PENDING_STATES = ("dirty", "uploading", "refused")

# Every series name a scrape holds (counters with prometheus-client's _total, the histogram
# with its _bucket, _sum and _count).
EXPORTED = frozenset({
    "cosfs_requests_total", "cosfs_request_retries_total", "cosfs_request_errors_total",
    "cosfs_request_duration_seconds_bucket", "cosfs_request_duration_seconds_sum",
    "cosfs_request_duration_seconds_count", "cosfs_received_bytes_total", "cosfs_sent_bytes_total",
    "cosfs_cache_disk_bytes", "cosfs_cache_capacity_bytes", "cosfs_cache_hits_total", "cosfs_cache_misses_total",
    "cosfs_dirty_files", "cosfs_dirty_bytes", "cosfs_pending_files", "cosfs_uploads_committed_total",
    "cosfs_uploads_failed_total", "cosfs_conflicts_total", "cosfs_uptime_seconds",
})


class StatusCollector:
    """Turns `CosFilesystem.status()` into metric families."""

    def __init__(self, status) -> None:
        self._status = status

    def collect(self):
        status = self._status()
        requests = CounterMetricFamily("cosfs_requests", "COS requests sent (attempts)", labels=["operation"])
        retries = CounterMetricFamily("cosfs_request_retries", "COS requests retried", labels=["operation"])
        errors = CounterMetricFamily("cosfs_request_errors", "COS requests that failed for their caller (a 404 "
                                     "to a lookup is an answer, not an error)", labels=["operation"])
        for op, counts in status.requests.items():
            requests.add_metric([op], counts.requests)
            retries.add_metric([op], counts.retries)
            errors.add_metric([op], counts.errors)
        yield requests
        yield retries
        yield errors
        yield latency_family(status.latency)
        yield CounterMetricFamily("cosfs_received_bytes", "Body bytes received from COS", value=status.bytes_in)
        yield CounterMetricFamily("cosfs_sent_bytes", "Body bytes sent to COS", value=status.bytes_out)
        cache = status.cache
        yield GaugeMetricFamily("cosfs_cache_disk_bytes", "Bytes of cached blocks on disk", value=cache.disk_bytes)
        yield GaugeMetricFamily("cosfs_cache_capacity_bytes", "Bytes the block cache may use on disk",
                                value=cache.disk_capacity_bytes)
        yield CounterMetricFamily("cosfs_cache_hits", "Block cache hits", value=cache.hits)
        yield CounterMetricFamily("cosfs_cache_misses", "Block cache misses", value=cache.misses)
        yield GaugeMetricFamily("cosfs_dirty_files", "Files with changes not yet in COS", value=status.dirty_files)
        yield GaugeMetricFamily("cosfs_dirty_bytes", "Bytes of the files with changes not yet in COS",
                                value=status.dirty_bytes)
        yield pending_family(status.pending)
        yield CounterMetricFamily("cosfs_uploads_committed", "Files committed to COS", value=status.uploads_committed)
        yield CounterMetricFamily("cosfs_uploads_failed", "Commits that failed", value=status.uploads_failed)
        yield CounterMetricFamily("cosfs_conflicts", "Commits refused: the object changed in COS meanwhile",
                                  value=status.conflicts)
        yield GaugeMetricFamily("cosfs_uptime_seconds", "Seconds since the mount started", value=status.uptime_s)


def latency_family(latency: dict) -> HistogramMetricFamily:
    """Attempt durations by operation (`latency` of cosfs.cos.engine.RequestStats), as a
    Prometheus histogram: p50 and p99 come from histogram_quantile over its buckets."""
    family = HistogramMetricFamily("cosfs_request_duration_seconds",
                                   "Time from sending a COS request (each attempt) to its reply's head",
                                   labels=["operation"])
    for op, histogram in sorted(latency.items()):
        buckets = [(floatToGoString(bound), count) for bound, count in histogram.buckets()]
        family.add_metric([op], buckets + [("+Inf", histogram.count)], histogram.sum_s)
    return family


def pending_family(pending) -> GaugeMetricFamily:
    """Pending files by state, of those `cosfs status` lists (the first 100): "refused" ones
    need an operator (`cosfs sync --retry-failed` or `cosfs discard`)."""
    family = GaugeMetricFamily("cosfs_pending_files", "Files waiting for an upload, by state", labels=["state"])
    states = dict.fromkeys(PENDING_STATES, 0)
    for item in pending:
        states[item.state] = states.get(item.state, 0) + 1
    for state, count in states.items():
        family.add_metric([state], count)
    return family


def parse_address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host or "127.0.0.1", int(port)


async def serve_metrics(status, address: str, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StatusCollector(status))
    host, port = parse_address(address)
    listeners = await trio.open_tcp_listeners(port, host=host)
    log.info("metrics on http://%s:%d/metrics", host, port)
    task_status.started()

    async def handle(stream: trio.SocketStream) -> None:
        try:
            request = b""
            with trio.move_on_after(10):
                while b"\r\n\r\n" not in request and len(request) < MAX_REQUEST_BYTES:
                    chunk = await stream.receive_some(4096)
                    if not chunk:
                        break
                    request += chunk
            line = request.split(b"\r\n", 1)[0].split()
            if len(line) >= 2 and line[0] == b"GET" and line[1].split(b"?")[0] in (b"/metrics", b"/"):
                body, status_line, kind = generate_latest(registry), b"200 OK", CONTENT_TYPE_LATEST.encode()
            else:
                body, status_line, kind = b"not found\n", b"404 Not Found", b"text/plain"
            head = (b"HTTP/1.1 " + status_line + b"\r\nContent-Type: " + kind + b"\r\nContent-Length: "
                    + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n")
            await stream.send_all(head + body)
        except trio.BrokenResourceError:
            pass
        finally:
            await stream.aclose()

    await trio.serve_listeners(handle, listeners)
