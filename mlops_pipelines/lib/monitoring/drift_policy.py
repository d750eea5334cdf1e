"""Severity of drift: NORMAL / MODERATE / SEVERE per feature from effect-size thresholds
(catalog/drift_policy.yaml, default < group < feature), and per model by a documented aggregation."""

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
from pydantic import BaseModel, ConfigDict, model_validator

from mlops_pipelines.lib.core.config_files import load_yaml_model
from mlops_pipelines.lib.monitoring.concept_drift import PerformancePolicy
from mlops_pipelines.lib.monitoring.drift import COMPARED, CONSTANT_CHANGED, OK
from mlops_pipelines.lib.monitoring.severity import Severity

Band = tuple[float, float]


class Thresholds(BaseModel):
    model_config = ConfigDict(extra="forbid")

    psi: Band | None = None
    abs_mean_shift_sd: Band | None = None
    variance_ratio_moderate: Band | None = None
    variance_ratio_severe: Band | None = None

    @model_validator(mode="after")
    def _ordered(self) -> "Thresholds":
        for name in ("psi", "abs_mean_shift_sd", "variance_ratio_moderate", "variance_ratio_severe"):
            band = getattr(self, name)
            if band is not None and not band[0] < band[1]:
                raise ValueError(f"{name}: {band[0]} must be below {band[1]}")
        return self


class Group(Thresholds):
    """Thresholds shared by a group of features: the views tagged ``drift_group: <name>`` and the features
    listed in ``members`` (a member listed here wins over its view's tag)."""

    members: list[str] = []


class Aggregation(BaseModel):
    model_config = ConfigDict(extra="forbid")

    top_features: int = 3
    severe_share: float = 0.2
    moderate_share: float = 0.2


class DriftPolicy(BaseModel):
    model_config = ConfigDict(extra="forbid")

    defaults: Thresholds
    groups: dict[str, Group] = {}
    features: dict[str, Thresholds] = {}
    aggregation: Aggregation = Aggregation()
    performance: PerformancePolicy = PerformancePolicy()
    predictions: dict[str, Thresholds] = {}  # per model, over ``defaults``: the deployed version's outputs

    @model_validator(mode="after")
    def _one_group_per_feature(self) -> "DriftPolicy":
        seen: dict[str, str] = {}
        for name, group in self.groups.items():
            for member in group.members:
                if member in seen:
                    raise ValueError(f"feature {member!r} is a member of both {seen[member]!r} and {name!r}")
                seen[member] = name
        return self

    def group_of(self, feature: str, view_group: str | None) -> str | None:
        return next((name for name, g in self.groups.items() if feature in g.members), view_group)

    def thresholds(self, feature: str, view_group: str | None) -> dict[str, Any]:
        """default < group (listed membership, else the view's tag) < feature."""
        merged = self.defaults.model_dump()
        for layer in (self.groups.get(self.group_of(feature, view_group) or ""), self.features.get(feature)):
            if layer is not None:
                merged.update(layer.model_dump(exclude_unset=True, exclude={"members"}))
        return merged

    def prediction_thresholds(self, model: str) -> dict[str, Any]:
        """default < the model's ``predictions`` entry: what its outputs' drift is judged by."""
        override = self.predictions.get(model)
        return {**self.defaults.model_dump(), **(override.model_dump(exclude_unset=True) if override else {})}


def load_drift_policy(path: str | Path) -> DriftPolicy:
    return load_yaml_model(path, DriftPolicy)


def feature_severity(row: Mapping[Any, Any], limits: Mapping[str, Any]) -> Severity:
    """Worst level over the metrics; a column that could not be compared (empty, tiny, constant at the same value
    in both windows) is NORMAL, one constant in the reference that moved (``constant_reference_changed``) is
    SEVERE whatever the thresholds: a feature flat in training that moves in production."""
    if row["status"] == CONSTANT_CHANGED:
        return Severity.SEVERE
    if row["status"] != OK:
        return Severity.NORMAL
    level = 0
    for metric, value in (("psi", row["psi"]), ("abs_mean_shift_sd", abs(row["mean_shift_sd"]))):
        band = limits.get(metric)
        if band is not None and pd.notna(value):
            level = max(level, 2 if value >= band[1] else 1 if value >= band[0] else 0)
    ratio = row["variance_ratio"]
    if pd.notna(ratio):
        for severity, key in ((2, "variance_ratio_severe"), (1, "variance_ratio_moderate")):
            band = limits.get(key)
            if band is not None and not band[0] <= ratio <= band[1]:
                level = max(level, severity)
                break
    return Severity.of_code(level)


def classify(stats: pd.DataFrame, policy: DriftPolicy, groups: Mapping[str, str | None]) -> pd.Series:
    return pd.Series(
        [
            feature_severity(row, policy.thresholds(row["feature"], groups.get(row["feature"])))
            for row in stats.to_dict("records")
        ],
        index=stats.index,
        name="severity",
    )


def comparable_severities(stats: pd.DataFrame) -> dict[str, str]:
    """Feature -> severity of the features that could be compared (status ok or constant_reference_changed). An
    empty, tiny or unchanged constant column says nothing about drift: counted as NORMAL it would dilute the
    share of drifted features."""
    usable = stats[stats["status"].isin(COMPARED)]
    return dict(zip(usable["feature"], usable["severity"], strict=True))


def model_severity(severities: Mapping[str, str], importance_order: Sequence[str], policy: DriftPolicy) -> Severity:
    """SEVERE when one of the ``top_features`` by importance is SEVERE or the share of SEVERE features reaches
    ``severe_share``; MODERATE when a top feature is MODERATE or the share of MODERATE-or-worse features reaches
    ``moderate_share``; else NORMAL."""
    if not severities:
        return Severity.NORMAL
    agg = policy.aggregation
    top = [severities[f] for f in importance_order if f in severities][: agg.top_features]
    n = len(severities)
    severe = sum(s == Severity.SEVERE for s in severities.values()) / n
    if Severity.SEVERE in top or severe >= agg.severe_share:
        return Severity.SEVERE
    moved = sum(s != Severity.NORMAL for s in severities.values()) / n
    if any(s != Severity.NORMAL for s in top) or moved >= agg.moderate_share:
        return Severity.MODERATE
    return Severity.NORMAL
