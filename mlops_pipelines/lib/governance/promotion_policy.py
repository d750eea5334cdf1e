"""The promotion policy: thresholds in YAML, merged default < strategy < model < request."""

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mlops_pipelines.lib.core.config_files import PolicyError, first_error, load_yaml_model
from mlops_pipelines.lib.monitoring.severity import Severity


class Thresholds(BaseModel):
    """One layer of thresholds; a key left out inherits, a key set to null is not checked."""

    model_config = ConfigDict(extra="forbid")

    min_sharpe: float | None = None
    max_drawdown: float | None = Field(default=None, ge=0)
    min_hit_rate: float | None = Field(default=None, ge=0, le=1)
    max_rmse_ratio: float | None = Field(default=None, gt=0)
    max_drift_severity: Severity | None = None
    min_test_rows: int | None = Field(default=None, ge=0)
    min_sharpe_excess_vs_buy_and_hold: float | None = None  # holdout backtest: candidate Sharpe - buy-and-hold
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
        merged = self.defaults.model_dump()
        layers = [self.strategies.get(strategy), self.models.get(model)]
        for layer in layers:
            if layer is not None:
                merged.update(layer.model_dump(exclude_unset=True))
        if request:
            try:
                merged.update(Thresholds.model_validate(request).model_dump(exclude_unset=True))
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
    policy_hash: str
    thresholds: dict[str, Any]
    metrics: dict[str, Any] = field(default_factory=dict)  # everything observed, checked or not

    def as_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "policy_hash": self.policy_hash,
            "checks": [c.__dict__ for c in self.checks],
        }

    def failures(self) -> list[str]:
        return [f"{c.name}: observed {c.observed}, threshold {c.threshold}" for c in self.checks if not c.passed]


def evaluate(
    policy: PromotionPolicy,
    *,
    model: str,
    strategy: str,
    metrics: dict[str, Any],
    request: dict[str, Any] | None = None,
) -> PolicyResult:
    """Every non-null threshold against the observed metric; a metric that was not measured fails its check."""
    thresholds = policy.effective(model, strategy, request)
    rules = {
        "min_sharpe": ("sharpe", lambda o, t: o >= t),
        "max_drawdown": ("max_drawdown", lambda o, t: o <= t),
        "min_hit_rate": ("hit_rate", lambda o, t: o >= t),
        "max_rmse_ratio": ("rmse_ratio", lambda o, t: o <= t),
        "max_drift_severity": ("drift_severity", lambda o, t: Severity(o).within(Severity(t))),  # INSUFFICIENT fails
        "min_test_rows": ("test_rows", lambda o, t: o >= t),
        "min_sharpe_excess_vs_buy_and_hold": ("sharpe_excess_vs_buy_and_hold", lambda o, t: o >= t),
        "max_drawdown_excess_vs_champion": ("drawdown_excess_vs_champion", lambda o, t: o <= t),
    }
    checks = []
    for key, threshold in thresholds.items():
        if threshold is None:
            continue
        metric, rule = rules[key]
        observed = metrics.get(metric)
        passed = observed is not None and bool(rule(observed, threshold))
        checks.append(GateCheck(name=key, threshold=threshold, observed=observed, passed=passed))
    return PolicyResult(
        passed=all(c.passed for c in checks),
        checks=tuple(checks),
        policy_hash=policy.digest(),
        thresholds=thresholds,
        metrics=dict(metrics),
    )
