#!/usr/bin/env bash
# Installs what cosfs needs on a Debian machine (run as root): apt packages, a virtualenv in
# .venv with the package (editable) and its test extras, and, where no cosfs is installed
# yet, cosfs as a tool (scripts/install.sh). Safe to run again; skips what is present.
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
# type cosfs), and the systemd units run /usr/local/bin/cosfs: those links belong to an
# installed cosfs, never to a clone's .venv (another clone would re-point them, deleting this
# one would leave them dangling). Where none exists yet, scripts/install.sh installs this
# clone's cosfs into /opt/cosfs and links it; links that exist are left as they are.
if [ "$(id -u)" = 0 ]; then
    missing_links=()
    for link in /usr/local/bin/cosfs /sbin/mount.cosfs /sbin/mount.fuse.cosfs; do
        if [ -L "$link" ] && [ ! -e "$link" ]; then
            echo "setup: $link points to $(readlink "$link"), which is gone;" \
                 "bash scripts/install.sh --force installs cosfs in /opt/cosfs and re-points it" >&2
        elif [ ! -e "$link" ]; then
            missing_links+=("$link")
        fi
    done
    if [ ${#missing_links[@]} -gt 0 ]; then
        echo "setup: no ${missing_links[*]}: installing cosfs as a tool (scripts/install.sh)"
        bash scripts/install.sh \
            || echo "setup: scripts/install.sh failed; mount(8) and the systemd units will not find cosfs" >&2
    fi
fi
