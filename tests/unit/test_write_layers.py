"""The write side's layers (cosfs/write/__init__.py): imports point one way, and the
filesystem core keeps no write-side mechanics of its own (issue 19, section 2)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2] / "cosfs"
# module -> the write-side modules it may import
ALLOWED = {
    "owner": {"locks", "staging", "journal", "uploader", "renames"},
    "journal": {"staging"},
    "uploader": {"staging"},
    "staging": set(),
    "locks": set(),
    "renames": set(),
}


def imported_modules(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


def test_the_layers_import_downwards_only():
    for name, allowed in ALLOWED.items():
        layers = {m.split(".")[2] for m in imported_modules(ROOT / "write" / f"{name}.py")
                  if m.startswith("cosfs.write.")}
        assert layers <= allowed, (name, layers - allowed)
        assert "cosfs.write" not in imported_modules(ROOT / "write" / f"{name}.py"), name
    assert set(ALLOWED) == {p.stem for p in (ROOT / "write").glob("*.py")} - {"__init__"}


def test_the_rest_of_cosfs_uses_the_package_api_only():
    for path in ROOT.rglob("*.py"):
        if path.parent.name == "write":
            continue
        inner = {m for m in imported_modules(path) if m.startswith("cosfs.write.")}
        assert not inner, (path.name, inner)
        assert "cosfs.filesystem" not in imported_modules(ROOT / "write" / "owner.py")


def test_the_filesystem_core_keeps_no_locking_journaling_or_upload_mechanics():
    source = (ROOT / "filesystem.py").read_text()
    mechanics = re.findall(r"\.(locks|journal|uploader|renames)\b|crashpoints|staging\.(start|write|truncate|seal|"
                           r"drop|rekey|save|restart|edit)\(|_holding|upload_ids", source)
    assert not mechanics, mechanics
