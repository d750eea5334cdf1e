"""The synthetic market: a seeded, deterministic stand-in for a data vendor (the demo's and the tests' source).

Bars come in the raw schema (``lib/ingestion/market_bars.py``), one row per (symbol, bar), timestamps in UTC, at
the configured bar interval (``MLOPS_BAR_INTERVAL``) around the clock, every day (the ``24x7`` calendar). Its
parameters are per hour and scale with the bar: volatility with the square root of its hours, drift and volume
with its hours, regime switches by the chance of at least one hourly switch; with hourly bars the market is the
one the demo's calibrations were made on. ``available_at`` is when the bar reached us: the bar's close plus the
feed's latency;
features computed from a bar carry it as their created time, so point-in-time reads never see a bar before it
arrived. A share of rows can be corrupted the way real feeds are (``bad_row_rate``), to exercise quarantine.
"""

import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
from scipy.signal import lfilter

from mlops_pipelines.lib.ingestion.market_bars import empty_bars

SYNTHETIC_SOURCE = "synthetic"


@dataclass(frozen=True)
class SyntheticMarketConfig:
    """A seeded market: symbols in sectors, bars of ``bar_interval``, calm/volatile regimes and an optional regime
    shift."""

    n_symbols: int = 24
    n_sectors: int = 4
    seed: int = 7
    origin: datetime = datetime(2026, 1, 1, tzinfo=UTC)
    bar_interval: timedelta = timedelta(hours=1)
    base_vol_hourly: float = 0.004
    regime_shift_at: datetime | None = datetime(2026, 2, 20, tzinfo=UTC)
    shift_vol_multiplier: float = 2.5
    shift_drift_hourly: float = -0.0004
    shift_volume_multiplier: float = 1.8
    feed_latency: timedelta = timedelta(seconds=30)
    bad_row_rate: float = 0.0
    # The learnable signal, weak as in real markets: a share of bars carry news (``informed_share``; their volume
    # is ``informed_volume`` times higher) and their idiosyncratic move continues into the next bar
    # (``continuation`` of it); any other bar's move partly reverses, so that on average a bar's move predicts
    # nothing: a rule on past returns alone (the momentum baseline) has no edge, a model that reads volume beside
    # returns has a little, and costs take most of it (``python -m benchmarks.synthetic_edge``).
    informed_share: float = 0.2
    informed_volume: float = 2.5
    continuation: float = 1.0
    momentum: float = 0.0  # AR(1) coefficient of idiosyncratic returns, bar to bar: a strong, persistent edge
    sectors: tuple[str, ...] = field(
        default=("technology", "financials", "energy", "healthcare", "industrials", "consumer", "utilities")
    )

    def symbols(self) -> list[str]:
        return [f"SYM{i:04d}" for i in range(self.n_symbols)]

    def sector_of(self) -> list[str]:
        return [self.sectors[i % min(self.n_sectors, len(self.sectors))] for i in range(self.n_symbols)]

    @property
    def hours_per_bar(self) -> float:
        return self.bar_interval / timedelta(hours=1)

    @property
    def bars_per_day(self) -> int:
        return int(timedelta(days=1) / self.bar_interval)


def generate_bars(config: SyntheticMarketConfig, start: datetime, end: datetime) -> pd.DataFrame:
    """Bars with ``start <= timestamp < end``, identical whichever window they are generated in.

    The path is always simulated from ``config.origin``, so day D generated alone equals day D generated
    inside a year: partitions can be (re)materialized independently.
    """
    if start.tzinfo is None or end.tzinfo is None:
        raise ValueError("start and end must be timezone-aware UTC datetimes")
    if end <= start or end <= config.origin:
        return empty_bars()
    interval, k = config.bar_interval, config.hours_per_bar
    n_steps = int(np.ceil((end - config.origin) / interval))
    first = max(0, int(np.ceil((start - config.origin) / interval)))
    n_sym = config.n_symbols
    n_sec = min(config.n_sectors, len(config.sectors))
    times = pd.date_range(config.origin, periods=n_steps, freq=interval, tz="UTC")
    params = np.random.default_rng([config.seed, 0])
    vol_scale = params.uniform(0.6, 1.6, n_sym)
    start_price = params.uniform(20.0, 400.0, n_sym)
    base_volume = params.uniform(5e4, 5e5, n_sym) * k
    draws = _daily_draws(config.seed, n_steps, n_sym, n_sec, config.bars_per_day)

    # Volatility regimes: a two-state Markov chain shared by the market (calm 1x, volatile 2x).
    to_volatile, to_calm = _per_bar(0.004, k), _per_bar(0.02, k)
    regime = np.zeros(n_steps)
    state = 0
    for i, u in enumerate(draws["switch"]):
        if (state == 0 and u < to_volatile) or (state == 1 and u < to_calm):
            state = 1 - state
        regime[i] = state
    vol = config.base_vol_hourly * np.sqrt(k) * (1.0 + regime)[:, None] * vol_scale[None, :]
    drift = np.zeros((n_steps, 1))
    volume_level = np.ones((n_steps, 1))
    if config.regime_shift_at is not None:
        after = np.asarray(times >= pd.Timestamp(config.regime_shift_at))[:, None]
        vol = np.where(after, vol * config.shift_vol_multiplier, vol)
        drift = np.where(after, config.shift_drift_hourly * k, 0.0)
        volume_level = np.where(after, config.shift_volume_multiplier, 1.0)

    sector_idx = np.arange(n_sym) % n_sec
    informed = draws["news"] < config.informed_share
    idio = _idiosyncratic(config, draws["idio"], informed)
    shocks = 0.5 * draws["market"] + 0.4 * draws["sector"][:, sector_idx] + 0.76 * idio
    log_ret = drift + vol * shocks
    close = start_price[None, :] * np.exp(np.cumsum(log_ret, axis=0))
    open_ = np.vstack([start_price[None, :], close[:-1]]) * np.exp(0.0002 * draws["gap"])
    high = np.maximum(open_, close) * np.exp(np.abs(draws["upper_wick"]) * vol * 0.6)
    low = np.minimum(open_, close) * np.exp(-np.abs(draws["lower_wick"]) * vol * 0.6)
    news_volume = np.where(informed, config.informed_volume, 1.0)
    volume = base_volume[None, :] * volume_level * news_volume * np.exp(0.4 * draws["volume"] + 40 * np.abs(log_ret))

    sl = slice(first, n_steps)
    n_rows = n_steps - first
    ts = np.repeat(times[sl].to_numpy(), n_sym)
    frame = pd.DataFrame(
        {
            "symbol": np.tile(np.array(config.symbols(), dtype=object), n_rows),
            "sector": np.tile(np.array(config.sector_of(), dtype=object), n_rows),
            "timestamp": pd.DatetimeIndex(ts, tz="UTC"),
            "open": open_[sl].ravel(),
            "high": high[sl].ravel(),
            "low": low[sl].ravel(),
            "close": close[sl].ravel(),
            "volume": np.round(volume[sl].ravel()),
        }
    )
    frame["available_at"] = frame["timestamp"] + interval + config.feed_latency
    frame["source_file"] = SYNTHETIC_SOURCE
    if config.bad_row_rate > 0:
        frame = _inject_bad_rows(frame, config.bad_row_rate, config.seed)
    return _with_micro_timestamps(frame)


def _idiosyncratic(config: SyntheticMarketConfig, shocks: np.ndarray, informed: np.ndarray) -> np.ndarray:
    """Unit-variance idiosyncratic moves: each bar's shock plus ``continuation`` of the previous bar's if that bar
    was informed, minus ``continuation * share / (1 - share)`` of it otherwise (no autocorrelation on average);
    then ``momentum``, an AR(1) filter over bars."""
    share, c = config.informed_share, config.continuation
    reverse = c * share / (1.0 - share) if share < 1 else 0.0
    carry = np.where(informed, c, -reverse)
    moves = shocks.copy()
    moves[1:] += carry[:-1] * shocks[:-1]
    moves /= np.sqrt(1.0 + share * c**2 + (1 - share) * reverse**2)
    if config.momentum == 0:
        return moves
    return lfilter([1.0], [1.0, -config.momentum], moves, axis=0) * np.sqrt(1 - config.momentum**2)


def _per_bar(hourly: float, hours: float) -> float:
    """The chance of at least one event in a bar of ``hours`` hours, given its chance in one hour."""
    return hourly if hours == 1 else 1.0 - (1.0 - hourly) ** hours


def _daily_draws(seed: int, n_steps: int, n_sym: int, n_sec: int, per_day: int) -> dict[str, np.ndarray]:
    """Random draws in one block per day (``per_day`` bars), each from its own seeded stream.

    A window's values therefore do not depend on how far the simulation runs past it.
    """
    shapes = {
        "switch": (per_day,),
        "market": (per_day, 1),
        "sector": (per_day, n_sec),
        "idio": (per_day, n_sym),
        "gap": (per_day, n_sym),
        "upper_wick": (per_day, n_sym),
        "lower_wick": (per_day, n_sym),
        "volume": (per_day, n_sym),
        "news": (per_day, n_sym),  # last: the streams before it keep their draws
    }
    blocks: dict[str, list[np.ndarray]] = {name: [] for name in shapes}
    for day in range(-(-n_steps // per_day)):
        rng = np.random.default_rng([seed, 1, day])
        for name, shape in shapes.items():
            blocks[name].append(rng.random(shape) if name in ("switch", "news") else rng.standard_normal(shape))
    return {name: np.concatenate(parts)[:n_steps] for name, parts in blocks.items()}


def _inject_bad_rows(frame: pd.DataFrame, rate: float, seed: int) -> pd.DataFrame:
    """Corrupt a deterministic sample of rows the way real feeds do, so the quarantine path is exercised."""
    frame = frame.copy()
    # Decide per bar from a hash of (seed, symbol, timestamp): independent of the generated window.
    keys = frame["symbol"].astype(str) + "|" + frame["timestamp"].astype(str) + f"|{seed}"
    u = pd.Series(
        [int(hashlib.blake2b(k.encode(), digest_size=4).hexdigest(), 16) / 2**32 for k in keys], index=frame.index
    )
    bad = (u < rate).to_numpy()
    kind = (u * 1e6).astype(int).to_numpy() % 3
    frame.loc[bad & (kind == 0), "close"] = np.nan
    frame.loc[bad & (kind == 1), "low"] = frame["high"] * 1.01
    frame.loc[bad & (kind == 2), "volume"] = -1.0
    return frame


def _with_micro_timestamps(frame: pd.DataFrame) -> pd.DataFrame:
    for column in ("timestamp", "available_at"):
        frame[column] = frame[column].astype("datetime64[us, UTC]")
    return frame
