"""The synthetic market's edge is a real market's: past returns alone predict nothing, a news bar (heavier volume)
predicts its continuation. Measured on the generated bars, against the generator's own parameters."""

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd

from mlops_pipelines.lib.ingestion.synthetic_market import SyntheticMarketConfig, generate_bars

START = datetime(2026, 1, 1, tzinfo=UTC)


def idiosyncratic_moves(config: SyntheticMarketConfig, days: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Each bar's log return less the mean of its sector's (market and sector moves removed), and its volume."""
    bars = generate_bars(config, START, START + timedelta(days=days))
    close = bars.pivot(index="timestamp", columns="symbol", values="close")
    returns = pd.DataFrame(np.log(close / close.shift(1)), index=close.index, columns=close.columns)
    sector = bars.drop_duplicates("symbol").set_index("symbol")["sector"]
    moves = returns - returns.T.groupby(sector).transform("mean").T
    return moves, bars.pivot(index="timestamp", columns="symbol", values="volume")


def next_bar_correlation(moves: pd.DataFrame, where: pd.DataFrame | None = None) -> float:
    now, after = moves.iloc[1:-1].to_numpy(), moves.iloc[2:].to_numpy()
    keep = np.isfinite(now) & np.isfinite(after)
    if where is not None:
        keep &= where.iloc[1:-1].to_numpy()
    return float(np.corrcoef(now[keep], after[keep])[0, 1])


def test_past_returns_alone_predict_nothing_and_news_bars_continue() -> None:
    config = SyntheticMarketConfig(n_symbols=24, n_sectors=4, regime_shift_at=None)
    moves, volume = idiosyncratic_moves(config, days=60)
    n = moves.notna().to_numpy().sum()
    assert abs(next_bar_correlation(moves)) < 3 / np.sqrt(n)  # no autocorrelation on average (3 standard errors)
    typical = volume.rolling(24, min_periods=24).median()
    heavy = volume > 2 * typical  # what a model can see of the news: the bar's volume against its recent level
    assert next_bar_correlation(moves, heavy) > 0.1  # a news bar's move continues into the next bar
    assert next_bar_correlation(moves, ~heavy & typical.notna()) < 0  # the others partly reverse


def test_placebo_a_market_without_news_has_no_edge_anywhere() -> None:
    config = SyntheticMarketConfig(n_symbols=24, n_sectors=4, regime_shift_at=None, continuation=0.0)
    moves, volume = idiosyncratic_moves(config, days=60)
    typical = volume.rolling(24, min_periods=24).median()
    heavy = volume > 2 * typical
    n_heavy = int(heavy.to_numpy().sum())
    assert abs(next_bar_correlation(moves, heavy)) < 3 / np.sqrt(n_heavy)
