"""`cosfs serve` as a process: banner, startup errors, signals, access log, faults, crash safety."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import httpx
import pytest
import trio

from .helpers import CosHttp, error_code


def run_serve(*args: str, timeout: float = 20) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cosfs", "serve", *args], capture_output=True, text=True,
                          timeout=timeout)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--bucket", "Bad_Name"], "bucket"),
        (["--bucket", "nodash"], "bucket"),
        (["--fault", "503=2"], "fault"),
        (["--fault", "explode=0.1"], "fault"),
        (["--address", "10.1.2.3:9000"], "loopback"),
        (["--address", "nonsense"], "address"),
        (["--secret-id", "AKIDx"], "secret"),
    ],
)
def test_startup_errors(tmp_path, args, message):
    result = run_serve("--root", str(tmp_path / "root"), "--address", "127.0.0.1:0", *args)
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1
    assert message in result.stderr.lower()
    assert "ready" not in result.stdout


def test_bad_root(tmp_path):
    afile = tmp_path / "file"
    afile.write_text("x")
    result = run_serve("--root", str(afile), "--address", "127.0.0.1:0")
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1


def test_port_in_use(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_serve("--root", str(tmp_path / "root"), "--address", f"127.0.0.1:{port}")
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1 and str(port) in result.stderr


def test_banner_with_generated_keys_and_sigterm(tmp_path):
    process = subprocess.Popen([sys.executable, "-m", "cosfs", "serve", "--root", str(tmp_path / "r"),
                                "--address", "127.0.0.1:0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    try:
        lines = []
        while True:
            line = process.stdout.readline()
            assert line, "server exited early"
            lines.append(line.rstrip("\n"))
            if line.strip() == "ready":
                break
        assert lines[0].startswith("endpoint: http://127.0.0.1:")
        assert int(lines[0].rsplit(":", 1)[1]) > 0
        assert lines[1] == "bucket: examplebucket-1250000000"
        assert lines[2].startswith("secret-id: AKID")
        assert lines[3].startswith("secret-key: ") and len(lines[3].split(": ")[1]) >= 20
        assert lines[4] == "ready"
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        process.stdout.close()
        process.stderr.close()
    assert (tmp_path / "r" / "examplebucket-1250000000").is_dir()


async def test_secrets_never_echoed(tmp_path):
    secret_key = "SeCrEtKeY" + os.urandom(8).hex()
    out = tmp_path / "out.txt"
    access = tmp_path / "access.log"
    with open(out, "w") as sink:
        process = subprocess.Popen([sys.executable, "-m", "cosfs", "serve", "--root", str(tmp_path / "r"),
                                    "--address", "127.0.0.1:0", "--secret-id", "AKIDgiven", "--access-log",
                                    str(access)], stdout=sink, stderr=subprocess.STDOUT,
                                   env={**os.environ, "COSFS_SERVE_SECRET_KEY": secret_key})
    try:
        deadline = time.monotonic() + 20
        while "ready" not in out.read_text():
            assert time.monotonic() < deadline and process.poll() is None
            await trio.sleep(0.05)
        banner = out.read_text()
        assert "secret-key: (as given)" in banner and "secret-id: AKIDgiven" in banner
        endpoint = banner.split("endpoint: ", 1)[1].split()[0]

        class Fake:
            pass

        server = Fake()
        server.endpoint, server.secret_id, server.secret_key, server.bucket = (
            endpoint, "AKIDgiven", secret_key, "examplebucket-1250000000")
        async with httpx.AsyncClient(timeout=30) as client:
            cos = CosHttp(server, client)
            assert (await cos.put("k", b"x")).status_code == 200
            assert (await CosHttp(server, client, secret_key="wrong").get("k")).status_code == 403
            assert (await CosHttp(server, client, secret_id="AKIDother").get("k")).status_code == 403
            await cos.get("k", headers={"x-cos-meta-x": "y" * 70000})
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert secret_key not in out.read_text()
    assert secret_key not in access.read_text()
    assert len(access.read_text().splitlines()) == 4


async def test_sigint_exits_zero(cos_server):
    cos_server.process.send_signal(signal.SIGINT)
    assert cos_server.process.wait(timeout=10) == 0


async def test_access_log_format(cos_server):
    async with httpx.AsyncClient(timeout=30) as client:
        cos = CosHttp(cos_server, client)
        await cos.put("dir/k", b"12345")
        await cos.get("dir/k")
        await cos.get("missing")
        await cos.list(prefix="dir/")
    # the server logs a request right after sending its response: give it a moment
    deadline = time.monotonic() + 5
    while len(cos_server.access_lines()) < 4 and time.monotonic() < deadline:
        await trio.sleep(0.02)
    lines = cos_server.access_lines()
    assert len(lines) == 4
    parsed = [line.split(" ") for line in lines]
    for fields in parsed:
        assert len(fields) == 8
        assert fields[0].endswith("Z") and "T" in fields[0]
        assert fields[6].endswith("ms") and float(fields[6][:-2]) >= 0
        assert fields[7]
    bucket = cos_server.bucket
    assert [(f[1], f[2], f[4]) for f in parsed] == [
        ("PUT", f"/{bucket}/dir/k", "200"),
        ("GET", f"/{bucket}/dir/k", "200"),
        ("GET", f"/{bucket}/missing", "404"),
        ("GET", f"/{bucket}/", "200"),
    ]
    assert parsed[1][5] == "5" and parsed[0][3] == "-"
    assert parsed[3][3] == "prefix=dir%2F"


async def test_fault_503_everywhere(server_factory):
    server = server_factory("--fault", "503=1.0")
    async with httpx.AsyncClient(timeout=30) as client:
        cos = CosHttp(server, client)
        for _ in range(5):
            r = await cos.get("k")
            assert r.status_code == 503 and error_code(r) == "SlowDown"
        r = await cos.put("k", b"x" * 1000)
        assert r.status_code == 503
        r = await cos.list()
        assert r.status_code == 503


async def test_fault_500_and_delay(server_factory):
    server = server_factory("--fault", "500=1,delay=100ms")
    async with httpx.AsyncClient(timeout=30) as client:
        cos = CosHttp(server, client)
        started = time.monotonic()
        r = await cos.get("k")
        assert time.monotonic() - started >= 0.1
        assert r.status_code == 500 and error_code(r) == "InternalError"


async def test_fault_rate_caps_each_connection_each_way(server_factory):
    """`rate=1MB`: 1.5 MB up and 1.5 MB down each take at least 1.5 s (a sleep-based cap can
    only make them slower, so the bound is not a timing guess)."""
    server = server_factory("--fault", "rate=1MB")
    data = os.urandom(1_500_000)
    async with httpx.AsyncClient(timeout=60) as client:
        cos = CosHttp(server, client)
        started = time.monotonic()
        assert (await cos.put("paced", data)).status_code == 200
        assert time.monotonic() - started >= 1.4
        started = time.monotonic()
        r = await cos.get("paced")
        assert r.content == data and time.monotonic() - started >= 1.4


async def test_a_reply_cut_short_by_the_client_is_logged_with_the_bytes_that_went_out(server_factory):
    """A client that reads the start of a GET and hangs up: the access log counts what was
    sent, neither nothing nor the whole body (benchmarks count a tool's traffic by it)."""
    server = server_factory("--fault", "rate=2MB")
    size = 8_000_000
    async with httpx.AsyncClient(timeout=60) as client:
        cos = CosHttp(server, client)
        assert (await cos.put("big", os.urandom(size))).status_code == 200
        request = cos.build("GET", "big")
    head = f"GET {request.url.raw_path.decode()} HTTP/1.1\r\n" + "".join(
        f"{name}: {value}\r\n" for name, value in request.headers.items()) + "\r\n"
    with socket.create_connection((request.url.host, request.url.port), timeout=30) as sock:
        sock.sendall(head.encode())
        assert sock.recv(65536).startswith(b"HTTP/1.1 200")
    deadline = time.monotonic() + 30
    while not (gets := [line.split(" ") for line in server.access_lines() if " GET " in line]):
        assert time.monotonic() < deadline, "the cut GET was never logged"
        await trio.sleep(0.05)
    assert 0 < int(gets[0][5]) < size, gets


async def test_fault_reset(server_factory):
    server = server_factory("--fault", "reset=1")
    async with httpx.AsyncClient(timeout=30) as client:
        cos = CosHttp(server, client)
        with pytest.raises(httpx.TransportError):
            await cos.get("k")


async def test_fault_truncate(server_factory):
    server = server_factory("--fault", "truncate=1")
    async with httpx.AsyncClient(timeout=30) as client:
        cos = CosHttp(server, client)
        data = os.urandom(100_000)
        assert (await cos.put("k", data)).status_code == 200
        with pytest.raises(httpx.TransportError):
            await cos.get("k")
        # raw: the headers promise the full length, the body stops early
        host, port = cos.host.split(":")
        request = cos.build("GET", "k")
        stream = await trio.open_tcp_stream(host, int(port))
        async with stream:
            head = f"GET {request.url.raw_path.decode()} HTTP/1.1\r\n"
            head += "".join(f"{k}: {v}\r\n" for k, v in request.headers.items())
            await stream.send_all(head.encode() + b"\r\n")
            received = b""
            while True:
                chunk = await stream.receive_some(65536)
                if not chunk:
                    break
                received += chunk
        headers, _, body = received.partition(b"\r\n\r\n")
        assert b"Content-Length: 100000" in headers
        assert 0 < len(body) < 100_000
        assert body == data[: len(body)]


async def test_faults_seeded_are_reproducible(server_factory):
    async def statuses(server) -> list[int]:
        async with httpx.AsyncClient(timeout=30) as client:
            cos = CosHttp(server, client)
            return [(await cos.head("k")).status_code for _ in range(30)]

    first = await statuses(server_factory("--fault", "503=0.5,seed=42"))
    second = await statuses(server_factory("--fault", "503=0.5,seed=42"))
    assert first == second
    assert set(first) == {404, 503}


async def _start_raw_put(cos, key: str, total: int, send_bytes: int) -> trio.SocketStream:
    """Open a PUT of `total` declared bytes and send only `send_bytes` of the body."""
    host, port = cos.host.split(":")
    request = cos.build("PUT", key, headers={"Content-Length": str(total)})
    stream = await trio.open_tcp_stream(host, int(port))
    head = f"PUT {request.url.raw_path.decode()} HTTP/1.1\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in request.headers.items())
    await stream.send_all(head.encode() + b"\r\n")
    chunk = b"z" * (1024 * 1024)
    for _ in range(send_bytes // len(chunk)):
        await stream.send_all(chunk)
    return stream


async def test_kill_9_during_big_put_leaves_nothing_visible(server_factory, tmp_path):
    root = tmp_path / "crash-root"
    server = server_factory(root=root)
    async with httpx.AsyncClient(timeout=30) as client:
        cos = CosHttp(server, client)
        assert (await cos.put("old", b"previous version")).status_code == 200
        total = 256 * 1024 * 1024
        new = await _start_raw_put(cos, "big", total, 32 * 1024 * 1024)
        over = await _start_raw_put(cos, "old", total, 32 * 1024 * 1024)
        deadline = time.monotonic() + 10
        while not list((root / server.bucket / "tmp").iterdir()):
            assert time.monotonic() < deadline
            await trio.sleep(0.05)
        await trio.sleep(0.3)
        server.process.kill()
        server.process.wait(timeout=10)
        await new.aclose()
        await over.aclose()
    assert list((root / server.bucket / "tmp").iterdir())  # the crash left temp files behind
    restarted = server_factory(root=root)
    async with httpx.AsyncClient(timeout=30) as client:
        cos = CosHttp(restarted, client)
        assert (await cos.head("big")).status_code == 404
        r = await cos.get("old")
        assert r.content == b"previous version"
        assert (await cos.list()).text.count("<Key>") == 1
    assert list((root / restarted.bucket / "tmp").iterdir()) == []
