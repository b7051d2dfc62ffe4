#!/usr/bin/env bash
# Both benchmark tables of the README from one command (as root, after bench/setup.sh): the
# loopback profile, then the wan one (every reply 10 ms late, 50 MB/s per connection), each
# with the peers and raw curl of the same server in the same run. Extra arguments go to both
# runs (--runs 5, --size big=268435456...).
set -euo pipefail
cd "$(dirname "$0")/.."
for profile in loopback wan; do
    .venv/bin/python bench/bench.py --profile "$profile" --readme "$@"
done
