#!/usr/bin/env python3
"""The httpx columns of bench/bench.py: one workload against `cosfs serve`, raw HTTP, no FUSE.

    COSFS_BENCH_SECRET=KEY python bench/httpx_client.py '{"op": "get", ...}'

Run by bench.py as a child process so that its CPU time and peak RSS are its own. Requests are
signed with COS q-sign (`cosfs.cos.auth.cos_authorization`, once per request, as cosfs does)
and sent with httpx on trio, with the socket read size cosfs tunes (importing
`cosfs.cos.client` applies it), so this is the HTTP stack cosfs itself uses, minus cosfs.
Prints one JSON object: {"elapsed": s, "count": n, "bytes": n, "cpu": s, "rss_kib": n}, where
elapsed, cpu and rss cover the workload only (not the interpreter's start-up).

Ops (the spec's fields):
  get     key, size, streams         whole object (streams=1) or `streams` equal ranges at once
  put     key, file, size, streams   one PUT of the file, or multipart with `streams` parts at once
  rand    key, size, streams, seconds, seed   4 KiB ranged GETs, `streams` at a time, for seconds
  gets    keys                       GET every key at once (one stream each)
  creates prefix, count, body_size   PUTs one after the other
  list    prefixes                   LIST each prefix (delimiter /), one after the other, all pages
"""

from __future__ import annotations

import json
import os
import random
import resource
import sys
import time
from pathlib import Path
from urllib.parse import quote

import httpx
import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cosfs.cos import auth
from cosfs.cos import client as _tuned_httpcore  # noqa: F401  (same socket read size as cosfs)

MiB = 1024 * 1024


class Raw:
    def __init__(self, endpoint: str, bucket: str, secret_id: str, secret_key: str) -> None:
        self.endpoint = endpoint.rstrip("/")
        self.bucket = bucket
        self.creds = auth.Credentials(secret_id, secret_key)
        self.host = self.endpoint.split("://", 1)[1]

    def sign(self, method: str, key: str, params: dict[str, str] | None = None,
             headers: dict[str, str] | None = None) -> tuple[str, dict[str, str], dict[str, str]]:
        params = params or {}
        headers = {"host": self.host, **(headers or {})}
        headers["authorization"] = auth.cos_authorization(self.creds, method, "/" + key, params, headers, time.time())
        return f"{self.endpoint}/{self.bucket}/{quote(key, safe='/-_.~')}", params, headers

    async def get(self, client: httpx.AsyncClient, key: str, first: int | None = None, last: int | None = None) -> int:
        headers = {} if first is None else {"range": f"bytes={first}-{last}"}
        url, params, headers = self.sign("GET", key, headers=headers)
        total = 0
        async with client.stream("GET", url, params=params, headers=headers) as reply:
            if reply.status_code not in (200, 206):
                raise RuntimeError(f"GET {key}: HTTP {reply.status_code}")
            async for chunk in reply.aiter_raw():
                total += len(chunk)
        return total

    async def put_body(self, client: httpx.AsyncClient, key: str, body, length: int,
                       params: dict[str, str] | None = None) -> httpx.Response:
        url, params, headers = self.sign("PUT", key, params, {"content-length": str(length)})
        reply = await client.put(url, params=params, headers=headers, content=body)
        if reply.status_code != 200:
            raise RuntimeError(f"PUT {key}: HTTP {reply.status_code}: {reply.text[:200]}")
        return reply

    async def list_prefix(self, client: httpx.AsyncClient, prefix: str) -> tuple[int, int]:
        """(entries, bytes) of a delimited LIST, all pages."""
        marker, entries, size = "", 0, 0
        while True:
            params = {"prefix": prefix, "delimiter": "/", "max-keys": "1000", "marker": marker}
            url, params, headers = self.sign("GET", "", params)
            reply = await client.get(url, params=params, headers=headers)
            if reply.status_code != 200:
                raise RuntimeError(f"LIST {prefix}: HTTP {reply.status_code}")
            text = reply.text
            size += len(reply.content)
            entries += text.count("<Key>") + text.count("<Prefix>") - 1
            if "<IsTruncated>true</IsTruncated>" not in text:
                return entries, size
            marker = text.split("<NextMarker>")[1].split("</NextMarker>")[0]


def file_chunks(path: str, offset: int, length: int, chunk: int = MiB):
    async def gen():
        with open(path, "rb") as handle:  # noqa: ASYNC230  (page-cache reads; what is measured is the HTTP side)
            handle.seek(offset)
            left = length
            while left:
                data = handle.read(min(chunk, left))
                if not data:
                    raise RuntimeError(f"{path} is shorter than expected")
                left -= len(data)
                yield data
    return gen()


async def op_get(raw: Raw, spec: dict) -> dict:
    key, size, streams = spec["key"], spec["size"], spec["streams"]
    total = 0
    limits = httpx.Limits(max_connections=streams)
    async with httpx.AsyncClient(timeout=600, limits=limits) as client:
        if streams == 1:
            total = await raw.get(client, key)
        else:
            span = -(-size // streams)

            async def one(i: int) -> None:
                nonlocal total
                got = await raw.get(client, key, i * span, min(size, (i + 1) * span) - 1)
                total += got

            async with trio.open_nursery() as nursery:
                for i in range(streams):
                    nursery.start_soon(one, i)
    if total != size:
        raise RuntimeError(f"GET {key}: {total} bytes, expected {size}")
    return {"bytes": total}


async def op_put(raw: Raw, spec: dict) -> dict:
    key, path, size, streams = spec["key"], spec["file"], spec["size"], spec["streams"]
    limits = httpx.Limits(max_connections=streams)
    async with httpx.AsyncClient(timeout=600, limits=limits) as client:
        if streams == 1:
            await raw.put_body(client, key, file_chunks(path, 0, size), size)
            return {"bytes": size}
        url, params, headers = raw.sign("POST", key, {"uploads": ""})
        reply = await client.post(url, params=params, headers=headers)
        if reply.status_code != 200:
            raise RuntimeError(f"initiate {key}: HTTP {reply.status_code}")
        upload_id = reply.text.split("<UploadId>")[1].split("</UploadId>")[0]
        span = -(-size // streams)
        etags: dict[int, str] = {}

        async def part(number: int) -> None:
            offset = (number - 1) * span
            length = min(span, size - offset)
            reply = await raw.put_body(client, key, file_chunks(path, offset, length), length,
                                       {"partNumber": str(number), "uploadId": upload_id})
            etags[number] = reply.headers["etag"]

        async with trio.open_nursery() as nursery:
            for number in range(1, streams + 1):
                nursery.start_soon(part, number)
        body = ("<CompleteMultipartUpload>" + "".join(
            f"<Part><PartNumber>{n}</PartNumber><ETag>{etags[n]}</ETag></Part>" for n in sorted(etags))
            + "</CompleteMultipartUpload>").encode()
        url, params, headers = raw.sign("POST", key, {"uploadId": upload_id},
                                        {"content-length": str(len(body)), "content-type": "application/xml"})
        reply = await client.post(url, params=params, headers=headers, content=body)
        if reply.status_code != 200 or b"<Error>" in reply.content:
            raise RuntimeError(f"complete {key}: HTTP {reply.status_code}: {reply.text[:200]}")
    return {"bytes": size}


async def op_rand(raw: Raw, spec: dict) -> dict:
    key, size, streams, seconds = spec["key"], spec["size"], spec["streams"], spec["seconds"]
    rng = random.Random(spec.get("seed", 5))
    count = 0
    limits = httpx.Limits(max_connections=streams)
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:
        deadline = time.perf_counter() + seconds

        async def worker() -> None:
            nonlocal count
            while time.perf_counter() < deadline:
                offset = rng.randrange(0, size - 4096) & ~4095
                if await raw.get(client, key, offset, offset + 4095) != 4096:
                    raise RuntimeError("short ranged GET")
                count += 1

        async with trio.open_nursery() as nursery:
            for _ in range(streams):
                nursery.start_soon(worker)
    return {"count": count}


async def op_gets(raw: Raw, spec: dict) -> dict:
    keys = spec["keys"]
    total = 0
    async with httpx.AsyncClient(timeout=600, limits=httpx.Limits(max_connections=len(keys))) as client:
        async def one(key: str) -> None:
            nonlocal total
            got = await raw.get(client, key)
            total += got

        async with trio.open_nursery() as nursery:
            for key in keys:
                nursery.start_soon(one, key)
    return {"bytes": total}


async def op_creates(raw: Raw, spec: dict) -> dict:
    body = b"x" * spec["body_size"]
    async with httpx.AsyncClient(timeout=60) as client:
        for i in range(spec["count"]):
            await raw.put_body(client, f"{spec['prefix']}f{i:04d}", body, len(body))
    return {"count": spec["count"]}


async def op_list(raw: Raw, spec: dict) -> dict:
    entries = 0
    async with httpx.AsyncClient(timeout=60) as client:
        for prefix in spec["prefixes"]:
            entries += (await raw.list_prefix(client, prefix))[0]
    return {"count": entries}


OPS = {"get": op_get, "put": op_put, "rand": op_rand, "gets": op_gets, "creates": op_creates, "list": op_list}


def main() -> int:
    spec = json.loads(sys.argv[1])
    raw = Raw(spec["endpoint"], spec["bucket"], spec["secret_id"], os.environ["COSFS_BENCH_SECRET"])
    usage0 = resource.getrusage(resource.RUSAGE_SELF)
    start = time.perf_counter()
    result = trio.run(OPS[spec["op"]], raw, spec)
    elapsed = time.perf_counter() - start
    usage1 = resource.getrusage(resource.RUSAGE_SELF)
    # VmHWM, not ru_maxrss: a process exec'd from bench.py inherits bench.py's high-water mark there.
    hwm = next(int(line.split()[1]) for line in Path("/proc/self/status").read_text().splitlines()
               if line.startswith("VmHWM:"))
    result.update(elapsed=elapsed,
                  cpu=(usage1.ru_utime - usage0.ru_utime) + (usage1.ru_stime - usage0.ru_stime),
                  rss_kib=hwm)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
