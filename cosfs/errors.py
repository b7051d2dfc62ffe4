"""One exception hierarchy for cosfs, and the one table from exception to errno.

Every layer raises these; the FUSE adapter applies `errno_for` at its boundary and the CLI
prints `str(exc)`. Messages never contain secrets: credentials are not passed to constructors.
"""

from __future__ import annotations

import contextlib
import errno
import logging
from collections.abc import Iterator


class CosfsError(Exception):
    """Base of every error cosfs raises on purpose."""

    log_level = logging.WARNING


class ConfigError(CosfsError):
    """Bad option, bad command line, unusable file, refused keys, missing bucket: the user
    must change something. Commands exit with EXIT_CONFIG for these, so that a service
    manager does not retry them (cosfs@.service: RestartPreventExitStatus=78)."""


EXIT_CONFIG = 78  # sysexits EX_CONFIG


class CredentialsError(ConfigError):
    """No usable credentials, or a credentials file that cannot be trusted."""


class NotFound(CosfsError):
    log_level = logging.DEBUG


class AccessDenied(CosfsError):
    pass


class Stale(CosfsError):
    """The object changed under us (412 on If-Match): the version being read is gone."""


class NotEmpty(CosfsError):
    log_level = logging.DEBUG  # an ordinary answer to the application, not a fault


class IsADirectory(CosfsError):
    log_level = logging.DEBUG  # an ordinary answer to the application, not a fault


class NotADirectory(CosfsError):
    log_level = logging.DEBUG  # an ordinary answer to the application, not a fault


class AlreadyExists(CosfsError):
    log_level = logging.DEBUG  # an ordinary answer to the application, not a fault


class NameTooLong(CosfsError):
    log_level = logging.DEBUG  # an ordinary answer to the application, not a fault


class InvalidName(CosfsError):
    log_level = logging.DEBUG  # an ordinary answer to the application, not a fault


class Unsupported(CosfsError):
    log_level = logging.DEBUG  # an ordinary answer to the application, not a fault


class ReadOnly(CosfsError):
    pass


class NoSuchAttribute(CosfsError):
    """The extended attribute does not exist."""

    log_level = logging.DEBUG


class AttributeTooLarge(CosfsError):
    """An extended attribute that does not fit in COS's 2 KB of user metadata."""


class NotPermitted(CosfsError):
    """The operation can never work on this filesystem (hard links)."""

    log_level = logging.DEBUG  # an ordinary answer to the application, not a fault


class CacheFull(CosfsError):
    pass


class TooLarge(CosfsError):
    log_level = logging.DEBUG  # an ordinary answer to the application, not a fault


class Conflict(CosfsError):
    """The object changed in COS since this mount read it: local changes were kept aside."""


class TransientError(CosfsError):
    """A failure worth retrying (5xx, SlowDown, reset, timeout, truncated body)."""


class Refused(CosfsError):
    """COS refused an upload for good (403, 400 MetadataTooLarge, EntityTooLarge...): the data
    stays staged, and it is tried again only when the operator asks (`cosfs sync --retry-failed`)."""


class IntegrityError(CosfsError):
    """Bytes did not match their MD5 or CRC64: never silently accepted."""

    log_level = logging.ERROR


class ProtocolError(CosfsError):
    """The server answered something that is not valid COS (bad XML, missing fields)."""


class CosError(CosfsError):
    """An error the COS service reported, with its XML body's fields kept for the operator."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str = "",
        request_id: str = "",
        resource: str = "",
    ) -> None:
        self.status = status
        self.code = code
        self.message = message
        self.request_id = request_id
        self.resource = resource
        text = f"COS {status} {code}"
        if message:
            text += f": {message}"
        if resource:
            text += f" ({resource})"
        if request_id:
            text += f" [RequestId {request_id}]"
        super().__init__(text)


class CosNotFound(CosError, NotFound):
    pass


class CosAccessDenied(CosError, AccessDenied):
    pass


class CosPreconditionFailed(CosError, Stale):
    pass


class CosTransient(CosError, TransientError):
    pass


class CosConflict(CosError, AlreadyExists):
    pass


class CosUnsupported(CosError, Unsupported):
    pass


class CosTooLarge(CosError, TooLarge):
    pass


ERRNO_FOR: dict[type[BaseException], int] = {
    NotFound: errno.ENOENT,
    AccessDenied: errno.EACCES,
    Stale: errno.ESTALE,
    NotEmpty: errno.ENOTEMPTY,
    IsADirectory: errno.EISDIR,
    NotADirectory: errno.ENOTDIR,
    AlreadyExists: errno.EEXIST,
    NameTooLong: errno.ENAMETOOLONG,
    InvalidName: errno.EINVAL,
    Unsupported: errno.ENOTSUP,
    ReadOnly: errno.EROFS,
    NotPermitted: errno.EPERM,
    NoSuchAttribute: errno.ENODATA,
    AttributeTooLarge: errno.E2BIG,
    CacheFull: errno.ENOSPC,
    TooLarge: errno.EFBIG,
    TransientError: errno.EIO,
    Conflict: errno.EIO,
    Refused: errno.EIO,
    IntegrityError: errno.EIO,
    ProtocolError: errno.EIO,
    ConfigError: errno.EINVAL,
}


def errno_for(exc: BaseException) -> int:
    """The errno for an exception, walking the MRO so subclasses inherit; unknown -> EIO."""
    for cls in type(exc).__mro__:
        found = ERRNO_FOR.get(cls)
        if found is not None:
            return found
    return errno.EIO


def first_error(group: BaseExceptionGroup) -> BaseException | None:
    """The cosfs error a nursery's exception group carries (the first), or None when it
    holds anything else (cancellation, a bug): those must not be taken for an errno."""
    leaves = []
    stack: list[BaseException] = [group]
    while stack:
        exc = stack.pop()
        if isinstance(exc, BaseExceptionGroup):
            stack.extend(reversed(exc.exceptions))
        else:
            leaves.append(exc)
    if leaves and all(isinstance(leaf, CosfsError) for leaf in leaves):
        return leaves[0]
    return None


@contextlib.contextmanager
def one_error() -> Iterator[None]:
    """Around a nursery of requests: when its tasks failed with cosfs errors only, raise
    the first one as itself, so callers handle it like the error of a single request."""
    try:
        yield
    except BaseExceptionGroup as group:
        leaf = first_error(group)
        if leaf is None:
            raise
        raise leaf from group

