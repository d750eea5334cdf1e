"""A drift episode's run key is claimed by exactly one of the processes racing for it; a claim whose claimant died
is taken over after its lease, a live one never (real processes, a real directory)."""

import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from mlops_pipelines.lib.monitoring.retraining_claims import LEASE, claim
from mlops_pipelines_tests.conftest import CEILING_S

KEY = "retrain:direction_classifier:2026-02-21T00:00:00+00:00"


RACER = """
import sys, time
from datetime import UTC, datetime
from pathlib import Path
from mlops_pipelines.lib.monitoring.retraining_claims import claim
time.sleep(max(0.0, float(sys.argv[2]) - time.time()))  # every process claims at the same instant
print(claim(Path(sys.argv[1]), sys.argv[3], datetime.now(UTC)))
"""


def test_processes_racing_for_one_episode_claim_it_once(tmp_path: Path) -> None:
    for attempt in range(3):  # three races, each on a fresh directory
        directory = tmp_path / f"race-{attempt}"
        start_at = str(time.time() + 3.0)  # after every interpreter has started
        racers = [
            subprocess.Popen(
                [sys.executable, "-c", RACER, str(directory), start_at, KEY], stdout=subprocess.PIPE, text=True
            )
            for _ in range(8)
        ]
        won = [racer.communicate(timeout=CEILING_S)[0].strip() for racer in racers]
        assert all(racer.returncode == 0 for racer in racers)
        assert won.count("True") == 1 and won.count("False") == 7, won
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
