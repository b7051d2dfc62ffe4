"""The bucket as the official Tencent SDK sees it: an independent check of what a mount wrote."""

from __future__ import annotations

import hashlib
import time

from qcloud_cos.cos_exception import CosServiceError

from tests.conftest import ServerProcess
from tests.fuse.conftest import sdk_client


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class Bucket:
    def __init__(self, server: ServerProcess, retries: int = 1) -> None:
        """`retries`: for a server that fails requests on purpose (its faults hit us too)."""
        self.server = server
        self.name = server.bucket
        self.sdk = sdk_client(server, retries)

    def put(self, key: str, body: bytes, **kwargs) -> None:
        self.sdk.put_object(Bucket=self.name, Key=key, Body=body, **kwargs)

    def head(self, key: str) -> dict[str, str] | None:
        """Response headers (names lower-cased), or None when the key does not exist."""
        try:
            headers = self.sdk.head_object(Bucket=self.name, Key=key)
        except CosServiceError as exc:
            if exc.get_status_code() == 404:
                return None
            raise
        return {name.lower(): value for name, value in headers.items()}

    def exists(self, key: str) -> bool:
        return self.head(key) is not None

    def get(self, key: str) -> bytes:
        response = self.sdk.get_object(Bucket=self.name, Key=key)
        return response["Body"].get_raw_stream().read()

    def get_to(self, key: str, path) -> None:
        # (not the SDK's get_stream_to_file: with a chunked reply it writes the first chunk only)
        with open(path, "wb") as handle:
            handle.write(self.get(key))

    def meta(self, key: str) -> dict[str, str]:
        """The x-cos-meta-* headers without the prefix."""
        headers = self.head(key)
        assert headers is not None, f"{key} is not in the bucket"
        return {name[len("x-cos-meta-"):]: value for name, value in headers.items()
                if name.startswith("x-cos-meta-")}

    def keys(self, prefix: str = "") -> list[str]:
        found: list[str] = []
        marker = ""
        while True:
            page = self.sdk.list_objects(Bucket=self.name, Prefix=prefix, Marker=marker, MaxKeys=1000)
            found += [item["Key"] for item in page.get("Contents", [])]
            if page.get("IsTruncated") != "true":
                return sorted(found)
            marker = page["NextMarker"] if page.get("NextMarker") else found[-1]

    def wait_for(self, key: str, body: bytes, timeout_s: float = 20.0) -> None:
        """Poll until `key` holds exactly `body` (delayed uploads, recovery after a crash)."""
        deadline = time.monotonic() + timeout_s
        last = None
        while True:
            if self.exists(key):
                last = self.get(key)
                if last == body:
                    return
            if time.monotonic() > deadline:
                got = "absent" if last is None else f"{len(last)} bytes, sha {sha(last)[:12]}"
                raise AssertionError(f"{key} did not reach the expected {len(body)} bytes "
                                     f"(sha {sha(body)[:12]}) within {timeout_s} s: {got}")
            time.sleep(0.2)
