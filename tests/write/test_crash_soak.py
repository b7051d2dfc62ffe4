"""A short run of the randomized crash soak (tests/write/soak.py) in both durability modes:
random writers, the daemon killed at a random moment or at a crash point, remount, sync, and
the bucket compared with what was acknowledged. bench/crash_soak.py runs it long.

COSFS_SOAK_SEED=N replays one round (the failure message names its seed)."""

from __future__ import annotations

import os
import random

import pytest

from cosfs.crashpoints import STEPS
from tests.write.bucket import Bucket
from tests.write.soak import run_round

ROUNDS = 3  # per mode


def seeds() -> list[int]:
    if os.environ.get("COSFS_SOAK_SEED"):
        return [int(os.environ["COSFS_SOAK_SEED"])]
    return [random.randrange(1 << 30) for _ in range(ROUNDS)]


@pytest.mark.slow
@pytest.mark.parametrize("delay", ["0", "2"])
def test_random_crashes_lose_nothing_acknowledged(delay, cos_server, mount_factory, expect_log):
    expect_log(r"^WARNING cosfs\.", required=False, why="recovery after a kill logs what it finishes")
    expect_log(r"^ERROR cosfs\.", required=False, why="a kill mid-upload may leave a failed upload to retry")
    bucket = Bucket(cos_server)

    def mount(name, *options, env):
        return mount_factory(cos_server, *options, name=name, env=env)

    failures = []
    for seed in seeds():
        rng = random.Random(seed)
        crash_at = rng.choice([None, None, *sorted(STEPS)])
        if crash_at is not None:
            crash_at += f":{rng.randint(1, 6)}"
        result = run_round(bucket, mount, seed, delay, crash_at=crash_at)
        if result.divergences:
            failures.append(f"seed {seed} ({result.mode}, killed by {result.crash}, {result.steps} steps): "
                            + "; ".join(result.divergences))
    assert not failures, "\n".join(failures)
