"""The one table of what a COS error answer means, pure: for (HTTP status, error code,
message), whether the attempt is retried, re-signed, refreshed or fails, and which typed
exception a final failure raises (its errno follows from cosfs.errors.ERRNO_FOR). The
engine's retries, the typed errors of the client, the in-memory store and the server all
read it; tests/unit/test_outcomes.py holds its vectors.

| answer | decision | final exception (errno) |
|---|---|---|
| an expired or invalid session token | REFRESH (once) | CosAccessDenied (EACCES) |
| an expired signature, RequestTimeTooSkewed | RESIGN (once) | CosAccessDenied (EACCES) |
| SlowDown, RequestTimeout, ServiceUnavailable, InternalError, KMS throttling, UploadConflict | RETRY | CosTransient (EIO) |
| 501 NotImplemented, 405 | FAIL | CosUnsupported (ENOTSUP) |
| any other 5xx | RETRY | CosTransient (EIO) |
| 404 | FAIL | CosNotFound (ENOENT) |
| 401, 403 | FAIL | CosAccessDenied (EACCES) |
| 412 | FAIL | CosPreconditionFailed (ESTALE) |
| 409 (PathConflict, AppendPositionErr...) | FAIL | CosConflict (EEXIST) |
| EntityTooLarge | FAIL | CosTooLarge (EFBIG) |
| anything else | FAIL | CosError (EIO) |
"""  # noqa: E501 (a table row)

from __future__ import annotations

import enum

from cosfs.errors import (
    CosAccessDenied,
    CosConflict,
    CosError,
    CosNotFound,
    CosPreconditionFailed,
    CosTooLarge,
    CosTransient,
    CosUnsupported,
)


class Decision(enum.Enum):
    RETRY = "retry"
    RESIGN = "resign"
    REFRESH = "refresh"
    FAIL = "fail"


TRANSIENT_CODES = frozenset(
    {"SlowDown", "RequestTimeout", "ServiceUnavailable", "InternalError", "KmsInternalException",
     "KmsFreqControl", "UploadConflict"}
)
RESIGN_CODES = frozenset({"RequestTimeTooSkewed", "RequestExpired"})
TOKEN_CODES = frozenset(
    {"ExpiredToken", "InvalidToken", "TokenExpired", "InvalidSecurityToken", "ExpiredTokenException",
     "InvalidTokenException"}
)
UNSUPPORTED_CODES = frozenset({"NotImplemented", "MethodNotAllowed"})


def outcome(status: int, code: str = "", message: str = "") -> tuple[Decision, type[CosError]]:
    """(what to do with the attempt, the exception if it is the last) for an error answer."""
    lowered = message.lower()
    if code in TOKEN_CODES or (status in (400, 401, 403) and "expired" in lowered and "token" in lowered):
        return Decision.REFRESH, CosAccessDenied
    if code in RESIGN_CODES or (status in (401, 403) and "expired" in lowered):
        return Decision.RESIGN, CosAccessDenied
    if code in TRANSIENT_CODES:
        return Decision.RETRY, CosTransient
    if code in UNSUPPORTED_CODES or status in (405, 501):
        return Decision.FAIL, CosUnsupported
    if status >= 500:
        return Decision.RETRY, CosTransient
    if status == 404:
        return Decision.FAIL, CosNotFound
    if status in (401, 403):
        return Decision.FAIL, CosAccessDenied
    if status == 412:
        return Decision.FAIL, CosPreconditionFailed
    if status == 409:
        return Decision.FAIL, CosConflict
    if code == "EntityTooLarge":
        return Decision.FAIL, CosTooLarge
    return Decision.FAIL, CosError


def cos_error(status: int, code: str, message: str = "", request_id: str = "", resource: str = "") -> CosError:
    """The typed exception for a COS error answer (see the table)."""
    _, cls = outcome(status, code, message)
    return cls(status, code, message, request_id, resource)
