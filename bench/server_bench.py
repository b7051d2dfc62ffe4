"""Throughput of `cosfs serve` over loopback: PUT and GET of a large object.

    python bench/server_bench.py [--size-mib 1024] [--runs 3] [--parallel 8] [--root DIR]

Starts a server on a temp root, then measures with httpx + trio (requests signed with
cosfs.cos.auth.cos_authorization):

- PUT single:     one PUT of the whole object (body streamed from memory)
- PUT multipart:  initiate, N parts uploaded in parallel, complete
- GET single:     one GET streaming the whole body
- GET ranges:     N ranged GETs in parallel covering the object

Prints the median MB/s (10^6 bytes per second) of each over --runs runs.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import quote

import httpx
import trio

from cosfs.cos import xml
from cosfs.cos.auth import Credentials, cos_authorization

BUCKET = "benchbucket-1250000000"
CHUNK = 1024 * 1024


class Client:
    def __init__(self, endpoint: str, creds: Credentials, http: httpx.AsyncClient) -> None:
        self.endpoint = endpoint
        self.host = endpoint.split("://", 1)[1]
        self.creds = creds
        self.http = http

    def request(self, method: str, key: str, params: dict | None = None, headers: dict | None = None,
                content=None) -> httpx.Request:
        params = params or {}
        headers = {"Host": self.host, **(headers or {})}
        path = f"/{BUCKET}/{key}"
        headers["Authorization"] = cos_authorization(self.creds, method, path, params,
                                                     {k.lower(): v for k, v in headers.items()}, time.time())
        query = "&".join(f"{k}={quote(v, safe='')}" if v else k for k, v in params.items())
        url = self.endpoint + quote(path) + (f"?{query}" if query else "")
        return self.http.build_request(method, url, headers=headers, content=content)


def body_stream(data: memoryview):
    async def gen():
        for offset in range(0, len(data), 4 * CHUNK):
            yield bytes(data[offset:offset + 4 * CHUNK])
    return gen()


async def put_single(client: Client, data: memoryview) -> None:
    request = client.request("PUT", "single", headers={"Content-Length": str(len(data))}, content=body_stream(data))
    response = await client.http.send(request)
    assert response.status_code == 200, response.text


async def put_multipart(client: Client, data: memoryview, parallel: int) -> None:
    response = await client.http.send(client.request("POST", "multi", params={"uploads": ""}))
    upload_id = xml.text(xml.parse(response.content), "UploadId")
    part_size = -(-len(data) // parallel)
    etags: dict[int, str] = {}

    async def part(number: int) -> None:
        piece = data[(number - 1) * part_size: number * part_size]
        request = client.request("PUT", "multi", params={"partNumber": str(number), "uploadId": upload_id},
                                 headers={"Content-Length": str(len(piece))}, content=body_stream(piece))
        r = await client.http.send(request)
        assert r.status_code == 200, r.text
        etags[number] = r.headers["etag"]

    async with trio.open_nursery() as nursery:
        for number in range(1, parallel + 1):
            nursery.start_soon(part, number)
    body = ("<CompleteMultipartUpload>" + "".join(
        f"<Part><PartNumber>{n}</PartNumber><ETag>{etags[n]}</ETag></Part>" for n in sorted(etags))
        + "</CompleteMultipartUpload>").encode()
    r = await client.http.send(client.request("POST", "multi", params={"uploadId": upload_id}, content=body))
    assert r.status_code == 200, r.text


async def get_range(client: Client, key: str, first: int | None, last: int | None) -> int:
    headers = {} if first is None else {"Range": f"bytes={first}-{last}"}
    received = 0
    response = await client.http.send(client.request("GET", key, headers=headers), stream=True)
    try:
        assert response.status_code in (200, 206), response.status_code
        async for chunk in response.aiter_raw():
            received += len(chunk)
    finally:
        await response.aclose()
    return received


async def get_single(client: Client, size: int) -> None:
    assert await get_range(client, "single", None, None) == size


async def get_parallel(client: Client, size: int, parallel: int) -> None:
    span = -(-size // parallel)
    total = 0

    async def one(i: int) -> None:
        nonlocal total
        received = await get_range(client, "single", i * span, min(size, (i + 1) * span) - 1)
        total += received

    async with trio.open_nursery() as nursery:
        for i in range(parallel):
            nursery.start_soon(one, i)
    assert total == size


async def bench(endpoint: str, creds: Credentials, size: int, runs: int, parallel: int) -> dict[str, list[float]]:
    data = memoryview(os.urandom(size))
    results: dict[str, list[float]] = {}
    limits = httpx.Limits(max_connections=parallel * 2, max_keepalive_connections=parallel * 2)
    async with httpx.AsyncClient(timeout=600, limits=limits) as http:
        client = Client(endpoint, creds, http)
        cases = [
            ("PUT single", lambda: put_single(client, data)),
            (f"PUT multipart ({parallel} parallel parts)", lambda: put_multipart(client, data, parallel)),
            ("GET single stream", lambda: get_single(client, size)),
            (f"GET {parallel} parallel ranges", lambda: get_parallel(client, size, parallel)),
        ]
        for name, case in cases:
            for _ in range(runs):
                started = time.perf_counter()
                await case()
                elapsed = time.perf_counter() - started
                results.setdefault(name, []).append(size / elapsed / 1e6)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--parallel", type=int, default=8)
    parser.add_argument("--root", help="server root (default: a temp dir)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="cosfs-bench-") as tmp:
        root = Path(args.root or tmp)
        creds = Credentials("AKIDbench", os.urandom(16).hex())
        process = subprocess.Popen(
            [sys.executable, "-m", "cosfs", "serve", "--root", str(root / "srv"), "--address", "127.0.0.1:0",
             "--bucket", BUCKET, "--secret-id", creds.secret_id],
            env={**os.environ, "COSFS_SERVE_SECRET_KEY": creds.secret_key}, stdout=subprocess.PIPE, text=True)
        try:
            endpoint = None
            for line in process.stdout:
                if line.startswith("endpoint:"):
                    endpoint = line.split(":", 1)[1].strip()
                if line.strip() == "ready":
                    break
            assert endpoint, "server did not start"
            results = trio.run(bench, endpoint, creds, args.size_mib * CHUNK, args.runs, args.parallel)
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=30)
            process.stdout.close()
    print(f"cosfs serve throughput, {args.size_mib} MiB object, median of {args.runs} runs (MB/s = 10^6 B/s)")
    print(f"{'case':<34} {'median MB/s':>12}   runs")
    for name, values in results.items():
        runs = ", ".join(f"{v:.0f}" for v in values)
        print(f"{name:<34} {statistics.median(values):>12.0f}   {runs}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
