#!/usr/bin/env bash
# Sets everything up, starts `cosfs serve` (a COS-compatible server on loopback, backed by
# files under .demo/), puts a file in its bucket, mounts the bucket with cosfs and shows the
# file through the mount. Interactive: stays mounted until Ctrl-C. Without a terminal it
# cleans up at once. Everything it started is stopped by PID, and the mount is unmounted.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

DEMO=$PWD/.demo
BUCKET=examplebucket-1250000000
MNT=$DEMO/mnt
umask 077
mkdir -p "$DEMO" "$MNT"
SECRET_ID=AKIDdemo$(head -c 8 /dev/urandom | od -An -tx1 | tr -d ' \n')
SECRET_KEY=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')

# The key goes through the environment, never the command line (which `ps` shows to everyone).
COSFS_SERVE_SECRET_KEY=$SECRET_KEY .venv/bin/cosfs serve --root "$DEMO/root" --address 127.0.0.1:0 \
    --bucket "$BUCKET" --secret-id "$SECRET_ID" --access-log "$DEMO/access.log" > "$DEMO/serve.out" &
SERVER_PID=$!
cleanup() {
    if grep -qs " $MNT " /proc/mounts; then .venv/bin/cosfs umount "$MNT" || fusermount3 -uz "$MNT"; fi
    kill "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
}
trap cleanup EXIT
for _ in $(seq 100); do grep -qx ready "$DEMO/serve.out" 2>/dev/null && break; sleep 0.1; done
ENDPOINT=$(sed -n 's/^endpoint: //p' "$DEMO/serve.out")
echo "cosfs serve: $ENDPOINT, bucket $BUCKET (files under $DEMO/root)"

printf '%s:%s:%s\n' "$BUCKET" "$SECRET_ID" "$SECRET_KEY" > "$DEMO/passwd-cosfs"

# Put a file into the bucket through the COS client, as any COS tool would.
COSFS_SERVE_SECRET_KEY=$SECRET_KEY .venv/bin/python - "$ENDPOINT" "$BUCKET" "$SECRET_ID" <<'EOF'
import os, sys, trio
from cosfs.config import CosConfig
from cosfs.cos.auth import Credentials
from cosfs.cos.client import CosClient
from cosfs.credentials import StaticCredentials

endpoint, bucket, secret_id = sys.argv[1:]
secret_key = os.environ["COSFS_SERVE_SECRET_KEY"]

async def main():
    config = CosConfig(bucket=bucket, endpoint_url=endpoint)
    async with CosClient(config, StaticCredentials(Credentials(secret_id, secret_key))) as client:
        await client.put_object("hello/world.txt", b"Hello from a COS bucket, read through cosfs.\n")

trio.run(main)
EOF

.venv/bin/cosfs mount "$BUCKET" "$MNT" -o "url=$ENDPOINT,passwd_file=$DEMO/passwd-cosfs,cache_dir=$DEMO/cache"
echo "mounted on $MNT:"
ls -lR "$MNT"
echo "--- $MNT/hello/world.txt:"
cat "$MNT/hello/world.txt"
if [ -t 0 ]; then
    echo "The bucket stays mounted on $MNT; press Ctrl-C to unmount and stop the server."
    while true; do sleep 3600; done
fi
