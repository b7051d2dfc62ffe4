#!/usr/bin/env bash
# Installs what cosfs needs on a Debian machine (run as root): apt packages, a virtualenv in
# .venv, and the package with its test extras. Safe to run again; skips what is present.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(fuse3 libfuse3-dev pkg-config gcc python3-venv python3-dev
              git sqlite3 rsync tar xz-utils procps attr systemd)
missing=()
for pkg in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "setup: installing apt packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${missing[@]}" >/dev/null
fi

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    echo "setup: creating .venv with $($PYTHON --version)"
    "$PYTHON" -m venv .venv
fi
stamp=.venv/.cosfs-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    echo "setup: installing cosfs and its dependencies into .venv"
    .venv/bin/python -m pip install -q --upgrade pip
    .venv/bin/python -m pip install -q -e '.[test]'
    touch "$stamp"
fi
.venv/bin/python -c "import pyfuse3, trio, httpx, cachetools, anycrc, h11" \
    || { echo "setup: the virtualenv is incomplete" >&2; exit 1; }

# mount(8) runs /sbin/mount.fuse.cosfs for fstab lines of type fuse.cosfs (and mount.cosfs for
# type cosfs) with a fixed PATH, so the helpers are linked where it looks.
if [ "$(id -u)" = 0 ]; then
    ln -sfn "$PWD/.venv/bin/mount.cosfs" /usr/sbin/mount.fuse.cosfs
    ln -sfn "$PWD/.venv/bin/mount.cosfs" /usr/sbin/mount.cosfs
    ln -sfn "$PWD/.venv/bin/cosfs" /usr/local/bin/cosfs
fi
