"""Credential sources: passwd file rules, environment, CVM role over a local fake metadata service."""

from __future__ import annotations

import http.server
import json
import threading
from pathlib import Path

import pytest

from cosfs import credentials
from cosfs.errors import CredentialsError

SECRET = "SuperSecretKeyValue123"


def write_passwd(path: Path, text: str, mode: int = 0o600) -> Path:
    path.write_text(text)
    path.chmod(mode)
    return path


def test_passwd_bucket_line_wins_over_default():
    text = ("# comment\n\nAKIDdefault:defaultkey\nother-1250000000:AKIDother:otherkey\n"
            "mybucket-1250000000:AKIDmine:minekey\n")
    creds = credentials.parse_passwd(text, "mybucket-1250000000", "f")
    assert (creds.secret_id, creds.secret_key) == ("AKIDmine", "minekey")
    creds = credentials.parse_passwd(text, "nobucket-1", "f")
    assert creds.secret_id == "AKIDdefault"
    short = credentials.parse_passwd("mybucket:AKIDshort:k\n", "mybucket-1250000000", "f")
    assert short.secret_id == "AKIDshort"


@pytest.mark.parametrize("text", [f"AKID:{SECRET} \n", f"[default]\nAKID:{SECRET}\n", f"a:b:c:{SECRET}\n",
                                  f":{SECRET}\n"])
def test_passwd_bad_lines_name_the_line_not_the_secret(text):
    with pytest.raises(CredentialsError) as info:
        credentials.parse_passwd(text, "b-1", "passwd")
    assert "line" in str(info.value)
    assert SECRET not in str(info.value)


def test_passwd_file_readable_by_others_is_refused(tmp_path):
    path = write_passwd(tmp_path / "passwd", f"AKID:{SECRET}\n", 0o644)
    with pytest.raises(CredentialsError) as info:
        credentials.resolve_credentials("b-1", passwd_file=str(path), env={})
    assert "chmod 600" in str(info.value) and SECRET not in str(info.value)
    path.chmod(0o640)
    with pytest.raises(CredentialsError):
        credentials.resolve_credentials("b-1", passwd_file=str(path), env={})
    path.chmod(0o600)
    provider = credentials.resolve_credentials("b-1", passwd_file=str(path), env={})
    assert isinstance(provider, credentials.StaticCredentials)


def test_etc_passwd_may_be_group_readable(tmp_path):
    # The group-readable allowance is for /etc/passwd-cosfs only; elsewhere 640 is refused.
    path = write_passwd(tmp_path / "passwd-cosfs", f"AKID:{SECRET}\n", 0o640)
    with pytest.raises(CredentialsError):
        credentials.check_passwd_permissions(path)


async def test_order_is_cosfs_then_s3fs(tmp_path):
    """COSFS's order: explicit keys, passwd_file, the environment (COS, then AWS, then
    TENCENTCLOUD names), COS_CREDENTIAL_FILE, ~/.passwd-cosfs, /etc/passwd-cosfs; then
    s3fs's files: ~/.aws/credentials [default], ~/.passwd-s3fs, /etc/passwd-s3fs."""
    home = tmp_path / "home"
    (home / ".aws").mkdir(parents=True)
    etc, etc_s3fs = tmp_path / "etc-passwd-cosfs", tmp_path / "etc-passwd-s3fs"
    env = {"COSACCESSKEYID": "AKIDenv", "COSSECRETACCESSKEY": "envkey", "AWS_ACCESS_KEY_ID": "AKIDaws",
           "AWS_SECRET_ACCESS_KEY": "awskey", "AWS_SESSION_TOKEN": "awstok",
           "TENCENTCLOUD_SECRET_ID": "AKIDtc", "TENCENTCLOUD_SECRET_KEY": "tckey", "TENCENTCLOUD_SESSION_TOKEN": "tok"}

    async def first(env_now: dict, **kwargs) -> tuple[str, str | None]:
        creds = await credentials.resolve_credentials("b-1", env=env_now, home=home, etc_passwd=etc,
                                                      etc_passwd_s3fs=etc_s3fs, **kwargs).get()
        return creds.secret_id, creds.token

    for path in (etc_s3fs, home / ".passwd-s3fs", etc, home / ".passwd-cosfs"):
        write_passwd(path, f"AKID{path.name}:key\n")
    (home / ".aws" / "credentials").write_text("[default]\naws_access_key_id = AKIDprofile\n"
                                               "aws_secret_access_key = k\n")
    passwd = write_passwd(tmp_path / "opt", "AKIDoption:key\n")
    assert (await first(env, secret_id="AKIDx", secret_key="k"))[0] == "AKIDx"
    assert (await first(env, passwd_file=str(passwd)))[0] == "AKIDoption"
    assert await first(env) == ("AKIDenv", None)  # the environment before every file, as COSFS
    without_cos = {k: v for k, v in env.items() if not k.startswith("COS")}
    assert await first(without_cos) == ("AKIDaws", "awstok")
    tencent = {k: v for k, v in env.items() if k.startswith("TENCENTCLOUD")}
    assert await first(tencent) == ("AKIDtc", "tok")
    write_passwd(tmp_path / "credfile", "AKIDcredfile:key\n")
    assert (await first({"COS_CREDENTIAL_FILE": str(tmp_path / "credfile")}))[0] == "AKIDcredfile"
    assert (await first({}))[0] == "AKID.passwd-cosfs"
    (home / ".passwd-cosfs").unlink()
    assert (await first({}))[0] == "AKIDetc-passwd-cosfs"
    etc.unlink()
    assert (await first({}))[0] == "AKIDprofile"
    (home / ".aws" / "credentials").unlink()
    assert (await first({}))[0] == "AKID.passwd-s3fs"
    (home / ".passwd-s3fs").unlink()
    etc_s3fs.chmod(0o640)  # s3fs allows /etc/passwd-s3fs to be group-readable
    assert (await first({}))[0] == "AKIDetc-passwd-s3fs"


@pytest.mark.parametrize("names", [("COSACCESSKEYID", "COSSECRETACCESSKEY"),
                                   ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"),
                                   ("TENCENTCLOUD_SECRET_ID", "TENCENTCLOUD_SECRET_KEY")])
def test_half_set_environment_pair_is_an_error(tmp_path, names):
    for present in names:
        with pytest.raises(CredentialsError) as info:
            credentials.resolve_credentials("b-1", env={present: SECRET}, home=tmp_path, etc_passwd=tmp_path / "x")
        assert all(name in str(info.value) for name in names) and SECRET not in str(info.value)


def test_no_credentials_message_says_what_to_do(tmp_path):
    with pytest.raises(CredentialsError) as info:
        credentials.resolve_credentials("b-1", env={}, home=tmp_path, etc_passwd=tmp_path / "none")
    assert "passwd_file" in str(info.value) and "COSACCESSKEYID" in str(info.value)


class FakeMetadata:
    """A real HTTP server on loopback that answers like the CVM metadata service."""

    def __init__(self) -> None:
        self.expires = 2_000_000_000
        self.requests: list[str] = []
        self.down = False
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server API)
                owner.requests.append(self.path)
                if owner.down:
                    self.send_response(500)
                    self.end_headers()
                    return
                if self.path.endswith("/security-credentials/"):
                    body = b"cosfs-role\n"
                elif self.path.endswith("/security-credentials/cosfs-role"):
                    n = len(owner.requests)
                    body = json.dumps({"TmpSecretId": f"AKIDtmp{n}", "TmpSecretKey": SECRET, "Token": "tok",
                                       "ExpiredTime": owner.expires, "Code": "Success"}).encode()
                else:
                    self.send_response(404)
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/latest/meta-data/cam/security-credentials"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def metadata():
    fake = FakeMetadata()
    try:
        yield fake
    finally:
        fake.close()


async def test_cvm_role_fetch_and_refresh_before_expiry(metadata):
    now = [1_999_990_000.0]
    provider = credentials.CvmRoleCredentials(None, metadata.url, clock=lambda: now[0])
    first = await provider.get()
    assert first.secret_id.startswith("AKIDtmp") and first.token == "tok"
    assert (await provider.get()) is first  # far from expiry: cached
    now[0] = metadata.expires - 300  # within the refresh margin
    second = await provider.get()
    assert second.secret_id != first.secret_id
    metadata.down = True
    now[0] = metadata.expires - 200
    assert (await provider.get()) is second  # keeps valid keys when refresh fails
    now[0] = metadata.expires + 1
    with pytest.raises(CredentialsError) as info:
        await provider.get()
    assert SECRET not in str(info.value)


async def test_cvm_role_unknown_role(metadata):
    provider = credentials.CvmRoleCredentials("nosuchrole", metadata.url)
    with pytest.raises(CredentialsError, match="nosuchrole"):
        await provider.get()


async def test_cvm_unreachable_metadata_service():
    provider = credentials.CvmRoleCredentials("r", "http://127.0.0.1:9/latest", timeout_s=2)
    with pytest.raises(CredentialsError, match="metadata service"):
        await provider.get()


STS_TEXT = ("COSAccessKeyId=AKIDsts{n}\nCOSSecretKey=" + SECRET + "\nCOSAccessToken=token{n}\n"
            "COSAccessTokenExpire={expire}\n")


async def test_sts_passwd_file_is_read_again_before_expiry(tmp_path):
    """cam_role=sts (COSFS): keys, token and a GMT expiry from the passwd file; within 600 s of
    the expiry the file is read again, so whoever renews it renews the mount's keys."""
    path = write_passwd(tmp_path / "passwd-sts", STS_TEXT.format(n=1, expire="2030-01-01T00:00:00"))
    provider = credentials.resolve_credentials("b-1", passwd_file=str(path), cam_role="sts", env={})
    assert isinstance(provider, credentials.StsFileCredentials)
    now = [1893455000.0]  # 2029-12-31T23:43:20Z: 1000 s before the expiry
    provider._clock = lambda: now[0]
    creds = await provider.get()
    assert (creds.secret_id, creds.token, creds.expires_at_s) == ("AKIDsts1", "token1", 1893456000.0)
    write_passwd(path, STS_TEXT.format(n=2, expire="2030-01-01T01:00:00"))
    assert (await provider.get()).secret_id == "AKIDsts1"  # not yet within 600 s: not read again
    now[0] = 1893456000.0 - 599
    assert (await provider.get()).token == "token2"
    path.write_text("garbage")  # a half-written renewal keeps the current keys
    assert (await provider.refresh()).token == "token2"


def test_sts_form_errors(tmp_path):
    plain = write_passwd(tmp_path / "plain", "AKIDplain:" + SECRET + "\n")
    with pytest.raises(CredentialsError, match="STS form"):
        credentials.resolve_credentials("b-1", passwd_file=str(plain), cam_role="sts", env={})
    bad = write_passwd(tmp_path / "bad", STS_TEXT.format(n=1, expire="tomorrow"))
    with pytest.raises(CredentialsError) as info:
        credentials.resolve_credentials("b-1", passwd_file=str(bad), env={})
    assert "COSAccessTokenExpire" in str(info.value) and SECRET not in str(info.value)
    half = write_passwd(tmp_path / "half", "COSAccessKeyId=AKID\n")
    with pytest.raises(CredentialsError, match="COSSecretKey"):
        credentials.resolve_credentials("b-1", passwd_file=str(half), env={})


async def test_sts_form_without_expiry_is_static(tmp_path):
    path = write_passwd(tmp_path / "p", "COSAccessKeyId=AKIDs\nCOSSecretKey=k\nCOSAccessToken=t\n")
    creds = await credentials.resolve_credentials("b-1", passwd_file=str(path), env={}).get()
    assert (creds.secret_id, creds.token) == ("AKIDs", "t")


async def test_profile_and_public_bucket(tmp_path):
    (tmp_path / ".aws").mkdir()
    (tmp_path / ".aws" / "credentials").write_text(
        "[default]\naws_access_key_id=AKIDdef\naws_secret_access_key=k\n"
        "[work]\naws_access_key_id=AKIDwork\naws_secret_access_key=k\naws_session_token=tok\n")
    env = {"COSACCESSKEYID": "AKIDenv", "COSSECRETACCESSKEY": "k"}
    work = await credentials.resolve_credentials("b-1", profile="work", env=env, home=tmp_path).get()
    assert (work.secret_id, work.token) == ("AKIDwork", "tok")  # an explicit profile beats the environment
    with pytest.raises(CredentialsError, match=r"\[missing\]"):
        credentials.resolve_credentials("b-1", profile="missing", env=env, home=tmp_path)
    anonymous = credentials.resolve_credentials("b-1", public_bucket=True, env={}, home=tmp_path)
    assert await anonymous.get() is None


def test_passwd_permission_rules(tmp_path):
    path = write_passwd(tmp_path / "p", "AKID:k\n", 0o640)
    credentials.check_passwd_permissions(path, group_readable=True)  # /etc/passwd-cosfs and -s3fs
    for mode in (0o660, 0o700, 0o604):
        path.chmod(mode)
        with pytest.raises(CredentialsError, match="chmod 600"):
            credentials.check_passwd_permissions(path, group_readable=True)


def test_sse_customer_key_file(tmp_path):
    import base64

    raw = b"k" * 32
    path = write_passwd(tmp_path / "keys", f"# history\n{base64.b64encode(raw).decode()}\n{'x' * 32}\n")
    assert credentials.read_sse_customer_key(path) == (raw, 2)
    write_passwd(path, "y" * 32 + "\n")
    assert credentials.read_sse_customer_key(path) == (b"y" * 32, 1)
    write_passwd(path, SECRET + "\n")
    with pytest.raises(CredentialsError) as info:
        credentials.read_sse_customer_key(path)
    assert "32 bytes" in str(info.value) and SECRET not in str(info.value)
    path.chmod(0o644)
    with pytest.raises(CredentialsError, match="chmod 600"):
        credentials.read_sse_customer_key(path)


async def test_metadata_service_is_never_reached_through_a_proxy(metadata, monkeypatch):
    monkeypatch.setenv("http_proxy", "http://127.0.0.1:9")
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    monkeypatch.setenv("all_proxy", "http://127.0.0.1:9")
    creds = await credentials.CvmRoleCredentials(None, metadata.url).get()
    assert creds.secret_id.startswith("AKIDtmp")
