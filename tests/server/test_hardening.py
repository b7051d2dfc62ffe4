"""`cosfs serve`, hardened: only what was signed is honoured, no request takes the server down,
slow clients are bounded, --root is never someone else's directory, the key stays out of argv
and the access log."""

from __future__ import annotations

import hmac
import os
import re
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
import trio

from cosfs.cos.auth import amz_date, cos_authorization_for_key_time, sigv4_signature
from cosfs.server.authn import Authenticator
from cosfs.server.common import CosError, Ctx, Query
from cosfs.server.http import Body, Connection, Limits, Request, Response, serve_listener

from .helpers import CosHttp, encode_key, error_code, parse
from .test_auth_http import _sigv4_request
from .test_process import run_serve

MiB = 1024 * 1024


@pytest.fixture
async def cos(cos_server):
    async with httpx.AsyncClient(timeout=30) as client:
        yield CosHttp(cos_server, client)


def presigned_url(cos: CosHttp, method: str, key: str, params: dict | None = None, key_time: str | None = None,
                  q_names=lambda name: name) -> str:
    """A q-sign presigned URL signing `host` and `params` only, as the SDKs make them."""
    now = int(time.time())
    path = f"/{cos.bucket}/{key}"
    auth = cos_authorization_for_key_time(cos.secret_id, cos.secret_key, method, path, params or {},
                                          {"host": cos.host}, key_time or f"{now - 60};{now + 600}")
    pairs = [part.split("=", 1) for part in auth.split("&")] + list((params or {}).items())
    query = "&".join(f"{q_names(k) if k.startswith('q-') else quote(k, safe='')}={quote(v, safe='')}"
                     for k, v in pairs)
    return f"{cos.endpoint}{encode_key(path)}?{query}"


async def raw_exchange(cos: CosHttp, request: httpx.Request, body: bytes = b"", timeout_s: float = 10) -> bytes:
    """Send a request head (plus `body`) over a plain socket, asking the server to close after
    its answer; return everything received until it does (or the timeout)."""
    host, port = cos.host.split(":")
    stream = await trio.open_tcp_stream(host, int(port))
    async with stream:
        head = f"{request.method} {request.url.raw_path.decode()} HTTP/1.1\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in request.headers.items()) + "Connection: close\r\n\r\n"
        await stream.send_all(head.encode() + body)
        received = b""
        with trio.move_on_after(timeout_s):
            while chunk := await stream.receive_some(65536):
                received += chunk
        return received


# --- 1. authentication: only what was signed is honoured -----------------------------------


async def test_expired_presigned_url_cannot_be_revived_by_editing_q_sign_time(cos):
    await cos.put("k", b"x")
    now = int(time.time())
    url = presigned_url(cos, "GET", "k", key_time=f"{now - 7200};{now - 3600}")
    r = await cos.client.get(url)
    assert r.status_code == 403 and "expired" in r.text
    for edited in ("0%3B99999999999", f"{now - 7200}%3B{now + 600}"):
        r = await cos.client.get(re.sub(r"q-sign-time=[^&]*", "q-sign-time=" + edited, url))
        assert r.status_code == 403, edited


async def test_case_variant_cannot_swap_a_signed_parameter(cos):
    await cos.put("public/a", b"x")
    await cos.put("secret/b", b"x")
    signed = cos.build("GET", "", params={"prefix": "public/"})
    bucket_url = f"{cos.endpoint}/{cos.bucket}/"
    for query in ("PREFIX=public%2F&prefix=secret%2F", "prefix=public%2F&prefix=secret%2F"):
        r = await cos.client.send(httpx.Request("GET", f"{bucket_url}?{query}", headers=signed.headers))
        assert r.status_code == 400 and error_code(r) == "InvalidArgument", query
    # alone, the case variant is the parameter that was signed, for the handler as well
    r = await cos.client.send(httpx.Request("GET", f"{bucket_url}?PREFIX=public%2F", headers=signed.headers))
    assert r.status_code == 200
    assert [e.text for e in parse(r).iter("Key")] == ["public/a"]


async def test_presigned_url_grants_only_what_it_signed(cos):
    await cos.put("shared", b"shared data")
    await cos.put("private", b"private data")
    url = presigned_url(cos, "GET", "shared")
    assert (await cos.client.get(url)).content == b"shared data"
    r = await cos.client.get(url + "&response-content-type=text%2Fhtml")
    assert r.status_code == 403 and error_code(r) == "AccessDenied"
    r = await cos.client.get(presigned_url(cos, "GET", "shared", params={"response-content-type": "text/html"}))
    assert r.status_code == 200 and r.headers["content-type"] == "text/html"

    put_url = presigned_url(cos, "PUT", "copy")
    source = f"{cos.bucket}.cos.ap-guangzhou.myqcloud.com/private"
    r = await cos.client.put(put_url, headers={"x-cos-copy-source": source})
    assert r.status_code == 403 and error_code(r) == "AccessDenied"
    assert (await cos.head("copy")).status_code == 404
    assert (await cos.client.put(put_url, content=b"own data")).status_code == 200


async def test_header_signature_must_cover_every_cos_header(cos):
    request = cos.build("PUT", "m", content=b"x")
    request.headers["x-cos-meta-added"] = "later"
    r = await cos.client.send(request)
    assert r.status_code == 403 and error_code(r) == "AccessDenied"
    assert (await cos.put("m", b"x", headers={"x-cos-meta-signed": "1"})).status_code == 200
    # the security token is checked against the configured one, signed or not
    request = cos.build("PUT", "m", content=b"x")
    request.headers["x-cos-security-token"] = "unsigned"
    assert (await cos.client.send(request)).status_code == 200


async def test_sigv4_presigned_url_does_not_cover_an_added_copy_source(cos):
    await cos.put("private", b"private data")
    request_time = amz_date(time.time())
    path = f"/{cos.bucket}/dst"
    params = {
        "X-Amz-Algorithm": "AWS4-HMAC-SHA256",
        "X-Amz-Credential": f"{cos.secret_id}/{request_time[:8]}/ap-guangzhou/s3/aws4_request",
        "X-Amz-Date": request_time,
        "X-Amz-Expires": "300",
        "X-Amz-SignedHeaders": "host",
    }
    signature = sigv4_signature(cos.secret_key, "ap-guangzhou", "PUT", path, params.items(), {"host": cos.host},
                                ["host"], "UNSIGNED-PAYLOAD", request_time)
    url = (f"{cos.endpoint}{path}?" + "&".join(f"{k}={quote(v, safe='')}" for k, v in params.items())
           + f"&X-Amz-Signature={signature}")
    r = await cos.client.put(url, headers={"x-amz-copy-source": f"/{cos.bucket}/private"})
    assert r.status_code == 403 and error_code(r) == "AccessDenied"
    assert (await cos.head("dst")).status_code == 404


def _zone_in_summer_time_now() -> str:
    """London's or Sydney's rule (POSIX, no tzdata needed), whichever is in summer time today:
    between them they cover the whole year."""
    for zone in ("GMT0BST,M3.5.0/1,M10.5.0", "AEST-10AEDT,M10.1.0,M4.1.0/3"):
        isdst = subprocess.run([sys.executable, "-c", "import time; print(time.localtime().tm_isdst)"],
                               env={**os.environ, "TZ": zone}, capture_output=True, text=True, check=True).stdout
        if isdst.strip() == "1":
            return zone
    raise AssertionError("neither zone is in summer time")


async def test_sigv4_header_requests_work_in_a_dst_time_zone(server_factory):
    server = server_factory(env={"TZ": _zone_in_summer_time_now()})
    async with httpx.AsyncClient(timeout=30) as client:
        cos = CosHttp(server, client)
        r = await client.send(_sigv4_request(cos, "PUT", "tz", b"summer"))
        assert r.status_code == 200, r.text


def test_security_token_is_compared_in_constant_time(monkeypatch):
    compared = []
    real = hmac.compare_digest
    monkeypatch.setattr(hmac, "compare_digest", lambda a, b: compared.append((a, b)) or real(a, b))
    now = int(time.time())
    headers = {"host": "h", "x-cos-security-token": "guess"}
    authorization = cos_authorization_for_key_time("AKIDx", "key", "GET", "/", {}, headers, f"{now - 60};{now + 600}")
    request = Request("GET", "/", {**headers, "authorization": authorization}, Body(None))  # type: ignore[arg-type]
    ctx = Ctx(request=request, request_id="r", raw_path="/", raw_query="", path="/", params=[], query=Query([]),
              bucket_name=None, key="", virtual_host=False, host="h")
    with pytest.raises(CosError) as info:
        Authenticator({"AKIDx": "key"}, security_token="TOKEN").check(ctx)
    assert info.value.code == "InvalidToken"
    assert (b"guess", b"TOKEN") in compared


async def test_non_ascii_signature_is_refused_not_an_internal_error(cos):
    request = cos.build("GET", "k")
    authorization = re.sub("q-signature=.*", "q-signature=" + "é" * 40, request.headers["Authorization"])
    headers = [(k, v) for k, v in request.headers.raw if k.lower() != b"authorization"]
    headers.append((b"Authorization", authorization.encode("latin-1")))
    r = await cos.client.send(httpx.Request("GET", request.url, headers=headers))
    assert r.status_code == 403 and error_code(r) == "SignatureDoesNotMatch"


# --- 2. no request takes the server down ----------------------------------------------------


@pytest.mark.parametrize("value", ["text/plain\r\nX-Injected: 1", "text/plain ", "a\x00b", "\n"])
async def test_bad_response_header_value_is_refused_and_the_server_survives(cos, value):
    await cos.put("k", b"data")
    answer = await raw_exchange(cos, cos.build("GET", "k", params={"response-content-type": value}))
    head = answer.partition(b"\r\n\r\n")[0]
    assert answer.startswith(b"HTTP/1.1 400 "), answer
    assert b"<Code>InvalidArgument</Code>" in answer and b"X-Injected" not in head
    assert cos.server.process.poll() is None
    r = await cos.get("k")
    assert r.status_code == 200 and r.content == b"data"


async def test_an_exception_on_one_connection_does_not_end_the_server(caplog):
    async def handler(request: Request) -> Response:
        if request.target == "/boom":
            raise RuntimeError("a bug in one request")
        return Response(200, [("Content-Length", "2")], b"ok")

    def make_connection(stream: trio.SocketStream) -> Connection:
        return Connection(stream, handler, lambda status, code, message: Response(status, []), lambda *_: None,
                          Limits())

    (listener,) = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listener.socket.getsockname()[1]
    async with listener, trio.open_nursery() as nursery:
        await nursery.start(serve_listener, listener, make_connection, trio.Semaphore(4))
        async with httpx.AsyncClient(timeout=10) as client:
            with pytest.raises(httpx.TransportError):
                await client.get(f"http://127.0.0.1:{port}/boom")
            assert (await client.get(f"http://127.0.0.1:{port}/ok")).text == "ok"
        nursery.cancel_scope.cancel()
    assert "a bug in one request" in caplog.text


async def test_bad_chunk_in_a_streamed_upload_is_a_400(cos):
    request = cos.build("PUT", "chunky", headers={"Transfer-Encoding": "chunked"})
    answer = await raw_exchange(cos, request, b"5\r\nhello\r\nZZ\r\n")
    assert answer.startswith(b"HTTP/1.1 400 ") and b"<Code>InvalidRequest</Code>" in answer
    assert (await cos.head("chunky")).status_code == 404


async def test_xml_bodies_are_capped(cos):
    started = time.monotonic()
    request = cos.build("POST", "", params={"delete": ""}, headers={"Content-Length": str(3 * MiB)})
    answer = await raw_exchange(cos, request)  # refused by its Content-Length: nothing of it is sent
    assert answer.startswith(b"HTTP/1.1 400 ") and b"<Code>EntityTooLarge</Code>" in answer
    assert time.monotonic() - started < 5

    async def big_delete():  # chunked: the server finds out while reading
        yield b"<Delete>"
        for _ in range(80):
            yield b"<Object><Key>k</Key></Object>" * 1000
        yield b"</Delete>"

    built = cos.build("POST", "", params={"delete": ""})
    headers = {k: v for k, v in built.headers.items() if k.lower() != "content-length"}
    request = httpx.Request("POST", built.url, headers=headers, content=big_delete())
    r = await cos.client.send(request)
    assert r.status_code == 400 and error_code(r) == "EntityTooLarge"


async def test_a_stalled_request_body_times_out(server_factory):
    server = server_factory("--io-timeout", "1")
    async with httpx.AsyncClient(timeout=30) as client:
        cos = CosHttp(server, client)
        started = time.monotonic()
        answer = await raw_exchange(cos, cos.build("PUT", "slow", headers={"Content-Length": "100"}), b"0123456789")
        assert answer.startswith(b"HTTP/1.1 400 ") and b"<Code>RequestTimeout</Code>" in answer
        assert time.monotonic() - started < 8
        assert (await cos.head("slow")).status_code == 404


async def test_idle_connections_and_slow_heads_are_closed(server_factory):
    server = server_factory("--idle-timeout", "1")
    host, port = server.endpoint.split("://", 1)[1].split(":")
    for sent in (b"", b"GET / HTTP/1.1\r\n"):
        stream = await trio.open_tcp_stream(host, int(port))
        async with stream:
            await stream.send_all(sent)
            with trio.fail_after(5):
                assert await stream.receive_some(1024) == b""


async def test_a_client_that_stops_reading_is_dropped(server_factory):
    server = server_factory("--io-timeout", "1")
    async with httpx.AsyncClient(timeout=30) as client:
        cos = CosHttp(server, client)
        data = os.urandom(32 * MiB)
        assert (await cos.put("big", data)).status_code == 200
        host, port = cos.host.split(":")
        sock = trio.socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        await sock.connect((host, int(port)))
        stream = trio.SocketStream(sock)
        async with stream:
            request = cos.build("GET", "big")
            head = f"GET {request.url.raw_path.decode()} HTTP/1.1\r\n"
            head += "".join(f"{k}: {v}\r\n" for k, v in request.headers.items()) + "\r\n"
            await stream.send_all(head.encode())
            await trio.sleep(4)  # reads nothing: the server gives up after 1 s without progress
            received = 0
            with trio.fail_after(20):
                while chunk := await stream.receive_some(1024 * 1024):
                    received += len(chunk)
        assert 0 < received < len(data)
        assert (await cos.head("big")).status_code == 200


async def test_connections_are_capped(server_factory):
    server = server_factory("--max-connections", "2")
    async with httpx.AsyncClient(timeout=30) as client:
        cos = CosHttp(server, client)
        host, port = cos.host.split(":")
        held = []
        for _ in range(2):  # two keep-alive connections, each answered once and then idle
            stream = await trio.open_tcp_stream(host, int(port))
            request = cos.build("HEAD", "")
            await stream.send_all((f"HEAD {request.url.raw_path.decode()} HTTP/1.1\r\n" + "".join(
                f"{k}: {v}\r\n" for k, v in request.headers.items()) + "\r\n").encode())
            answer = b""
            while b"\r\n\r\n" not in answer:
                answer += await stream.receive_some(65536)
            assert answer.startswith(b"HTTP/1.1 200 ")
            held.append(stream)
        async with httpx.AsyncClient(timeout=1) as impatient:
            with pytest.raises(httpx.ReadTimeout):
                await CosHttp(server, impatient).list()
        await held.pop().aclose()
        assert (await cos.list()).status_code == 200
        await held.pop().aclose()


# --- 3. --root is never someone else's directory ------------------------------------------------


def test_a_foreign_root_is_refused_and_left_alone(tmp_path):
    root = tmp_path / "home"
    files = ["notes.txt", "photos-2024/tmp/keep.jpg", "photos-2024/uploads/trip/keep", ".deleted-old-1/keep",
             "examplebucket-1250000000/tmp/draft"]
    for name in files:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text("user data")
    result = run_serve("--root", str(root), "--address", "127.0.0.1:0")
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1
    assert "--root" in result.stderr and ".cosfs-serve-root" in result.stderr
    assert sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()) == sorted(files)


async def test_new_and_empty_roots_are_marked_and_reused(server_factory, tmp_path):
    for root in (tmp_path / "new", tmp_path / "empty"):
        if root.name == "empty":
            root.mkdir()
        server = server_factory(root=root)
        assert (root / ".cosfs-serve-root").is_file()
        async with httpx.AsyncClient(timeout=30) as client:
            assert (await CosHttp(server, client).put("k", b"kept")).status_code == 200
        server.stop()
        restarted = server_factory(root=root)
        async with httpx.AsyncClient(timeout=30) as client:
            assert (await CosHttp(restarted, client).get("k")).content == b"kept"


def test_startup_deletes_only_what_the_server_made(server_factory, tmp_path):
    root = tmp_path / "root"
    server = server_factory(root=root)
    server.stop()
    bucket = root / server.bucket
    foreign = [bucket / "tmp" / "user-notes.txt", bucket / "uploads" / "not-an-upload" / "keep",
               root / ".deleted-notes" / "keep"]
    ours = [bucket / "tmp" / f"{time.time_ns():x}-{'0' * 16}", root / ".deleted-gone-1250000000" / "objects" / "x"]
    for path in foreign + ours:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("x")
    server_factory(root=root).stop()
    assert all(path.exists() for path in foreign)
    assert not any(path.exists() for path in ours)


# --- 4. the key stays out of argv and the access log ----------------------------------------------


def test_secret_key_file_must_be_private(tmp_path):
    key_file = tmp_path / "key"
    key_file.write_text("k" * 32 + "\n")
    key_file.chmod(0o640)
    result = run_serve("--root", str(tmp_path / "root"), "--address", "127.0.0.1:0", "--secret-id", "AKIDx",
                       "--secret-key-file", str(key_file))
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1 and "chmod 600" in result.stderr
    assert "k" * 32 not in result.stderr


async def test_secret_key_from_file_or_environment_never_in_argv(server_factory, tmp_path):
    server = server_factory()  # the fixture passes the key in COSFS_SERVE_SECRET_KEY
    key_file = tmp_path / "key"
    key_file.write_text("FileKey" + os.urandom(8).hex() + "\n")
    key_file.chmod(0o600)
    from_file = server_factory("--secret-key-file", str(key_file))  # the file wins over the environment
    file_key = key_file.read_text().strip()
    async with httpx.AsyncClient(timeout=30) as client:
        assert (await CosHttp(server, client).put("k", b"x")).status_code == 200
        assert (await CosHttp(from_file, client, secret_key=file_key).put("k", b"x")).status_code == 200
        assert (await CosHttp(from_file, client).put("k", b"x")).status_code == 403
    for running, key in ((server, server.secret_key), (from_file, file_key)):
        assert key.encode() not in Path(f"/proc/{running.process.pid}/cmdline").read_bytes()


def test_secret_key_option_still_works_with_a_warning(tmp_path):
    process = subprocess.Popen([sys.executable, "-m", "cosfs", "serve", "--root", str(tmp_path / "r"),
                                "--address", "127.0.0.1:0", "--secret-id", "AKIDx", "--secret-key", "ArgvKey123"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        while (line := process.stdout.readline()) and line.strip() != "ready":
            pass
        assert line.strip() == "ready"
    finally:
        process.terminate()
        process.wait(timeout=10)
        stderr = process.stderr.read()
        process.stdout.close()
        process.stderr.close()
    assert "warning: --secret-key" in stderr and "COSFS_SERVE_SECRET_KEY" in stderr and "ArgvKey123" not in stderr


async def test_access_log_is_private_and_holds_no_signature(server_factory, tmp_path):
    umask = os.umask(0o022)
    try:
        server = server_factory()
    finally:
        os.umask(umask)
    assert stat.S_IMODE(server.access_log.stat().st_mode) == 0o600
    async with httpx.AsyncClient(timeout=30) as client:
        cos = CosHttp(server, client)
        signed = cos.build("PUT", "k", content=b"x")
        assert (await client.send(signed)).status_code == 200
        urls = [presigned_url(cos, "GET", "k"), presigned_url(cos, "GET", "k", q_names=str.upper)]
        auth = cos_authorization_for_key_time(cos.secret_id, cos.secret_key, "GET", f"/{cos.bucket}/k", {},
                                              {"host": cos.host}, f"{int(time.time()) - 60};{int(time.time()) + 600}")
        urls.append(f"{cos.endpoint}/{cos.bucket}/k?sign={quote(auth, safe='')}")
        for url in urls:
            assert (await client.get(url)).status_code == 200, url
        r = await client.get(f"{cos.endpoint}/{cos.bucket}/k?X-Amz-Signature=" + "ab" * 32)
        assert r.status_code == 400  # no credential: AuthorizationHeaderMalformed
    secrets = [re.search("q-signature=([0-9a-f]+)", value, re.IGNORECASE).group(1)
               for value in [signed.headers["Authorization"], *urls[:2], auth]] + ["ab" * 32]
    deadline = time.monotonic() + 5
    while len(server.access_lines()) < 5 and time.monotonic() < deadline:
        await trio.sleep(0.02)
    log = server.access_log.read_text()
    assert len(log.splitlines()) == 5
    assert not [secret for secret in secrets if secret in log]
    assert log.count("REDACTED") == 4


def test_serve_unit_and_demo_keep_the_key_out_of_the_command_line():
    from tests.service.units import command, load

    unit = load("cosfs-serve.service")
    assert unit.get("Service", "EnvironmentFile") == "/etc/cosfs/serve.env"  # sets COSFS_SERVE_SECRET_KEY
    environment = {"COSFS_SERVE_SECRET_ID": "AKIDexample", "COSFS_SERVE_SECRET_KEY": "TheSecret"}
    _, argv = command(unit.get("Service", "ExecStart"), environment=environment)
    assert "AKIDexample" in argv and not [word for word in argv if "TheSecret" in word or "--secret-key" in word]
    demo = (Path(__file__).resolve().parents[2] / "scripts" / "demo.sh").read_text()
    assert "--secret-key" not in demo and "COSFS_SERVE_SECRET_KEY=$SECRET_KEY .venv/bin/cosfs serve" in demo
