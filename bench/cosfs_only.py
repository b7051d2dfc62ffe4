#!/usr/bin/env python3
"""cosfs alone: each mount workload beside raw httpx on the same server (bench.py compares peers).

    .venv/bin/python bench/cosfs_only.py [--size-mib 1024] [--random-seconds 20] [--runs 3] [--only walk]

Starts `cosfs serve` on a temporary root, measures raw HTTP (httpx, parallel ranged GETs, no
FUSE), then mounts the bucket with cosfs and runs the workloads. Prints a table of medians with
ratios against raw, and the mount daemon's peak RSS. Not a test: machines are shared and noisy.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import quote, urlparse

import httpx
import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cosfs.cos import auth  # noqa: E402
from cosfs.cos import client as _tuned_httpcore  # noqa: E402,F401  (raw gets the same socket read size)

MiB = 1024 * 1024
BUCKET = "bench-1250000000"


class Raw:
    """Signed raw HTTP against the server: the yardstick, with no cosfs code in the data path."""

    def __init__(self, endpoint: str, secret_id: str, secret_key: str) -> None:
        self.endpoint = endpoint
        self.creds = auth.Credentials(secret_id, secret_key)
        self.host = urlparse(endpoint).netloc

    def request(self, method: str, key: str, params: dict[str, str] | None = None,
                headers: dict[str, str] | None = None) -> tuple[str, dict[str, str], dict[str, str]]:
        params = params or {}
        headers = {"host": self.host, **(headers or {})}
        headers["authorization"] = auth.cos_authorization(self.creds, method, "/" + key, params, headers, time.time())
        url = f"{self.endpoint}/{BUCKET}/{quote(key, safe='/-_.~')}"
        return url, params, headers

    async def put(self, client: httpx.AsyncClient, key: str, body: bytes) -> None:
        url, params, headers = self.request("PUT", key, headers={"content-length": str(len(body))})
        reply = await client.put(url, params=params, headers=headers, content=body)
        reply.raise_for_status()

    async def get_range(self, client: httpx.AsyncClient, key: str, start: int, end: int) -> int:
        url, params, headers = self.request("GET", key, headers={"range": f"bytes={start}-{end}"})
        total = 0
        async with client.stream("GET", url, params=params, headers=headers) as reply:
            reply.raise_for_status()
            async for chunk in reply.aiter_raw(1024 * 1024):
                total += len(chunk)
        return total

    async def list_all(self, client: httpx.AsyncClient, prefix: str, delimiter: str = "/") -> int:
        marker, pages = "", 0
        while True:
            params = {"prefix": prefix, "delimiter": delimiter, "max-keys": "1000", "marker": marker}
            url, params, headers = self.request("GET", "", params=params)
            reply = await client.get(url, params=params, headers=headers)
            reply.raise_for_status()
            pages += 1
            text = reply.text
            if "<IsTruncated>true</IsTruncated>" not in text:
                return pages
            marker = text.split("<NextMarker>")[1].split("</NextMarker>")[0]


async def upload_big(raw: Raw, key: str, size: int, part: int = 64 * MiB) -> None:
    """Upload `size` bytes of pseudo-random data as one object via multipart (8 parallel)."""
    block = random.Random(1).randbytes(part)
    async with httpx.AsyncClient(timeout=300) as client:
        url, params, headers = raw.request("POST", key, params={"uploads": ""})
        reply = await client.post(url, params=params, headers=headers)
        reply.raise_for_status()
        upload_id = reply.text.split("<UploadId>")[1].split("</UploadId>")[0]
        etags: dict[int, str] = {}
        limiter = trio.CapacityLimiter(8)

        async def one(number: int, length: int) -> None:
            async with limiter:
                body = bytes([number % 256]) + block[1:length]
                params = {"partNumber": str(number), "uploadId": upload_id}
                u, p, h = raw.request("PUT", key, params=params, headers={"content-length": str(length)})
                r = await client.put(u, params=p, headers=h, content=body)
                r.raise_for_status()
                etags[number] = r.headers["etag"]

        async with trio.open_nursery() as nursery:
            for number, offset in enumerate(range(0, size, part), start=1):
                nursery.start_soon(one, number, min(part, size - offset))
        body = "<CompleteMultipartUpload>" + "".join(
            f"<Part><PartNumber>{n}</PartNumber><ETag>{etags[n]}</ETag></Part>" for n in sorted(etags)
        ) + "</CompleteMultipartUpload>"
        u, p, h = raw.request("POST", key, params={"uploadId": upload_id},
                              headers={"content-length": str(len(body)), "content-type": "application/xml"})
        r = await client.post(u, params=p, headers=h, content=body.encode())
        r.raise_for_status()


async def raw_upload_seconds(raw: Raw, key: str, size: int) -> float:
    start = time.perf_counter()
    await upload_big(raw, key, size, part=8 * MiB)
    return time.perf_counter() - start


async def raw_parallel_read(raw: Raw, key: str, size: int, streams: int = 8, chunk: int = 8 * MiB) -> float:
    limits = httpx.Limits(max_connections=streams)
    async with httpx.AsyncClient(timeout=300, limits=limits) as client:
        limiter = trio.CapacityLimiter(streams)
        start = time.perf_counter()

        async def one(offset: int) -> None:
            async with limiter:
                await raw.get_range(client, key, offset, min(offset + chunk, size) - 1)

        async with trio.open_nursery() as nursery:
            for offset in range(0, size, chunk):
                nursery.start_soon(one, offset)
        return time.perf_counter() - start


async def raw_random_reads(raw: Raw, key: str, size: int, seconds: float) -> float:
    rng = random.Random(5)
    count = 0
    async with httpx.AsyncClient(timeout=60) as client:
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline:
            offset = rng.randrange(0, size - 4096) & ~4095
            await raw.get_range(client, key, offset, offset + 4095)
            count += 1
    return count / seconds


async def populate_small(raw: Raw) -> None:
    async with httpx.AsyncClient(timeout=60) as client:
        limiter = trio.CapacityLimiter(16)

        async def one(key: str) -> None:
            async with limiter:
                await raw.put(client, key, b"x" * 100)

        async with trio.open_nursery() as nursery:
            for i in range(1000):
                nursery.start_soon(one, f"ls1000/f{i:04d}")
            for d in range(100):
                for i in range(50):
                    nursery.start_soon(one, f"tree/d{d:03d}/f{i:02d}")


def drop_page_cache() -> None:
    try:
        subprocess.run(["sync"], check=False)
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
    except OSError:
        pass


class Mount:
    def __init__(self, workdir: Path, endpoint: str, secret_id: str, secret_key: str, name: str,
                 cache_dir: Path | None = None) -> None:
        self.path = workdir / name
        self.path.mkdir(exist_ok=True)
        passwd = workdir / "passwd"
        passwd.write_text(f"{secret_id}:{secret_key}\n")
        passwd.chmod(0o600)
        self.cache_dir = cache_dir or workdir / f"{name}-cache"
        opts = f"url={endpoint},passwd_file={passwd},cache_dir={self.cache_dir},log_file={workdir / name}.log"
        self.process = subprocess.Popen([sys.executable, "-m", "cosfs", "mount", BUCKET, str(self.path),
                                         "-f", "-o", opts], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while not os.path.ismount(self.path):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"mount failed; see {workdir / name}.log")
            time.sleep(0.05)

    def peak_rss_mib(self) -> float:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def close(self) -> None:
        subprocess.run(["fusermount3", "-u", str(self.path)], check=False)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(timeout=30)


def read_file(path: Path, block: int = MiB) -> float:
    start = time.perf_counter()
    with open(path, "rb", buffering=0) as handle:
        while handle.read(block):
            pass
    return time.perf_counter() - start


def random_reads(path: Path, size: int, seconds: float) -> float:
    if shutil.which("fio"):
        out = subprocess.run(["fio", "--name=rand", f"--filename={path}", "--rw=randread", "--bs=4k",
                              "--direct=1", f"--runtime={int(seconds)}", "--time_based", "--readonly",
                              "--ioengine=psync", "--output-format=terse", "--terse-version=3"],
                             capture_output=True, text=True)
        if out.returncode == 0 and out.stdout:
            return float(out.stdout.split(";")[7])  # read IOPS
    rng = random.Random(5)
    count = 0
    fd = os.open(path, os.O_RDONLY)
    try:
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline:
            os.pread(fd, 4096, rng.randrange(0, size - 4096) & ~4095)
            count += 1
    finally:
        os.close(fd)
    return count / seconds


def write_file(path: Path, size: int) -> float:
    """Sequential write of `size` bytes including close (which waits for the commit)."""
    chunk = random.Random(9).randbytes(MiB)
    start = time.perf_counter()
    with open(path, "wb", buffering=0) as handle:
        for offset in range(0, size, MiB):
            handle.write(chunk[: min(MiB, size - offset)])
    return time.perf_counter() - start


def small_creates(directory: Path, count: int) -> float:
    directory.mkdir()
    body = b"x" * 1024
    start = time.perf_counter()
    for i in range(count):
        (directory / f"f{i:04d}").write_bytes(body)
    return count / (time.perf_counter() - start)


def peak_rss_during(mount: Mount, action) -> float:
    """Peak RSS of the daemon while `action` runs (sampled, plus the kernel's high-water mark)."""
    import threading

    peak = [0.0]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            try:
                for line in Path(f"/proc/{mount.process.pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        peak[0] = max(peak[0], int(line.split()[1]) / 1024)
            except OSError:
                pass
            done.wait(0.1)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        action()
    finally:
        done.set()
        sampler.join()
    return max(peak[0], mount.peak_rss_mib())


def timed(command: list[str], cwd: Path) -> float:
    start = time.perf_counter()
    subprocess.run(command, cwd=cwd, stdout=subprocess.DEVNULL, check=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--random-seconds", type=float, default=20)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--big-write-gib", type=float, default=5, help="size of the RSS-during-write workload")
    parser.add_argument("--only", choices=["reads", "writes", "walk"], default=None)
    parser.add_argument("--walk-objects", type=int, default=100_000,
                        help="objects (in 1,000 folders) for the memory-bounded walk (--only walk)")
    args = parser.parse_args()
    size = args.size_mib * MiB
    workdir = Path(tempfile.mkdtemp(prefix="cosfs-bench-"))
    secret_id, secret_key = "AKIDbench000000000000", os.urandom(16).hex()
    server = subprocess.Popen([sys.executable, "-m", "cosfs", "serve", "--root", str(workdir / "root"),
                               "--address", "127.0.0.1:0", "--bucket", BUCKET, "--secret-id", secret_id],
                              env={**os.environ, "COSFS_SERVE_SECRET_KEY": secret_key},
                              stdout=subprocess.PIPE, text=True)
    mounts: list[Mount] = []
    rows: list[tuple[str, str, str, str]] = []
    try:
        endpoint = ""
        for line in server.stdout:
            if line.startswith("endpoint:"):
                endpoint = line.split(":", 1)[1].strip()
            if line.strip() == "ready":
                break
        raw = Raw(endpoint, secret_id, secret_key)
        if args.only == "walk":
            walk_rows(args, rows, workdir, endpoint, secret_id, secret_key, raw, mounts)
            return
        if args.only != "reads":
            write_rows(args, rows, workdir, endpoint, secret_id, secret_key, raw, mounts)
        if args.only == "writes":
            return
        print(f"server {endpoint}; uploading {args.size_mib} MiB and 6,000 small objects...", file=sys.stderr)
        trio.run(upload_big, raw, "big.bin", size)
        trio.run(populate_small, raw)

        raw_seq = statistics.median(size / trio.run(raw_parallel_read, raw, "big.bin", size) / MiB
                                    for _ in range(args.runs))
        cold, warm = [], []
        peak = 0.0
        for run in range(args.runs):
            mount = Mount(workdir, endpoint, secret_id, secret_key, f"m{run}")
            mounts.append(mount)
            drop_page_cache()
            cold.append(size / read_file(mount.path / "big.bin") / MiB)
            warm.append(size / read_file(mount.path / "big.bin") / MiB)
            peak = max(peak, mount.peak_rss_mib())
            mount.close()
        rows.append(("cold sequential read", f"{statistics.median(cold):.0f} MB/s",
                     f"{raw_seq:.0f} MB/s (8 ranged GETs)", f"{statistics.median(cold) / raw_seq:.2f} x raw"))
        rows.append(("warm re-read", f"{statistics.median(warm):.0f} MB/s", f"cold {statistics.median(cold):.0f} MB/s",
                     f"{statistics.median(warm) / statistics.median(cold):.1f} x cold"))

        mount = Mount(workdir, endpoint, secret_id, secret_key, "mr")
        mounts.append(mount)
        raw_iops = trio.run(raw_random_reads, raw, "big.bin", size, args.random_seconds)
        iops = random_reads(mount.path / "big.bin", size, args.random_seconds)
        rows.append((f"random 4 KiB reads, {args.random_seconds:.0f} s", f"{iops:.0f} IOPS",
                     f"{raw_iops:.0f} IOPS (1 stream)", f"{iops / raw_iops:.2f} x raw"))
        peak = max(peak, mount.peak_rss_mib())
        mount.close()

        async def raw_list() -> float:
            async with httpx.AsyncClient() as client:
                start = time.perf_counter()
                await raw.list_all(client, "ls1000/")
                return time.perf_counter() - start

        async def raw_tree() -> float:
            async with httpx.AsyncClient() as client:
                start = time.perf_counter()
                await raw.list_all(client, "tree/")
                for d in range(100):
                    await raw.list_all(client, f"tree/d{d:03d}/")
                return time.perf_counter() - start

        ls_times, raw_ls, find_times, raw_find = [], [], [], []
        for run in range(args.runs):
            mount = Mount(workdir, endpoint, secret_id, secret_key, f"l{run}")
            mounts.append(mount)
            ls_times.append(timed(["ls", "-l", "ls1000"], mount.path))
            find_times.append(timed(["find", "tree"], mount.path))
            peak = max(peak, mount.peak_rss_mib())
            mount.close()
            raw_ls.append(trio.run(raw_list))
            raw_find.append(trio.run(raw_tree))
        rows.append(("ls -l, 1,000 objects (cold)", f"{statistics.median(ls_times) * 1000:.0f} ms",
                     f"{statistics.median(raw_ls) * 1000:.0f} ms (LIST)",
                     f"{statistics.median(ls_times) / statistics.median(raw_ls):.1f} x raw time"))
        rows.append(("find, 5,000 objects in 100 dirs (cold)", f"{statistics.median(find_times) * 1000:.0f} ms",
                     f"{statistics.median(raw_find) * 1000:.0f} ms (101 LISTs)",
                     f"{statistics.median(find_times) / statistics.median(raw_find):.1f} x raw time"))
        rows.append(("daemon peak RSS (all workloads)", f"{peak:.0f} MiB", "goal < 200 MiB", ""))
    finally:
        for mount in mounts:
            if mount.process.poll() is None:
                mount.close()
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
        shutil.rmtree(workdir, ignore_errors=True)
        print_table(rows)


def write_rows(args, rows, workdir, endpoint, secret_id, secret_key, raw, mounts) -> None:
    """Sequential write vs a raw multipart upload; small creates; tar x; RSS during a big write."""
    size = args.size_mib * MiB
    print(f"write workloads ({args.size_mib} MiB sequential, 500 creates, tar x, "
          f"{args.big_write_gib:g} GiB for RSS)...", file=sys.stderr)
    raw_times, cosfs_times, creates, tars = [], [], [], []
    tarball = workdir / "src.tar"
    source = Path(trio.__file__).parent
    subprocess.run(["tar", "cf", str(tarball), "-C", str(source.parent), source.name], check=True)
    files_in_tar = len(subprocess.run(["tar", "tf", str(tarball)], capture_output=True, text=True).stdout.split())
    for run in range(args.runs):
        raw_times.append(trio.run(raw_upload_seconds, raw, f"raw-{run}.bin", size))
        mount = Mount(workdir, endpoint, secret_id, secret_key, f"w{run}")
        mounts.append(mount)
        cosfs_times.append(write_file(mount.path / f"seq-{run}.bin", size))
        creates.append(small_creates(mount.path / f"small-{run}", 500))
        (mount.path / f"tar-{run}").mkdir()
        tars.append(timed(["tar", "xf", str(tarball), "-C", f"tar-{run}"], mount.path))
        mount.close()
    raw_mbps = size / statistics.median(raw_times) / MiB
    cosfs_mbps = size / statistics.median(cosfs_times) / MiB
    rows.append(("sequential write incl. close", f"{cosfs_mbps:.0f} MB/s",
                 f"{raw_mbps:.0f} MB/s (multipart, 8 parallel parts)", f"{cosfs_mbps / raw_mbps:.2f} x raw"))
    rows.append(("500 small-file creates (1 KiB, close each)", f"{statistics.median(creates):.0f} files/s", "", ""))
    rows.append((f"tar x of a real tarball ({files_in_tar} entries)", f"{statistics.median(tars):.1f} s", "", ""))
    big = int(args.big_write_gib * 1024 * MiB)
    mount = Mount(workdir, endpoint, secret_id, secret_key, "rss")
    mounts.append(mount)
    peak = peak_rss_during(mount, lambda: write_file(mount.path / "huge.bin", big))
    mount.close()
    rows.append((f"daemon peak RSS during a {args.big_write_gib:g} GiB write", f"{peak:.0f} MiB", "goal < 200 MiB", ""))


def walk_rows(args, rows, workdir, endpoint, secret_id, secret_key, raw, mounts) -> None:
    """`find` + `stat` over many objects twice: the daemon's memory must stay bounded because
    the kernel forgets inodes (and the listing cache is bounded)."""
    count = args.walk_objects
    print(f"walk: uploading {count} objects...", file=sys.stderr)

    async def populate() -> None:
        async with httpx.AsyncClient(timeout=60) as client:
            limiter = trio.CapacityLimiter(32)

            async def one(key: str) -> None:
                async with limiter:
                    await raw.put(client, key, b"")

            async with trio.open_nursery() as nursery:
                for i in range(count):
                    nursery.start_soon(one, f"walk/d{i % 1000:03d}/f{i:06d}")

    start = time.perf_counter()
    trio.run(populate)
    print(f"walk: populated in {time.perf_counter() - start:.0f} s", file=sys.stderr)
    mount = Mount(workdir, endpoint, secret_id, secret_key, "walk")
    mounts.append(mount)
    samples = []
    for _ in range(2):
        start = time.perf_counter()
        rss = peak_rss_during(mount, lambda: subprocess.run(["find", "walk", "-type", "f", "-size", "-1"],
                                                            cwd=mount.path, stdout=subprocess.DEVNULL, check=True))
        samples.append((time.perf_counter() - start, rss))
        drop_page_cache()  # also makes the kernel forget inodes: lookup counts go back to 0
    mount.close()
    rows.append((f"find + stat over {count:,} objects, 1st walk", f"{samples[0][0]:.1f} s", "", ""))
    rows.append((f"find + stat over {count:,} objects, 2nd walk", f"{samples[1][0]:.1f} s", "", ""))
    rows.append(("daemon peak RSS during the walks", f"{max(r for _, r in samples):.0f} MiB", "goal < 200 MiB", ""))


def print_table(rows) -> None:
    if not rows:
        return
    widths = [max(len(r[i]) for r in rows + [("workload", "cosfs", "raw (same server, same run)", "ratio")])
              for i in range(4)]
    header = ("workload", "cosfs", "raw (same server, same run)", "ratio")
    print("| " + " | ".join(h.ljust(w) for h, w in zip(header, widths)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in rows:
        print("| " + " | ".join(c.ljust(w) for c, w in zip(row, widths)) + " |")


if __name__ == "__main__":
    main()
