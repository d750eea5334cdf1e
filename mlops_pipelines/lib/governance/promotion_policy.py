"""The promotion policy: thresholds in YAML, merged default < strategy < model < request.

Skill is judged with its uncertainty: the ``*_ci_low`` / ``*_ci_high`` thresholds compare a bound of a metric's
block-bootstrap confidence interval (``lib/core/metrics.py``, ``CI_LEVEL``), strictly (a lower bound must be
*above* its threshold), so a model whose edge the held-out data cannot tell from luck is refused. The drift
check reads ``INSUFFICIENT`` when too little data came after the version's training cutoff to judge it; then
``allow_insufficient_drift`` decides."""

import hashlib
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mlops_pipelines.lib.core.config_files import PolicyError, first_error, load_yaml_model
from mlops_pipelines.lib.monitoring.severity import Severity


class Thresholds(BaseModel):
    """One layer of thresholds; a key left out inherits, a key set to null is not checked."""

    model_config = ConfigDict(extra="forbid")

    min_sharpe: float | None = None  # holdout backtest, after costs
    min_sharpe_ci_low: float | None = None
    max_drawdown: float | None = Field(default=None, ge=0)
    min_hit_rate: float | None = Field(default=None, ge=0, le=1)
    min_auc_ci_low: float | None = Field(default=None, ge=0, le=1)  # test split AUC (classifiers)
    max_rmse_ratio: float | None = Field(default=None, gt=0)
    max_rmse_ratio_ci_high: float | None = Field(default=None, gt=0)  # test split RMSE / persistence RMSE
    # a judged severity (INSUFFICIENT is no limit: ``allow_insufficient_drift`` decides about it)
    max_drift_severity: Literal["NORMAL", "MODERATE", "SEVERE"] | None = None
    allow_insufficient_drift: bool | None = None  # too little data after the training cutoff: pass or fail
    min_test_rows: int | None = Field(default=None, ge=0)
    min_sharpe_excess_vs_buy_and_hold: float | None = None  # holdout backtest: candidate Sharpe - buy-and-hold
    min_sharpe_excess_vs_buy_and_hold_ci_low: float | None = None
    min_sharpe_excess_vs_baseline_ci_low: float | None = None  # vs 24-bar momentum / persistence vol targeting
    min_sharpe_excess_vs_champion_ci_low: float | None = None  # checked only when there is a champion
    max_drawdown_excess_vs_champion: float | None = Field(default=None, ge=0)  # candidate MDD - champion MDD


class PromotionPolicy(BaseModel):
    model_config = ConfigDict(extra="forbid")

    defaults: Thresholds
    strategies: dict[str, Thresholds] = Field(default_factory=dict)
    models: dict[str, Thresholds] = Field(default_factory=dict)

    def digest(self) -> str:
        canonical = json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()

    def effective(self, model: str, strategy: str, request: dict[str, Any] | None = None) -> dict[str, Any]:
        """Merged thresholds, request > model > strategy > default."""
        return merge_layers(self.defaults, [self.strategies.get(strategy), self.models.get(model)], request)


def merge_layers(
    defaults: BaseModel, layers: Sequence[BaseModel | None], request: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The precedence of every policy file: ``defaults`` < each layer in order < the request's overrides. A key a
    layer leaves out inherits; a key a layer sets to null is not checked. The request is validated by the
    defaults' own model (an unknown key or a bad value raises PolicyError naming it)."""
    merged = defaults.model_dump()
    for layer in layers:
        if layer is not None:
            merged.update(layer.model_dump(exclude_unset=True))
    if request:
        try:
            merged.update(type(defaults).model_validate(request).model_dump(exclude_unset=True))
        except ValidationError as exc:
            raise PolicyError(f"request overrides: {first_error(exc)}") from exc
    return merged


def load_policy(path: str | Path) -> PromotionPolicy:
    return load_yaml_model(path, PromotionPolicy)


@dataclass(frozen=True)
class GateCheck:
    name: str
    threshold: Any
    observed: Any
    passed: bool


@dataclass(frozen=True)
class PolicyResult:
    passed: bool
    checks: tuple[GateCheck, ...]
    policy_hash: str  # the policy file's digest and the request overrides: the rules this verdict applied
    thresholds: dict[str, Any]  # effective, after the overrides
    metrics: dict[str, Any] = field(default_factory=dict)  # everything observed, checked or not
    overrides: dict[str, Any] = field(default_factory=dict)  # the request's, as validated

    def as_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "policy_hash": self.policy_hash,
            "checks": [c.__dict__ for c in self.checks],
            "thresholds": self.thresholds,
            "overrides": self.overrides,
        }

    def failures(self) -> list[str]:
        return [f"{c.name}: observed {c.observed}, threshold {c.threshold}" for c in self.checks if not c.passed]


INSUFFICIENT = Severity.INSUFFICIENT  # drift not judged (e.g. too little data after the training cutoff)
_RULES: dict[str, tuple[str, Callable[[Any, Any], bool]]] = {
    "min_sharpe": ("sharpe", lambda o, t: o >= t),
    "min_sharpe_ci_low": ("sharpe_ci_low", lambda o, t: o > t),
    "max_drawdown": ("max_drawdown", lambda o, t: o <= t),
    "min_hit_rate": ("hit_rate", lambda o, t: o >= t),
    "min_auc_ci_low": ("test_auc_ci_low", lambda o, t: o > t),
    "max_rmse_ratio": ("rmse_ratio", lambda o, t: o <= t),
    "max_rmse_ratio_ci_high": ("test_rmse_ratio_ci_high", lambda o, t: o < t),
    "max_drift_severity": ("drift_severity", lambda o, t: Severity(o).within(Severity(t))),  # INSUFFICIENT fails
    "min_test_rows": ("test_rows", lambda o, t: o >= t),
    "min_sharpe_excess_vs_buy_and_hold": ("sharpe_excess_vs_buy_and_hold", lambda o, t: o >= t),
    "min_sharpe_excess_vs_buy_and_hold_ci_low": ("sharpe_excess_vs_buy_and_hold_ci_low", lambda o, t: o > t),
    "min_sharpe_excess_vs_baseline_ci_low": ("sharpe_excess_vs_baseline_ci_low", lambda o, t: o > t),
    "min_sharpe_excess_vs_champion_ci_low": ("sharpe_excess_vs_champion_ci_low", lambda o, t: o > t),
    "max_drawdown_excess_vs_champion": ("drawdown_excess_vs_champion", lambda o, t: o <= t),
}
_ONLY_WITH_CHAMPION = {"min_sharpe_excess_vs_champion_ci_low"}  # no champion: nothing to compare with


def request_digest(policy: PromotionPolicy, overrides: dict[str, Any]) -> str:
    """The hash of the rules a verdict applied: the policy file's digest, and the request overrides when there
    are any (without overrides it is the file's digest, so verdicts under the same file compare)."""
    if not overrides:
        return policy.digest()
    canonical = json.dumps({"policy": policy.digest(), "overrides": overrides}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def evaluate(
    policy: PromotionPolicy,
    *,
    model: str,
    strategy: str,
    metrics: dict[str, Any],
    request: dict[str, Any] | None = None,
) -> PolicyResult:
    """Every non-null threshold against the observed metric; a metric that was not measured (or is NaN) fails its
    check. ``max_drift_severity`` observing ``INSUFFICIENT`` passes only with ``allow_insufficient_drift``."""
    thresholds = policy.effective(model, strategy, request)
    overrides = Thresholds.model_validate(request or {}).model_dump(mode="json", exclude_unset=True)
    checks = []
    for key, threshold in thresholds.items():
        if threshold is None or key == "allow_insufficient_drift":
            continue
        metric, rule = _RULES[key]
        observed = metrics.get(metric)
        if key in _ONLY_WITH_CHAMPION and observed is None:
            continue
        if key == "max_drift_severity" and observed == INSUFFICIENT:
            allowed = bool(thresholds.get("allow_insufficient_drift"))
            label = f"{threshold} ({INSUFFICIENT} {'allowed' if allowed else 'refused'})"
            checks.append(GateCheck(name=key, threshold=label, observed=observed, passed=allowed))
            continue
        measured = observed is not None and not (isinstance(observed, float) and math.isnan(observed))
        passed = measured and bool(rule(observed, threshold))
        checks.append(GateCheck(name=key, threshold=threshold, observed=observed, passed=passed))
    return PolicyResult(
        passed=all(c.passed for c in checks),
        checks=tuple(checks),
        policy_hash=request_digest(policy, overrides),
        thresholds=thresholds,
        metrics=dict(metrics),
        overrides=overrides,
    )
