"""cosfs/metrics.py renders a mount's status as Prometheus series (the latency histogram
among them), and docs/grafana/cosfs-dashboard.json queries only series it exports."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from cosfs.cos.engine import LatencyHistogram
from cosfs.metrics import EXPORTED, StatusCollector
from cosfs.status import CacheStatus, MountStatus, PendingFile, RequestCounts

DASHBOARD = Path(__file__).resolve().parents[2] / "docs" / "grafana" / "cosfs-dashboard.json"


@dataclasses.dataclass(frozen=True)
class StatusWithLatency(MountStatus):
    """MountStatus with the fields the metrics read when the status carries them."""

    latency: dict = dataclasses.field(default_factory=dict)
    dirty_bytes: int = 0


def a_status() -> StatusWithLatency:
    put = LatencyHistogram()
    for seconds in (0.02, 0.3, 0.4, 45.0):
        put.observe(seconds)
    return StatusWithLatency(
        labels={"bucket": "b-1250000000"}, pid=1, uptime_s=12.0,
        requests={"put_object": RequestCounts(4, 1, 0), "head_object": RequestCounts(20, 0, 0)},
        bytes_in=10, bytes_out=3_000_000, cache=CacheStatus(4096, 1 << 30, 3, 1), dirty_files=2,
        uploads_committed=5, uploads_failed=1, conflicts=0,
        pending=[PendingFile("a", 100, 0, "dirty", ""), PendingFile("b", 200, 50, "refused", "EntityTooLarge")],
        latency={"put_object": put}, dirty_bytes=300)


def scrape(status) -> dict:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StatusCollector(lambda: status))
    text = generate_latest(registry).decode()
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def test_every_exported_series_is_listed_and_the_histogram_is_prometheus_shaped():
    samples = scrape(a_status())
    assert {name for name, _ in samples} == EXPORTED
    bucket = "cosfs_request_duration_seconds_bucket"
    assert samples[(bucket, (("le", "0.025"), ("operation", "put_object")))] == 1
    assert samples[(bucket, (("le", "0.25"), ("operation", "put_object")))] == 1
    assert samples[(bucket, (("le", "0.5"), ("operation", "put_object")))] == 3
    assert samples[(bucket, (("le", "30.0"), ("operation", "put_object")))] == 3
    assert samples[(bucket, (("le", "+Inf"), ("operation", "put_object")))] == 4
    assert samples[("cosfs_request_duration_seconds_count", (("operation", "put_object"),))] == 4
    assert abs(samples[("cosfs_request_duration_seconds_sum", (("operation", "put_object"),))] - 45.72) < 1e-9
    assert samples[("cosfs_dirty_bytes", ())] == 300
    assert samples[("cosfs_pending_files", (("state", "refused"),))] == 1
    assert samples[("cosfs_pending_files", (("state", "uploading"),))] == 0


def dashboard_exprs() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = []
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            continue
        assert panel["targets"], panel["title"]
        exprs += [target["expr"] for target in panel["targets"]]
    exprs += [variable["query"]["query"] for variable in dashboard["templating"]["list"]
              if variable["type"] == "query"]
    return exprs


def test_the_dashboard_queries_only_exported_series():
    exprs = dashboard_exprs()
    used = set()
    for expr in exprs:
        names = set(re.findall(r"\bcosfs_[a-z0-9_]+", expr))
        assert names, expr
        used |= names
    assert used <= EXPORTED, used - EXPORTED
    # The panels the brief asks for are there.
    for series in ("cosfs_requests_total", "cosfs_request_errors_total", "cosfs_request_retries_total",
                   "cosfs_request_duration_seconds_bucket", "cosfs_received_bytes_total", "cosfs_sent_bytes_total",
                   "cosfs_cache_hits_total", "cosfs_dirty_files", "cosfs_dirty_bytes", "cosfs_pending_files"):
        assert series in used, series
    assert any("histogram_quantile(0.99" in expr for expr in exprs)
    assert any("histogram_quantile(0.5" in expr for expr in exprs)


def test_labels_the_dashboard_groups_by_exist():
    labels = {label for _, sample_labels in scrape(a_status()) for label, _ in sample_labels}
    for expr in dashboard_exprs():
        for group in re.findall(r"by \(([^)]*)\)", expr):
            assert {name.strip() for name in group.split(",")} <= labels | {"instance"}, expr
