"""A small signing HTTP client for testing `cosfs serve` (httpx + cosfs.cos.auth)."""

from __future__ import annotations

import base64
import hashlib
import time
from urllib.parse import quote, urlencode

import httpx

from cosfs.cos import xml
from cosfs.cos.auth import cos_authorization_for_key_time


def encode_key(key: str) -> str:
    """Percent-encode a key for a URL path, keeping '/' and hiding dots from URL normalisation."""
    return quote(key.encode("utf-8"), safe="/-_~").replace(".", "%2E")


def content_md5(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data).digest()).decode()


class CosHttp:
    """Signs and sends requests to a ServerProcess, path-style by default."""

    def __init__(self, server, client: httpx.AsyncClient, *, secret_id: str | None = None,
                 secret_key: str | None = None, bucket: str | None = None) -> None:
        self.server = server
        self.client = client
        self.secret_id = secret_id or server.secret_id
        self.secret_key = secret_key or server.secret_key
        self.bucket = bucket or server.bucket
        self.endpoint = server.endpoint
        self.host = self.endpoint.split("://", 1)[1]

    def build(self, method: str, key: str = "", *, params: dict | None = None, headers: dict | None = None,
              content: bytes | None = None, bucket: str | None = None, virtual: bool = False, sign: bool = True,
              key_time: str | None = None, sign_path: str | None = None) -> httpx.Request:
        bucket = bucket if bucket is not None else self.bucket
        params = dict(params or {})
        headers = dict(headers or {})
        if virtual:
            host = f"{bucket}.cos.ap-guangzhou.myqcloud.com"
            path = "/" + key
        else:
            host = self.host
            path = f"/{bucket}/{key}" if bucket else "/"
        headers.setdefault("Host", host)
        if content is not None:
            headers.setdefault("Content-Length", str(len(content)))
        if sign:
            now = int(time.time())
            key_time = key_time or f"{now - 60};{now + 600}"
            signed = {k.lower(): v for k, v in headers.items()}
            headers["Authorization"] = cos_authorization_for_key_time(
                self.secret_id, self.secret_key, method, sign_path or path, params, signed, key_time
            )
        query = urlencode(params, quote_via=quote, safe="") if params else ""
        url = self.endpoint + encode_key(path) + (("?" + query) if query else "")
        return self.client.build_request(method, url, headers=headers, content=content)

    async def request(self, method: str, key: str = "", **kwargs) -> httpx.Response:
        stream = kwargs.pop("stream", False)
        request = self.build(method, key, **kwargs)
        return await self.client.send(request, stream=stream)

    async def put(self, key: str, data: bytes, headers: dict | None = None, **kwargs) -> httpx.Response:
        return await self.request("PUT", key, content=data, headers=headers, **kwargs)

    async def get(self, key: str, **kwargs) -> httpx.Response:
        return await self.request("GET", key, **kwargs)

    async def head(self, key: str, **kwargs) -> httpx.Response:
        return await self.request("HEAD", key, **kwargs)

    async def delete(self, key: str, **kwargs) -> httpx.Response:
        return await self.request("DELETE", key, **kwargs)

    async def list(self, **params) -> httpx.Response:
        return await self.request("GET", "", params={k.replace("_", "-"): v for k, v in params.items()})


def error_code(response: httpx.Response) -> str:
    return xml.text(xml.parse(response.content), "Code")


def parse(response: httpx.Response):
    return xml.parse(response.content)
