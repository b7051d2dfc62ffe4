"""`cosfs status` numbers an operator can trust, on a live mount: creating files (whose names
COS is asked about first, and answers 404) counts no errors, and opening an object (one HEAD
each) counts no received bytes for the body a HEAD only announces."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.fuse.conftest import sdk_client


def status_of(mountpoint) -> dict:
    result = subprocess.run([sys.executable, "-m", "cosfs", "status", str(mountpoint), "--json"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_lookups_of_new_names_are_not_errors_and_heads_receive_nothing(cos_server, mount_factory):
    size = 8 * 1024 * 1024
    sdk_client(cos_server).put_object(Bucket=cos_server.bucket, Key="big.bin", Body=b"b" * size)
    m = mount_factory(cos_server)
    for number in range(20):
        (m.path / f"new-{number}.txt").write_bytes(b"x")
    for _ in range(5):
        os.close(os.open(m.path / "big.bin", os.O_RDONLY))  # close-to-open: a HEAD each
    status = status_of(m.path)
    assert status["requests"]["head_object"]["requests"] >= 5
    assert {op: c["errors"] for op, c in status["requests"].items() if c["errors"]} == {}
    assert status["bytes_in"] < size  # 5 HEADs announce 40 MiB; none of it is a body
