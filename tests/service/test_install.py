"""cosfs installs like a tool: the wheel built from this checkout works in a fresh virtualenv
(its console scripts `cosfs` and `mount.cosfs` included), and scripts/install.sh puts it in a
virtualenv of its own with links into that virtualenv, refusing links that point elsewhere.

No network: the wheel is built without build isolation (setuptools comes with the test
extras), and the fresh virtualenvs take the dependencies from this checkout's virtualenv (its
site-packages appended to their path: after their own, so `cosfs` is the wheel's; a path in
a .pth file adds no further .pth files, so an editable cosfs there stays out)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
INSTALL = ROOT / "scripts" / "install.sh"
OFFLINE = {**os.environ, "PIP_NO_INDEX": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}


def run(*argv: str | Path, ok: bool = True, **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=120, env=OFFLINE,
                            **kwargs)
    if ok:
        assert result.returncode == 0, f"{argv}: exit {result.returncode}\n{result.stdout}{result.stderr}"
    return result


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel of this checkout, built from a copy of what it holds (the checkout gets no
    build/ directory)."""
    source = tmp_path_factory.mktemp("source")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(ROOT / "cosfs", source / "cosfs", ignore=shutil.ignore_patterns("__pycache__"))
    dist = tmp_path_factory.mktemp("dist")
    run(sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "--wheel-dir", dist, source)
    (built,) = dist.glob("cosfs-*.whl")
    return built


def fresh_venv(path: Path, *, with_pip: bool = False) -> Path:
    run(sys.executable, "-m", "venv", *([] if with_pip else ["--without-pip"]), path)
    python = path / "bin" / "python"
    site = Path(run(python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))").stdout.strip())
    (site / "cosfs-test-dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n")
    return python


def test_wheel_holds_the_package_its_dependencies_and_both_commands(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        (entry_points,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
        scripts = archive.read(entry_points).decode()
        (metadata,) = [n for n in names if n.endswith(".dist-info/METADATA")]
        requires = [line.split(":", 1)[1].strip() for line in archive.read(metadata).decode().splitlines()
                    if line.startswith("Requires-Dist:") and "extra ==" not in line]
    assert {n.split("/")[0] for n in names if not n.startswith("cosfs-")} == {"cosfs"}, names
    assert "cosfs/server/__init__.py" in names and "cosfs/write/owner.py" in names
    assert "cosfs = cosfs.cli:main" in scripts and "mount.cosfs = cosfs.cli:mount_helper_main" in scripts
    assert {r.split(">")[0].split("=")[0].strip() for r in requires} >= {"pyfuse3", "trio", "httpx", "h11", "anycrc"}


def test_wheel_installs_into_a_fresh_virtualenv_with_working_commands(wheel: Path, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    python = fresh_venv(venv)
    run(sys.executable, "-m", "pip", "--python", python, "install", "-q", "--no-deps", wheel)
    where = run(python, "-c", "import cosfs; print(cosfs.__file__)", cwd=tmp_path).stdout.strip()
    assert Path(where).is_relative_to(venv), f"cosfs imported from {where}, not from the wheel"
    version = run(venv / "bin" / "cosfs", "--version").stdout
    assert version.startswith("cosfs V0.1.0"), version
    helper = run(venv / "bin" / "mount.cosfs", "--help").stdout
    assert helper.startswith("usage: cosfs mount") and "-o OPT" in helper, helper
    # mount(8)'s fake mode: the options are checked, nothing is mounted.
    run(venv / "bin" / "mount.cosfs", "examplebucket-1250000000", tmp_path, "-f", "-o", "url=http://127.0.0.1:9")


def test_install_script_links_into_its_own_virtualenv_and_refuses_foreign_links(wheel: Path, tmp_path: Path) -> None:
    prefix = tmp_path / "opt" / "cosfs"
    fresh_venv(prefix, with_pip=True)
    root = tmp_path / "root"
    (root / "sbin").mkdir(parents=True)
    clone_helper = "/srv/old-clone/.venv/bin/mount.cosfs"  # what a clone's setup once linked
    (root / "sbin" / "mount.fuse.cosfs").symlink_to(clone_helper)
    args = ["bash", INSTALL, "--prefix", prefix, "--wheel", wheel, "--no-deps", "--root", root]

    refused = run(*args, ok=False)
    assert refused.returncode == 1
    assert f"{root}/sbin/mount.fuse.cosfs -> {clone_helper}" in refused.stderr and "--force" in refused.stderr
    assert os.readlink(root / "sbin" / "mount.fuse.cosfs") == clone_helper
    assert not (root / "usr" / "local" / "bin" / "cosfs").exists() and not (prefix / "bin" / "cosfs").exists()

    run(*args, "--force")
    links = {"usr/local/bin/cosfs": "cosfs", "sbin/mount.cosfs": "mount.cosfs", "sbin/mount.fuse.cosfs": "mount.cosfs"}
    for link, target in links.items():
        assert os.readlink(root / link) == str(prefix / "bin" / target)
    assert run(root / "usr" / "local" / "bin" / "cosfs", "--version").stdout.startswith("cosfs V0.1.0")
    helper = run(root / "sbin" / "mount.fuse.cosfs", "--help").stdout
    assert helper.startswith("usage: cosfs mount")
    for page in ("man1/cosfs.1", "man8/mount.cosfs.8"):  # the pages generated from the option table
        installed = root / "usr" / "local" / "share" / "man" / page
        assert installed.read_text() == (Path(INSTALL).parent.parent / "docs" / "man" / installed.name).read_text()

    again = run(*args)  # its own links: an upgrade needs no --force
    assert "nothing was changed" not in again.stderr
    assert os.readlink(root / "usr" / "local" / "bin" / "cosfs") == str(prefix / "bin" / "cosfs")
