"""Drift statistics against scipy and straightforward reference implementations, and their edge cases."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from mlops_pipelines.catalog.models import MODEL_SPECS
from mlops_pipelines.catalog.policies import load_drift_policy_file
from mlops_pipelines.lib.core.config_files import PolicyError
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
    DriftPolicy,
    classify,
    comparable_severities,
    feature_severity,
    load_drift_policy,
    model_severity,
)


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
        ([np.nan] * 50, EMPTY, "NORMAL"),  # nothing to compare with: not drift
        ([np.nan] * 45 + [3.0] * 5, TOO_FEW, "NORMAL"),
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


def test_a_constant_reference_that_moves_counts_in_the_model_severity() -> None:
    ref = pd.DataFrame({f"f{i}": np.arange(100.0) for i in range(4)} | {"flat": [0.0] * 100})
    cur = pd.DataFrame({f"f{i}": np.arange(50.0) * 2 for i in range(4)} | {"flat": np.linspace(-1, 1, 50)})
    stats_ = numeric_drift(ref, cur, list(ref.columns))
    stats_["severity"] = classify(stats_, POLICY, {})
    severities = comparable_severities(stats_)
    assert severities["flat"] == "SEVERE" and len(severities) == 5
    assert model_severity(severities, [], POLICY) == "SEVERE"  # 1 of 5 features: the 20% share
    placebo = numeric_drift(ref, cur.assign(flat=0.0), list(ref.columns))
    placebo["severity"] = classify(placebo, POLICY, {})
    assert "flat" not in comparable_severities(placebo)


def stat_row(psi: float = 0.0, shift: float = 0.0, ratio: float = 1.0, status: str = OK) -> dict[str, object]:
    return {"feature": "x", "status": status, "psi": psi, "mean_shift_sd": shift, "variance_ratio": ratio}


@pytest.mark.parametrize(
    ("row", "group", "expected"),
    [
        (stat_row(), None, "NORMAL"),
        (stat_row(psi=0.1), None, "MODERATE"),  # bands are inclusive at the lower edge
        (stat_row(psi=0.3), None, "SEVERE"),
        (stat_row(shift=-0.7), None, "MODERATE"),  # absolute shift
        (stat_row(ratio=1.3), None, "MODERATE"),
        (stat_row(ratio=0.4), None, "SEVERE"),
        (stat_row(psi=0.3, shift=1.5, ratio=1.9), "level", "MODERATE"),  # level features: wider bands
        (stat_row(psi=9.0, status=CONSTANT), None, "NORMAL"),  # never drift when not comparable
    ],
)
def test_feature_severity(row: dict[str, object], group: str | None, expected: str) -> None:
    assert feature_severity(row, POLICY.thresholds("x", group)) == expected


def test_feature_override_beats_group_and_default() -> None:
    policy = DriftPolicy.model_validate({**POLICY.model_dump(), "features": {"x": {"psi": [0.5, 0.9]}}})
    assert policy.thresholds("x", "level")["psi"] == (0.5, 0.9)
    assert policy.thresholds("x", "level")["abs_mean_shift_sd"] == (1.5, 2.0)  # still the group's
    frame = pd.DataFrame([stat_row(psi=0.6)])
    assert classify(frame, policy, {"x": None}).tolist() == ["MODERATE"]


def test_prediction_thresholds_are_per_model_over_the_defaults() -> None:
    assert set(POLICY.predictions) <= set(MODEL_SPECS), "a predictions entry names no model of the catalog"
    policy = DriftPolicy.model_validate({**POLICY.model_dump(), "predictions": {"m": {"psi": [0.5, 0.9]}}})
    assert policy.prediction_thresholds("m")["psi"] == (0.5, 0.9)
    assert policy.prediction_thresholds("m")["abs_mean_shift_sd"] == POLICY.defaults.abs_mean_shift_sd
    assert policy.prediction_thresholds("other") == POLICY.defaults.model_dump()
    row = stat_row(psi=0.6)
    assert [feature_severity(row, policy.prediction_thresholds(m)) for m in ("m", "other")] == ["MODERATE", "SEVERE"]


def test_model_aggregation() -> None:
    order = ["a", "b", "c", "d", "e", "f", "g", "h", "i", "j"]
    normal = dict.fromkeys(order, "NORMAL")
    assert model_severity(normal, order, POLICY) == "NORMAL"
    assert model_severity({**normal, "b": "SEVERE"}, order, POLICY) == "SEVERE"  # a top-3 feature
    assert model_severity({**normal, "c": "MODERATE"}, order, POLICY) == "MODERATE"  # a top-3 feature
    assert model_severity({**normal, "j": "SEVERE"}, order, POLICY) == "NORMAL"  # 10% of the features, not top-3
    assert model_severity({**normal, "i": "MODERATE", "j": "SEVERE"}, order, POLICY) == "MODERATE"  # 20% >= 0.2
    assert model_severity({**normal, "i": "MODERATE", "j": "MODERATE"}, order, POLICY) == "MODERATE"
    assert model_severity({**normal, "i": "SEVERE", "j": "SEVERE"}, order, POLICY) == "SEVERE"  # 20% SEVERE
    assert model_severity({}, order, POLICY) == "NORMAL"


def test_features_that_could_not_be_compared_do_not_dilute_the_model_severity() -> None:
    rows = [stat_row(status="empty") for _ in range(5)] + [stat_row() for _ in range(4)] + [stat_row(psi=0.5)]
    stats = pd.DataFrame(rows).assign(feature=[f"f{i}" for i in range(10)])
    stats["severity"] = classify(stats, POLICY, {})
    severities = comparable_severities(stats)
    assert sorted(severities) == [f"f{i}" for i in range(5, 10)]
    assert model_severity(severities, [], POLICY) == "SEVERE"  # 1 of 5 comparable features: the 20% share
    assert model_severity(dict(zip(stats["feature"], stats["severity"], strict=True)), [], POLICY) == "NORMAL"


def test_group_membership_beats_the_view_tag_and_is_unique() -> None:
    assert POLICY.group_of("ret_120b", None) == "slow"
    assert POLICY.group_of("ret_120b", "level") == "slow"  # listed membership wins over the view's tag
    assert POLICY.group_of("rvol_24b", "level") == "level"
    assert POLICY.thresholds("ret_120b", None)["psi"] == tuple(POLICY.groups["slow"].psi or ())
    raw = POLICY.model_dump()
    raw["groups"]["level"]["members"] = ["ret_1b"]
    with pytest.raises(ValueError, match="'ret_1b' is a member of both 'returns' and 'level'"):
        DriftPolicy.model_validate(raw)


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
