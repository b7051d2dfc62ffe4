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
    text = "# comment\n\nAKIDdefault:defaultkey\nother-1250000000:AKIDother:otherkey\nmybucket-1250000000:AKIDmine:minekey\n"
    creds = credentials.parse_passwd(text, "mybucket-1250000000", "f")
    assert (creds.secret_id, creds.secret_key) == ("AKIDmine", "minekey")
    creds = credentials.parse_passwd(text, "nobucket-1", "f")
    assert creds.secret_id == "AKIDdefault"
    short = credentials.parse_passwd("mybucket:AKIDshort:k\n", "mybucket-1250000000", "f")
    assert short.secret_id == "AKIDshort"


@pytest.mark.parametrize("text", [f"AKID:{SECRET} \n", f"[default]\nAKID:{SECRET}\n", f"a:b:c:{SECRET}\n", f":{SECRET}\n"])
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


async def test_order_explicit_then_files_then_env(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    env = {"COSACCESSKEYID": "AKIDenv", "COSSECRETACCESSKEY": "envkey",
           "TENCENTCLOUD_SECRET_ID": "AKIDtc", "TENCENTCLOUD_SECRET_KEY": "tckey"}
    etc = tmp_path / "etc-passwd-cosfs"
    explicit = credentials.resolve_credentials("b-1", secret_id="AKIDx", secret_key="k", env=env, home=home, etc_passwd=etc)
    assert (await explicit.get()).secret_id == "AKIDx"
    assert (await credentials.resolve_credentials("b-1", env=env, home=home, etc_passwd=etc).get()).secret_id == "AKIDenv"
    write_passwd(etc, "AKIDetc:etckey\n")
    assert (await credentials.resolve_credentials("b-1", env=env, home=home, etc_passwd=etc).get()).secret_id == "AKIDetc"
    write_passwd(home / ".passwd-cosfs", "AKIDhome:homekey\n")
    assert (await credentials.resolve_credentials("b-1", env=env, home=home, etc_passwd=etc).get()).secret_id == "AKIDhome"
    tc_only = {k: v for k, v in env.items() if k.startswith("TENCENTCLOUD")} | {"TENCENTCLOUD_SESSION_TOKEN": "tok"}
    tc = await credentials.resolve_credentials("b-1", env=tc_only, home=tmp_path, etc_passwd=tmp_path / "none").get()
    assert (tc.secret_id, tc.token) == ("AKIDtc", "tok")


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
