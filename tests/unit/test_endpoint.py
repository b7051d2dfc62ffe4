"""Addressing: virtual-hosted vs path-style, per-segment key encoding, region derivation."""

from urllib.parse import unquote

import httpx
import pytest

from cosfs.cos.endpoint import DEFAULT_REGION, addressing_for, derive_region, quote_key
from cosfs.errors import ConfigError

BUCKET = "examplebucket-1250000000"


def test_virtual_hosted_for_cos_domains():
    addr = addressing_for(BUCKET, "https://cos.ap-beijing.myqcloud.com")
    assert addr.virtual and addr.scheme == "https"
    assert addr.host == f"{BUCKET}.cos.ap-beijing.myqcloud.com"
    assert addr.host_header == addr.host
    assert addr.raw_path("dir/a b.txt") == "/dir/a%20b.txt"
    assert addr.raw_path(None) == "/"
    assert addr.sign_path("dir/a b.txt") == "/dir/a b.txt"
    assert addr.region == "ap-beijing"
    assert addr.copy_source("a b") == f"{BUCKET}.cos.ap-beijing.myqcloud.com/a%20b"
    assert addressing_for(BUCKET, "https://cos.ap-shanghai.tencentcos.cn").virtual


def test_endpoint_already_naming_the_bucket_is_not_doubled():
    addr = addressing_for(BUCKET, f"https://{BUCKET}.cos.ap-guangzhou.myqcloud.com")
    assert addr.host == f"{BUCKET}.cos.ap-guangzhou.myqcloud.com"
    assert addr.region == "ap-guangzhou"


def test_path_style_for_custom_endpoints_and_when_forced():
    addr = addressing_for(BUCKET, "http://127.0.0.1:9000")
    assert not addr.virtual
    assert addr.host == "127.0.0.1" and addr.port == 9000 and addr.host_header == "127.0.0.1:9000"
    assert addr.raw_path("k") == f"/{BUCKET}/k"
    assert addr.raw_path(None) == f"/{BUCKET}"
    assert addr.sign_path("k") == "/k"
    assert addr.copy_source("d/k+1") == f"/{BUCKET}/d/k%2B1"
    assert addr.region == DEFAULT_REGION
    forced = addressing_for(BUCKET, "https://cos.ap-beijing.myqcloud.com", path_style=True)
    assert not forced.virtual and forced.host == "cos.ap-beijing.myqcloud.com"
    assert forced.raw_path("k") == f"/{BUCKET}/k"


def test_default_ports_dropped_and_ipv6():
    assert addressing_for(BUCKET, "http://example.com:80").port is None
    addr = addressing_for(BUCKET, "http://[::1]:9000")
    assert addr.host == "::1" and addr.host_header == "[::1]:9000"


def test_explicit_region_wins():
    assert addressing_for(BUCKET, "https://cos.ap-beijing.myqcloud.com", region="eu-frankfurt").region == "eu-frankfurt"


@pytest.mark.parametrize(
    "host,region",
    [
        ("cos.ap-guangzhou.myqcloud.com", "ap-guangzhou"),
        ("b-1.cos.na-toronto.myqcloud.com", "na-toronto"),
        ("cos-internal.ap-shanghai.tencentcos.cn", "ap-shanghai"),
        ("cos.myqcloud.com", None),
        ("b-1.cos.accelerate.myqcloud.com", None),
        ("127.0.0.1", None),
        ("minio.local", None),
    ],
)
def test_derive_region(host, region):
    assert derive_region(host) == region


ODD_KEYS = [
    "plain.txt", "dir/sub/file", "a b", "a+b", "100%", "what?", "hash#tag", "emoji-😀", "目录/文件.txt",
    "a//b", "trailing/", "../up", "a/../b", "./x", "a/./b", "..", "~tilde_-.", "semi;colon=eq&amp",
    "quote'\"", "back\\slash", "tab\tnl",
]


@pytest.mark.parametrize("key", ODD_KEYS)
def test_key_encoding_round_trips_and_survives_httpx(key):
    encoded = quote_key(key)
    assert unquote(encoded) == key
    assert all(c.isalnum() and c.isascii() or c in "-_.~/%" for c in encoded)
    # httpx must not normalise dot segments or double slashes out of the path.
    url = httpx.URL(scheme="http", host="127.0.0.1", port=9000, raw_path=("/b/" + encoded).encode())
    request = httpx.Request("GET", url)
    assert request.url.raw_path == ("/b/" + encoded).encode()
    assert unquote(request.url.raw_path.decode()[3:]) == key


def test_dot_segments_are_escaped():
    assert quote_key("a/../b") == "a/%2E%2E/b"
    assert quote_key("./x") == "%2E/x"
    assert quote_key("a..b/.hidden") == "a..b/.hidden"


def test_bad_endpoint():
    with pytest.raises(ConfigError):
        addressing_for(BUCKET, "ftp://x")
