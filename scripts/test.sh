#!/usr/bin/env bash
# Sets everything up, then runs the whole test suite (real HTTP, real FUSE mounts).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# Lint and type-check first (seconds): any finding fails the run.
.venv/bin/ruff check cosfs tests bench scripts
.venv/bin/mypy
exec .venv/bin/python -m pytest -n 2 "$@"
