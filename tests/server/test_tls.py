"""Issue 11, part 5: `cosfs serve` over TLS, and --allow-remote only with TLS (or forced).

Certificates come from the `openssl` command line (the `cryptography` package is not in the
test environment): a throwaway CA, and a server certificate it signed for 127.0.0.1.
"""

from __future__ import annotations

import os
import shutil
import ssl
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import start_server

from .helpers import CosHttp
from .test_process import run_serve

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")

MiB = 1024 * 1024


def make_ca_and_server_cert(directory: Path) -> tuple[Path, Path, Path]:
    """(CA certificate, server certificate, server key), the server's naming 127.0.0.1."""
    ca_key, ca_cert = directory / "ca.key", directory / "ca.pem"
    key, csr, cert = directory / "server.key", directory / "server.csr", directory / "server.pem"
    ext = directory / "server.ext"

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=cosfs test CA",
            "-keyout", str(ca_key), "-out", str(ca_cert))
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1", "-keyout", str(key), "-out", str(csr))
    ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:*.cos.ap-guangzhou.myqcloud.com\n"
                   "basicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n")
    openssl("x509", "-req", "-in", str(csr), "-CA", str(ca_cert), "-CAkey", str(ca_key), "-CAcreateserial",
            "-days", "2", "-extfile", str(ext), "-out", str(cert))
    key.chmod(0o600)
    return ca_cert, cert, key


@pytest.fixture(scope="module")
def certs(tmp_path_factory) -> tuple[Path, Path, Path]:
    return make_ca_and_server_cert(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def tls_server(tmp_path, certs):
    _, cert, key = certs
    server = start_server(tmp_path / "root", "--tls-cert", str(cert), "--tls-key", str(key),
                          access_log=tmp_path / "access.log")
    try:
        yield server
    finally:
        server.stop()


async def test_https_round_trip_with_the_ca_bundle(tls_server, certs):
    ca_cert, _, _ = certs
    assert tls_server.endpoint.startswith("https://127.0.0.1:")
    context = ssl.create_default_context(cafile=str(ca_cert))
    async with httpx.AsyncClient(verify=context, timeout=30) as client:
        cos = CosHttp(tls_server, client)
        data = os.urandom(3 * MiB + 5)  # larger than one piece of a file sent through TLS
        assert (await cos.put("dir/big", data)).status_code == 200
        r = await cos.get("dir/big")
        assert r.status_code == 200 and r.content == data
        r = await cos.get("dir/big", headers={"Range": "bytes=1048570-2097160"})
        assert r.status_code == 206 and r.content == data[1048570:2097161]
        assert (await cos.list(prefix="dir/")).status_code == 200
    # without the CA the certificate is refused; plain HTTP to the TLS port gets nowhere
    async with httpx.AsyncClient(timeout=10) as client:
        with pytest.raises(httpx.ConnectError):
            await CosHttp(tls_server, client).get("dir/big")
    plain = tls_server.endpoint.replace("https://", "http://")
    async with httpx.AsyncClient(timeout=10) as client:
        with pytest.raises(httpx.TransportError):
            await client.get(plain + "/")
    assert tls_server.process.poll() is None


async def test_cos_client_over_tls_with_ca_bundle(tls_server, certs):
    from tests.cos.conftest import client_for

    ca_cert, _, _ = certs
    async with client_for(tls_server, ca_bundle=str(ca_cert)) as client:
        await client.put_object("via-client", b"hello over TLS")
        meta, data = await client.get_object("via-client")
        assert data == b"hello over TLS" and meta.size_bytes == 14


def test_mount_over_tls_with_a_ca_bundle(tls_server, certs, tmp_path):
    """The mount reaches `cosfs serve --tls-cert` through the ca_bundle option."""
    import qcloud_cos

    from tests.fuse.conftest import start_mount, unmount

    ca_cert, _, _ = certs
    mounted = start_mount(tls_server, tmp_path, f"ca_bundle={ca_cert}")
    try:
        (mounted.path / "written-through-tls.txt").write_bytes(b"mounted over https\n")
        assert (mounted.path / "written-through-tls.txt").read_bytes() == b"mounted over https\n"
    finally:
        unmount(mounted.path, mounted.process)
    assert mounted.process.returncode == 0, mounted.stderr_file.read_text()
    host, port = tls_server.endpoint.split("://", 1)[1].rsplit(":", 1)
    config = qcloud_cos.CosConfig(Region="ap-guangzhou", SecretId=tls_server.secret_id,
                                  SecretKey=tls_server.secret_key, Scheme="https", IP=host, Port=int(port),
                                  VerifySSL=str(ca_cert))
    sdk = qcloud_cos.CosS3Client(config, retry=0)
    try:
        body = sdk.get_object(Bucket=tls_server.bucket, Key="written-through-tls.txt")["Body"]
        assert body.get_raw_stream().read() == b"mounted over https\n"
    finally:
        sdk._session.close()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--allow-remote"], "--allow-remote needs TLS"),
        (["--address", "0.0.0.0:0", "--allow-remote"], "--allow-remote needs TLS"),
        (["--insecure-remote"], "only goes with --allow-remote"),
        (["--tls-cert", "/nonexistent.pem"], "--tls-cert and --tls-key go together"),
        (["--tls-key", "/nonexistent.key"], "--tls-cert and --tls-key go together"),
    ],
)
def test_remote_without_tls_is_refused(tmp_path, args, message):
    result = run_serve("--root", str(tmp_path / "root"), *args)
    assert result.returncode == 2
    assert message in result.stderr


def test_tls_key_readable_by_others_is_refused(tmp_path, certs):
    _, cert, key = certs
    loose = tmp_path / "loose.key"
    loose.write_bytes(key.read_bytes())
    loose.chmod(0o644)
    result = run_serve("--root", str(tmp_path / "root"), "--tls-cert", str(cert), "--tls-key", str(loose))
    assert result.returncode == 2 and "readable by others" in result.stderr
    result = run_serve("--root", str(tmp_path / "root"), "--tls-cert", str(key), "--tls-key", str(key))
    assert result.returncode == 2 and "cannot use --tls-cert" in result.stderr


def test_insecure_remote_is_an_explicit_choice(tmp_path):
    server = start_server(tmp_path / "root", "--address", "0.0.0.0:0", "--allow-remote", "--insecure-remote")
    try:
        assert server.endpoint.startswith("http://0.0.0.0:")
        time.sleep(0.1)
        assert server.process.poll() is None
    finally:
        server.stop()


def test_remote_with_tls_starts(tmp_path, certs):
    _, cert, key = certs
    server = start_server(tmp_path / "root", "--address", "0.0.0.0:0", "--allow-remote", "--tls-cert", str(cert),
                          "--tls-key", str(key))
    try:
        assert server.endpoint.startswith("https://0.0.0.0:")
    finally:
        server.stop()
