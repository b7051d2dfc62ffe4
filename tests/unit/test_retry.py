"""Retry policy: what is transient, what is re-signed or refreshed, and bounded jittered delays."""

import random

import httpx
import pytest

from cosfs.cos.retry import Decision, RetryPolicy, classify_status, is_transient_exception


@pytest.mark.parametrize(
    "status,code,message,decision",
    [
        (503, "SlowDown", "", Decision.RETRY),
        (503, "ServiceUnavailable", "", Decision.RETRY),
        (500, "InternalError", "", Decision.RETRY),
        (502, "", "", Decision.RETRY),
        (504, "", "", Decision.RETRY),
        (400, "RequestTimeout", "", Decision.RETRY),
        (409, "UploadConflict", "", Decision.RETRY),
        (501, "NotImplemented", "", Decision.FAIL),
        (400, "InvalidArgument", "", Decision.FAIL),
        (400, "BadDigest", "", Decision.FAIL),
        (403, "AccessDenied", "Access Denied.", Decision.FAIL),
        (403, "SignatureDoesNotMatch", "", Decision.FAIL),
        (403, "AccessDenied", "Request has expired", Decision.RESIGN),
        (403, "RequestTimeTooSkewed", "", Decision.RESIGN),
        (400, "ExpiredToken", "", Decision.REFRESH),
        (403, "InvalidToken", "", Decision.REFRESH),
        (403, "AccessDenied", "The security token has expired", Decision.REFRESH),
        (404, "NoSuchKey", "", Decision.FAIL),
        (409, "AppendPositionErr", "", Decision.FAIL),
        (412, "PreconditionFailed", "", Decision.FAIL),
        (416, "InvalidRange", "", Decision.FAIL),
    ],
)
def test_classify_status(status, code, message, decision):
    assert classify_status(status, code, message) is decision


def test_transport_errors_are_transient():
    request = httpx.Request("GET", "http://x/")
    for exc in (
        httpx.ConnectError("refused", request=request),
        httpx.ReadTimeout("slow", request=request),
        httpx.ConnectTimeout("slow", request=request),
        httpx.RemoteProtocolError("peer closed connection without sending complete message body", request=request),
        httpx.ReadError("reset", request=request),
        httpx.WriteError("broken pipe", request=request),
        httpx.PoolTimeout("pool", request=request),
    ):
        assert is_transient_exception(exc), exc
    assert not is_transient_exception(httpx.UnsupportedProtocol("nope", request=request))
    assert not is_transient_exception(ValueError("x"))


def test_delays_are_bounded_full_jitter():
    policy = RetryPolicy(retries=8, base_delay_s=0.1, max_delay_s=2.0)
    rng = random.Random(1)
    for attempt in range(12):
        ceiling = min(2.0, 0.1 * 2**attempt)
        assert policy.ceiling_s(attempt) == pytest.approx(ceiling)
        samples = [policy.delay_s(attempt, rng) for _ in range(200)]
        assert all(0.0 <= s <= ceiling for s in samples)
        assert max(samples) > ceiling * 0.5  # jitter actually spreads over the range
    assert policy.ceiling_s(1000) == 2.0


def test_retry_budget():
    policy = RetryPolicy(retries=2)
    assert [policy.should_retry(a) for a in range(4)] == [True, True, False, False]
    assert not RetryPolicy(retries=0).should_retry(0)
    with pytest.raises(ValueError):
        RetryPolicy(retries=-1)


def test_the_stall_bound_is_what_the_option_help_states():
    """readwrite_timeout's help quotes the bound with the defaults (issue 21, section 1)."""
    from cosfs import options
    from cosfs.cos.retry import stall_bound_s

    defaults = {name: options.BY_NAME[name].default for name in ("retries", "connect_timeout", "readwrite_timeout")}
    bound = stall_bound_s(RetryPolicy(defaults["retries"]), defaults["connect_timeout"], defaults["readwrite_timeout"])
    assert bound == 6 * (10 + 60) + (0.2 + 0.4 + 0.8 + 1.6 + 3.2)
    minutes, seconds = divmod(int(bound), 60)
    assert f"({minutes} min {seconds} s with the defaults)" in options.BY_NAME["readwrite_timeout"].help
