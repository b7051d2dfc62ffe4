"""What the documentation names exists: every repository path (`cosfs/...py`, `docs/...`,
`bench/...`, `scripts/...`, `systemd/...`, `tests/...py`) and every dotted `cosfs.module.Name`
mentioned in the Markdown files (docs/, README.md, bench/), scripts/, systemd/ and in the
comments and strings of cosfs/**/*.py, every relative Markdown link, and every module in
design.md's layout and in the server package's module list. A missing path is allowed only
when git ignores it (a file a command generates, such as bench/results-quick.json); a segment
in capitals (`docs/man/NAME`) marks a pattern, not a path."""

from __future__ import annotations

import ast
import importlib
import inspect
import io
import re
import subprocess
import tokenize
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "cosfs"

# A repository path: not the tail of a longer path or URL (`/var/cache/cosfs/BUCKET`,
# `github.com/tencentyun/cosfs/...`), ending in a name (a trailing "." ends the sentence).
PATH_RE = re.compile(r"(?<![\w./~@$-])((?:cosfs|docs|bench|scripts|systemd|tests)/[\w./@-]*[\w@-])")
# `cosfs.module[.Name...]`, not inside `user.cosfs.state` or a path.
DOTTED_RE = re.compile(r"(?<![\w./-])cosfs(?:\.[A-Za-z_]\w*)+")
LINK_RE = re.compile(r"\]\(([^)\s#]+)(?:#[^)]*)?\)")
FILE_NAME_SUFFIXES = (".log", ".conf", ".json", ".service", ".mount", ".sock", ".txt", ".py", ".md")


def markdown_files() -> list[Path]:
    return [*sorted((ROOT / "docs").rglob("*.md")), ROOT / "README.md", *sorted((ROOT / "bench").glob("*.md"))]


def module_files() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def comments_and_strings(path: Path) -> str:
    """The comments and string literals (docstrings included) of a Python file."""
    pieces = []
    for token in tokenize.generate_tokens(io.StringIO(path.read_text()).readline):
        if token.type == tokenize.COMMENT:
            pieces.append(token.string)
        elif token.type == tokenize.STRING:
            pieces.append(token.string)
    return "\n".join(pieces)


def texts() -> list[tuple[Path, str]]:
    found = [(path, path.read_text()) for path in markdown_files() if path.exists()]
    found += [(path, comments_and_strings(path)) for path in module_files()]
    for extra in [*sorted((ROOT / "scripts").glob("*.sh")), *sorted((ROOT / "systemd").iterdir())]:
        found.append((extra, extra.read_text()))
    return found


@cache
def git_ignored(relative: str) -> bool:
    try:
        result = subprocess.run(["git", "check-ignore", "-q", "--no-index", relative], cwd=ROOT,
                                capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return result.returncode == 0


def where(path: Path) -> str:
    return str(path.relative_to(ROOT))


def test_every_repository_path_mentioned_exists() -> None:
    missing = []
    for source, text in texts():
        for match in PATH_RE.finditer(text):
            relative = match.group(1).rstrip(".")
            if any(re.fullmatch(r"[A-Z][A-Z0-9_]+", part.split(".")[0]) for part in relative.split("/")):
                continue  # a pattern (`docs/man/NAME`), not a path
            if not (ROOT / relative).exists() and not git_ignored(relative):
                line = text.count("\n", 0, match.start()) + 1
                missing.append(f"{where(source)}: {relative}" + (f" (line {line})" if source.suffix == ".md" else ""))
    assert not missing, "paths named but not in the repository:\n" + "\n".join(sorted(set(missing)))


def test_every_relative_markdown_link_resolves() -> None:
    missing = []
    for source in markdown_files():
        for match in LINK_RE.finditer(source.read_text()):
            target = match.group(1)
            if re.match(r"[a-z][a-z0-9+.-]*:", target):
                continue  # a URL
            if not (source.parent / target).exists():
                missing.append(f"{where(source)}: {target}")
    assert not missing, "Markdown links to nothing:\n" + "\n".join(missing)


def logger_names() -> set[str]:
    names = set()
    for path in module_files():
        names.update(re.findall(r"getLogger\(\"([\w.]+)\"\)", path.read_text()))
    return names


def resolves(dotted: str) -> bool:
    """`cosfs.a.b.C.attr`: the longest importable module prefix, then attributes (a class's
    dataclass fields, annotations and `self.NAME` assignments count as attributes)."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        break
    else:
        return False
    for name in parts[cut:]:
        if hasattr(obj, name):
            obj = getattr(obj, name)
            continue
        if inspect.isclass(obj) and (name in getattr(obj, "__dataclass_fields__", {})
                                     or name in getattr(obj, "__annotations__", {})
                                     or re.search(rf"self\.{name}\b", inspect.getsource(obj))):
            return True
        return False
    return True


def test_every_dotted_cosfs_name_mentioned_exists() -> None:
    loggers = logger_names()
    missing = []
    for source, text in texts():
        for match in DOTTED_RE.finditer(text):
            dotted = match.group(0).rstrip(".")
            if dotted in loggers or dotted.endswith(FILE_NAME_SUFFIXES) or dotted == "cosfs":
                continue
            if not resolves(dotted):
                missing.append(f"{where(source)}: {dotted}")
    assert not missing, "names that are not in the package:\n" + "\n".join(sorted(set(missing)))


def design_layout() -> list[str]:
    """The module paths of docs/design.md's "Layout" block: `cosfs/x.py` lines and the
    indented `name.py` lines under a `cosfs/package/` line."""
    text = (ROOT / "docs" / "design.md").read_text()
    block = text.split("## Layout", 1)[1].split("```", 2)[1]
    paths, package = [], ""
    for line in block.splitlines():
        top = re.match(r"(cosfs/[\w/]*\w(?:\.py)?/?)\s", line + " ")
        inner = re.match(r"  (\w+\.py)\s", line + " ")
        if top:
            paths.append(top.group(1))
            package = top.group(1) if top.group(1).endswith("/") else ""
        elif inner and package:
            paths.append(package + inner.group(1))
    return paths


def test_design_layout_names_existing_modules() -> None:
    paths = design_layout()
    assert len(paths) > 30, paths
    missing = [path for path in paths if not (ROOT / path).exists()]
    assert not missing, f"docs/design.md's layout names modules that do not exist: {missing}"


def test_server_package_docstring_lists_its_modules() -> None:
    doc = ast.get_docstring(ast.parse((PACKAGE / "server" / "__init__.py").read_text()))
    listed = set(re.findall(r"`(\w+)`", doc.split("Modules", 1)[1].split("\n\n", 2)[1]))
    present = {path.stem for path in (PACKAGE / "server").glob("*.py") if path.stem != "__init__"}
    assert listed == present, (f"listed but missing: {sorted(listed - present)}; "
                               f"present but not listed: {sorted(present - listed)}")


@pytest.mark.parametrize("stale", [
    r"architecture guide",  # the notes speak of this project only
    r"\b64 (descriptors|open block files)",  # blocks.open_block_files_budget: a quarter of RLIMIT_NOFILE
    r"`multireq_max` \(32\)",  # FsConfig.listing_parallel
    r"writeback\.WriteBack|_journal_before_upload",  # cosfs/write/owner.py, and no such method
])
def test_design_notes_carry_no_stale_claims(stale: str) -> None:
    found = re.search(stale, (ROOT / "docs" / "design.md").read_text())
    assert found is None, f"docs/design.md still says {found.group(0)!r}"
