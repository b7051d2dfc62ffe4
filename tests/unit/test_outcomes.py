"""The one table of what a COS error answer means (cosfs/cos/outcomes.py), as fixed vectors:
the engine's decision, the exception a final failure raises, and the errno the mount gives."""

from __future__ import annotations

import errno

import pytest

from cosfs import errors
from cosfs.cos.outcomes import Decision, cos_error, outcome
from cosfs.cos.retry import classify_status

R, S, F, T = Decision.RETRY, Decision.RESIGN, Decision.FAIL, Decision.REFRESH
VECTORS = [
    # status, code, message, decision, exception, errno
    (503, "SlowDown", "", R, errors.CosTransient, errno.EIO),
    (503, "ServiceUnavailable", "", R, errors.CosTransient, errno.EIO),
    (500, "InternalError", "", R, errors.CosTransient, errno.EIO),
    (502, "", "", R, errors.CosTransient, errno.EIO),
    (504, "", "", R, errors.CosTransient, errno.EIO),
    (400, "RequestTimeout", "", R, errors.CosTransient, errno.EIO),
    (409, "UploadConflict", "", R, errors.CosTransient, errno.EIO),
    (500, "KmsInternalException", "", R, errors.CosTransient, errno.EIO),
    (501, "NotImplemented", "", F, errors.CosUnsupported, errno.ENOTSUP),
    (501, "", "", F, errors.CosUnsupported, errno.ENOTSUP),
    (405, "MethodNotAllowed", "", F, errors.CosUnsupported, errno.ENOTSUP),
    (409, "PathConflict", "", F, errors.CosConflict, errno.EEXIST),
    (409, "AppendPositionErr", "", F, errors.CosConflict, errno.EEXIST),
    (404, "NoSuchKey", "", F, errors.CosNotFound, errno.ENOENT),
    (404, "NoSuchBucket", "", F, errors.CosNotFound, errno.ENOENT),
    (403, "AccessDenied", "Access Denied.", F, errors.CosAccessDenied, errno.EACCES),
    (403, "SignatureDoesNotMatch", "", F, errors.CosAccessDenied, errno.EACCES),
    (401, "", "", F, errors.CosAccessDenied, errno.EACCES),
    (403, "AccessDenied", "Request has expired", S, errors.CosAccessDenied, errno.EACCES),
    (403, "RequestTimeTooSkewed", "", S, errors.CosAccessDenied, errno.EACCES),
    (400, "ExpiredToken", "", T, errors.CosAccessDenied, errno.EACCES),
    (403, "InvalidToken", "", T, errors.CosAccessDenied, errno.EACCES),
    (403, "AccessDenied", "The security token has expired", T, errors.CosAccessDenied, errno.EACCES),
    (412, "PreconditionFailed", "", F, errors.CosPreconditionFailed, errno.ESTALE),
    (400, "EntityTooLarge", "", F, errors.CosTooLarge, errno.EFBIG),
    (400, "MetadataTooLarge", "", F, errors.CosError, errno.EIO),
    (400, "InvalidArgument", "", F, errors.CosError, errno.EIO),
    (400, "BadDigest", "", F, errors.CosError, errno.EIO),
    (416, "InvalidRange", "", F, errors.CosError, errno.EIO),
]


@pytest.mark.parametrize("status,code,message,decision,exception,number", VECTORS)
def test_one_table_decides_retry_exception_and_errno(status, code, message, decision, exception, number):
    assert outcome(status, code, message) == (decision, exception)
    assert classify_status(status, code, message) is decision
    raised = cos_error(status, code, message, "req-1", "key")
    assert type(raised) is exception and (raised.status, raised.code, raised.request_id) == (status, code, "req-1")
    assert errors.errno_for(raised) == number
    # what is retried fails, in the end, as a transient error; what is not, never as one
    assert isinstance(raised, errors.TransientError) == (decision is Decision.RETRY)
