"""Shadow scoring off the response path: the challenger's predictions of the requests the champion answered.

A request with shadow on hands a job (a function that scores the request's items with the challenger and returns
the prediction-log entries, role ``shadow``) to ``ShadowScorer.submit``, which only puts it on a bounded queue
and returns: the response never waits for the challenger. One worker thread runs the jobs in order and appends
their entries to the prediction log. A job that fails (the challenger raises, its features are stale) is counted
and logged as a warning and never reaches the response, which was sent already. When the queue is full (the
challenger slower than the traffic), the job is dropped, counted and logged: shadow is a sample then, never a
brake on serving. The counts are in ``GET /api/v1/models/{model}/status``.
"""

import logging
import queue
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from mlops_pipelines.lib.monitoring.served_predictions import PredictionLogWriter, Served

log = logging.getLogger(__name__)
ShadowJob = Callable[[], Iterable[Served]]


@dataclass
class ShadowCounts:
    """Jobs since the process started: ``submitted`` = ``scored`` + ``failed`` + ``dropped`` + still queued."""

    submitted: int = 0
    scored: int = 0
    failed: int = 0
    dropped: int = 0


class ShadowScorer:
    """A bounded queue of shadow jobs and the one thread that runs them; ``stop`` finishes the queued ones."""

    def __init__(self, log_writer: PredictionLogWriter, *, capacity: int = 1000) -> None:
        self._log = log_writer
        self._queue: queue.Queue[ShadowJob | None] = queue.Queue(maxsize=capacity)
        self.counts = ShadowCounts()
        self._counts_lock = threading.Lock()
        self._thread = threading.Thread(target=self._work, name="shadow-scorer", daemon=True)
        self._thread.start()

    def submit(self, job: ShadowJob) -> bool:
        """Queue ``job`` without waiting; False (and counted as dropped) when the queue is full."""
        with self._counts_lock:
            self.counts.submitted += 1
        try:
            self._queue.put_nowait(job)
            return True
        except queue.Full:
            with self._counts_lock:
                self.counts.dropped += 1
            log.warning("shadow: queue full (%d jobs), a request's shadow scoring was dropped", self._queue.maxsize)
            return False

    def _work(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            try:
                self._log.append(list(job()))
                outcome = "scored"
            except Exception as exc:  # the response went out already; the failure is counted and logged
                outcome = "failed"
                log.warning("shadow: the challenger could not score a request: %s: %s", type(exc).__name__, exc)
            with self._counts_lock:
                setattr(self.counts, outcome, getattr(self.counts, outcome) + 1)

    def stop(self, timeout_s: float = 30.0) -> None:
        """Run what is queued, then end the worker (waiting at most ``timeout_s``)."""
        try:
            self._queue.put(None, timeout=timeout_s)
        except queue.Full:
            log.warning("shadow: could not stop the worker in %.0f s; queued jobs are dropped", timeout_s)
            return
        self._thread.join(timeout=timeout_s)
