"""What the client sends for COSFS/s3fs options: encryption headers on every request kind,
ahbe_conf headers, unsigned requests for public buckets, CA bundles, hostname checks and
proxies (never for the CVM metadata service)."""

from __future__ import annotations

import base64
import hashlib
import http.server
import ssl
import subprocess
import threading

import httpx
import pytest

from cosfs.config import CosConfig, proxy_from_environment
from cosfs.cos.auth import Credentials
from cosfs.cos.client import CosClient
from cosfs.cos.store import PartInfo
from cosfs.credentials import AnonymousCredentials, StaticCredentials
from cosfs.errors import ConfigError, TransientError
from tests.cos.fakecos import BUCKET, SECRET_ID, SECRET_KEY

from .helpers import RecordingCos, settings_for

KEY = b"0123456789abcdef0123456789abcdef"
KEY_B64 = base64.b64encode(KEY).decode()
KEY_MD5 = base64.b64encode(hashlib.md5(KEY).digest()).decode()
CUSTOMER = {"x-cos-server-side-encryption-customer-algorithm": "AES256",
            "x-cos-server-side-encryption-customer-key": KEY_B64,
            "x-cos-server-side-encryption-customer-key-md5": KEY_MD5}
SOURCE_CUSTOMER = {name.replace("x-cos-", "x-cos-copy-source-", 1): value for name, value in CUSTOMER.items()}


def client_for(fake, creds=None, **config) -> CosClient:
    cfg = CosConfig(bucket=BUCKET, endpoint_url="http://127.0.0.1:9000", retries=0, **config)
    return CosClient(cfg, creds or StaticCredentials(Credentials(SECRET_ID, SECRET_KEY)),
                     transport=httpx.MockTransport(fake))


async def every_request_kind(client: CosClient) -> dict[str, httpx.Headers]:
    """One request of each kind; their headers by operation name."""
    fake = client._transport.handler  # type: ignore[attr-defined]
    await client.put_object("a.gz", b"hello")
    await client.head_object("a.gz")
    await client.get_object("a.gz")
    await client.copy_object("a.gz", "b.gz")
    upload = await client.create_multipart_upload("big.bin")
    await client.upload_part("big.bin", upload, 1, b"x" * 100)
    await client.upload_part_copy("big.bin", upload, 2, "a.gz", (0, 4))
    await client.complete_multipart_upload("big.bin", upload, [PartInfo(1, "e", 100, None)])
    names = ["put", "head", "get", "copy", "initiate", "part", "part_copy", "complete"]
    return dict(zip(names, (request.headers for request in fake.requests), strict=True))


def encryption_headers(headers: httpx.Headers) -> dict[str, str]:
    return {k: v for k, v in headers.items() if "server-side-encryption" in k}


async def test_sse_cos_on_writes_only():
    seen = await every_request_kind(client_for(RecordingCos(), server_side_encryption="AES256"))
    for name in ("put", "copy", "initiate"):
        assert encryption_headers(seen[name]) == {"x-cos-server-side-encryption": "AES256"}, name
    for name in ("head", "get", "part", "part_copy", "complete"):
        assert encryption_headers(seen[name]) == {}, name


async def test_sse_kms_with_key_id():
    seen = await every_request_kind(client_for(RecordingCos(), server_side_encryption="cos/kms",
                                               sse_kms_key_id="kms-1"))
    for name in ("put", "copy", "initiate"):
        assert encryption_headers(seen[name]) == {"x-cos-server-side-encryption": "cos/kms",
                                                  "x-cos-server-side-encryption-cos-kms-key-id": "kms-1"}, name
    for name in ("head", "get", "part", "part_copy", "complete"):
        assert encryption_headers(seen[name]) == {}, name


async def test_sse_c_on_puts_gets_heads_parts_and_copies():
    seen = await every_request_kind(client_for(RecordingCos(), server_side_encryption="SSE-C",
                                               sse_customer_key=KEY))
    for name in ("put", "head", "get", "initiate", "part"):
        assert encryption_headers(seen[name]) == CUSTOMER, name
    for name in ("copy", "part_copy"):  # the new object's key and the source's
        assert encryption_headers(seen[name]) == {**CUSTOMER, **SOURCE_CUSTOMER}, name
    assert encryption_headers(seen["complete"]) == {}


async def test_load_sse_c_alone_decrypts_reads_and_writes_plain():
    seen = await every_request_kind(client_for(RecordingCos(), sse_customer_key=KEY))
    for name in ("head", "get"):
        assert encryption_headers(seen[name]) == CUSTOMER, name
    assert encryption_headers(seen["copy"]) == SOURCE_CUSTOMER
    for name in ("put", "initiate", "part", "complete"):
        assert encryption_headers(seen[name]) == {}, name


def test_the_customer_key_is_never_shown():
    config = CosConfig(bucket=BUCKET, endpoint_url="http://h", server_side_encryption="SSE-C", sse_customer_key=KEY)
    assert KEY.decode() not in repr(config) and KEY_B64 not in repr(config)


async def test_use_sse_options_reach_the_client(tmp_path):
    keys = tmp_path / "sse-c.keys"
    keys.write_text(KEY_B64 + "\n")
    keys.chmod(0o600)
    assert settings_for("use_sse").cos.server_side_encryption == "AES256"
    assert settings_for("use_sse=1").cos.server_side_encryption == "AES256"
    kms = settings_for("use_sse=kmsid:my-key").cos
    assert (kms.server_side_encryption, kms.sse_kms_key_id) == ("cos/kms", "my-key")
    assert settings_for("use_sse=k:other").cos.sse_kms_key_id == "other"
    for spelling in (f"use_sse=custom:{keys}", f"use_sse=c:{keys}", f"use_sse={keys}",
                     f"use_sse=custom,load_sse_c={keys}"):
        cos = settings_for(spelling).cos
        assert (cos.server_side_encryption, cos.sse_customer_key) == ("SSE-C", KEY), spelling
    loaded = settings_for(f"load_sse_c={keys}").cos
    assert (loaded.server_side_encryption, loaded.sse_customer_key) == (None, KEY)
    for bad, fragment in (("use_sse=kmsid", "KMS key id"), ("use_sse=custom", "needs a key"),
                          ("use_sse=nonsense", "expected use_sse")):
        with pytest.raises(ConfigError, match=fragment):
            settings_for(bad)
    keys.chmod(0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        settings_for(f"use_sse=custom:{keys}")


async def test_ahbe_conf_headers_by_suffix_and_regex(tmp_path):
    conf = tmp_path / "ahbe.conf"
    conf.write_text("# s3fs's sample\n.gz Content-Encoding gzip\nreg:^/logs/.*[.]txt$ Cache-Control no-cache\n"
                    ".txt x-amz-meta-origin ahbe\n")
    rules = settings_for(f"ahbe_conf={conf}").cos.extra_headers
    fake = RecordingCos()
    client = client_for(fake, extra_headers=rules)
    await client.put_object("a.gz", b"z")
    await client.put_object("logs/x.txt", b"t")
    await client.create_multipart_upload("b.gz")
    gz, log, initiate = fake.requests
    assert gz.headers["content-encoding"] == "gzip" and "cache-control" not in gz.headers
    assert log.headers["cache-control"] == "no-cache" and log.headers["x-cos-meta-origin"] == "ahbe"
    assert initiate.headers["content-encoding"] == "gzip"
    conf.write_text("lonely\n")
    with pytest.raises(ConfigError, match="line 1"):
        settings_for(f"ahbe_conf={conf}")


async def test_public_bucket_requests_are_unsigned():
    fake = RecordingCos()
    fake.objects["pub.txt"] = (b"public", {})
    client = client_for(fake, creds=AnonymousCredentials())
    assert (await client.get_object("pub.txt"))[1] == b"public"
    assert "authorization" not in fake.requests[0].headers
    assert isinstance(settings_for("public_bucket=1").credentials, AnonymousCredentials)


# --- TLS ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tls_server(tmp_path_factory):
    """An HTTPS server on 127.0.0.1 whose self-signed certificate names another host."""
    root = tmp_path_factory.mktemp("tls")
    cert, key = root / "cert.pem", root / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
                    "/CN=otherhost", "-addext", "subjectAltName=DNS:otherhost", "-keyout", str(key), "-out",
                    str(cert)], check=True, capture_output=True)

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_HEAD(self) -> None:  # noqa: N802 (http.server API)
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"https://127.0.0.1:{server.server_port}", cert
    server.shutdown()
    server.server_close()


async def head_bucket(url: str, **config) -> None:
    cfg = CosConfig(bucket=BUCKET, endpoint_url=url, retries=0, **config)
    async with CosClient(cfg, StaticCredentials(Credentials(SECRET_ID, SECRET_KEY))) as client:
        await client.head_bucket()


async def test_ca_bundle_hostname_check_and_no_check_certificate(tls_server):
    url, cert = tls_server
    with pytest.raises(TransientError):
        await head_bucket(url)  # certifi does not know the certificate
    with pytest.raises(TransientError):
        await head_bucket(url, ca_bundle=str(cert))  # known, but it names otherhost
    await head_bucket(url, ca_bundle=str(cert), verify_hostname=False)  # ssl_verify_hostname=0
    await head_bucket(url, verify_tls=False)  # no_check_certificate


def test_tls_options_and_environment(tmp_path, monkeypatch):
    bundle = tmp_path / "ca.pem"
    bundle.write_text("x")
    cos = settings_for(f"ca_bundle={bundle},ssl_verify_hostname=0,no_check_certificate").cos
    assert (cos.ca_bundle, cos.verify_hostname, cos.verify_tls) == (str(bundle), False, False)
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.setenv("CURL_CA_BUNDLE", str(bundle))
    assert settings_for().cos.ca_bundle == str(bundle)
    warned = settings_for("no_check_certificate").notes
    assert any("not checked" in text for level, text in warned if level >= 30)
    client_cert = settings_for("ssl_client_cert=/c.pem:PEM:/k.pem").cos
    assert (client_cert.client_cert, client_cert.client_key) == ("/c.pem", "/k.pem")
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "missing.pem"))
    with pytest.raises(ConfigError, match="missing.pem"):
        settings_for()


# --- proxies --------------------------------------------------------------------------------

def test_proxy_from_environment():
    env = {"https_proxy": "proxy:3128", "http_proxy": "http://plain:8080", "HTTP_PROXY": "http://evil:1",
           "no_proxy": "localhost,.internal.example,10.0.0.1"}
    assert proxy_from_environment("https://cos.ap-guangzhou.myqcloud.com", env) == "http://proxy:3128"
    assert proxy_from_environment("http://cos.ap-guangzhou.myqcloud.com", env) == "http://plain:8080"
    assert proxy_from_environment("http://cos.internal.example:9000", env) is None
    assert proxy_from_environment("http://localhost:9000", env) is None
    assert proxy_from_environment("http://h", {"HTTP_PROXY": "http://evil:1"}) is None  # curl's rule
    assert proxy_from_environment("http://h", {"all_proxy": "http://all:1"}) == "http://all:1"
    assert proxy_from_environment("http://h", {"http_proxy": "http://p:1", "no_proxy": "*"}) is None


def test_proxy_option_and_credentials(tmp_path):
    creds = tmp_path / "proxy.cred"
    creds.write_text("us%20er:p%3Ass\n")
    assert settings_for("proxy=myproxy").cos.proxy == "http://myproxy:1080"  # s3fs's defaults
    assert settings_for("proxy=https://myproxy").cos.proxy == "https://myproxy:443"
    cos = settings_for(f"proxy=http://myproxy:3128,proxy_cred_file={creds}").cos
    assert cos.proxy == "http://us%20er:p%3Ass@myproxy:3128" and "p%3Ass" not in repr(cos)


async def test_requests_go_through_the_proxy():
    """A proxy that answers itself: the client reaches COS (here an unreachable address)
    only through it."""
    seen: list[str] = []

    class Proxy(http.server.BaseHTTPRequestHandler):
        def do_HEAD(self) -> None:  # noqa: N802 (http.server API)
            seen.append(self.path)
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Proxy)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        await head_bucket("http://127.0.0.1:9", proxy=f"http://127.0.0.1:{server.server_port}")
    finally:
        server.shutdown()
        server.server_close()
    assert seen == [f"http://127.0.0.1:9/{BUCKET}"]


def test_ipresolve_binds_the_address_family():
    assert settings_for("ipresolve=ipv4").cos.local_address == "0.0.0.0"
    assert settings_for("ipresolve=IPv6").cos.local_address == "::"
    assert settings_for().cos.local_address is None
