"""What one hourly monitoring run works on: the versions it watches, the hour's windows and the files it keeps.

Which versions are deployed is a governance question (the lifecycle answers it from the audit log); the
composition lives in ``lib/governance/monitored_versions.py``, so this domain stays below governance."""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import lightgbm as lgb

from mlops_pipelines.lib.training.model_specs import ModelSpec


@dataclass(frozen=True)
class DeployedVersion:
    """A version monitoring watches: the model's production version, else its staging one (``alias``)."""

    spec: ModelSpec
    version: str
    alias: str  # "production" or "staging"
    run_id: str  # the MLflow run that trained it ("" when unknown): feature importance, validation metrics

    @property
    def name(self) -> str:
        return self.spec.name


# The one way monitoring gets a version's model: verified (governance record, feature graph, artifact hash).
LoadBooster = Callable[[DeployedVersion], lgb.Booster]


@dataclass(frozen=True)
class HourlyWindow:
    """One hourly partition (UTC). The current window is the ``current`` before ``end``; the reference window the
    ``reference`` before the current window's first UTC day (so the 24 runs of a day share it)."""

    partition_key: str
    end: datetime
    current: timedelta = timedelta(hours=24)
    reference: timedelta = timedelta(days=30)
    max_reference_rows: int = 50_000  # reference decisions scored for prediction drift (a deterministic subset)

    @property
    def episode(self) -> str:
        """Alerts of one model and kind are one episode per UTC day (deduplicated by the alerter)."""
        return self.end.date().isoformat()


@dataclass(frozen=True)
class MonitoringFiles:
    """The files monitoring keeps outside the warehouse."""

    status_file: Path  # latest verdict per model and signal, read by the retraining sensor (drift_status.py)
    reference_profiles: Path  # cached reference profiles, one folder per view table (reference_profiles.py)
    evidently_reports: Path  # browsable Evidently HTML per model and partition

    def evidently_report(self, model: str, partition_key: str) -> Path:
        return self.evidently_reports / model / f"{partition_key}.html"
