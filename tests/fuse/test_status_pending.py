"""`cosfs status` tells the truth about a file being uploaded (issue 21, section 4): while a
large file is written, its parts go up, and status says "uploading" with the bytes already
in COS, not "dirty 0.0 MiB"."""

from __future__ import annotations

import json
import os
import time


def _pending(mountpoint) -> dict[str, dict]:
    return {item["key"]: item for item in json.loads(os.getxattr(mountpoint, "user.cosfs.status"))["pending"]}


def test_a_file_streaming_its_parts_shows_as_uploading_with_its_bytes(server_factory, mount_factory):
    server = server_factory("--fault", "delay=200ms")  # each part is in flight long enough to be seen
    m = mount_factory(server, "multipart_size=5")
    chunk = os.urandom(1024 * 1024)
    with open(m.path / "big.bin", "wb") as handle:
        for _ in range(24):
            handle.write(chunk)
        handle.flush()
        deadline = time.monotonic() + 60
        states = set()
        while _pending(m.path)["big.bin"]["uploaded_bytes"] < 15 * 1024 * 1024:  # three parts are in COS
            assert time.monotonic() < deadline, _pending(m.path)
            states.add(_pending(m.path)["big.bin"]["state"])
            states.add(os.getxattr(m.path / "big.bin", "user.cosfs.state").decode())
            time.sleep(0.02)
        assert "uploading" in states  # while a part was in flight
        status = json.loads(os.getxattr(m.path, "user.cosfs.status"))
        assert status["dirty_bytes"] == 24 * 1024 * 1024
    assert "big.bin" not in _pending(m.path)
    assert (m.path / "big.bin").stat().st_size == 24 * 1024 * 1024
