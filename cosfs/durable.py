"""Small files that must survive a crash whole: the journals of staging and renames."""

from __future__ import annotations

import json
import os
from pathlib import Path


def write_json_durably(path: Path, record: dict) -> None:
    """Write `record` as JSON to `path` atomically: temp file, fsync, rename, fsync the
    directory. A crash leaves the old file or the new one, never a torn one (a leftover
    `<name>.tmp` may remain and is ignored by readers)."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as handle:
        json.dump(record, handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
