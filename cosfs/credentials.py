"""Credential providers: explicit keys, passwd files (COSFS and s3fs), the environment, the
AWS credentials file, COSFS's STS passwd file and the CVM instance role.

Order (first that yields keys wins), COSFS's with s3fs's sources after COSFS's files:
explicit keys; `public_bucket=1` (no keys at all); a CAM role (`cam_role=ROLE`, or `auto`
for the first role the metadata service lists); the `passwd_file` option; the `profile`
option (that section of ~/.aws/credentials); the environment (COSACCESSKEYID/
COSSECRETACCESSKEY, then AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY/AWS_SESSION_TOKEN, then
TENCENTCLOUD_SECRET_ID/TENCENTCLOUD_SECRET_KEY/TENCENTCLOUD_SESSION_TOKEN; half of a pair is
an error); the file named by COS_CREDENTIAL_FILE or AWS_CREDENTIAL_FILE; ~/.passwd-cosfs;
/etc/passwd-cosfs; ~/.aws/credentials [default]; ~/.passwd-s3fs; /etc/passwd-s3fs. The CVM
role is opt-in, as in COSFS: probing a metadata service on machines that are not CVM
instances would only add a timeout to every failed mount.

A passwd file in COSFS's STS form (`COSAccessKeyId=`, `COSSecretKey=`, `COSAccessToken=`,
`COSAccessTokenExpire=` lines) gives temporary keys; with an expiry the file is read again
when fewer than 600 s remain (`cam_role=sts` requires this form), so whatever rotates the
file rotates the mount's keys.

Secrets live only in `Credentials` objects, whose repr hides them; no message built here
contains a SecretKey or token.
"""

from __future__ import annotations

import base64
import calendar
import configparser
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
    async def get(self) -> Credentials | None:
        """Current credentials, refreshed first when they are close to expiry (None: send
        requests unsigned)."""
        ...

    async def refresh(self) -> Credentials | None:
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
        # trust_env=False: the metadata service is never reached through an http_proxy.
        async with httpx.AsyncClient(transport=self._transport, timeout=self._timeout_s, trust_env=False) as client:
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


def check_passwd_permissions(path: Path, *, group_readable: bool = False) -> None:
    """COSFS's and s3fs's rule: no bits for others, no execute bits; the group may read
    /etc/passwd-cosfs and /etc/passwd-s3fs (640), nothing else."""
    mode = path.stat().st_mode
    if mode & stat.S_IRWXO:
        raise CredentialsError(
            f"credentials file {path} is accessible by others (mode {stat.S_IMODE(mode):o}); run: chmod 600 {path}"
        )
    allowed_group = stat.S_IRGRP if group_readable else 0
    if mode & stat.S_IRWXG & ~allowed_group or mode & stat.S_IXUSR:
        raise CredentialsError(
            f"credentials file {path} has mode {stat.S_IMODE(mode):o} (group or execute bits); run: chmod 600 {path}"
        )


STS_FIELDS = ("COSAccessKeyId", "COSSecretKey", "COSAccessToken", "COSAccessTokenExpire")


def parse_sts(text: str, source: str) -> Credentials | None:
    """Keys from a passwd file in COSFS's STS form, or None when the file is not in it. The
    expiry is GMT, `%Y-%m-%dT%H:%M:%S` as COSFS reads it."""
    fields: dict[str, str] = {}
    for raw in text.splitlines():
        name, sep, value = raw.strip().partition("=")
        if sep and name in STS_FIELDS:
            fields[name] = value.strip()
    if not fields:
        return None
    if not fields.get("COSAccessKeyId") or not fields.get("COSSecretKey"):
        raise CredentialsError(f"{source}: the STS form needs COSAccessKeyId= and COSSecretKey= lines")
    expires_at_s = None
    if fields.get("COSAccessTokenExpire"):
        try:
            stamp = time.strptime(fields["COSAccessTokenExpire"].rstrip("Z"), "%Y-%m-%dT%H:%M:%S")
        except ValueError:
            raise CredentialsError(f"{source}: COSAccessTokenExpire is not like 2017-08-29T20:30:00") from None
        expires_at_s = float(calendar.timegm(stamp))
    return Credentials(fields["COSAccessKeyId"], fields["COSSecretKey"], token=fields.get("COSAccessToken") or None,
                       expires_at_s=expires_at_s)


def parse_passwd(text: str, bucket: str, source: str) -> Credentials | None:
    """The keys for `bucket` from COSFS passwd lines, a bucket-specific line winning (or the
    keys of a file in STS form).

    Lines are `bucket-appid:SecretId:SecretKey` (or `bucket:...` without the appid) or
    `SecretId:SecretKey`; `#` comments and blank lines are skipped. Errors name the line number
    but never echo its content, which holds a secret.
    """
    sts = parse_sts(text, source)
    if sts is not None:
        return sts
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


def _read_text(path: Path, *, group_readable: bool = False) -> str | None:
    """A credentials file's text once its mode is checked; None when it does not exist."""
    try:
        check_passwd_permissions(path, group_readable=group_readable)
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except PermissionError:
        raise CredentialsError(f"cannot read credentials file {path}: permission denied") from None
    except UnicodeDecodeError:
        raise CredentialsError(f"credentials file {path} is not UTF-8 text") from None


def read_passwd_file(path: Path, bucket: str, *, group_readable: bool = False) -> Credentials | None:
    text = _read_text(path, group_readable=group_readable)
    return None if text is None else parse_passwd(text, bucket, str(path))


class StsFileCredentials:
    """Temporary keys from a passwd file in STS form, read again when they are within
    ROLE_REFRESH_MARGIN_S of COSAccessTokenExpire (or when COS says the token expired): the
    file is where whoever renews the keys puts them, as with COSFS's cam_role=sts."""

    def __init__(self, path: Path, creds: Credentials, *, clock: Callable[[], float] = time.time) -> None:
        self._path = path
        self._creds = creds
        self._clock = clock

    async def get(self) -> Credentials:
        expires = self._creds.expires_at_s
        if expires is not None and expires - self._clock() <= ROLE_REFRESH_MARGIN_S:
            return await self.refresh()
        return self._creds

    async def refresh(self) -> Credentials:
        text = _read_text(self._path)
        creds = None if text is None else parse_sts(text, str(self._path))
        if creds is None:
            log.warning("%s no longer holds keys in STS form; keeping the current ones", self._path)
        elif creds.expires_at_s != self._creds.expires_at_s or creds.secret_id != self._creds.secret_id:
            log.info("read new temporary keys %s from %s", mask_secret_id(creds.secret_id), self._path)
            self._creds = creds
        return self._creds

    def describe(self) -> str:
        return f"STS keys from {self._path}"


class AnonymousCredentials:
    """public_bucket=1: requests go unsigned."""

    async def get(self) -> None:
        return None

    async def refresh(self) -> None:
        return None

    def describe(self) -> str:
        return "anonymous (public bucket)"


def read_aws_credentials(path: Path, profile: str) -> Credentials | None:
    """The keys of `[profile]` in an AWS CLI credentials file (aws_access_key_id,
    aws_secret_access_key, aws_session_token); None when the file or section is missing."""
    parser = configparser.ConfigParser(interpolation=None)
    try:
        if not parser.read(path, encoding="utf-8"):
            return None
    except (configparser.Error, UnicodeDecodeError):
        raise CredentialsError(f"{path} is not an AWS credentials file (INI sections)") from None
    if not parser.has_section(profile):
        return None
    section = parser[profile]
    secret_id, secret_key = section.get("aws_access_key_id"), section.get("aws_secret_access_key")
    if not secret_id or not secret_key:
        raise CredentialsError(f"{path} [{profile}] lacks aws_access_key_id or aws_secret_access_key")
    return Credentials(secret_id, secret_key, token=section.get("aws_session_token") or None)


def read_sse_customer_key(path: Path) -> tuple[bytes, int]:
    """The first SSE-C key of a key file and how many keys it holds. s3fs's format: one key
    per line, raw (32 bytes) or base64 (44 characters); # comments. The file must be 600, as
    s3fs demands; no error shows a key."""
    text = _read_text(path)
    if text is None:
        raise CredentialsError(f"SSE-C key file {path} does not exist")
    keys = [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]
    if not keys:
        raise CredentialsError(f"SSE-C key file {path} holds no key")
    raw = keys[0].encode()
    if len(raw) > 32:
        try:
            raw = base64.b64decode(raw, validate=True)
        except ValueError:
            raw = b""
    if len(raw) != 32:
        raise CredentialsError(f"SSE-C key file {path}: the first key is not 32 bytes (raw) or their base64")
    return raw, len(keys)


ENV_PAIRS = (("COSACCESSKEYID", "COSSECRETACCESSKEY", None),
             ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"),
             ("TENCENTCLOUD_SECRET_ID", "TENCENTCLOUD_SECRET_KEY", "TENCENTCLOUD_SESSION_TOKEN"))


def _from_file(path: Path, bucket: str, *, sts: bool, group_readable: bool = False) -> CredentialProvider | None:
    """A provider for the keys in a passwd file: re-read when it is in STS form with an
    expiry; `sts` (cam_role=sts) demands that form."""
    creds = read_passwd_file(path, bucket, group_readable=group_readable)
    if creds is None:
        return None
    if creds.expires_at_s is not None:
        return StsFileCredentials(path, creds)
    if sts:
        raise CredentialsError(f"cam_role=sts needs {path} in STS form: lines "
                               + ", ".join(f"{f}=" for f in STS_FIELDS))
    return StaticCredentials(creds)


def resolve_credentials(
    bucket: str,
    *,
    secret_id: str | None = None,
    secret_key: str | None = None,
    token: str | None = None,
    passwd_file: str | None = None,
    cam_role: str | None = None,
    metadata_url: str = CVM_METADATA_URL,
    profile: str | None = None,
    public_bucket: bool = False,
    env: Mapping[str, str] | None = None,
    home: Path | None = None,
    etc_passwd: Path = Path("/etc/passwd-cosfs"),
    etc_passwd_s3fs: Path = Path("/etc/passwd-s3fs"),
) -> CredentialProvider:
    """The first source that yields keys, in the documented order; a clear error if none does."""
    env = environment() if env is None else env
    if secret_id or secret_key:
        if not (secret_id and secret_key):
            raise CredentialsError("give both a SecretId and a SecretKey")
        return StaticCredentials(Credentials(secret_id, secret_key, token=token))
    if public_bucket:
        return AnonymousCredentials()
    sts = cam_role == "sts"
    if cam_role and not sts:
        return CvmRoleCredentials(None if cam_role == "auto" else cam_role, metadata_url)
    home = Path(env.get("HOME", "~")).expanduser() if home is None else home
    if passwd_file:
        path = Path(passwd_file).expanduser()
        if not path.exists():
            raise CredentialsError(f"credentials file {path} does not exist")
        provider = _from_file(path, bucket, sts=sts)
        if provider is None:
            raise CredentialsError(f"credentials file {path} has no line for bucket {bucket} and no default line")
        return provider
    if profile:
        creds = read_aws_credentials(home / ".aws" / "credentials", profile)
        if creds is None:
            raise CredentialsError(f"profile={profile}: no [{profile}] section in {home / '.aws' / 'credentials'}")
        return StaticCredentials(creds)
    for id_name, key_name, token_name in ENV_PAIRS:
        if env.get(id_name) or env.get(key_name):
            if not (env.get(id_name) and env.get(key_name)):
                raise CredentialsError(f"only one of {id_name} and {key_name} is set: set both, or neither")
            return StaticCredentials(Credentials(env[id_name], env[key_name],
                                                 token=env.get(token_name or "") or None))
    for variable in ("COS_CREDENTIAL_FILE", "AWS_CREDENTIAL_FILE"):
        if env.get(variable):
            path = Path(env[variable]).expanduser()
            provider = _from_file(path, bucket, sts=sts) if path.exists() else None
            if provider is None:
                raise CredentialsError(f"{variable}={path}: the file does not exist or has no keys for {bucket}")
            return provider
    candidates = [(home / ".passwd-cosfs", False), (etc_passwd, True)]
    for path, group_readable in candidates:
        provider = _from_file(path, bucket, sts=sts, group_readable=group_readable)
        if provider is not None:
            return provider
    if not sts:
        creds = read_aws_credentials(home / ".aws" / "credentials", "default")
        if creds is not None:
            return StaticCredentials(creds)
        for path, group_readable in ((home / ".passwd-s3fs", False), (etc_passwd_s3fs, True)):
            provider = _from_file(path, bucket, sts=False, group_readable=group_readable)
            if provider is not None:
                return provider
    raise CredentialsError(
        "no credentials: give passwd_file=FILE (lines 'bucket-appid:SecretId:SecretKey' or "
        "'SecretId:SecretKey', mode 600), create ~/.passwd-cosfs or /etc/passwd-cosfs, set "
        "COSACCESSKEYID/COSSECRETACCESSKEY (or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY), "
        "or use cam_role=ROLE on a CVM instance"
    )
