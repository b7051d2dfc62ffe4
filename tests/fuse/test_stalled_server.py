"""Every operation against a stalled server fails with EIO within the documented bound
(issue 21, section 1): connect_timeout plus readwrite_timeout per attempt, retries + 1
attempts, the backoff between them (cosfs.cos.retry.stall_bound_s)."""

from __future__ import annotations

import errno
import os
import time

import pytest

from cosfs.cos.retry import RetryPolicy, stall_bound_s
from tests.fuse.conftest import sdk_client
from tests.fuse.stall_proxy import StallProxy

CONNECT_S, READ_S, RETRIES = 2.0, 2.0, 1


@pytest.fixture
def proxy(cos_server):
    stall = StallProxy(cos_server.endpoint)
    try:
        yield stall
    finally:
        stall.close()


def _fails_with_eio_within_bound(call) -> float:
    bound = stall_bound_s(RetryPolicy(RETRIES), CONNECT_S, READ_S)
    started = time.monotonic()
    with pytest.raises(OSError) as failure:
        call()
    took = time.monotonic() - started
    assert failure.value.errno == errno.EIO, failure.value
    assert took <= bound + 1.0, (took, bound)
    return took


def test_operations_against_a_stalled_server_fail_with_eio_within_the_bound(cos_server, proxy, mount_factory,
                                                                           expect_log):
    expect_log(r"^WARNING cosfs\.", required=False, why="every request times out once the server stalls")
    expect_log(r"^ERROR cosfs\.write\.owner: upload of new failed", why="the close of a new file, and the drain")
    expect_log(r"^ERROR cosfs\.mount: 1 file\(s\) are not uploaded", count=1, why="the server is still stalled")
    m = mount_factory(cos_server, f"url={proxy.endpoint}", f"connect_timeout={CONNECT_S:g}",
                      f"readwrite_timeout={READ_S:g}", f"retries={RETRIES}",
                      "negative_cache_expire=0")  # (a lookup of an unlisted name asks COS)
    sdk_client(cos_server).put_object(Bucket=cos_server.bucket, Key="cold.bin", Body=b"x" * 100_000)
    assert "cold.bin" in os.listdir(m.path)
    writer = open(m.path / "new", "wb")
    writer.write(b"y" * 1000)
    proxy.stalled.set()
    assert stall_bound_s(RetryPolicy(RETRIES), CONNECT_S, READ_S) == 2 * (CONNECT_S + READ_S) + 0.2
    _fails_with_eio_within_bound(lambda: os.stat(m.path / "never-seen"))  # lookup: HEAD/LIST
    _fails_with_eio_within_bound(lambda: (m.path / "cold.bin").read_bytes())  # open (its HEAD), read
    _fails_with_eio_within_bound(writer.close)  # close: the upload
