#!/usr/bin/env bash
# Sets everything up, then runs the whole test suite (real HTTP, real FUSE mounts).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# Lint first (a few seconds): any finding fails the run. (mypy joins once cosfs/ is clean.)
.venv/bin/ruff check cosfs tests bench scripts
exec .venv/bin/python -m pytest -n 2 "$@"
