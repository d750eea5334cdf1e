"""The latest monitoring signals per model (feature drift, prediction drift, performance), as a small JSON file
written atomically by the monitoring assets: ``{model: {signal: {"severity": ..., "window_end": ..., ...}}}``.

Sensors read this file instead of the warehouse: it is tiny, never locked for long, and never half-written (the
new content goes to a temporary file renamed over the old one; writers take a lock so that two assets updating
different signals do not lose each other's entry).
"""

import fcntl
import json
import os
import tempfile
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from mlops_pipelines.lib.monitoring.severity import PerformanceStatus, Severity


class Signal(StrEnum):
    """What a status entry judges; its ``severity`` is a ``Severity`` (drift) or a ``PerformanceStatus``."""

    FEATURE_DRIFT = "feature_drift"
    PREDICTION_DRIFT = "prediction_drift"
    PERFORMANCE = "performance"


def read_status(path: str | Path) -> dict[str, dict[str, dict[str, Any]]]:
    path = Path(path)
    if not path.exists():
        return {}
    return json.loads(path.read_text())


NOT_JUDGED = {str(Severity.INSUFFICIENT), str(PerformanceStatus.INSUFFICIENT)}


def update_status(path: str | Path, model: str, signal: str, entry: dict[str, Any]) -> bool:
    """Replace one signal of one model, unless the stored entry is of a later window (a backfill of an old hour
    must not hide today's SEVERE from the sensor), or the new entry is INSUFFICIENT and the stored one a verdict
    (a window too small to judge, or an hour with no data yet, says nothing: the last verdict stands); every
    other entry is kept. Returns whether it was written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        status = read_status(path)
        stored = status.get(model, {}).get(signal)
        if stored and datetime.fromisoformat(stored["window_end"]) > datetime.fromisoformat(entry["window_end"]):
            return False
        if stored and entry.get("severity") in NOT_JUDGED and stored.get("severity") not in NOT_JUDGED:
            return False
        status.setdefault(model, {})[signal] = entry
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".drift_status.", suffix=".json")
        with os.fdopen(fd, "w") as handle:
            json.dump(status, handle, indent=2, sort_keys=True)
        os.replace(tmp, path)
    return True


def record_verdict(
    path: str | Path,
    model: str,
    signal: Signal,
    *,
    version: str,
    severity: Severity | PerformanceStatus,
    window_end: datetime,
    partition_key: str,
) -> bool:
    """One monitoring run's verdict on one model (see ``update_status``)."""
    entry = {
        "version": version,
        "severity": str(severity),
        "window_end": window_end.isoformat(),
        "partition_key": partition_key,
    }
    return update_status(path, model, signal, entry)
