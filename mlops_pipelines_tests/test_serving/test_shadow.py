"""Shadow scoring never holds up or fails the response: ``submit`` only queues the job, a slow or failing challenger
job is the worker's problem (counted, logged), a full queue drops (counted), and the jobs that succeed are in the
real prediction log."""

import threading
import time
from pathlib import Path

from mlops_pipelines.lib.monitoring.served_predictions import PredictionLogWriter, Served
from mlops_pipelines.serving.shadow import ShadowScorer
from mlops_pipelines_tests.conftest import wait_until
from mlops_pipelines_tests.test_serving.conftest import served_json


def entry(request_id: str) -> Served:
    return Served(request_id + ":shadow", 0, "m", "2", "challenger", "shadow", "S", None, 0.5, 1.0, "2026-02-14T12:00Z")


def test_a_slow_or_failing_challenger_never_waits_on_the_request_path(tmp_path: Path) -> None:
    log = PredictionLogWriter(tmp_path)
    scorer = ShadowScorer(log, capacity=2)
    release = threading.Event()

    def slow() -> list[Served]:
        release.wait(30)  # a challenger that takes as long as the test wants
        return [entry("slow")]

    def failing() -> list[Served]:
        raise RuntimeError("the challenger broke")

    started = time.perf_counter()
    assert scorer.submit(slow)
    wait_until("the worker took the slow job", lambda: scorer._queue.empty())
    assert scorer.submit(failing) and scorer.submit(lambda: [entry("after")])
    assert not scorer.submit(lambda: [entry("dropped")])  # the queue (2) is full while the slow job runs
    submitting = time.perf_counter() - started
    assert submitting < 2.0, submitting  # four submits never waited for the slow challenger (held 30 s)
    release.set()
    wait_until("every job is done", lambda: scorer.counts.scored + scorer.counts.failed == 3)
    scorer.stop()
    log.close()
    assert scorer.counts.__dict__ == {"submitted": 4, "scored": 2, "failed": 1, "dropped": 1}
    assert [e["request_id"] for e in served_json(tmp_path)] == ["slow:shadow", "after:shadow"]


def test_stop_runs_what_is_queued(tmp_path: Path) -> None:
    log = PredictionLogWriter(tmp_path)
    scorer = ShadowScorer(log)
    for i in range(20):
        scorer.submit(lambda i=i: [entry(f"r{i}")])
    scorer.stop()
    log.close()
    assert len(served_json(tmp_path)) == 20 and scorer.counts.scored == 20
