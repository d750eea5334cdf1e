"""The one adapter to Evidently (pinned to 0.7; its API changed across releases).

Evidently renders a browsable HTML drift report on a capped sample; our own statistics
(``lib/monitoring/drift.py``) stay the source of truth, since Evidently is slow on large windows.
"""

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from mlops_pipelines.lib.monitoring.drift import ReferenceProfile


@dataclass(frozen=True)
class EvidentlySummary:
    drifted_columns: float
    drifted_share: float
    column_scores: dict[str, float]  # Evidently's per-column drift score (method depends on the column)
    column_methods: dict[str, str]
    column_drifted: dict[str, bool]  # p-value methods: score < threshold; distances: score >= threshold


def render_drift_report(
    reference: pd.DataFrame, current: pd.DataFrame, *, sample_rows: int = 5000, seed: int = 0
) -> tuple[str, EvidentlySummary]:
    """HTML report and its headline numbers, on at most ``sample_rows`` rows of each window."""
    # imported here: Evidently takes seconds to import, and every process that loads the code location
    # (step workers, run workers, sensors' code servers, the CLI) would pay it at start
    from evidently import Report
    from evidently.presets import DataDriftPreset

    ref = reference.sample(n=min(sample_rows, len(reference)), random_state=seed) if len(reference) else reference
    cur = current.sample(n=min(sample_rows, len(current)), random_state=seed) if len(current) else current
    snapshot = Report([DataDriftPreset()]).run(current_data=cur, reference_data=ref)
    summary = _summary(snapshot.dict())
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "report.html"
        snapshot.save_html(str(path))
        return path.read_text(), summary


def _summary(payload: dict[str, Any]) -> EvidentlySummary:
    count, share = float("nan"), float("nan")
    scores: dict[str, float] = {}
    methods: dict[str, str] = {}
    drifted: dict[str, bool] = {}
    for metric in payload["metrics"]:
        config = metric["config"]
        kind = config.get("type", "")
        if kind.endswith("DriftedColumnsCount"):
            count, share = float(metric["value"]["count"]), float(metric["value"]["share"])
        elif kind.endswith("ValueDrift"):
            column, score, method = config["column"], float(metric["value"]), str(config.get("method", ""))
            scores[column], methods[column] = score, method
            is_p_value = "p_value" in method.replace("-", "_").lower()
            drifted[column] = score < config["threshold"] if is_p_value else score >= config["threshold"]
    return EvidentlySummary(
        drifted_columns=count, drifted_share=share, column_scores=scores, column_methods=methods, column_drifted=drifted
    )


SAMPLE_ROWS = 5000  # rows per window Evidently renders (it is slow on large windows)


def write_html_report(path: Path, reference: ReferenceProfile, current: pd.DataFrame) -> Path:
    """A browsable report of one drift report's windows at ``path`` (the reference as an evenly spread sample)."""
    path.parent.mkdir(parents=True, exist_ok=True)  # an unwritable folder fails before the slow rendering
    html, _ = render_drift_report(reference.sample(SAMPLE_ROWS), current, sample_rows=SAMPLE_ROWS)
    path.write_text(html)
    return path
