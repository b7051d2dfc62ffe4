"""`cosfs status`, `cosfs sync` and the per-file state xattrs on a live mount."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.fuse.conftest import sdk_client


def cosfs(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cosfs", *args], capture_output=True, text=True, timeout=120)


def test_status_sync_and_file_state(cos_server, mount_factory):
    m = mount_factory(cos_server, "write_back_delay=600")
    path = m.path / "pending.bin"
    path.write_bytes(b"x" * 3_000_000)
    assert os.getxattr(path, "user.cosfs.state") == b"dirty"
    status = json.loads(cosfs("status", str(m.path), "--json").stdout)
    assert status["bucket"] == cos_server.bucket and status["dirty_files"] == 1
    assert status["pending"][0]["key"] == "pending.bin"
    text = cosfs("status", str(m.path)).stdout
    assert "1 pending" in text and "pending.bin" in text
    keys = [o["Key"] for o in sdk_client(cos_server).list_objects(Bucket=cos_server.bucket).get("Contents", [])]
    assert "pending.bin" not in keys  # write-back: not uploaded yet
    result = cosfs("sync", str(m.path))
    assert result.returncode == 0, result.stderr
    reply = sdk_client(cos_server).get_object(Bucket=cos_server.bucket, Key="pending.bin")
    body = reply["Body"].get_raw_stream().read()
    assert body == b"x" * 3_000_000
    assert os.getxattr(path, "user.cosfs.state") == b"clean"
    etag = sdk_client(cos_server).head_object(Bucket=cos_server.bucket, Key="pending.bin")["ETag"].strip('"')
    assert os.getxattr(path, "user.cosfs.etag").decode() == etag
    status = json.loads(cosfs("status", str(m.path), "--json").stdout)
    assert status["dirty_files"] == 0 and status["uploads_committed"] >= 1
    assert status["requests"]["put_object"]["requests"] >= 1
    assert cos_server.secret_key not in json.dumps(status)


def test_status_of_a_plain_directory_is_a_clear_error(tmp_path):
    result = cosfs("status", str(tmp_path))
    assert result.returncode == 78  # EX_CONFIG
    assert "is not a cosfs mount point" in result.stderr


def test_prometheus_endpoint(cos_server, mount_factory):
    import socket
    import urllib.request

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    m = mount_factory(cos_server, f"metrics_address=127.0.0.1:{port}")
    (m.path / "f.txt").write_bytes(b"metrics")
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    assert 'cosfs_requests_total{operation="put_object"}' in text
    assert "cosfs_dirty_files 0.0" in text
    assert "cosfs_uploads_committed_total 1.0" in text
