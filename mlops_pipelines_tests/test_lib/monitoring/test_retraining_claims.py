"""A drift episode's run key is claimed by exactly one of the processes racing for it; a claim whose claimant died
is taken over after its lease, a live one never (real processes, a real directory)."""

import multiprocessing
import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from mlops_pipelines.lib.monitoring.retraining_claims import LEASE, claim

KEY = "retrain:direction_classifier:2026-02-21T00:00:00+00:00"


def _race(directory: str, start_at: float) -> bool:
    time.sleep(max(0.0, start_at - time.time()))  # every process claims at the same instant
    return claim(Path(directory), KEY, datetime.now(UTC))


def test_processes_racing_for_one_episode_claim_it_once(tmp_path: Path) -> None:
    context = multiprocessing.get_context("spawn")
    for attempt in range(3):  # three races, each on a fresh directory
        directory = tmp_path / f"race-{attempt}"
        with context.Pool(8) as pool:
            won = pool.starmap(_race, [(str(directory), time.time() + 2.0)] * 8)
        assert sum(won) == 1, won
        assert len(list(directory.glob("*.claim"))) == 1


def test_a_live_claim_blocks_and_a_stale_one_is_taken_over_once(tmp_path: Path) -> None:
    now = datetime.now(UTC)
    assert claim(tmp_path, KEY, now)
    assert not claim(tmp_path, KEY, now + LEASE - timedelta(seconds=5))  # its claimant may still be requesting
    assert claim(tmp_path, "retrain:volatility_forecaster:2026-02-21T00:00:00+00:00", now)  # another episode
    [path] = [p for p in tmp_path.glob("*.claim") if KEY in p.read_text()]
    stale = time.time() - LEASE.total_seconds() - 60
    os.utime(path, (stale, stale))  # its claimant died before its run appeared
    later = datetime.now(UTC)
    assert claim(tmp_path, KEY, later)  # taken over
    assert not claim(tmp_path, KEY, later)  # and the new claim is live
    assert len(list(tmp_path.glob("*.stale-*"))) == 1  # the old one kept aside, not deleted
