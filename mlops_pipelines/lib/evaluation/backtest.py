"""A vectorized backtest of trading signals over many symbols, and the metrics that judge it.

Everything works on time x symbol matrices (index: bar timestamp, ascending; columns: symbol), so a backtest of
hundreds of symbols is a handful of numpy operations, with no per-symbol Python loop.

Timing convention (no look-ahead). Row t of ``bar_returns`` is bar t's simple return, close_t / close_{t-1} - 1.
A position *decided* at bar t (from information up to bar t's close) is *held* from bar t + ``execution_lag`` on:
with the default lag of 1 it first earns bar t+1's return, i.e. it trades at bar t's close. A lag of 0 lets a
position earn the return of the bar it was decided on, which is look-ahead unless the signal was known at the
previous close.

Missing data. A NaN position is flat. A symbol can trade only at bars where it has a return: at a bar with a
NaN return it earns nothing, costs nothing and keeps the position it held, so a change of position (and its
cost) falls on its next bar with a return. The equal-weight portfolio return of a bar is the mean over the
symbols that have a return at that bar (0 when none has).
"""

from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, model_validator

from mlops_pipelines.lib.core import metrics as m


class PositionConfig(BaseModel):
    """How a signal becomes positions.

    ``mode="sign"``: the sign of the signal (+1, -1, 0). ``mode="probability"``: long where p > ``upper``, short
    where p < ``lower``, flat otherwise; the defaults 0.5/0.5 give sign(p - 0.5). With ``target_vol`` set (an
    annualized volatility), each position is scaled by target_vol / forecast_vol, capped at ``max_leverage``.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    mode: Literal["sign", "probability"] = "sign"
    upper: float = 0.5
    lower: float = 0.5
    target_vol: float | None = Field(default=None, gt=0)
    max_leverage: float = Field(default=1.0, gt=0)

    @model_validator(mode="after")
    def _thresholds_ordered(self) -> "PositionConfig":
        if self.lower > self.upper:
            raise ValueError(f"lower threshold {self.lower} is above upper threshold {self.upper}")
        return self


@dataclass(frozen=True, eq=False)
class BacktestResult:
    portfolio: pd.Series  # equal-weight portfolio return per bar, net of costs
    per_symbol: pd.DataFrame  # each symbol's return per bar, net of costs; NaN where the symbol has no return
    held: pd.DataFrame  # the position held over each bar (after the execution lag)
    turnover: float  # mean over bars of the average |change of held position| across the symbols trading
    costs: pd.Series  # the portfolio's cost per bar (portfolio + costs = the return before costs)
    bar_returns: pd.DataFrame  # the bar returns the backtest ran on, aligned with ``held``

    @property
    def equity(self) -> pd.Series:
        return (1.0 + self.portfolio).cumprod()


def to_matrix(frame: pd.DataFrame, values: str, index: str = "timestamp", columns: str = "symbol") -> pd.DataFrame:
    """Long rows (one per symbol and bar) to a float time x symbol matrix, both axes sorted; NaN where a symbol
    has no row. Raises on duplicate or missing keys. The same result as ``DataFrame.pivot``, several times faster
    (integer codes and one scatter instead of a MultiIndex unstack)."""
    row_codes, rows = pd.factorize(frame[index], sort=True)
    col_codes, cols = pd.factorize(frame[columns], sort=True)
    if len(frame) and (row_codes.min() < 0 or col_codes.min() < 0):
        raise ValueError(f"rows with a missing {index!r} or {columns!r}")
    linear = row_codes.astype(np.int64) * len(cols) + col_codes
    if len(frame) and np.bincount(linear).max() > 1:
        raise ValueError(f"duplicate ({index}, {columns}) rows")
    matrix = np.full((len(rows), len(cols)), np.nan)
    matrix.ravel()[linear] = frame[values].to_numpy(dtype=float)
    return pd.DataFrame(matrix, index=pd.Index(rows, name=index), columns=pd.Index(cols, name=columns))


def simple_returns(close: pd.DataFrame) -> pd.DataFrame:
    """Time x symbol closes to simple returns close_t / close_{t-1} - 1 (NaN at the first row and after a gap)."""
    return close / close.shift(1) - 1.0


def bar_returns_from_bars(bars: pd.DataFrame) -> pd.DataFrame:
    """Raw bars (symbol, timestamp, close) to time x symbol simple returns, indexed by bar timestamp (bar open).

    Each symbol's first bar is NaN; so are a missing bar and the bar after it (no return across a gap).
    """
    return simple_returns(to_matrix(bars, "close"))


def forward_returns(bar_returns: pd.DataFrame, horizon: int = 1) -> pd.DataFrame:
    """The return from bar t's close to bar t+horizon's close, at row t (NaN when any bar in between is missing)."""
    if horizon < 1:
        raise ValueError(f"horizon must be >= 1, got {horizon}")
    growth = bar_returns.astype(float).apply(np.log1p)
    summed = growth.rolling(horizon, min_periods=horizon).sum().shift(-horizon)
    return summed.apply(np.expm1)


def realized_forward_vol(bar_returns: pd.DataFrame, horizon: int, periods_per_year: float) -> pd.DataFrame:
    """At row t: the volatility of the log returns of bars t+1 .. t+horizon annualized with ``periods_per_year``
    (the bar clock's), what a volatility forecast made at bar t's close predicts (NaN unless all of them exist).
    The volatility label's definition."""
    if horizon < 2:
        raise ValueError(f"horizon must be >= 2 for a volatility, got {horizon}")
    growth = bar_returns.astype(float).apply(np.log1p)
    std = growth.rolling(horizon, min_periods=horizon).std(ddof=1).shift(-horizon)
    return std * np.sqrt(periods_per_year)


def positions_from_signal(
    signal: pd.DataFrame, config: PositionConfig | None = None, forecast_vol: pd.DataFrame | None = None
) -> pd.DataFrame:
    """Positions (time x symbol) from a signal; a NaN signal is flat.

    ``forecast_vol`` (time x symbol, annualized, aligned to ``signal`` by label) is required when
    ``config.target_vol`` is set; where it is missing or not positive the position is flat (it cannot be sized).
    """
    config = config or PositionConfig()
    values = signal.to_numpy(dtype=float)
    finite = np.isfinite(values)
    if config.mode == "sign":
        direction = np.sign(np.where(finite, values, 0.0))
    else:
        direction = np.where(values > config.upper, 1.0, np.where(values < config.lower, -1.0, 0.0))
        direction = np.where(finite, direction, 0.0)
    if config.target_vol is not None:
        if forecast_vol is None:
            raise ValueError("target_vol is set: pass forecast_vol (annualized volatility forecasts, time x symbol)")
        vol = forecast_vol.reindex(index=signal.index, columns=signal.columns).to_numpy(dtype=float)
        usable = np.isfinite(vol) & (vol > 0)
        scale = np.minimum(config.target_vol / np.where(usable, vol, 1.0), config.max_leverage)
        direction = direction * np.where(usable, scale, 0.0)
    elif forecast_vol is not None:
        raise ValueError("forecast_vol given but config.target_vol is not set")
    return pd.DataFrame(direction + 0.0, index=signal.index, columns=signal.columns)  # + 0.0: no negative zeros


def buy_and_hold_positions(bar_returns: pd.DataFrame) -> pd.DataFrame:
    """Long 1.0 in every symbol at every bar: since bars without a return earn and cost nothing, this is long
    whenever a symbol trades (entered once, at its first bar)."""
    return pd.DataFrame(1.0, index=bar_returns.index, columns=bar_returns.columns)


def momentum_positions(bars_close: pd.DataFrame, lookback: int = 24) -> pd.DataFrame:
    """Sign of the past ``lookback``-bar return, close_t / close_{t-lookback} - 1: known at bar t's close.
    Flat until ``lookback`` bars of history exist."""
    if lookback < 1:
        raise ValueError(f"lookback must be >= 1, got {lookback}")
    past = (bars_close / bars_close.shift(lookback) - 1.0).to_numpy(dtype=float)
    sign = np.where(np.isfinite(past), np.sign(past), 0.0) + 0.0
    return pd.DataFrame(sign, index=bars_close.index, columns=bars_close.columns)


def run_backtest(
    positions: pd.DataFrame, bar_returns: pd.DataFrame, cost_bps: float, execution_lag: int = 1
) -> BacktestResult:
    """Backtest decided positions against bar returns (see the module docstring for timing and missing data).

    ``positions`` is aligned to ``bar_returns``' rows and columns by label (missing: flat) and the backtest starts
    flat at the first row. The cost of a bar is cost_bps / 1e4 * |held_t - held_{t-1}| per symbol, entering the
    first position included.
    """
    if execution_lag < 0:
        raise ValueError(f"execution_lag must be >= 0, got {execution_lag}")
    if cost_bps < 0:
        raise ValueError(f"cost_bps must be >= 0, got {cost_bps}")
    if not bar_returns.index.is_monotonic_increasing:
        raise ValueError("bar_returns must be indexed by time, ascending")
    index, columns = bar_returns.index, bar_returns.columns
    n_bars = len(index)
    ret = bar_returns.to_numpy(dtype=float)
    tradable = np.isfinite(ret)
    if not tradable.all() and np.isinf(ret).any():
        ret = np.where(tradable, ret, np.nan)  # an infinite return is missing data, like NaN
    decided = positions.reindex(index=index, columns=columns).to_numpy(dtype=float)
    held = np.zeros_like(decided)
    if execution_lag < n_bars:
        held[execution_lag:] = decided[: n_bars - execution_lag]
    held[~np.isfinite(held)] = 0.0  # a missing position is flat
    if (tradable[1:] >= tradable[:-1]).all():
        held[~tradable] = 0.0  # every symbol trades from its first return to the end: flat before it
    else:
        # A gap (or an end): the held position changes only at a symbol's bars with a return, else carries over.
        held = pd.DataFrame(np.where(tradable, held, np.nan)).ffill().fillna(0.0).to_numpy()
    change = np.empty_like(held)
    change[:1] = held[:1]
    np.subtract(held[1:], held[:-1], out=change[1:])
    np.abs(change, out=change)  # 0 wherever a symbol has no return: costs are never lost
    rate = cost_bps / 1e4
    per_symbol = held * ret  # NaN where the symbol has no return
    per_symbol -= rate * change
    count = tradable.sum(axis=1)
    denominator = np.maximum(count, 1)
    portfolio = np.where(tradable, per_symbol, 0.0).sum(axis=1) / denominator  # 0 when no symbol has a return
    change_per_bar = change.sum(axis=1) / denominator
    turnover = float(change_per_bar.mean()) if n_bars else 0.0
    return BacktestResult(
        portfolio=pd.Series(portfolio, index=index, name="portfolio"),
        per_symbol=pd.DataFrame(per_symbol, index=index, columns=columns),
        held=pd.DataFrame(held, index=index, columns=columns),
        turnover=turnover,
        costs=pd.Series(rate * change_per_bar, index=index, name="costs"),
        bar_returns=pd.DataFrame(ret, index=index, columns=columns),
    )


def performance_metrics(result: BacktestResult, periods_per_year: float) -> dict[str, float]:
    """Summary of a backtest's portfolio returns (one per bar, simple, net of costs); ``periods_per_year``: the
    bar clock's (``BarClock.periods_per_year``: 8,760 for hourly bars around the clock, 252 for daily equities).

    - annual_return: geometric, equity_end ** (periods_per_year / n_bars) - 1 (-1 if the equity reached 0)
    - annual_volatility: std (ddof=1) * sqrt(periods_per_year)
    - sharpe: mean / std (ddof=1) * sqrt(periods_per_year), no risk-free rate; 0 when the std is 0
    - sortino: mean / downside deviation * sqrt(periods_per_year), where the downside deviation is
      sqrt(mean over all bars of min(r, 0)²) (target 0); 0 when there is no negative return
    - max_drawdown: largest peak-to-trough fall of the equity curve (starting at 1), a positive fraction
    - calmar: annual_return / max_drawdown; 0 when there is no drawdown
    - hit_rate: share of (symbol, bar) pairs with a nonzero held position and a return whose return has the
      position's sign (a zero return is a miss); NaN when nothing was ever held
    - turnover: the result's turnover (mean per bar of the average |change of position|)
    - total_return: equity_end - 1
    """
    r = result.portfolio.to_numpy(dtype=float)
    n = len(r)
    hit_rate = m.hit_rate(result.held.to_numpy(dtype=float), result.bar_returns.to_numpy(dtype=float))
    if n == 0:
        metrics = dict.fromkeys(
            ("annual_return", "annual_volatility", "sharpe", "sortino", "max_drawdown", "calmar", "total_return"), 0.0
        )
        return {**metrics, "hit_rate": hit_rate, "turnover": result.turnover}
    equity = np.cumprod(1.0 + r)
    end = float(equity[-1])
    annual_return = end ** (periods_per_year / n) - 1.0 if end > 0 else -1.0
    std = float(r.std(ddof=1)) if n > 1 else 0.0
    downside = float(np.sqrt(np.mean(np.minimum(r, 0.0) ** 2)))
    drawdown = m.max_drawdown(equity)
    root = float(np.sqrt(periods_per_year))
    return {
        "annual_return": annual_return,
        "annual_volatility": std * root,
        "sharpe": m.sharpe(r, periods_per_year),
        "sortino": float(r.mean()) / downside * root if downside > 0 else 0.0,
        "max_drawdown": drawdown,
        "calmar": annual_return / drawdown if drawdown > 0 else 0.0,
        "hit_rate": hit_rate,
        "turnover": result.turnover,
        "total_return": end - 1.0,
    }
