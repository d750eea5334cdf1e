"""Drift statistics against scipy and straightforward reference implementations, and their edge cases."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from mlops_pipelines.catalog.models import MODEL_SPECS
from mlops_pipelines.catalog.policies import load_drift_policy_file
from mlops_pipelines.lib.core.config_files import PolicyError
from mlops_pipelines.lib.monitoring.calibration import Thresholds
from mlops_pipelines.lib.monitoring.drift import (
    CONSTANT,
    CONSTANT_CHANGED,
    EMPTY,
    OK,
    TOO_FEW,
    ReferenceProfile,
    categorical_drift,
    compare,
    ks_statistic,
    numeric_drift,
)
from mlops_pipelines.lib.monitoring.drift_policy import (
    MULTIVARIATE,
    Calibration,
    DriftPolicy,
    feature_severity,
    importance_weights,
    judge_feature,
    load_drift_policy,
    model_verdict,
)
from mlops_pipelines.lib.monitoring.severity import Severity


def naive_psi(reference: np.ndarray, current: np.ndarray, bins: int = 10) -> float:
    """PSI written out: decile edges of the reference, shares per bin, floor 1e-4, sum (c - r) ln(c / r)."""
    edges = np.unique(np.quantile(reference, [i / bins for i in range(1, bins)]))
    total = 0.0
    for low, high in zip([-np.inf, *edges], [*edges, np.inf], strict=True):
        r = max(
            np.mean((reference >= low) & (reference < high)) if np.isfinite(low) else np.mean(reference < high), 1e-4
        )
        c = max(np.mean((current >= low) & (current < high)) if np.isfinite(low) else np.mean(current < high), 1e-4)
        total += (c - r) * np.log(c / r)
    return total


@pytest.mark.parametrize("seed", range(5))
def test_numeric_statistics_match_references(seed: int) -> None:
    rng = np.random.default_rng(seed)
    ref = pd.DataFrame({"a": rng.normal(0, 1, 3000), "b": rng.exponential(1, 3000)})
    cur = pd.DataFrame({"a": rng.normal(0.3 * seed / 4, 1.2, 800), "b": rng.exponential(1 + seed / 10, 800)})
    cur.loc[cur.index[:40], "a"] = np.nan  # missing values are counted, not compared
    out = numeric_drift(ref, cur, ["a", "b"]).set_index("feature")
    for column in ("a", "b"):
        r, c = ref[column].dropna().to_numpy(), cur[column].dropna().to_numpy()
        expected = stats.ks_2samp(r, c, method="asymp")
        assert out.loc[column, "ks_statistic"] == pytest.approx(expected.statistic, abs=1e-12)
        assert out.loc[column, "ks_pvalue"] == pytest.approx(expected.pvalue, abs=1e-9)
        assert out.loc[column, "psi"] == pytest.approx(naive_psi(r, c), abs=1e-12)
        assert out.loc[column, "mean_shift_sd"] == pytest.approx((c.mean() - r.mean()) / r.std(ddof=1))
        assert out.loc[column, "variance_ratio"] == pytest.approx(c.var(ddof=1) / r.var(ddof=1))
        assert out.loc[column, "status"] == OK
    assert out.loc["a", "missing_share_current"] == pytest.approx(40 / 800)


def test_shift_is_seen_and_no_shift_is_small() -> None:
    rng = np.random.default_rng(1)
    ref = pd.DataFrame({"x": rng.normal(size=20_000)})
    same = numeric_drift(ref, pd.DataFrame({"x": rng.normal(size=5_000)}), ["x"]).iloc[0]
    shifted = numeric_drift(ref, pd.DataFrame({"x": rng.normal(1.0, 2.0, 5_000)}), ["x"]).iloc[0]
    assert same["psi"] < 0.02 and abs(same["mean_shift_sd"]) < 0.05
    assert shifted["psi"] > 0.5 and shifted["mean_shift_sd"] > 0.9 and shifted["variance_ratio"] > 3.5


def test_edge_cases_are_reported_never_as_drift() -> None:
    ref = pd.DataFrame(
        {"empty": [np.nan] * 100, "constant": [1.0] * 100, "fine": np.arange(100.0), "tiny": np.arange(100.0)}
    )
    cur = pd.DataFrame(
        {"empty": [np.nan] * 50, "constant": [1.0] * 50, "fine": np.arange(50.0), "tiny": [np.nan] * 45 + [1.0] * 5}
    )  # "constant": flat at the same value in both windows (flat at another value is drift: test below)
    out = numeric_drift(ref, cur, list(ref.columns)).set_index("feature")
    assert out["status"].to_dict() == {"empty": EMPTY, "constant": CONSTANT, "fine": OK, "tiny": TOO_FEW}
    assert out.loc[["empty", "constant", "tiny"], ["psi", "ks_statistic", "mean_shift_sd"]].isna().all().all()
    empty_window = numeric_drift(ref, cur.iloc[:0], ["fine"]).iloc[0]
    assert empty_window["status"] == EMPTY and np.isnan(empty_window["missing_share_current"])


def test_categorical_psi_chi2_and_unseen_categories() -> None:
    ref = pd.DataFrame({"sector": ["tech"] * 500 + ["energy"] * 300 + ["utilities"] * 200})
    cur = pd.DataFrame({"sector": ["tech"] * 100 + ["energy"] * 60 + ["crypto"] * 40})  # a category never seen
    row = categorical_drift(ref, cur, ["sector"]).iloc[0]
    categories = ["crypto", "energy", "tech", "utilities"]
    r = np.clip(np.array([0, 300, 500, 200]) / 1000, 1e-4, None)
    c = np.clip(np.array([40, 60, 100, 0]) / 200, 1e-4, None)
    assert row["psi"] == pytest.approx(np.sum((c - r) * np.log(c / r)))
    expected = stats.chisquare([40, 60, 100, 0], r / r.sum() * 200)
    assert row["chi2_statistic"] == pytest.approx(expected.statistic) and row["chi2_pvalue"] == pytest.approx(
        expected.pvalue
    )
    assert len(categories) == 4 and row["status"] == OK
    steady = categorical_drift(ref, ref.sample(frac=0.3, random_state=0), ["sector"]).iloc[0]
    assert steady["psi"] < 0.01
    constant = categorical_drift(pd.DataFrame({"s": ["a"] * 50}), pd.DataFrame({"s": ["a"] * 40}), ["s"]).iloc[0]
    assert constant["status"] == CONSTANT


POLICY = load_drift_policy_file()


@pytest.mark.parametrize(
    ("current", "status", "severity"),
    [
        (np.linspace(0.0, 2.0, 50), CONSTANT_CHANGED, "SEVERE"),  # flat in training, moving now
        ([5.0] * 50, CONSTANT_CHANGED, "SEVERE"),  # flat in both, at another level
        ([1.0] * 48 + [1.5, 0.5], CONSTANT_CHANGED, "SEVERE"),  # a few values off the reference's one
        ([1.0] * 50, CONSTANT, "NORMAL"),  # placebo: flat at the same value, nothing moved
        ([np.nan] * 50, EMPTY, "INSUFFICIENT"),  # nothing to compare with: not drift, and not NORMAL either
        ([np.nan] * 45 + [3.0] * 5, TOO_FEW, "INSUFFICIENT"),
    ],
)
def test_a_constant_reference_that_moves_is_reported_as_drift(current: list[float], status: str, severity: str) -> None:
    ref = pd.DataFrame({"x": [1.0] * 100})
    row = numeric_drift(ref, pd.DataFrame({"x": current}), ["x"]).iloc[0]
    assert row["status"] == status
    # the strictest thresholds of the policy do not matter: the status decides
    lax = {"psi": (1e9, 2e9), "abs_mean_shift_sd": None, "variance_ratio_moderate": None, "variance_ratio_severe": None}
    for limits in (POLICY.thresholds("x", None), lax):
        assert feature_severity(row, limits) == severity
    if status == CONSTANT_CHANGED:  # the statistics that stay defined with no spread in the reference
        values = np.asarray(current)
        assert row["ks_statistic"] == pytest.approx(stats.ks_2samp(ref["x"], values).statistic)
        assert row["psi"] > 0 and np.isnan(row["mean_shift_sd"]) and np.isnan(row["variance_ratio"])


def test_a_constant_category_that_changes_is_reported_as_drift() -> None:
    ref = pd.DataFrame({"venue": ["XNAS"] * 60})
    moved = categorical_drift(ref, pd.DataFrame({"venue": ["XNAS"] * 35 + ["XNYS"] * 5}), ["venue"]).iloc[0]
    same = categorical_drift(ref, pd.DataFrame({"venue": ["XNAS"] * 40}), ["venue"]).iloc[0]
    assert (moved["status"], feature_severity(moved, POLICY.defaults.model_dump())) == (CONSTANT_CHANGED, "SEVERE")
    assert (same["status"], feature_severity(same, POLICY.defaults.model_dump())) == (CONSTANT, "NORMAL")


def stat_row(psi: float = 0.0, shift: float = 0.0, ratio: float = 1.0, status: str = OK, n: int = 500):
    return {
        "feature": "x",
        "status": status,
        "psi": psi,
        "mean_shift_sd": shift,
        "variance_ratio": ratio,
        "n_current": n,
    }


@pytest.mark.parametrize(
    ("row", "expected"),
    [
        (stat_row(), "NORMAL"),
        (stat_row(psi=0.1), "MODERATE"),  # bands are inclusive at the lower edge
        (stat_row(psi=0.3), "SEVERE"),
        (stat_row(shift=-0.7), "SEVERE"),  # absolute shift
        (stat_row(ratio=1.3), "MODERATE"),
        (stat_row(ratio=0.4), "SEVERE"),
        (stat_row(psi=9.0, status=CONSTANT), "NORMAL"),  # flat at the same value in both windows: nothing moved
        (stat_row(psi=9.0, status=EMPTY), "INSUFFICIENT"),  # an empty window is never NORMAL
        (stat_row(psi=9.0, status=TOO_FEW), "INSUFFICIENT"),
    ],
)
def test_feature_severity_against_fixed_thresholds(row: dict[str, object], expected: str) -> None:
    """Prediction drift's path: fixed thresholds per model (``predictions``)."""
    assert feature_severity(row, POLICY.thresholds("x", None)) == expected


# A feature whose reference windows of this length move little: calibrated limits below the practical minimum.
NARROW = Thresholds(697, 30.0, 0.5, psi=(0.02, 0.04), abs_mean_shift_sd=(0.1, 0.2), abs_log_variance_ratio=(0.1, 0.2))
# One whose windows move a lot (a slow rolling feature): calibrated limits far above the practical minimum.
WIDE = Thresholds(697, 30.0, 0.02, psi=(1.0, 2.0), abs_mean_shift_sd=(1.5, 2.5), abs_log_variance_ratio=(1.0, 1.6))


@pytest.mark.parametrize(
    ("row", "limits", "expected"),
    [
        (stat_row(psi=0.05), NARROW, "NORMAL"),  # beyond the calibrated SEVERE limit, below the practical minimum
        (stat_row(psi=0.12), NARROW, "MODERATE"),
        (stat_row(psi=0.3, shift=0.6, ratio=2.5), NARROW, "SEVERE"),
        (stat_row(psi=0.9, shift=1.0, ratio=2.5, n=5000), WIDE, "NORMAL"),  # the usual day of a slow feature
        (stat_row(psi=1.5, n=5000), WIDE, "MODERATE"),
        (stat_row(psi=0.5, shift=3.0, n=5000), WIDE, "SEVERE"),
        (stat_row(ratio=6.0, n=5000), WIDE, "SEVERE"),  # |log 6| = 1.79 > 1.6
        (stat_row(psi=9.0, shift=9.0), None, "INSUFFICIENT"),  # no null distribution (no hourly profile)
        (stat_row(psi=9.0, shift=9.0, n=50), WIDE, "INSUFFICIENT"),  # 50 rows worth 1 independent value
        # 200 rows worth 4 independent values: judged on the mean only (the PSI of 4 values says nothing)
        (stat_row(psi=9.0, shift=1.0, ratio=9.0, n=200), WIDE, "NORMAL"),
        (stat_row(psi=0.5, shift=3.0, n=200), WIDE, "SEVERE"),
        (stat_row(psi=9.0, status=CONSTANT_CHANGED), WIDE, "SEVERE"),
    ],
)
def test_calibrated_feature_severity(row: dict[str, object], limits: Thresholds | None, expected: str) -> None:
    """Beyond both the calibrated limit and the practical minimum; INSUFFICIENT when the window is worth too
    few independent values, with what would be enough."""
    verdict = judge_feature(row, POLICY.thresholds("x", None), limits, POLICY.calibration, 24)
    assert verdict.severity == expected, verdict.reason
    if expected == "INSUFFICIENT" and limits is WIDE:
        assert "needs >= 2: about 100 rows" in verdict.reason
    if limits is WIDE and row["n_current"] == 200:
        assert verdict.reason.startswith("judged on its mean only (~4.0 independent values; PSI and variance need")
        assert ">= 5: about 250 rows" in verdict.reason
    if expected in ("NORMAL", "MODERATE", "SEVERE") and row["status"] == OK:
        assert verdict.null_windows == 697 and verdict.limits["psi_severe"] == max(limits.psi[1], 0.25)


def test_a_reference_holding_too_few_windows_is_insufficient() -> None:
    short = Thresholds(73, 4.0, 0.5, psi=(0.1, 0.2), abs_mean_shift_sd=(0.1, 0.2), abs_log_variance_ratio=(0.1, 0.2))
    verdict = judge_feature(stat_row(psi=5.0), POLICY.thresholds("x", None), short, Calibration(), 24)
    assert verdict.severity == "INSUFFICIENT" and "a reference of >= 5 days" in verdict.reason


def test_feature_override_beats_group_and_default() -> None:
    raw = {**POLICY.model_dump(), "groups": {"level": {"psi": [0.3, 0.6], "abs_mean_shift_sd": [1.5, 2.0]}}}
    policy = DriftPolicy.model_validate({**raw, "features": {"x": {"psi": [0.5, 0.9]}}})
    assert policy.thresholds("x", "level")["psi"] == (0.5, 0.9)
    assert policy.thresholds("x", "level")["abs_mean_shift_sd"] == (1.5, 2.0)  # still the group's
    assert policy.thresholds("y", "level")["psi"] == (0.3, 0.6)
    assert feature_severity(stat_row(psi=0.6), policy.thresholds("x", None)) == "MODERATE"


def test_prediction_thresholds_are_per_model_over_the_defaults() -> None:
    assert set(POLICY.predictions) <= set(MODEL_SPECS), "a predictions entry names no model of the catalog"
    policy = DriftPolicy.model_validate({**POLICY.model_dump(), "predictions": {"m": {"psi": [0.5, 0.9]}}})
    assert policy.prediction_thresholds("m")["psi"] == (0.5, 0.9)
    assert policy.prediction_thresholds("m")["abs_mean_shift_sd"] == POLICY.defaults.abs_mean_shift_sd
    assert policy.prediction_thresholds("other") == POLICY.defaults.model_dump()
    row = stat_row(psi=0.6)
    assert [feature_severity(row, policy.prediction_thresholds(m)) for m in ("m", "other")] == ["MODERATE", "SEVERE"]


def test_importance_weights_read_every_form_of_the_manifest() -> None:
    features = ["a", "b", "c", "d"]
    gains = {"b": 6.0, "a": 3.0, "c": 1.0, "d": 0.0}
    expected = {"b": 0.6, "a": 0.3, "c": 0.1, "d": 0.0}
    assert importance_weights(gains, features) == pytest.approx(expected)
    assert importance_weights(list(gains.items()), features) == pytest.approx(expected)  # pairs in gain order
    assert importance_weights([list(p) for p in gains.items()], features) == pytest.approx(expected)  # JSON pairs
    assert importance_weights(["b", "a"], features) == {"b": 0.5, "a": 0.5}  # names only: equal shares
    assert importance_weights([], features) == dict.fromkeys(features, 0.25)
    assert importance_weights({"a": 0.0, "b": 0.0}, features) == {"a": 0.5, "b": 0.5}
    assert importance_weights({**gains, "sector": 5.0}, features) == pytest.approx(expected)  # not a model feature


def verdict_frame(severities: dict[str, str], weights: dict[str, float], views: dict[str, tuple[str, float]]):
    rows = [{"feature": f, "kind": "numeric", "severity": s, "importance": weights[f]} for f, s in severities.items()]
    rows += [{"feature": f"reconstruction:{v}", "kind": MULTIVARIATE, "severity": s, "importance": w}
             for v, (s, w) in views.items()]  # fmt: skip
    return pd.DataFrame(rows)


def test_model_verdict_weighs_features_by_importance_and_says_why() -> None:
    weights = {"a": 0.45, "b": 0.2, "c": 0.15, "d": 0.1, "e": 0.1}
    normal = dict.fromkeys(weights, "NORMAL")
    quiet = {"v": ("NORMAL", 1.0)}

    def verdict(severities: dict[str, str], views: dict[str, tuple[str, float]] = quiet) -> Severity:
        return model_verdict(verdict_frame({**normal, **severities}, weights, views), POLICY)[0]

    assert verdict({}) == "NORMAL"
    assert verdict({"a": "SEVERE"}) == "SEVERE"  # the top feature carries 45% >= 40%
    assert verdict({"d": "SEVERE", "e": "SEVERE"}) == "NORMAL"  # two minor features: 20%
    assert verdict({"b": "SEVERE", "c": "SEVERE", "d": "SEVERE"}) == "SEVERE"  # 45%
    assert verdict({"b": "SEVERE", "c": "MODERATE", "d": "MODERATE"}) == "MODERATE"  # 20% SEVERE, 45% moved
    # the joint signal warns alone, and confirms moved features
    assert verdict({}, {"v": ("SEVERE", 1.0)}) == "MODERATE"
    assert verdict({"b": "MODERATE", "c": "MODERATE", "d": "MODERATE"}, {"v": ("SEVERE", 1.0)}) == "SEVERE"
    assert verdict({"b": "MODERATE", "c": "MODERATE", "d": "MODERATE"}, {"v": ("SEVERE", 0.3)}) == "MODERATE"
    level, rule = model_verdict(verdict_frame({**normal, "a": "SEVERE"}, weights, quiet), POLICY)
    assert (
        level == "SEVERE"
        and rule.startswith("SEVERE: SEVERE features carry 45% (a 45%)")
        and "Rule: SEVERE when" in rule
    )


def test_features_that_could_not_be_judged_make_the_model_insufficient_not_normal() -> None:
    weights = {"a": 0.45, "b": 0.2, "c": 0.15, "d": 0.1, "e": 0.1}
    frame = verdict_frame({"a": "INSUFFICIENT", "b": "INSUFFICIENT", "c": "NORMAL", "d": "NORMAL", "e": "NORMAL"},
                          weights, {})  # fmt: skip
    level, rule = model_verdict(frame, POLICY)
    assert level == "INSUFFICIENT" and "carry 35% of the importance (needs >= 50%)" in rule and "a, b" in rule
    every = verdict_frame(dict.fromkeys(weights, "INSUFFICIENT"), weights, {})
    assert model_verdict(every, POLICY)[0] == "INSUFFICIENT"  # an empty window: never NORMAL
    # judged features carrying enough of the importance: a verdict, the others do not dilute it
    frame = verdict_frame({"a": "SEVERE", "b": "INSUFFICIENT", "c": "NORMAL", "d": "NORMAL", "e": "NORMAL"},
                          weights, {})  # fmt: skip
    assert model_verdict(frame, POLICY)[0] == "SEVERE"


def test_the_verdict_follows_the_judged_features_not_the_ones_the_window_could_not_judge() -> None:
    """Shares are of what could be judged: the top feature not judgeable in this window (a slow one), two
    judged features carrying 35% of the model's 55% SEVERE: SEVERE (an INSUFFICIENT feature is no NORMAL one)."""
    weights = {"a": 0.45, "b": 0.2, "c": 0.15, "d": 0.1, "e": 0.1}
    frame = verdict_frame({"a": "INSUFFICIENT", "b": "SEVERE", "c": "SEVERE", "d": "NORMAL", "e": "NORMAL"},
                          weights, {})  # fmt: skip
    level, rule = model_verdict(frame, POLICY)
    assert level == "SEVERE" and rule.startswith("SEVERE: SEVERE features carry 64% (b 36%, c 27%)"), rule
    assert "Shares of the judged features' importance (55% of the model's)" in rule
    frame = verdict_frame({"a": "INSUFFICIENT", "b": "SEVERE", "c": "NORMAL", "d": "NORMAL", "e": "NORMAL"},
                          weights, {})  # fmt: skip
    assert model_verdict(frame, POLICY)[0] == "NORMAL"  # 20% of 55% = 36% < 40%


def test_insufficient_is_no_verdict() -> None:
    assert Severity.of_code(-1) is Severity.INSUFFICIENT and Severity.INSUFFICIENT.code == -1
    assert [s.code for s in (Severity.NORMAL, Severity.MODERATE, Severity.SEVERE)] == [0, 1, 2]
    assert Severity.NORMAL.within(Severity.MODERATE) and not Severity.SEVERE.within(Severity.MODERATE)
    assert not Severity.INSUFFICIENT.within(Severity.SEVERE)  # fails any max_drift_severity


def test_the_catalog_policy_has_no_group_overlap() -> None:
    raw = {**POLICY.model_dump(), "groups": {"a": {"members": ["ret_1b"]}, "b": {"members": ["ret_1b"]}}}
    with pytest.raises(ValueError, match="'ret_1b' is a member of both 'a' and 'b'"):
        DriftPolicy.model_validate(raw)
    raw = {**POLICY.model_dump(), "groups": {"slow": {"members": ["ret_120b"], "psi": [0.5, 1.5]}}}
    policy = DriftPolicy.model_validate(raw)
    assert policy.group_of("ret_120b", "level") == "slow"  # listed membership wins over the view's tag
    assert policy.group_of("rvol_24b", "level") == "level"


def test_invalid_drift_policy_names_file_and_key(tmp_path: Path) -> None:
    path = tmp_path / "drift.yaml"
    path.write_text("defaults:\n  psi: [0.3, 0.1]\n")
    with pytest.raises(PolicyError, match=r"drift.yaml: key 'defaults': .*psi: 0.3 must be below 0.1"):
        load_drift_policy(path)


def test_ks_with_many_ties_matches_scipy() -> None:
    rng = np.random.default_rng(9)
    ref = pd.DataFrame({"x": rng.integers(0, 12, 3000).astype(float)})
    cur = pd.DataFrame({"x": rng.integers(1, 12, 900).astype(float)})
    row = numeric_drift(ref, cur, ["x"]).iloc[0]
    expected = stats.ks_2samp(ref["x"], cur["x"], method="asymp")
    assert row["ks_statistic"] == pytest.approx(expected.statistic, abs=1e-12)
    assert row["ks_pvalue"] == pytest.approx(expected.pvalue, abs=1e-9)


def test_reference_profile_round_trips_and_gives_the_same_statistics(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    ref = pd.DataFrame({"x": rng.normal(size=5000), "c": rng.choice(["a", "b", "c"], 5000)})
    ref.loc[ref.index[:50], "x"] = np.nan
    cur = pd.DataFrame({"x": rng.normal(0.4, 1.0, 1000), "c": rng.choice(["a", "b", "z"], 1000)})
    profile = ReferenceProfile.of(ref, ["x"], ["c"])
    profile.save(tmp_path / "p.npz")
    loaded = ReferenceProfile.load(tmp_path / "p.npz")
    assert loaded.rows == 5000 and loaded.categorical["c"].to_dict() == profile.categorical["c"].to_dict()
    direct = pd.concat([numeric_drift(ref, cur, ["x"]), categorical_drift(ref, cur, ["c"])], ignore_index=True)
    pd.testing.assert_frame_equal(compare(loaded, cur), direct)
    sample = loaded.sample(500)  # evenly spaced ranks: the sample's deciles are the reference's
    np.testing.assert_allclose(sample["x"].quantile([0.1, 0.5, 0.9]), ref["x"].quantile([0.1, 0.5, 0.9]), atol=0.02)
    assert sample["c"].value_counts(normalize=True).round(1).to_dict() == {"a": 0.3, "b": 0.3, "c": 0.3}


def test_ks_statistic_equals_scipy_on_small_samples_full_of_ties() -> None:
    """The binary-search KS (right and left limits at b's distinct values) against scipy's merge."""
    rng = np.random.default_rng(11)
    for _ in range(300):
        n, m = rng.integers(1, 60, 2)
        a = np.sort(rng.integers(0, 8, n).astype(float))
        b = np.sort(rng.integers(0, 8, m).astype(float))
        assert ks_statistic(a, b) == pytest.approx(stats.ks_2samp(a, b).statistic, abs=1e-12), (a, b)
