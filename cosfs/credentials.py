"""Credential providers: explicit keys, COSFS passwd file, environment, CVM instance role.

Order (first that yields keys wins): explicit keys; an explicitly configured CAM role
(`cam_role=ROLE`, or `auto` for the first role the metadata service lists); the passwd file (`passwd_file` option, then ~/.passwd-cosfs, then
/etc/passwd-cosfs); the environment (COSACCESSKEYID/COSSECRETACCESSKEY, then
TENCENTCLOUD_SECRET_ID/TENCENTCLOUD_SECRET_KEY/TENCENTCLOUD_SESSION_TOKEN). The CVM role is
opt-in, as in COSFS: probing a metadata service on machines that are not CVM instances would
only add a timeout to every failed mount.

Secrets live only in `Credentials` objects, whose repr hides them; no message built here
contains a SecretKey or token.
"""

from __future__ import annotations

import logging
import stat
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Protocol

import httpx
import trio

from cosfs.config import environment
from cosfs.cos.auth import Credentials, mask_secret_id
from cosfs.errors import CredentialsError

log = logging.getLogger(__name__)

CVM_METADATA_URL = "http://metadata.tencentyun.com/latest/meta-data/cam/security-credentials"
ROLE_REFRESH_MARGIN_S = 600


class CredentialProvider(Protocol):
    async def get(self) -> Credentials:
        """Current credentials, refreshed first when they are close to expiry."""
        ...

    async def refresh(self) -> Credentials:
        """Fresh credentials now (after the server said the token expired)."""
        ...


class StaticCredentials:
    """Keys that never change: explicit, passwd file or environment."""

    def __init__(self, creds: Credentials) -> None:
        self._creds = creds

    async def get(self) -> Credentials:
        return self._creds

    async def refresh(self) -> Credentials:
        return self._creds

    def describe(self) -> str:
        return f"static keys {mask_secret_id(self._creds.secret_id)}"


class CvmRoleCredentials:
    """Temporary keys of a CVM instance role, fetched from the metadata service.

    Invariant: `_creds` is either None (never fetched) or the newest keys fetched; they are
    replaced when fewer than ROLE_REFRESH_MARGIN_S seconds remain. A failed refresh keeps the
    old keys while they are still valid, so a metadata hiccup does not stop the mount.
    """

    def __init__(
        self,
        role: str | None,
        base_url: str = CVM_METADATA_URL,
        *,
        clock: Callable[[], float] = time.time,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout_s: float = 5.0,
    ) -> None:
        self._role = role
        self._base_url = base_url.rstrip("/")
        self._clock = clock
        self._transport = transport
        self._timeout_s = timeout_s
        self._creds: Credentials | None = None
        self._lock = trio.Lock()

    async def get(self) -> Credentials:
        creds = self._creds
        if creds is not None and not self._needs_refresh(creds):
            return creds
        return await self.refresh()

    def _needs_refresh(self, creds: Credentials) -> bool:
        return creds.expires_at_s is not None and creds.expires_at_s - self._clock() <= ROLE_REFRESH_MARGIN_S

    async def refresh(self) -> Credentials:
        async with self._lock:
            try:
                self._creds = await self._fetch()
            except CredentialsError:
                old = self._creds
                if old is not None and (old.expires_at_s is None or old.expires_at_s > self._clock()):
                    log.warning("refreshing CVM role credentials failed; keeping the current ones until they expire")
                    return old
                raise
            return self._creds

    async def _fetch(self) -> Credentials:
        async with httpx.AsyncClient(transport=self._transport, timeout=self._timeout_s) as client:
            try:
                role = self._role
                if not role:
                    reply = await client.get(self._base_url + "/")
                    reply.raise_for_status()
                    names = reply.text.split()
                    if not names:
                        raise CredentialsError("the CVM metadata service lists no CAM role for this instance")
                    role = names[0]
                reply = await client.get(f"{self._base_url}/{role}")
                if reply.status_code == 404:
                    raise CredentialsError(f"the CVM metadata service has no CAM role named {role!r}")
                reply.raise_for_status()
                document = reply.json()
            except httpx.HTTPError as exc:
                raise CredentialsError(
                    f"cannot read CAM role credentials from the CVM metadata service at {self._base_url}: "
                    f"{type(exc).__name__}"
                ) from None
            except ValueError:
                raise CredentialsError("the CVM metadata service answered with something that is not JSON") from None
        return parse_role_document(document)

    def describe(self) -> str:
        return f"CVM role {self._role or '(first listed)'}"


def parse_role_document(document: object) -> Credentials:
    """Keys from the metadata service's JSON ({TmpSecretId, TmpSecretKey, Token, ExpiredTime})."""
    if not isinstance(document, dict) or document.get("Code", "Success") != "Success":
        code = document.get("Code") if isinstance(document, dict) else None
        raise CredentialsError(f"the CVM metadata service refused to give role credentials (Code={code!r})")
    try:
        secret_id = str(document["TmpSecretId"])
        secret_key = str(document["TmpSecretKey"])
        token = str(document["Token"])
    except KeyError as exc:
        raise CredentialsError(f"CAM role credentials lack the field {exc.args[0]}") from None
    expires = document.get("ExpiredTime")
    expires_at_s = float(expires) if isinstance(expires, (int, float)) else None
    return Credentials(secret_id, secret_key, token=token, expires_at_s=expires_at_s)


def check_passwd_permissions(path: Path) -> None:
    """COSFS's rule: no bits for others; /etc/passwd-cosfs may be group-readable (640)."""
    mode = path.stat().st_mode
    if mode & stat.S_IRWXO:
        raise CredentialsError(
            f"credentials file {path} is accessible by others (mode {stat.S_IMODE(mode):o}); run: chmod 600 {path}"
        )
    allowed_group = stat.S_IRGRP if str(path) == "/etc/passwd-cosfs" else 0
    if mode & stat.S_IRWXG & ~allowed_group:
        raise CredentialsError(
            f"credentials file {path} is accessible by its group (mode {stat.S_IMODE(mode):o}); run: chmod 600 {path}"
        )


def parse_passwd(text: str, bucket: str, source: str) -> Credentials | None:
    """The keys for `bucket` from COSFS passwd lines, a bucket-specific line winning.

    Lines are `bucket-appid:SecretId:SecretKey` (or `bucket:...` without the appid) or
    `SecretId:SecretKey`; `#` comments and blank lines are skipped. Errors name the line number
    but never echo its content, which holds a secret.
    """
    default: Credentials | None = None
    bucket_short = bucket.rsplit("-", 1)[0] if "-" in bucket else bucket
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("[") or any(c in raw.rstrip("\r\n") for c in " \t"):
            raise CredentialsError(f"{source} line {number}: spaces, tabs and '[' are not allowed")
        fields = line.split(":")
        if len(fields) == 2:
            if not all(fields):
                raise CredentialsError(f"{source} line {number}: empty SecretId or SecretKey")
            if default is None:
                default = Credentials(fields[0], fields[1])
        elif len(fields) == 3:
            if not all(fields):
                raise CredentialsError(f"{source} line {number}: empty field")
            if fields[0] in (bucket, bucket_short):
                return Credentials(fields[1], fields[2])
        else:
            raise CredentialsError(
                f"{source} line {number}: expected 'bucket-appid:SecretId:SecretKey' or 'SecretId:SecretKey'"
            )
    return default


def read_passwd_file(path: Path, bucket: str) -> Credentials | None:
    try:
        check_passwd_permissions(path)
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except PermissionError:
        raise CredentialsError(f"cannot read credentials file {path}: permission denied") from None
    except UnicodeDecodeError:
        raise CredentialsError(f"credentials file {path} is not UTF-8 text") from None
    return parse_passwd(text, bucket, str(path))


def resolve_credentials(
    bucket: str,
    *,
    secret_id: str | None = None,
    secret_key: str | None = None,
    token: str | None = None,
    passwd_file: str | None = None,
    cam_role: str | None = None,
    metadata_url: str = CVM_METADATA_URL,
    env: Mapping[str, str] | None = None,
    home: Path | None = None,
    etc_passwd: Path = Path("/etc/passwd-cosfs"),
) -> CredentialProvider:
    """The first source that yields keys, in the documented order; a clear error if none does."""
    env = environment() if env is None else env
    if secret_id or secret_key:
        if not (secret_id and secret_key):
            raise CredentialsError("give both a SecretId and a SecretKey")
        return StaticCredentials(Credentials(secret_id, secret_key, token=token))
    if cam_role:
        return CvmRoleCredentials(None if cam_role == "auto" else cam_role, metadata_url)
    if passwd_file:
        path = Path(passwd_file).expanduser()
        if not path.exists():
            raise CredentialsError(f"credentials file {path} does not exist")
        creds = read_passwd_file(path, bucket)
        if creds is None:
            raise CredentialsError(f"credentials file {path} has no line for bucket {bucket} and no default line")
        return StaticCredentials(creds)
    home = Path(env.get("HOME", "~")).expanduser() if home is None else home
    for path in (home / ".passwd-cosfs", etc_passwd):
        creds = read_passwd_file(path, bucket)
        if creds is not None:
            return StaticCredentials(creds)
    if env.get("COSACCESSKEYID") and env.get("COSSECRETACCESSKEY"):
        return StaticCredentials(Credentials(env["COSACCESSKEYID"], env["COSSECRETACCESSKEY"]))
    if env.get("TENCENTCLOUD_SECRET_ID") and env.get("TENCENTCLOUD_SECRET_KEY"):
        return StaticCredentials(
            Credentials(
                env["TENCENTCLOUD_SECRET_ID"],
                env["TENCENTCLOUD_SECRET_KEY"],
                token=env.get("TENCENTCLOUD_SESSION_TOKEN") or None,
            )
        )
    raise CredentialsError(
        "no credentials: give passwd_file=FILE (lines 'bucket-appid:SecretId:SecretKey' or "
        "'SecretId:SecretKey', mode 600), create ~/.passwd-cosfs or /etc/passwd-cosfs, set "
        "COSACCESSKEYID/COSSECRETACCESSKEY or TENCENTCLOUD_SECRET_ID/TENCENTCLOUD_SECRET_KEY, "
        "or use cam_role=ROLE on a CVM instance"
    )
