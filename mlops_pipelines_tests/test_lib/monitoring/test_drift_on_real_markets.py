"""The calibrated drift monitor on a real market (the S&P 500's daily bars shipped by ``arch``), through the
platform's path at MLOPS_BAR_INTERVAL=1d (benchmarks/drift_on_real_markets.py measures the full history): calm
windows never ask for a retraining; the 2008 crisis does, within weeks."""

from datetime import timedelta
from pathlib import Path

from benchmarks.drift_on_real_markets import CURRENT, D, judge, market_warehouse
from mlops_pipelines.catalog.policies import load_drift_policy_file
from mlops_pipelines.lib.core import warehouse
from mlops_pipelines.lib.monitoring.severity import Severity

LEHMAN = D(2008, 9, 15)


def test_calm_windows_do_not_retrain_and_the_2008_crisis_does(tmp_path: Path) -> None:
    policy = load_drift_policy_file()
    path = market_warehouse("sp500", D(2004, 1, 1), D(2008, 12, 1), tmp_path)
    with warehouse.connect(path, read_only=True) as conn:
        calm = [D(2006, 1, 15) + timedelta(days=60 * i) for i in range(6)]  # through 2006, rolling references
        verdicts = {f"{end:%Y-%m-%d}": judge(conn, policy, end, end - CURRENT) for end in calm}
        assert Severity.SEVERE not in verdicts.values(), verdicts
        assert sum(v.judged for v in verdicts.values()) >= 4, verdicts  # judged, not merely INSUFFICIENT
        # against what a model trained before the crisis saw: SEVERE within 45 days of Lehman's fall
        before = judge(conn, policy, LEHMAN, LEHMAN - CURRENT)
        after = judge(conn, policy, LEHMAN + timedelta(days=45), LEHMAN - CURRENT)
    assert before != Severity.SEVERE and after == Severity.SEVERE, (before, after)


def test_one_index_with_slow_features_is_judged_and_detects_the_2008_crisis(tmp_path: Path) -> None:
    """The NASDAQ Composite: in an 84-day window its slow features (24- to 120-bar rolling values) are worth 1-5
    independent values, which left them, and the model, INSUFFICIENT through 2008. Judged on their mean level
    (and the model on the features that could be judged), calm windows are judged and quiet, and Lehman's fall
    is SEVERE within 45 days."""
    policy = load_drift_policy_file()
    path = market_warehouse("nasdaq", D(2004, 1, 1), D(2008, 12, 1), tmp_path)
    with warehouse.connect(path, read_only=True) as conn:
        calm = [D(2006, 1, 15) + timedelta(days=60 * i) for i in range(6)]
        verdicts = {f"{end:%Y-%m-%d}": judge(conn, policy, end, end - CURRENT) for end in calm}
        assert all(v in (Severity.NORMAL, Severity.MODERATE) for v in verdicts.values()), verdicts
        before = judge(conn, policy, LEHMAN, LEHMAN - CURRENT)
        after = judge(conn, policy, LEHMAN + timedelta(days=45), LEHMAN - CURRENT)
    assert before == Severity.NORMAL and after == Severity.SEVERE, (before, after)
