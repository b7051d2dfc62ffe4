"""The engine's request statistics (`RequestStats`): bytes received are body bytes read,
404s to lookups are answers rather than errors, and attempt latencies fill a histogram."""

from __future__ import annotations

import httpx
import pytest
import trio

from cosfs.cos.engine import LATENCY_BUCKETS_S, LatencyHistogram
from cosfs.cos.store import WriteOptions
from cosfs.errors import AccessDenied, IntegrityError, NotFound, TransientError

from .fakecos import FakeCos, error_response
from .test_client_mock import make_client

CHUNK = 128 * 1024


class SlowChunks(httpx.AsyncByteStream):
    """A reply body arriving chunk by chunk, as a socket delivers it; nothing after close."""

    def __init__(self, chunks: int) -> None:
        self._chunks = chunks
        self._closed = False

    async def __aiter__(self):
        for _ in range(self._chunks):
            if self._closed:
                return
            yield b"x" * CHUNK

    async def aclose(self) -> None:
        self._closed = True


@pytest.fixture
def fake() -> FakeCos:
    return FakeCos()


async def test_head_counts_no_received_bytes(fake, autojump_clock):
    fake.objects["big"] = (b"x" * 5_000_000, {})
    async with make_client(fake) as client:
        meta = await client.head_object("big")
        assert meta.size_bytes == 5_000_000
        assert client.stats.bytes_in == 0  # Content-Length of a HEAD announces no body
        await client.get_object("big")
        assert client.stats.bytes_in == 5_000_000


async def test_a_stream_closed_early_counts_what_was_read(fake, autojump_clock):
    size = 8 * CHUNK
    fake.script = [lambda request: httpx.Response(200, headers={"content-length": str(size), "etag": '"e"'},
                                                  stream=SlowChunks(8))]
    async with make_client(fake) as client:
        async with client.open_object("big") as (meta, chunks):
            assert meta.size_bytes == size
            first = await chunks.__anext__()
        assert client.stats.bytes_in == len(first) == CHUNK


async def test_not_found_lookups_are_answers_not_errors(fake, autojump_clock):
    async with make_client(fake) as client:
        for name in range(20):
            with pytest.raises(NotFound):
                await client.head_object(f"new-{name}")
        with pytest.raises(NotFound):
            await client.get_object("missing")
        assert client.stats.requests["head_object"] == 20
        assert client.stats.errors == {}


async def test_failures_that_reach_the_caller_are_errors(fake, autojump_clock):
    fake.objects["k"] = (b"payload", {})
    async with make_client(fake, retries=2) as client:
        fake.script = [lambda request: error_response(403, "AccessDenied", "no")]
        with pytest.raises(AccessDenied):
            await client.head_object("k")
        fake.script = ["503", "503", "503"]
        with pytest.raises(TransientError):
            await client.put_object("k", b"new", WriteOptions())
        fake.script = ["badcrc"]  # refused after the reply came: by the client, not the engine
        with pytest.raises(IntegrityError):
            await client.get_object("k")
        fake.script = [lambda request: httpx.Response(404)]  # an upload that vanished: a fault
        with pytest.raises(NotFound):
            await client.upload_part("k", "upload-1", 1, b"part")
    assert client.stats.errors == {"head_object": 1, "put_object": 1, "get_object": 1, "upload_part": 1}
    assert client.stats.retries["put_object"] == 2 and client.stats.requests["put_object"] == 3


async def test_attempt_latency_histogram(fake, autojump_clock):
    async def slow(request: httpx.Request) -> httpx.Response:
        await trio.sleep(0.3)
        return fake.serve(request)

    async with make_client(fake, retries=1) as client:
        await client.put_object("k", b"abc", WriteOptions())
        fake.script = [lambda request: slow(request)]
        await client.put_object("k", b"abcd", WriteOptions())
        fake.script = ["reset"]  # a failed attempt is timed too, the backoff is not
        await client.head_object("k")
    put = client.stats.latency["put_object"]
    assert put.count == 2 and put.sum_s == pytest.approx(0.3)
    assert dict(put.buckets())[0.25] == 1 and dict(put.buckets())[0.5] == 2
    assert client.stats.latency["head_object"].count == 2
    assert client.stats.latency["head_object"].sum_s == pytest.approx(0.0)


def test_histogram_buckets_are_cumulative_upper_bounds():
    histogram = LatencyHistogram()
    for seconds in (0.005, 0.0051, 0.2, 30.0, 31.0):
        histogram.observe(seconds)
    buckets = dict(histogram.buckets())
    assert list(buckets) == list(LATENCY_BUCKETS_S)
    assert buckets[0.005] == 1 and buckets[0.01] == 2 and buckets[0.25] == 3 and buckets[30.0] == 4
    assert histogram.count == 5 and histogram.sum_s == pytest.approx(61.2101)
    copy = histogram.copy()
    histogram.observe(1.0)
    assert copy.count == 5 and dict(copy.buckets())[1.0] == 3
