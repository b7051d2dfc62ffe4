"""Request signing, pure: the COS q-sign (HMAC-SHA1) and AWS Signature V4.

Signing and verifying are one computation, so the embedded server verifies with the same
functions the client signs with. Time and credentials are always passed in; nothing here
reads a clock, the environment or the network.
"""

from __future__ import annotations

import calendar
import dataclasses
import functools
import hashlib
import hmac
import re
import time
from collections.abc import Iterable, Mapping
from urllib.parse import quote

EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
COS_DEFAULT_VALIDITY_S = 900
COS_CLOCK_BACKDATE_S = 60
# How far a signature's start time may lie in the future before it counts as clock skew.
MAX_CLOCK_SKEW_S = 900

# Headers worth signing are everything the client sends except these (reference note 1.1).
_UNSIGNED_HEADERS = frozenset(
    {"authorization", "user-agent", "connection", "accept", "accept-encoding", "date", "keep-alive"}
)


@dataclasses.dataclass(frozen=True)
class Credentials:
    """A key pair, plus a session token for temporary (STS / CAM role) keys."""

    secret_id: str
    secret_key: str = dataclasses.field(repr=False)
    token: str | None = dataclasses.field(default=None, repr=False)
    expires_at_s: float | None = None

    def __str__(self) -> str:
        return f"Credentials(secret_id={mask_secret_id(self.secret_id)})"


def mask_secret_id(secret_id: str) -> str:
    """A SecretId shortened for logs: enough to tell keys apart, not enough to use."""
    if len(secret_id) <= 8:
        return "****"
    return secret_id[:4] + "****" + secret_id[-4:]


class AuthFailure(Exception):
    """Why a server refuses a request's signature: a COS error code and message."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


@functools.lru_cache(maxsize=4096)
def cos_quote(text: str) -> str:
    """COS's UrlEncode: UTF-8, everything but A-Z a-z 0-9 - _ . ~ as uppercase %XX.
    Cached: the same header names and values come in every request."""
    return quote(text.encode("utf-8"), safe="-_.~")


def headers_to_sign(headers: Mapping[str, str]) -> dict[str, str]:
    """The subset of outgoing headers a client signs (all but transport-level ones)."""
    return {k: v for k, v in headers.items() if k.lower() not in _UNSIGNED_HEADERS}


def _cos_pairs(items: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    return sorted((cos_quote(k).lower(), cos_quote(v)) for k, v in items)


@functools.lru_cache(maxsize=8)
def _sign_key(secret_key: str, key_time: str) -> str:
    """COS's SignKey; the same for every request signed in the same second."""
    return hmac.new(secret_key.encode(), key_time.encode(), hashlib.sha1).hexdigest()


def cos_signature(
    secret_key: str,
    method: str,
    path: str,
    params: Mapping[str, str] | Iterable[tuple[str, str]],
    headers: Mapping[str, str] | Iterable[tuple[str, str]],
    key_time: str,
    sign_time: str | None = None,
) -> tuple[str, str, str]:
    """(signature, header list, url param list) for a decoded path such as '/dir/a b.txt'.

    As in COS, `key_time` (q-key-time) keys the SignKey and `sign_time` (q-sign-time, by
    default the same string, as every SDK sends) goes into the StringToSign, so both are signed.
    """
    param_pairs = _cos_pairs(params.items() if isinstance(params, Mapping) else params)
    header_pairs = _cos_pairs(headers.items() if isinstance(headers, Mapping) else headers)
    http_string = "\n".join(
        [
            method.lower(),
            path,
            "&".join(f"{k}={v}" for k, v in param_pairs),
            "&".join(f"{k}={v}" for k, v in header_pairs),
        ]
    ) + "\n"
    sign_key = _sign_key(secret_key, key_time)
    sign_time = key_time if sign_time is None else sign_time
    string_to_sign = f"sha1\n{sign_time}\n{hashlib.sha1(http_string.encode()).hexdigest()}\n"
    signature = hmac.new(sign_key.encode(), string_to_sign.encode(), hashlib.sha1).hexdigest()
    return (
        signature,
        ";".join(k for k, _ in header_pairs),
        ";".join(k for k, _ in param_pairs),
    )


def cos_authorization(
    creds: Credentials,
    method: str,
    path: str,
    params: Mapping[str, str],
    headers: Mapping[str, str],
    now_s: float,
    validity_s: int = COS_DEFAULT_VALIDITY_S,
) -> str:
    """The Authorization header value for a request (window [now-60, now+validity])."""
    start = int(now_s) - COS_CLOCK_BACKDATE_S
    key_time = f"{start};{int(now_s) + validity_s}"
    return cos_authorization_for_key_time(creds.secret_id, creds.secret_key, method, path, params, headers, key_time)


def cos_authorization_for_key_time(
    secret_id: str,
    secret_key: str,
    method: str,
    path: str,
    params: Mapping[str, str],
    headers: Mapping[str, str],
    key_time: str,
) -> str:
    signature, header_list, param_list = cos_signature(secret_key, method, path, params, headers, key_time)
    return (
        f"q-sign-algorithm=sha1&q-ak={secret_id}&q-sign-time={key_time}&q-key-time={key_time}"
        f"&q-header-list={header_list}&q-url-param-list={param_list}&q-signature={signature}"
    )


def parse_cos_authorization(value: str) -> dict[str, str]:
    """The q-* fields of a COS Authorization value ('&'-separated key=value, any order)."""
    fields: dict[str, str] = {}
    for part in value.split("&"):
        key, sep, val = part.partition("=")
        if sep:
            fields[key.strip()] = val.strip()
    return fields


_WINDOW_RE = re.compile(r"([0-9]{1,12});([0-9]{1,12})")


def _window(fields: Mapping[str, str], name: str) -> tuple[int, int]:
    match = _WINDOW_RE.fullmatch(fields[name])
    if match is None:
        raise AuthFailure("AccessDenied", f"{name} is malformed")
    return int(match.group(1)), int(match.group(2))


def verify_cos(
    fields: Mapping[str, str],
    lookup_secret: Mapping[str, str],
    method: str,
    paths: Iterable[str],
    params: Iterable[tuple[str, str]],
    headers: Mapping[str, str],
    now_s: float,
) -> str:
    """Check a q-sign signature as COS does; return the SecretId or raise AuthFailure.

    `params` are the decoded query parameters without the q-* ones, no two names differing
    only in case (a signature names them lower-cased; the caller refuses such requests);
    `headers` has lower-cased names. `paths` are the decoded URI paths to try (path-style
    requests may be signed either with or without the bucket segment). The validity window
    checked is q-sign-time, which must lie within q-key-time; both are signed.
    """
    if fields.get("q-sign-algorithm", "").lower() != "sha1":
        raise AuthFailure("AccessDenied", "q-sign-algorithm must be sha1")
    for name in ("q-ak", "q-sign-time", "q-key-time", "q-signature"):
        if name not in fields:
            raise AuthFailure("AccessDenied", f"Authorization is missing {name}")
    secret_id = fields["q-ak"]
    secret_key = lookup_secret.get(secret_id)
    if secret_key is None:
        raise AuthFailure("InvalidAccessKeyId", "The access key Id format you provided is invalid.")
    key_start, key_end = _window(fields, "q-key-time")
    start_s, end_s = _window(fields, "q-sign-time")
    if start_s < key_start or end_s > key_end:
        raise AuthFailure("AccessDenied", "q-sign-time must lie within q-key-time")
    if start_s > now_s + MAX_CLOCK_SKEW_S:
        raise AuthFailure("RequestTimeTooSkewed",
                          "The difference between the request time and the server's time is too large.")
    if now_s > end_s:
        raise AuthFailure("AccessDenied", "Request has expired")
    wanted_params = [p for p in fields.get("q-url-param-list", "").split(";") if p]
    wanted_headers = [h for h in fields.get("q-header-list", "").split(";") if h]
    by_encoded_key: dict[str, tuple[str, str]] = {}
    for key, val in params:
        by_encoded_key.setdefault(cos_quote(key).lower(), (key, val))
    try:
        signed_params = [by_encoded_key[p] for p in wanted_params]
    except KeyError as exc:
        raise AuthFailure("SignatureDoesNotMatch", f"signed parameter {exc.args[0]} is absent") from None
    signed_headers: list[tuple[str, str]] = []
    for name in wanted_headers:
        if name not in headers:
            raise AuthFailure("SignatureDoesNotMatch", f"signed header {name} is absent")
        signed_headers.append((name, headers[name]))
    given = fields["q-signature"].lower().encode()
    for path in paths:
        expected, _, _ = cos_signature(secret_key, method, path, signed_params, signed_headers,
                                       fields["q-key-time"], fields["q-sign-time"])
        if hmac.compare_digest(expected.encode(), given):
            return secret_id
    raise AuthFailure(
        "SignatureDoesNotMatch",
        "The request signature we calculated does not match the signature you provided.",
    )


# --- AWS Signature Version 4 -------------------------------------------------------------


def sigv4_quote(text: str, safe: str = "-_.~") -> str:
    return quote(text.encode("utf-8"), safe=safe)


def amz_date(now_s: float) -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now_s))


def _sigv4_signing_key(secret_key: str, date: str, region: str, service: str) -> bytes:
    key = hmac.new(("AWS4" + secret_key).encode(), date.encode(), hashlib.sha256).digest()
    for part in (region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return key


def sigv4_signature(
    secret_key: str,
    region: str,
    method: str,
    canonical_uri: str,
    params: Iterable[tuple[str, str]],
    headers: Mapping[str, str],
    signed_header_names: list[str],
    payload_hash: str,
    request_time: str,
    service: str = "s3",
) -> str:
    """Hex signature; `canonical_uri` is already URI-encoded, `params` are decoded pairs."""
    canonical_query = "&".join(
        f"{k}={v}" for k, v in sorted((sigv4_quote(k), sigv4_quote(v)) for k, v in params)
    )
    canonical_headers = "".join(
        f"{name}:{' '.join(headers[name].strip().split())}\n" for name in signed_header_names
    )
    canonical_request = "\n".join(
        [
            method.upper(),
            canonical_uri,
            canonical_query,
            canonical_headers,
            ";".join(signed_header_names),
            payload_hash,
        ]
    )
    date = request_time[:8]
    scope = f"{date}/{region}/{service}/aws4_request"
    string_to_sign = "\n".join(
        ["AWS4-HMAC-SHA256", request_time, scope, hashlib.sha256(canonical_request.encode()).hexdigest()]
    )
    key = _sigv4_signing_key(secret_key, date, region, service)
    return hmac.new(key, string_to_sign.encode(), hashlib.sha256).hexdigest()


def sigv4_authorization(
    creds: Credentials,
    region: str,
    method: str,
    canonical_uri: str,
    params: Mapping[str, str],
    headers: Mapping[str, str],
    payload_hash: str,
    request_time: str,
) -> str:
    """The Authorization value; `headers` must already hold host, x-amz-date and
    x-amz-content-sha256 (lower-cased names), all of which get signed."""
    lowered = {k.lower(): v for k, v in headers_to_sign(headers).items()}
    names = sorted(lowered)
    signature = sigv4_signature(
        creds.secret_key, region, method, canonical_uri, params.items(), lowered, names, payload_hash, request_time
    )
    scope = f"{request_time[:8]}/{region}/s3/aws4_request"
    return (
        f"AWS4-HMAC-SHA256 Credential={creds.secret_id}/{scope},"
        f"SignedHeaders={';'.join(names)},Signature={signature}"
    )


def parse_sigv4_authorization(value: str) -> dict[str, str]:
    """Credential, SignedHeaders and Signature of an 'AWS4-HMAC-SHA256 ...' header value."""
    body = value.removeprefix("AWS4-HMAC-SHA256").strip()
    fields: dict[str, str] = {}
    for part in body.split(","):
        key, sep, val = part.strip().partition("=")
        if sep:
            fields[key] = val
    return fields


def verify_sigv4(
    fields: Mapping[str, str],
    lookup_secret: Mapping[str, str],
    method: str,
    canonical_uri: str,
    params: Iterable[tuple[str, str]],
    headers: Mapping[str, str],
    payload_hash: str,
    request_time: str,
    now_s: float,
    expires_s: int | None = None,
) -> str:
    """Check a SigV4 signature (header or presigned form); return the access key or raise."""
    try:
        access_key, date, region, service, terminator = fields["Credential"].split("/")
        signed_names = fields["SignedHeaders"].split(";")
        given = fields["Signature"]
    except (KeyError, ValueError):
        raise AuthFailure("AuthorizationHeaderMalformed", "The authorization header is malformed.") from None
    if terminator != "aws4_request" or date != request_time[:8]:
        raise AuthFailure("AuthorizationHeaderMalformed", "The credential scope is malformed.")
    secret_key = lookup_secret.get(access_key)
    if secret_key is None:
        raise AuthFailure("InvalidAccessKeyId", "The access key Id format you provided is invalid.")
    try:
        signed_at = calendar.timegm(time.strptime(request_time, "%Y%m%dT%H%M%SZ"))
    except ValueError:
        raise AuthFailure("AccessDenied", "X-Amz-Date is malformed") from None
    if expires_s is not None:
        if now_s > signed_at + expires_s:
            raise AuthFailure("AccessDenied", "Request has expired")
    elif abs(now_s - signed_at) > MAX_CLOCK_SKEW_S:
        raise AuthFailure("RequestTimeTooSkewed",
                          "The difference between the request time and the server's time is too large.")
    missing = [n for n in signed_names if n not in headers]
    if missing:
        raise AuthFailure("SignatureDoesNotMatch", f"signed header {missing[0]} is absent")
    expected = sigv4_signature(
        secret_key, region, method, canonical_uri, params, headers, signed_names, payload_hash, request_time, service
    )
    if not hmac.compare_digest(expected.encode(), given.encode()):
        raise AuthFailure(
            "SignatureDoesNotMatch",
            "The request signature we calculated does not match the signature you provided.",
        )
    return access_key
