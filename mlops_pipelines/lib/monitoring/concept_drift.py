"""Concept drift: a deployed version's realized quality, once the labels of its past decisions are known,
against the validation metrics it was promoted on. Thresholds live in catalog/drift_policy.yaml (`performance`)."""

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

import duckdb
import lightgbm as lgb
import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, model_validator

from mlops_pipelines.lib.features.feature_views import FeatureCatalog
from mlops_pipelines.lib.monitoring import prediction_log
from mlops_pipelines.lib.monitoring.severity import PerformanceStatus
from mlops_pipelines.lib.training.model_specs import ModelSpec
from mlops_pipelines.lib.training.training import quality_metrics

COLUMNS = ("metric", "realized", "baseline", "compare", "degradation", "status")


class MetricRule(BaseModel):
    """``drop``: validation minus realized (higher is better); ``ratio``: realized over validation (lower is
    better). A degradation at or past ``warning`` / ``critical`` gives that level."""

    model_config = ConfigDict(extra="forbid")

    baseline: str  # the version's MLflow run metric it is compared with
    compare: Literal["drop", "ratio"]
    warning: float
    critical: float

    @model_validator(mode="after")
    def _ordered(self) -> "MetricRule":
        if not self.warning < self.critical:
            raise ValueError(f"warning {self.warning} must be below critical {self.critical}")
        return self


class PerformancePolicy(BaseModel):
    """``window_hours`` is where the labelled window starts; with few symbols it holds fewer than
    ``min_labelled`` decisions, so it doubles until it does, up to ``max_window_hours`` (past that the report is
    INSUFFICIENT and says how long a window would hold enough)."""

    model_config = ConfigDict(extra="forbid")

    window_hours: int = 72
    max_window_hours: int = 720
    min_labelled: int = 200
    max_labelled: int = 200_000  # a deterministic subset beyond this: the metrics' precision does not need more
    auto_demote: bool = False
    metrics: dict[str, MetricRule] = {}

    @model_validator(mode="after")
    def _window_cap(self) -> "PerformancePolicy":
        if not 0 < self.window_hours <= self.max_window_hours:
            raise ValueError(
                f"max_window_hours {self.max_window_hours} must be >= window_hours {self.window_hours} > 0"
            )
        return self

    def window_ladder(self) -> list[int]:
        """The window lengths tried, in hours: ``window_hours``, doubled until ``max_window_hours``."""
        ladder = [self.window_hours]
        while ladder[-1] < self.max_window_hours:
            ladder.append(min(ladder[-1] * 2, self.max_window_hours))
        return ladder


def assess(realized: dict[str, float], baseline: dict[str, float], policy: PerformancePolicy, n: int) -> pd.DataFrame:
    """One row per metric of the policy that the model reports: realized, baseline, degradation, level."""
    rows = []
    for name, rule in policy.metrics.items():
        if name not in realized or rule.baseline not in baseline:
            continue
        value, base = realized[name], baseline[rule.baseline]
        degradation = base - value if rule.compare == "drop" else (value / base if base > 0 else np.nan)
        if n < policy.min_labelled or not np.isfinite(degradation):
            status = PerformanceStatus.INSUFFICIENT  # too few labelled decisions: reported, never an alarm
        else:
            status = PerformanceStatus.of_code(int(degradation >= rule.warning) + int(degradation >= rule.critical))
        rows.append(
            {
                "metric": name,
                "realized": value,
                "baseline": base,
                "compare": rule.compare,
                "degradation": degradation,
                "status": status,
            }
        )
    return pd.DataFrame(rows, columns=list(COLUMNS))


def overall(statuses: pd.Series) -> PerformanceStatus:
    """The worst level over the metrics; INSUFFICIENT when none could be judged."""
    judged = [PerformanceStatus(s) for s in statuses if s != PerformanceStatus.INSUFFICIENT]
    return max(judged, key=lambda s: s.code) if judged else PerformanceStatus.INSUFFICIENT


@dataclass(frozen=True)
class PerformanceReport:
    model: str
    version: str
    window_start: datetime
    window_end: datetime
    n_labelled: int
    table: pd.DataFrame  # COLUMNS
    status: PerformanceStatus
    note: str = ""  # how the window was chosen, or what would be enough (INSUFFICIENT)

    def rows(self, partition_key: str) -> pd.DataFrame:
        """What persists (``model_performance.DDL``): one row per metric, with the window and the verdicts."""
        out = self.table.assign(
            status=self.table["status"].astype(str),
            model=self.model,
            version=self.version,
            partition_key=partition_key,
            window_start=self.window_start,
            window_end=self.window_end,
            n_labelled=self.n_labelled,
            model_status=str(self.status),
        )
        for column in ("window_start", "window_end"):
            out[column] = pd.to_datetime(out[column], utc=True).astype("datetime64[us, UTC]")
        return out


def build_performance_report(
    conn: duckdb.DuckDBPyConnection,
    spec: ModelSpec,
    version: str,
    catalog: FeatureCatalog,
    booster: lgb.Booster,
    baseline: dict[str, float],
    policy: PerformancePolicy,
    *,
    window_end: datetime,
) -> PerformanceReport:
    """The version's decisions whose labels are known at ``window_end``, scored and compared with ``baseline``
    (the version's validation metrics): those of the last ``policy.window_hours``, or of the shortest longer
    window of ``policy.window_ladder()`` holding ``min_labelled`` of them (few symbols make few decisions an
    hour). Past the cap: INSUFFICIENT, and ``note`` says how many were needed and which window would hold them."""
    scored, hours, window_start = pd.DataFrame(), policy.window_hours, window_end
    for hours in policy.window_ladder():
        window_start = window_end - timedelta(hours=hours)
        scored = prediction_log.window_scores(
            conn, spec, version, catalog, booster, window_start, window_end,
            labelled_by=window_end, max_rows=policy.max_labelled,
        )  # fmt: skip
        if len(scored) >= policy.min_labelled:
            break
    note = window_note(len(scored), hours, policy)
    realized = (
        quality_metrics(spec.task, scored["label"].to_numpy(), scored["prediction"].to_numpy()) if len(scored) else {}
    )
    table = assess(realized, baseline, policy, len(scored))
    return PerformanceReport(
        model=spec.name,
        version=version,
        window_start=window_start,
        window_end=window_end,
        n_labelled=len(scored),
        table=table,
        status=overall(table["status"]),
        note=note,
    )


def window_note(n: int, hours: int, policy: PerformancePolicy) -> str:
    """How the labelled window was chosen, for the operator; when it is too small even at the cap, how many
    decisions were needed and how long a window would hold them at this rate."""
    if n >= policy.min_labelled:
        grown = (
            f", grown from {policy.window_hours} h to hold >= {policy.min_labelled}"
            if hours > policy.window_hours
            else ""
        )
        return f"{n} labelled decisions in the last {hours} h{grown}"
    needed = f"a window of ~{int(np.ceil(policy.min_labelled * hours / n))} h at this rate" if n else "labelled data"
    return (
        f"INSUFFICIENT: {n} labelled decisions in the longest window ({hours} h, max_window_hours); needs >= "
        f"{policy.min_labelled}: {needed}, or more symbols"
    )
