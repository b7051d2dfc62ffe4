#!/usr/bin/env bash
# Both benchmark tables of the README from one command (as root, after bench/setup.sh): the
# loopback profile at the full sizes, then the wan one (every reply 10 ms late, 50 MB/s per
# connection) at the smaller sizes its table states, each with the peers and raw curl of the
# same server in the same run. Extra arguments go to both runs (--runs 5, --size ...; a later
# --size wins).
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/python bench/bench.py --profile loopback --readme "$@"
.venv/bin/python bench/bench.py --profile wan --readme --size big=268435456 --size write=134217728 \
    --size par_file=33554432 --size small=100 --size find=1000 --size find_dirs=20 "$@"
