"""Re-ingested bars: unchanged ones keep their arrival time, revisions carry theirs, nothing is lost."""

from datetime import UTC, datetime, timedelta

import pandas as pd

from mlops_pipelines.lib.ingestion.revisions import reconcile
from mlops_pipelines.lib.ingestion.synthetic_market import SyntheticMarketConfig, generate_bars
from mlops_pipelines.lib.ingestion.validation import validate_bars

DAY = datetime(2026, 1, 5, tzinfo=UTC)
NOW = datetime(2026, 3, 1, tzinfo=UTC)


def day_of_bars() -> pd.DataFrame:
    raw = generate_bars(SyntheticMarketConfig(n_symbols=3, regime_shift_at=None), DAY, DAY + timedelta(days=1))
    return validate_bars(raw).accepted


def test_the_same_bars_again_change_nothing() -> None:
    stored = day_of_bars()
    again = stored.assign(available_at=stored["available_at"] + timedelta(minutes=7), source_file="again.csv")
    result = reconcile(stored, again, now=NOW)
    pd.testing.assert_frame_equal(result.bars, stored.sort_values(["symbol", "timestamp"]).reset_index(drop=True))
    assert result.superseded.empty and result.revised == result.withdrawn == 0


def test_first_load_takes_the_bars_as_given() -> None:
    incoming = day_of_bars()
    result = reconcile(incoming.head(0), incoming, now=NOW)
    assert len(result.bars) == len(incoming) and result.superseded.empty


def test_a_revision_carries_its_arrival_time_and_the_old_version_is_kept() -> None:
    stored = day_of_bars()
    incoming = stored.copy()
    incoming.loc[4, "close"] = incoming.loc[4, "close"] * 1.01
    incoming.loc[4, "high"] = max(incoming.loc[4, "high"], incoming.loc[4, "close"])
    incoming.loc[9, "volume"] = incoming.loc[9, "volume"] + 1
    incoming.loc[9, "available_at"] = NOW + timedelta(hours=2)  # the source says it arrived later still
    incoming["source_file"] = "fix.csv"
    result = reconcile(stored, incoming, now=NOW)

    bars = result.bars.set_index(["symbol", "timestamp"])
    key4, key9 = (tuple(stored.loc[i, ["symbol", "timestamp"]]) for i in (4, 9))
    assert bars.loc[key4, "close"] == incoming.loc[4, "close"] and bars.loc[key4, "available_at"] == NOW
    assert bars.loc[key9, "available_at"] == NOW + timedelta(hours=2)
    untouched = ~bars.index.isin([key4, key9])
    original = stored.set_index(["symbol", "timestamp"]).loc[bars.index[untouched]]
    assert (bars.loc[untouched, "available_at"] == original["available_at"]).all()
    assert (bars.loc[untouched, "source_file"] == original["source_file"]).all()

    old = result.superseded.set_index(["symbol", "timestamp"])
    assert result.revised == 2 and result.withdrawn == 0
    assert old.loc[key4, "close"] == stored.loc[4, "close"]  # the value served before the fix
    assert old.loc[key4, "available_at"] == stored.loc[4, "available_at"]
    assert set(old["reason"]) == {"revised"} and set(old["superseded_by"]) == {"fix.csv"}
    assert (old["superseded_at"] == NOW).all()


def test_a_bar_gone_from_the_source_is_withdrawn_and_kept() -> None:
    stored = day_of_bars()
    result = reconcile(stored, stored.drop(index=[0, 1]), now=NOW)
    assert len(result.bars) == len(stored) - 2
    assert result.withdrawn == 2 and result.superseded["superseded_by"].isna().all()
    pd.testing.assert_series_equal(
        result.superseded["close"], stored.loc[[0, 1], "close"].reset_index(drop=True), check_names=False
    )


def test_bars_of_a_file_that_cannot_be_read_now_are_kept_not_withdrawn() -> None:
    stored = day_of_bars().assign(source_file=lambda f: ["corrupt.csv" if i < 5 else "good.csv" for i in range(len(f))])
    incoming = stored.iloc[5:].copy()  # the corrupt file delivered nothing this time
    result = reconcile(stored, incoming, now=NOW, unreadable_files=["corrupt.csv"])
    assert result.superseded.empty and len(result.bars) == len(stored)
    # placebo: without the file named unreadable, its bars are withdrawn (kept in the revisions table)
    assert reconcile(stored, incoming, now=NOW).withdrawn == 5
