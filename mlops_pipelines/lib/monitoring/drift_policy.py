"""Severity of drift (catalog/drift_policy.yaml): per feature, NORMAL / MODERATE / SEVERE when a statistic is beyond
both its calibrated limit (a quantile of the reference's own windows, ``calibration``) and a practical minimum
(default < group < feature), INSUFFICIENT when the window cannot be judged; per model, from the features and the
views' reconstruction errors weighted by the model's importance, by rules the report spells out."""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, model_validator

from mlops_pipelines.lib.core.config_files import load_yaml_model
from mlops_pipelines.lib.monitoring.concept_drift import PerformancePolicy
from mlops_pipelines.lib.monitoring.drift import CONSTANT, CONSTANT_CHANGED, EMPTY, OK, TOO_FEW
from mlops_pipelines.lib.monitoring.severity import Severity

if TYPE_CHECKING:
    from mlops_pipelines.lib.monitoring import calibration

MULTIVARIATE = "multivariate"  # the kind of a report row holding a view's reconstruction error

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
    """How a model's verdict follows from its features', weighted by the model's importance (gain share)."""

    model_config = ConfigDict(extra="forbid")

    severe_share: float = 0.4  # SEVERE when the SEVERE features carry this share (see ``model_verdict``)
    moderate_share: float = 0.4  # MODERATE likewise for MODERATE-or-worse
    min_judged_share: float = 0.5  # INSUFFICIENT when the features that could be judged carry less than this


class Calibration(BaseModel):
    """Thresholds from the reference's own variability (``calibration``): a statistic is MODERATE / SEVERE beyond
    these quantiles of its null distribution (windows of the current window's length drawn from the reference)
    and beyond the practical minimum (``defaults`` < ``groups`` < ``features``)."""

    model_config = ConfigDict(extra="forbid")

    quantiles: Band = (0.95, 0.99)
    min_windows: float = 5.0  # independent windows of the current window's length the reference must hold
    min_effective_size: float = 30.0  # independent values a window must be worth for its distribution to be judged
    # ... and for its mean level alone (a slow feature worth a few values: judged on its mean only, see
    # ``judge_feature``); at or above ``min_effective_size`` it changes nothing
    min_effective_size_mean: float = 30.0
    min_rows: int = 30  # rows a window must hold for a feature to be compared at all

    @model_validator(mode="after")
    def _in_range(self) -> "Calibration":
        if not 0 < self.quantiles[0] < self.quantiles[1] < 1:
            raise ValueError(f"quantiles: {self.quantiles} must be increasing, strictly between 0 and 1")
        if self.min_effective_size_mean < 1:
            raise ValueError(f"min_effective_size_mean: {self.min_effective_size_mean} must be at least 1")
        return self

    @property
    def min_effective_any(self) -> float:
        """The fewest independent values a window may be worth to be judged at all (on its mean, at least)."""
        return min(self.min_effective_size, self.min_effective_size_mean)


class ReconstructionPolicy(BaseModel):
    """The multivariate signal: per view, the PCA reconstruction error of a window over the reference's."""

    model_config = ConfigDict(extra="forbid")

    variance_explained: float = 0.65  # components kept: the fewest that explain this share of the variance
    min_ratio: Band = (1.1, 1.25)  # practical minimum of the error ratio for MODERATE / SEVERE


class DriftPolicy(BaseModel):
    model_config = ConfigDict(extra="forbid")

    defaults: Thresholds
    groups: dict[str, Group] = {}
    features: dict[str, Thresholds] = {}
    aggregation: Aggregation = Aggregation()
    calibration: Calibration = Calibration()
    reconstruction: ReconstructionPolicy = ReconstructionPolicy()
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
    """Against fixed thresholds (prediction drift): the worst level over the metrics. A column constant in the
    reference that moved (``constant_reference_changed``) is SEVERE whatever the thresholds; one constant at the
    same value in both windows is NORMAL; an empty or too small one is INSUFFICIENT (never NORMAL)."""
    if row["status"] == CONSTANT_CHANGED:
        return Severity.SEVERE
    if row["status"] == CONSTANT:
        return Severity.NORMAL
    if row["status"] != OK:
        return Severity.INSUFFICIENT
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


# The columns a calibrated judgement adds to a report row (stored with the raw statistics).
JUDGEMENT_COLUMNS = (
    "null_windows",
    "n_effective",
    "psi_moderate",
    "psi_severe",
    "mean_shift_moderate",
    "mean_shift_severe",
    "variance_factor_moderate",
    "variance_factor_severe",
    "reason",
)


@dataclass(frozen=True)
class Judgement:
    """One column's verdict, the limits it was judged by (calibrated quantile or practical minimum, whichever is
    higher; NaN where not applicable), and why, in words."""

    severity: Severity
    reason: str
    null_windows: int = 0
    n_effective: float = float("nan")
    limits: dict[str, float] = field(default_factory=dict)

    def columns(self) -> dict[str, object]:
        nan = float("nan")
        return {
            "null_windows": self.null_windows,
            "n_effective": self.n_effective,
            **{k: self.limits.get(k, nan) for k in JUDGEMENT_COLUMNS[2:-1]},
            "reason": self.reason,
        }


def _floor_of_variance(limits: Mapping[str, Any], key: str, ratio: float) -> float | None:
    """A variance-ratio band as a limit on |log ratio|, on the side the ratio moved to."""
    band = limits.get(key)
    if band is None:
        return None
    return float(np.log(band[1]) if ratio >= 1 else -np.log(band[0]))


def _sample_problem(
    row: Mapping[Any, Any], calibrated: "calibration.Thresholds | None", policy: Calibration, window_hours: int
) -> tuple[str, float] | None:
    """Why this column's window cannot be judged (and the effective sample size), or None."""
    n = int(row["n_current"])
    if row["status"] == EMPTY:
        return (f"no values in the current window (no data yet?); needs >= {policy.min_rows} rows", 0.0)
    if row["status"] == TOO_FEW:
        return (f"{n} values in the window; needs >= {policy.min_rows} rows", float(n))
    if calibrated is None or calibrated.windows < 2 or calibrated.independent < policy.min_windows:
        held = 0.0 if calibrated is None else calibrated.independent
        days = np.ceil(policy.min_windows * window_hours / 24)
        return (
            f"the reference holds {held:.1f} windows of {window_hours} h; needs >= {policy.min_windows:g} "
            f"(a reference of >= {days:.0f} days)",
            float("nan"),
        )
    per_row = calibrated.effective_per_row
    n_eff = n * per_row if np.isfinite(per_row) else float(n)
    if n_eff < policy.min_effective_any:
        needs = _rows_needed(policy.min_effective_any, per_row, n)
        return (f"{n} rows worth ~{n_eff:.1f} independent values (autocorrelation, co-movement); needs >= "
                f"{policy.min_effective_any:g}: {needs}", n_eff)  # fmt: skip
    return None


def _rows_needed(values: float, per_row: float, n: int) -> str:
    needed = int(np.ceil(values / per_row))
    return f"about {needed} rows (~{needed / max(n, 1):.1f}x this window's rows: more symbols or a longer window)"


def judge_feature(
    row: Mapping[Any, Any],
    floors: Mapping[str, Any],
    calibrated: "calibration.Thresholds | None",
    policy: Calibration,
    window_hours: int,
) -> Judgement:
    """A column's verdict: each statistic (PSI, |mean shift| in reference SDs, |log variance ratio|) is MODERATE /
    SEVERE when it is beyond both its calibrated limit (the policy's quantile of the reference's own windows) and
    the practical minimum (``floors``); the worst statistic decides. A column flat in the reference that moved is
    SEVERE; one flat at the same value in both windows NORMAL; one that cannot be judged (empty, too few rows,
    too few independent values, too short a reference) INSUFFICIENT, with what would be enough.

    How much a window can say follows its feature: a 1-bar return is worth a value a row, a 120-bar rolling return
    one value every ~100 rows. A window worth fewer than ``min_effective_size`` independent values (but at least
    ``min_effective_size_mean``) is judged on its mean level only: the null of the reference's block means has
    the same autocorrelation, so a level far outside it is a drift however few values made it, while a PSI or a
    variance of two independent values says nothing (the reason says so, and how many rows the rest needs)."""
    windows = 0 if calibrated is None else calibrated.windows
    if row["status"] == CONSTANT_CHANGED:
        return Judgement(Severity.SEVERE, "flat over the reference, moved in the window", windows)
    if row["status"] == CONSTANT:
        return Judgement(Severity.NORMAL, "flat at the same value in both windows", windows)
    problem = _sample_problem(row, calibrated, policy, window_hours)
    if problem is not None or calibrated is None:
        reason, n_eff = problem or ("not calibrated", float("nan"))
        return Judgement(Severity.INSUFFICIENT, reason, windows, n_eff)
    per_row = calibrated.effective_per_row
    n_eff = float(row["n_current"]) * per_row if np.isfinite(per_row) else float("nan")
    mean_only = bool(np.isfinite(n_eff) and n_eff < policy.min_effective_size)
    ratio = float(row["variance_ratio"]) if pd.notna(row["variance_ratio"]) else float("nan")
    checks = [
        ("psi", "psi", float(row["psi"]), calibrated.psi, floors.get("psi")),
        (
            "mean_shift",
            "|mean shift| (SD)",
            abs(float(row["mean_shift_sd"])) if pd.notna(row["mean_shift_sd"]) else float("nan"),
            calibrated.abs_mean_shift_sd,
            floors.get("abs_mean_shift_sd"),
        ),
        (
            "variance_factor",
            "variance ratio",
            abs(float(np.log(ratio))) if ratio > 0 else float("nan"),
            calibrated.abs_log_variance_ratio,
            (
                _floor_of_variance(floors, "variance_ratio_moderate", ratio),
                _floor_of_variance(floors, "variance_ratio_severe", ratio),
            ),
        ),
    ]
    level, reasons, limits = 0, [], {}
    for key, label, value, null, floor in checks:
        for i, name in enumerate(("moderate", "severe")):
            bound = null[i] if floor is None or floor[i] is None else max(null[i], floor[i])
            bound = float(bound) if np.isfinite(bound) else float("nan")
            limits[f"{key}_{name}"] = float(np.exp(bound)) if key == "variance_factor" else bound
        if not np.isfinite(value) or (mean_only and key != "mean_shift"):
            continue
        for code in (2, 1):
            bound = limits[f"{key}_{'severe' if code == 2 else 'moderate'}"]
            bound = float(np.log(bound)) if key == "variance_factor" else bound
            if np.isfinite(bound) and value > bound:
                shown = f"x{np.exp(value) if ratio >= 1 else np.exp(-value):.2f}" if key == "variance_factor" else ""
                reasons.append(
                    f"{label} {shown or f'{value:.3g}'} > {'SEVERE' if code == 2 else 'MODERATE'} limit "
                    f"{(f'x{np.exp(bound):.2f}') if key == 'variance_factor' else f'{bound:.3g}'}"
                )
                level = max(level, code)
                break
    severity = Severity.of_code(level)
    reason = "; ".join(reasons) if reasons else "every statistic within its limits"
    if mean_only:
        needs = _rows_needed(policy.min_effective_size, per_row, int(row["n_current"]))
        reason = (f"judged on its mean only (~{n_eff:.1f} independent values; PSI and variance need >= "
                  f"{policy.min_effective_size:g}: {needs}): {reason}")  # fmt: skip
    return Judgement(severity, reason, windows, n_eff, limits)


def judge_reconstruction(
    ratio: float, n_current: int, calibrated: "calibration.RatioThresholds", policy: "DriftPolicy"
) -> Judgement:
    """A view's reconstruction-error ratio (window mean over reference mean): MODERATE / SEVERE beyond the
    calibrated quantile of the reference's own windows and the practical minimum (``reconstruction.min_ratio``);
    INSUFFICIENT like a feature when the window or the reference is too small."""
    windows, independent, null = calibrated.windows, calibrated.independent, calibrated.limits
    cal = policy.calibration
    per_row = calibrated.effective_per_row
    n_eff = n_current * per_row if np.isfinite(per_row) else float(n_current)
    if n_current < cal.min_rows:
        reason = f"{n_current} rows in the window; needs >= {cal.min_rows}"
        return Judgement(Severity.INSUFFICIENT, reason, windows, n_eff)
    if windows < 2 or independent < cal.min_windows:
        reason = f"the reference holds {independent:.1f} windows of this length; needs >= {cal.min_windows:g}"
        return Judgement(Severity.INSUFFICIENT, reason, windows, n_eff)
    if n_eff < cal.min_effective_any:  # the window's mean error: a level, judged like a feature's mean
        reason = f"{n_current} rows worth ~{n_eff:.1f} independent values; needs >= {cal.min_effective_any:g}"
        return Judgement(Severity.INSUFFICIENT, reason, windows, n_eff)
    bounds = [max(null[i], policy.reconstruction.min_ratio[i]) for i in (0, 1)]
    level = 2 if ratio > bounds[1] else 1 if ratio > bounds[0] else 0
    reason = (
        f"reconstruction error x{ratio:.3f} the reference's; limits MODERATE x{bounds[0]:.3f}, SEVERE x{bounds[1]:.3f}"
    )
    return Judgement(Severity.of_code(level), reason, windows, n_eff)


Importance = Mapping[str, float] | Sequence[str] | Sequence[Sequence[Any]]


def importance_weights(importance: Importance, features: Sequence[str]) -> dict[str, float]:
    """Each feature's share of the model's importance: from ``{feature: gain}`` or ``[(feature, gain), ...]``
    (the training manifest's ``feature_importance``, either form), gains normalized to sum to 1; from a bare list
    of names, or when every gain is 0, equal shares. Features outside ``features`` are dropped; features the
    importance does not name weigh 0 (the model does not use them: ``sector`` is reported, not weighed)."""
    if isinstance(importance, Mapping):
        pairs = [(str(k), float(v)) for k, v in importance.items()]
    else:
        pairs = [
            (str(item[0]), float(item[1])) if not isinstance(item, str) else (item, float("nan")) for item in importance
        ]
    pairs = [(f, g) for f, g in pairs if f in features]
    gains = np.array([g for _, g in pairs], dtype=float)
    if not pairs:
        return dict.fromkeys(features, 1.0 / len(features)) if features else {}
    if not np.all(np.isfinite(gains)) or gains.sum() <= 0:
        return {f: 1.0 / len(pairs) for f, _ in pairs}
    return {f: float(g / gains.sum()) for f, g in pairs}


def model_verdict(verdicts: pd.DataFrame, policy: "DriftPolicy") -> tuple[Severity, str]:
    """The model's severity from its columns' (``feature``, ``kind``, ``severity``, ``importance``) and the rule
    that decided it, in words. Shares are of the importance the judged features carry (a feature's gain share
    over theirs; a feature INSUFFICIENT in this window is left out, not counted as NORMAL, so the verdict follows
    what the window could judge); a view's reconstruction (``kind == "multivariate"``) weighs what the model's
    features of that view weigh, over the same total.

    - INSUFFICIENT when the features that could be judged carry less than ``min_judged_share`` of the model's;
    - SEVERE when the SEVERE features carry ``severe_share``, or when SEVERE reconstructions carry it and the
      MODERATE-or-worse features carry ``moderate_share`` (the joint signal confirms the marginal ones);
    - MODERATE when the MODERATE-or-worse features carry ``moderate_share``, or SEVERE reconstructions carry
      ``severe_share`` (how the features move together changed, each one alone did not);
    - else NORMAL.

    The multivariate signal escalates and warns but does not retrain alone: each view's reconstruction is one
    more test at the 99th percentile, and alone it would add its false alarms to the features'."""
    agg = policy.aggregation
    features = verdicts[verdicts["kind"] != MULTIVARIATE]
    views = verdicts[verdicts["kind"] == MULTIVARIATE]

    def share(rows: pd.DataFrame, levels: Sequence[Severity]) -> float:
        return float(rows.loc[rows["severity"].isin(list(levels)), "importance"].fillna(0.0).sum())

    def named(rows: pd.DataFrame, level: Severity) -> str:
        top = rows[rows["severity"] == level].sort_values("importance", ascending=False)
        weights = top["importance"].fillna(0) / judged
        listed = ", ".join(f"{f} {w:.0%}" for f, w in zip(top["feature"], weights, strict=True))
        return f" ({listed})" if listed else ""

    judged = share(features, [Severity.NORMAL, Severity.MODERATE, Severity.SEVERE])
    if judged < agg.min_judged_share or judged <= 0:
        missing = features.loc[
            (features["severity"] == Severity.INSUFFICIENT) & (features["importance"].fillna(0) > 0), "feature"
        ].tolist()
        return Severity.INSUFFICIENT, (
            f"INSUFFICIENT: the features that could be judged carry {judged:.0%} of the importance (needs >= "
            f"{agg.min_judged_share:.0%}); not judged: {', '.join(missing) or 'all'} (each feature's reason says "
            "what would be enough)"
        )
    severe = share(features, [Severity.SEVERE]) / judged
    moved = share(features, [Severity.SEVERE, Severity.MODERATE]) / judged
    joint = min(share(views, [Severity.SEVERE]) / judged, 1.0)
    if severe >= agg.severe_share or (joint >= agg.severe_share and moved >= agg.moderate_share):
        level = Severity.SEVERE
    elif moved >= agg.moderate_share or joint >= agg.severe_share:
        level = Severity.MODERATE
    else:
        level = Severity.NORMAL
    return level, (
        f"{level}: SEVERE features carry {severe:.0%}{named(features, Severity.SEVERE)}, MODERATE-or-worse "
        f"{moved:.0%}; SEVERE reconstructions {joint:.0%}{named(views, Severity.SEVERE)}. Rule: SEVERE when SEVERE "
        f"features carry >= {agg.severe_share:.0%}, or SEVERE reconstructions >= {agg.severe_share:.0%} with "
        f"MODERATE-or-worse features >= {agg.moderate_share:.0%}; MODERATE when MODERATE-or-worse features carry "
        f">= {agg.moderate_share:.0%} or SEVERE reconstructions >= {agg.severe_share:.0%}. Shares of the judged "
        f"features' importance ({judged:.0%} of the model's)"
    )
