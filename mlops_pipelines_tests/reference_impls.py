"""Deliberately naive reference implementations that the fast code is checked against (tests and benchmarks)."""

import math
from collections.abc import Callable, Mapping, Sequence
from datetime import timedelta

import numpy as np
import pandas as pd


def naive_point_in_time(
    entities: pd.DataFrame,
    history: pd.DataFrame,
    *,
    key: str,
    features: Sequence[str],
    ttl: timedelta | None,
    event_col: str = "event_ts",
    created_col: str = "created_ts",
) -> pd.DataFrame:
    """Row by row: visible rows (event <= t, created <= t, event >= t - ttl), latest event, then latest created."""
    out = []
    by_key = {k: g for k, g in history.groupby(key)}
    for _, row in entities.iterrows():
        t = row["event_timestamp"]
        candidates = by_key.get(row[key])
        values = {f: np.nan for f in features}
        if candidates is not None:
            visible = candidates[(candidates[event_col] <= t) & (candidates[created_col] <= t)]
            if ttl is not None:
                visible = visible[visible[event_col] >= t - ttl]
            if len(visible):
                best = visible.sort_values([event_col, created_col]).iloc[-1]
                values = {f: best[f] for f in features}
        out.append({**row.to_dict(), **values})
    return pd.DataFrame(out, columns=[*entities.columns, *features])


def pandas_features(
    bars: pd.DataFrame,
    lags: Mapping[str, timedelta],
    *,
    bar_interval: timedelta = timedelta(hours=1),
    periods_per_year: float = 8760,
) -> dict[str, pd.DataFrame]:
    """The catalog's feature views computed with pandas groupby/rolling: the benchmark baseline and a
    second implementation that the SQL views are checked against. ``lags``: availability lag per view;
    ``bar_interval`` (a bar's event time is its close) and ``periods_per_year`` (annualization): the bars'."""
    bars = bars.sort_values(["symbol", "timestamp"]).reset_index(drop=True)
    g = bars.groupby("symbol", sort=False)
    close = bars["close"]
    base = pd.DataFrame(
        {
            "symbol": bars["symbol"],
            "event_ts": bars["timestamp"] + pd.Timedelta(bar_interval),
            "created_ts": bars["available_at"],
        }
    )
    log_close = np.log(close)
    returns = base.copy()
    for h in (1, 4, 24, 120):
        returns[f"ret_{h}b"] = log_close - g["close"].shift(h).pipe(np.log)

    r = log_close - np.log(g["close"].shift(1))
    prev_close = g["close"].shift(1)
    true_range = pd.concat(
        [bars["high"] - bars["low"], (bars["high"] - prev_close).abs(), (bars["low"] - prev_close).abs()], axis=1
    ).max(axis=1)
    keys = bars["symbol"]

    def rolling(series: pd.Series, window: int, how: str) -> pd.Series:
        roll = series.groupby(keys, sort=False).rolling(window, min_periods=window)
        return getattr(roll, how)().reset_index(level=0, drop=True)

    volatility = base.copy()
    volatility["rvol_24b"] = rolling(r, 24, "std") * np.sqrt(periods_per_year)
    volatility["rvol_120b"] = rolling(r, 120, "std") * np.sqrt(periods_per_year)
    volatility["atr_14b_pct"] = rolling(true_range.where(prev_close.notna()), 14, "mean") / close
    volatility["range_pct"] = (bars["high"] - bars["low"]) / close

    change = close - prev_close
    gain = rolling(change.clip(lower=0), 14, "mean")
    move = rolling(change.abs(), 14, "mean")
    oscillators = base.copy()
    oscillators["rsi_14b"] = 100 * gain / move.replace(0, np.nan)
    vol_mean, vol_std = rolling(bars["volume"], 24, "mean"), rolling(bars["volume"], 24, "std")
    oscillators["volume_zscore_24b"] = (bars["volume"] - vol_mean) / vol_std.replace(0, np.nan)
    oscillators["sma_ratio_24b"] = close / rolling(close, 24, "mean") - 1

    # created: the latest arrival among the bars a row's features read (lags 1/4/24/120; 121 and 24 bars)
    arrival = bars["available_at"]
    returns["created_ts"] = pd.concat([arrival, *(g["available_at"].shift(h) for h in (1, 4, 24, 120))], axis=1).max(
        axis=1
    )
    arrival_us = arrival.astype("datetime64[us, UTC]").astype("int64")

    def latest_arrival(window: int) -> pd.Series:
        latest = arrival_us.groupby(keys, sort=False).rolling(window, min_periods=1).max()
        return pd.to_datetime(latest.reset_index(level=0, drop=True).astype("int64"), unit="us", utc=True)

    volatility["created_ts"] = latest_arrival(121)
    oscillators["created_ts"] = latest_arrival(24)
    returns["created_ts"] += lags["returns"]
    volatility["created_ts"] += lags["volatility"]
    oscillators["created_ts"] += lags["oscillators"]
    xs = base[["symbol", "event_ts"]].copy()
    xs["created_ts"] = pd.concat([returns["created_ts"], volatility["created_ts"]], axis=1).max(axis=1)
    xs["created_ts"] = xs.groupby("event_ts")["created_ts"].transform("max") + lags["cross_sectional"]
    xs["sector"] = bars["sector"]
    by_time = returns.groupby("event_ts")["ret_24b"]
    xs["ret_24b_xs_rank"] = (by_time.rank(method="min") - 1) / (by_time.transform("count") - 1)
    by_time_vol = volatility.groupby("event_ts")["rvol_24b"]
    xs["rvol_24b_xs_rank"] = (by_time_vol.rank(method="min") - 1) / (by_time_vol.transform("count") - 1)
    xs["ret_24b_sector_rel"] = returns["ret_24b"] - returns.groupby([returns["event_ts"], bars["sector"]])[
        "ret_24b"
    ].transform("mean")
    return {"returns": returns, "volatility": volatility, "oscillators": oscillators, "cross_sectional": xs}


def naive_block_bootstrap_interval(
    statistic: Callable[[np.ndarray], float],
    times: Sequence[object],
    *,
    block: int,
    level: float,
    n_samples: int,
    seed: int,
) -> tuple[float, float]:
    """Circular block bootstrap over distinct times, one sample and one block at a time: the same random block
    starts as the fast version (one ``integers`` draw of n_samples x ceil(n / block) starts), then, for each start,
    the next ``block`` times (wrapping around), each with all its rows, until n times are taken."""
    distinct = sorted(set(times))
    rows_of: dict[object, list[int]] = {t: [] for t in distinct}
    for row, t in enumerate(times):
        rows_of[t].append(row)
    n = len(distinct)
    n_blocks = -(-n // block)
    starts = np.random.default_rng(seed).integers(0, n, size=(n_samples, n_blocks))
    values = []
    for sample in starts:
        taken: list[int] = []
        n_taken = 0
        for start in sample:
            for k in range(block):
                if n_taken == n:
                    break
                taken.extend(rows_of[distinct[(int(start) + k) % n]])
                n_taken += 1
        value = statistic(np.array(taken, dtype=int))
        if math.isfinite(value):
            values.append(value)
    tail = (1 - level) / 2 * 100
    return float(np.percentile(values, tail)), float(np.percentile(values, 100 - tail))
