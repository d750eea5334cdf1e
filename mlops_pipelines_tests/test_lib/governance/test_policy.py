"""Promotion policy: precedence, validation errors naming file/key/reason, evaluation."""

from pathlib import Path

import pytest

from mlops_pipelines.catalog.policies import PROMOTION_POLICY_PATH, load_promotion_policy
from mlops_pipelines.lib.core.config_files import PolicyError
from mlops_pipelines.lib.governance.promotion_policy import PromotionPolicy, evaluate, load_policy

POLICY = PromotionPolicy.model_validate(
    {
        "defaults": {"min_sharpe": 0.5, "max_drawdown": 0.2, "min_hit_rate": 0.52, "max_drift_severity": "MODERATE"},
        "strategies": {"directional": {"min_sharpe": 1.0, "max_drawdown": 0.3}},
        "models": {"special": {"min_sharpe": 2.0}},
    }
)


def test_precedence_request_over_model_over_strategy_over_default() -> None:
    assert POLICY.effective("plain", "other")["min_sharpe"] == 0.5
    assert POLICY.effective("plain", "directional")["min_sharpe"] == 1.0
    assert POLICY.effective("plain", "directional")["min_hit_rate"] == 0.52  # inherited from defaults
    assert POLICY.effective("special", "directional")["min_sharpe"] == 2.0
    assert POLICY.effective("special", "directional")["max_drawdown"] == 0.3
    assert POLICY.effective("special", "directional", {"min_sharpe": 0.1})["min_sharpe"] == 0.1
    assert POLICY.effective("special", "directional", {"min_sharpe": None})["min_sharpe"] is None


def test_evaluate_reports_every_threshold() -> None:
    metrics = {"sharpe": 1.2, "max_drawdown": 0.25, "hit_rate": 0.51, "drift_severity": "NORMAL"}
    result = evaluate(POLICY, model="plain", strategy="directional", metrics=metrics)
    assert not result.passed
    by_name = {c.name: c for c in result.checks}
    assert by_name["min_sharpe"].passed and by_name["max_drawdown"].passed
    assert not by_name["min_hit_rate"].passed and by_name["min_hit_rate"].observed == 0.51
    assert result.failures() == ["min_hit_rate: observed 0.51, threshold 0.52"]
    relaxed = evaluate(POLICY, model="plain", strategy="directional", metrics=metrics, request={"min_hit_rate": 0.5})
    assert relaxed.passed and relaxed.overrides == {"min_hit_rate": 0.5}
    assert relaxed.thresholds["min_hit_rate"] == 0.5 and relaxed.as_dict()["thresholds"]["min_hit_rate"] == 0.5


def test_the_policy_hash_covers_the_request_overrides() -> None:
    """The same file with and without an override: different rules applied, different hashes; the same override
    twice: the same hash; no override: the file's digest."""
    metrics = {"sharpe": 1.2, "max_drawdown": 0.25, "hit_rate": 0.51, "drift_severity": "NORMAL"}

    def verdict(request: dict | None) -> str:
        return evaluate(POLICY, model="plain", strategy="directional", metrics=metrics, request=request).policy_hash

    assert verdict(None) == POLICY.digest()
    assert verdict({"min_hit_rate": 0.5}) != verdict(None)
    assert verdict({"min_hit_rate": 0.5}) == verdict({"min_hit_rate": 0.5})
    assert verdict({"min_hit_rate": 0.5}) != verdict({"min_hit_rate": 0.4})
    assert verdict({"min_hit_rate": None}) != verdict(None)  # disabling a check is an override too


def test_interval_bounds_are_compared_strictly_and_nan_fails() -> None:
    """A lower bound must be above its threshold: an AUC interval touching 0.5 is no evidence of skill; a bound
    that could not be computed (NaN) is a failed check, never a pass."""
    policy = PromotionPolicy.model_validate(
        {"defaults": {"min_auc_ci_low": 0.5, "max_rmse_ratio_ci_high": 1.0, "min_sharpe_excess_vs_baseline_ci_low": 0}}
    )

    def failed(metrics: dict) -> list[str]:
        return [c.name for c in evaluate(policy, model="m", strategy="s", metrics=metrics).checks if not c.passed]

    skilled = {"test_auc_ci_low": 0.51, "test_rmse_ratio_ci_high": 0.9, "sharpe_excess_vs_baseline_ci_low": 0.1}
    assert failed(skilled) == []
    assert failed({**skilled, "test_auc_ci_low": 0.5}) == ["min_auc_ci_low"]
    assert failed({**skilled, "test_rmse_ratio_ci_high": 1.0}) == ["max_rmse_ratio_ci_high"]
    assert failed({**skilled, "sharpe_excess_vs_baseline_ci_low": 0.0}) == ["min_sharpe_excess_vs_baseline_ci_low"]
    assert failed({**skilled, "test_auc_ci_low": float("nan")}) == ["min_auc_ci_low"]


def test_insufficient_drift_is_never_normal_and_the_policy_decides() -> None:
    """Drift that could not be judged (too little data after the training cutoff) is shown as INSUFFICIENT; it
    passes only where the policy allows it, and a measured SEVERE never passes."""
    base = {"defaults": {"max_drift_severity": "MODERATE"}}
    allowed = PromotionPolicy.model_validate({"defaults": {**base["defaults"], "allow_insufficient_drift": True}})
    refused = PromotionPolicy.model_validate(base)
    (check,) = evaluate(allowed, model="m", strategy="s", metrics={"drift_severity": "INSUFFICIENT"}).checks
    assert check.passed and check.observed == "INSUFFICIENT" and "INSUFFICIENT allowed" in str(check.threshold)
    assert not evaluate(refused, model="m", strategy="s", metrics={"drift_severity": "INSUFFICIENT"}).passed
    assert not evaluate(allowed, model="m", strategy="s", metrics={"drift_severity": "SEVERE"}).passed
    assert evaluate(allowed, model="m", strategy="s", metrics={"drift_severity": "NORMAL"}).passed


def test_champion_comparison_is_skipped_without_a_champion() -> None:
    policy = PromotionPolicy.model_validate({"defaults": {"min_sharpe_excess_vs_champion_ci_low": 0.0}})
    assert evaluate(policy, model="m", strategy="s", metrics={}).checks == ()
    with_champion = evaluate(policy, model="m", strategy="s", metrics={"sharpe_excess_vs_champion_ci_low": -0.3})
    assert not with_champion.passed


def test_unmeasured_metric_fails_and_severity_orders() -> None:
    result = evaluate(
        POLICY,
        model="plain",
        strategy="other",
        metrics={"sharpe": 1, "max_drawdown": 0.1, "hit_rate": 0.6, "drift_severity": "SEVERE"},
    )
    assert [c.name for c in result.checks if not c.passed] == ["max_drift_severity"]
    missing = evaluate(POLICY, model="plain", strategy="other", metrics={})
    assert not missing.passed and all(c.observed is None for c in missing.checks)


def test_hash_changes_with_a_threshold() -> None:
    other = POLICY.model_copy(update={"defaults": POLICY.defaults.model_copy(update={"min_sharpe": 0.6})})
    assert (
        other.digest() != POLICY.digest()
        and POLICY.digest() == PromotionPolicy.model_validate(POLICY.model_dump()).digest()
    )


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("defaults:\n  min_hit_rate: 2\n", r"policy.yaml: key 'defaults.min_hit_rate': Input should be less"),
        ("defaults:\n  min_sharp: 1\n", r"policy.yaml: key 'defaults.min_sharp': Extra inputs are not permitted"),
        (
            "defaults: {}\nstrategies:\n  x:\n    max_drift_severity: HUGE\n",
            r"key 'strategies.x.max_drift_severity': Input should be 'NORMAL', 'MODERATE' or 'SEVERE'",
        ),
        ("strategies: {}\n", r"key 'defaults': Field required"),
        ("defaults: [unclosed\n", r"policy.yaml: not valid YAML"),
    ],
)
def test_invalid_files_name_file_key_and_reason(tmp_path: Path, content: str, expected: str) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(content)
    with pytest.raises(PolicyError, match=expected):
        load_policy(path)


def test_request_overrides_are_validated() -> None:
    with pytest.raises(PolicyError, match="request overrides: key 'min_hit_rate'"):
        POLICY.effective("m", "s", {"min_hit_rate": -1})


def test_committed_policy_loads() -> None:
    policy = load_promotion_policy()
    assert PROMOTION_POLICY_PATH.exists()
    assert policy.effective("direction_classifier", "directional")["min_hit_rate"] == 0.5
    assert policy.effective("volatility_forecaster", "risk")["min_sharpe"] is None
    assert policy.effective("direction_classifier", "directional")["min_auc_ci_low"] == 0.5
    assert policy.effective("volatility_forecaster", "risk")["max_rmse_ratio_ci_high"] == 1.0
