"""Request authentication for `cosfs serve`: COS q-sign (header or query) and AWS SigV4.

Follows the verification recipe of the COS reference (section 1.5) using the same functions
the client signs with (cosfs.cos.auth). A request without any signature (no Authorization,
no q-signature/sign/X-Amz-Signature in the query) is anonymous (`is_anonymous`): `app` lets
it through only where the bucket's or the object's ACL allows it; a request with a signature
that does not verify is refused even where anonymous access would be allowed.

Only what was signed is honoured: a valid signature that leaves out a query parameter or an
``x-cos-*``/``x-amz-*`` header is refused (AccessDenied), because the handlers act on all of
them (a presigned GET signing only ``host`` must not become a copy or change the response
headers). The security token is the exception: it is checked against the configured one.
So are GET Service's filters (``marker``, ``max-keys``, ``region``...), which the official
SDK does not sign and which only narrow the list of bucket names.

The ``host`` header is signed as sent; a q-sign signature made over the host name without
the port (what the SDK signs when it builds the Host from a ``host:port`` URL, as for GET
Service) is accepted too.
"""

from __future__ import annotations

import hmac
import re
import time
from collections.abc import Mapping
from urllib.parse import parse_qsl, urlsplit

from cosfs.cos.auth import (
    UNSIGNED_PAYLOAD,
    AuthFailure,
    cos_quote,
    parse_cos_authorization,
    parse_sigv4_authorization,
    sigv4_quote,
    verify_cos,
    verify_sigv4,
)
from cosfs.server.common import CosError, Ctx

Q_PARAMS = frozenset(
    {"q-sign-algorithm", "q-ak", "q-sign-time", "q-key-time", "q-header-list", "q-url-param-list", "q-signature"}
)
_HEX64 = re.compile(r"[0-9a-f]{64}")
TOKEN_NAMES = frozenset({"x-cos-security-token", "x-amz-security-token"})
SIGNATURE_PARAMS = Q_PARAMS | {"sign", "x-amz-signature", "x-amz-credential", "x-amz-algorithm"}
SERVICE_PARAMS = frozenset({"marker", "max-keys", "region", "tagkey", "tagvalue", "create-time", "range"})


class Authenticator:
    def __init__(self, secrets: Mapping[str, str], security_token: str | None = None) -> None:
        self._secrets = dict(secrets)
        self._token = security_token

    @staticmethod
    def is_anonymous(ctx: Ctx) -> bool:
        """No signature of any kind: an empty (or no) Authorization and no signing parameter."""
        if ctx.headers.get("authorization", "").strip():
            return False
        return not any(name.lower() in SIGNATURE_PARAMS for name, _ in ctx.params)

    def check(self, ctx: Ctx, now_s: float | None = None) -> str:
        """The SecretId the request was signed with, or raise CosError (403)."""
        now = time.time() if now_s is None else now_s
        try:
            secret_id = self._verify(ctx, now)
        except AuthFailure as exc:
            raise CosError(exc.code, exc.message, 403 if exc.code != "AuthorizationHeaderMalformed" else 400) from None
        if self._token is not None:
            given = (ctx.headers.get("x-cos-security-token") or ctx.headers.get("x-amz-security-token")
                     or ctx.query.get("x-cos-security-token") or ctx.query.get("X-Amz-Security-Token"))
            if given is None:
                raise CosError("InvalidToken", "The request needs x-cos-security-token for temporary credentials.")
            if not hmac.compare_digest(given.encode(), self._token.encode()):
                raise CosError("InvalidToken", "The provided token is malformed or otherwise invalid.")
        return secret_id

    def _cos_paths(self, ctx: Ctx) -> list[str]:
        if ctx.virtual_host or ctx.bucket_name is None:
            return [ctx.path]
        bucket_path = "/" + ctx.bucket_name
        paths = ["/" + ctx.key, ctx.path]
        if not ctx.key:
            paths += [bucket_path, bucket_path + "/"]
        return list(dict.fromkeys(paths))

    def _verify(self, ctx: Ctx, now: float) -> str:
        authorization = ctx.headers.get("authorization", "")
        method = ctx.method
        headers = ctx.headers
        if authorization.startswith("AWS4-HMAC-SHA256"):
            fields = parse_sigv4_authorization(authorization)
            payload = headers.get("x-amz-content-sha256", UNSIGNED_PAYLOAD)
            if payload.startswith("STREAMING-"):
                raise CosError("NotImplemented", "aws-chunked payloads are not supported; use UNSIGNED-PAYLOAD.")
            request_time = headers.get("x-amz-date", "")
            if not request_time:
                raise AuthFailure("AccessDenied", "SigV4 requests need x-amz-date.")
            secret_id = self._sigv4(ctx, fields, ctx.params, payload, request_time, now, None)
            _require_signed_headers(ctx, fields["SignedHeaders"].split(";"))
            if _HEX64.fullmatch(payload):
                ctx.expected_sha256 = payload
            return secret_id
        if authorization and "q-signature" in authorization:
            fields = parse_cos_authorization(authorization)
            params = ctx.params
        elif "q-signature" in ctx.query:
            fields = {k.lower(): v for k, v in ctx.params if k.lower() in Q_PARAMS}
            params = [(k, v) for k, v in ctx.params if k.lower() not in Q_PARAMS]
        elif "sign" in ctx.query:
            fields = parse_cos_authorization(ctx.query["sign"])
            params = [(k, v) for k, v in ctx.params if k.lower() != "sign"]
        elif "X-Amz-Signature" in ctx.query:
            query = ctx.query
            fields = {"Credential": query.get("X-Amz-Credential", ""),
                      "SignedHeaders": query.get("X-Amz-SignedHeaders", ""),
                      "Signature": query["X-Amz-Signature"]}
            try:
                expires = int(query.get("X-Amz-Expires", "0"))
            except ValueError:
                raise AuthFailure("AuthorizationQueryParametersError", "X-Amz-Expires is not a number") from None
            params = [(k, v) for k, v in ctx.params if k != "X-Amz-Signature"]
            secret_id = self._sigv4(ctx, fields, params, UNSIGNED_PAYLOAD, query.get("X-Amz-Date", ""), now,
                                    expires)
            _require_signed_headers(ctx, fields["SignedHeaders"].split(";"))
            return secret_id
        else:
            raise AuthFailure("AccessDenied", "Access Denied.")
        paths = self._cos_paths(ctx)
        try:
            secret_id = verify_cos(fields, self._secrets, method, paths, params, headers, now)
        except AuthFailure as exc:
            bare = _host_without_port(headers.get("host", ""))
            if exc.code != "SignatureDoesNotMatch" or bare is None:
                raise
            secret_id = verify_cos(fields, self._secrets, method, paths, params, {**headers, "host": bare}, now)
        signed_params = set(fields.get("q-url-param-list", "").split(";"))
        unsigned_ok = TOKEN_NAMES | (SERVICE_PARAMS if ctx.bucket_name is None and method == "GET" else frozenset())
        for name, _ in params:
            if name.lower() not in unsigned_ok and cos_quote(name).lower() not in signed_params:
                raise AuthFailure("AccessDenied", f"The query parameter {name} is not signed (q-url-param-list).")
        _require_signed_headers(ctx, fields.get("q-header-list", "").split(";"))
        return secret_id

    def _sigv4(self, ctx: Ctx, fields, params, payload: str, request_time: str, now: float,
               expires: int | None) -> str:
        candidates = list(dict.fromkeys([ctx.raw_path, sigv4_quote(ctx.path, safe="/-_.~")]))
        failure: AuthFailure | None = None
        for uri in candidates:
            try:
                return verify_sigv4(fields, self._secrets, ctx.method, uri, params, ctx.headers, payload,
                                    request_time, now, expires)
            except AuthFailure as exc:
                if exc.code != "SignatureDoesNotMatch":
                    raise
                failure = exc
        assert failure is not None
        raise failure


def _require_signed_headers(ctx: Ctx, signed: list[str]) -> None:
    """Refuse an x-cos-*/x-amz-* header the signature does not cover (SigV4 always covers the
    whole query; q-sign parameters are checked by the caller)."""
    covered = set(signed)
    for name in ctx.headers:
        if name.startswith(("x-cos-", "x-amz-")) and name not in TOKEN_NAMES and cos_quote(name).lower() not in covered:
            raise AuthFailure("AccessDenied", f"The header {name} is not signed.")


def _host_without_port(host: str) -> str | None:
    """`127.0.0.1:9000` -> `127.0.0.1` (`[::1]:9000` -> `::1`); None when there is no port."""
    try:
        parts = urlsplit("//" + host)
        if parts.port is None:
            return None
    except ValueError:
        return None
    return parts.hostname


def parse_query(raw_query: str) -> list[tuple[str, str]]:
    """Form-decode a query string ('+' is a space, %XX decoded as UTF-8); raise CosError."""
    try:
        return parse_qsl(raw_query, keep_blank_values=True, strict_parsing=False, errors="strict")
    except (UnicodeDecodeError, ValueError):
        raise CosError("InvalidURI", "Could not parse the specified URI.") from None
