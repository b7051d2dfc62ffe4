"""The long run of the randomized crash soak (tests/write/soak.py): N rounds per durability
mode against one `cosfs serve`, each round a fresh mount killed at a random moment or at a
crash point, remounted, synced and compared with what its writers were told.

    .venv/bin/python bench/crash_soak.py --rounds 500            # both modes, as root
    .venv/bin/python bench/crash_soak.py --rounds 50 --modes 2   # write_back_delay=2 only
    .venv/bin/python bench/crash_soak.py --seed 1234 --modes 0   # replay one round

Prints one line per round (seed, mode, how it was killed, steps, verdict) and a summary;
exits 1 when any round diverged. Every mount is unmounted and every process it started is
stopped by its PID, also on failure or Ctrl-C.
"""

from __future__ import annotations

import argparse
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from cosfs.crashpoints import STEPS  # noqa: E402
from tests.conftest import start_server  # noqa: E402
from tests.fuse.conftest import start_mount, unmount  # noqa: E402
from tests.write.bucket import Bucket  # noqa: E402
from tests.write.soak import run_round  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=20, help="rounds per mode (default 20)")
    parser.add_argument("--modes", default="0,2", help="write_back_delay values, comma-separated (default 0,2)")
    parser.add_argument("--seed", type=int, help="replay this one round (per mode)")
    parser.add_argument("--keep", action="store_true", help="keep the working directory (logs, caches)")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="cosfs-soak-"))
    server = start_server(workdir / "server-root")
    mounted = []
    totals: dict[str, list[int]] = {}
    diverged = []
    try:
        bucket = Bucket(server)

        def mount(name, *options, env):
            for old in [m for m in mounted if m.path.name == name]:
                unmount(old.path, old.process)
                mounted.remove(old)
            m = start_mount(server, workdir, *options, name=name, env=env)
            mounted.append(m)
            return m

        for mode in args.modes.split(","):
            seeds = [args.seed] if args.seed is not None else [random.randrange(1 << 30) for _ in range(args.rounds)]
            for seed in seeds:
                rng = random.Random(seed)
                crash_at = rng.choice([None, None, *sorted(STEPS)])
                if crash_at is not None:
                    crash_at += f":{rng.randint(1, 6)}"
                started = time.monotonic()
                result = run_round(bucket, mount, seed, mode, crash_at=crash_at)
                for m in list(mounted):
                    unmount(m.path, m.process)
                    mounted.remove(m)
                    shutil.rmtree(m.cache_dir, ignore_errors=True)
                verdict = "ok" if not result.divergences else "DIVERGED: " + "; ".join(result.divergences)
                print(f"seed {seed} {result.mode} killed by {result.crash}: {result.steps} steps, "
                      f"{time.monotonic() - started:.1f} s: {verdict}", flush=True)
                counts = totals.setdefault(result.mode, [0, 0, 0])
                counts[0] += 1
                counts[1] += result.steps
                counts[2] += bool(result.divergences)
                if result.divergences:
                    diverged.append(seed)
    finally:
        for m in mounted:
            unmount(m.path, m.process)
        server.stop()
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    for mode, (rounds, steps, bad) in totals.items():
        print(f"{mode}: {rounds} rounds, {steps} acknowledged steps, {bad} divergence(s)")
    if diverged:
        print("diverging seeds: " + " ".join(map(str, diverged)))
    return 1 if diverged else 0


if __name__ == "__main__":
    sys.exit(main())
