"""Optional Prometheus endpoint (`-o metrics_address=127.0.0.1:9464`): the numbers of
`cosfs status`, rendered by prometheus-client from a collector that runs in the trio thread
for each scrape (so no other thread ever reads the filesystem's state)."""

from __future__ import annotations

import logging

import trio
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

log = logging.getLogger(__name__)

MAX_REQUEST_BYTES = 8192


class StatusCollector:
    """Turns `CosFilesystem.status()` into metric families."""

    def __init__(self, status) -> None:
        self._status = status

    def collect(self):
        status = self._status()
        requests = CounterMetricFamily("cosfs_requests", "COS requests sent (attempts)", labels=["operation"])
        retries = CounterMetricFamily("cosfs_request_retries", "COS requests retried", labels=["operation"])
        errors = CounterMetricFamily("cosfs_request_errors", "COS requests that failed for good", labels=["operation"])
        for op, counts in status.requests.items():
            requests.add_metric([op], counts.requests)
            retries.add_metric([op], counts.retries)
            errors.add_metric([op], counts.errors)
        yield requests
        yield retries
        yield errors
        yield CounterMetricFamily("cosfs_received_bytes", "Body bytes received from COS", value=status.bytes_in)
        yield CounterMetricFamily("cosfs_sent_bytes", "Body bytes sent to COS", value=status.bytes_out)
        cache = status.cache
        yield GaugeMetricFamily("cosfs_cache_disk_bytes", "Bytes of cached blocks on disk", value=cache.disk_bytes)
        yield CounterMetricFamily("cosfs_cache_hits", "Block cache hits", value=cache.hits)
        yield CounterMetricFamily("cosfs_cache_misses", "Block cache misses", value=cache.misses)
        yield GaugeMetricFamily("cosfs_dirty_files", "Files with changes not yet in COS", value=status.dirty_files)
        yield CounterMetricFamily("cosfs_uploads_committed", "Files committed to COS", value=status.uploads_committed)
        yield CounterMetricFamily("cosfs_uploads_failed", "Commits that failed", value=status.uploads_failed)
        yield CounterMetricFamily("cosfs_conflicts", "Commits refused: the object changed in COS meanwhile",
                                  value=status.conflicts)
        yield GaugeMetricFamily("cosfs_uptime_seconds", "Seconds since the mount started", value=status.uptime_s)


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
