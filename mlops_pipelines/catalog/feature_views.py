"""Feature views of the trading desk, as code. Edit here; bump ``version`` when SQL, schema, dependencies,
entity, TTL or availability lag change (CI's ``mlops features diff`` rejects a breaking change without one).

Windows count bars, and feature names say so: ``ret_24b`` is the log return over the last 24 bars, whatever a bar
is (``MLOPS_BAR_INTERVAL``: 24 hours of hourly bars, 24 trading days of daily equity bars). The SQL never assumes
a bar length: ``{{ bar_interval }}`` is one bar (a bar's event time is its close) and ``{{ bars_per_year }}`` the
annualization factor of the calendar (``MLOPS_MARKET_CALENDAR``); TTLs are in bars. A rolling feature is NULL
until its window is full, never computed on a partial window. (v3 of the bar views: names in bars and the bar
parameters; v2 said ``_24h`` and assumed hourly bars.)

A row's created time is the latest arrival among the bars its features read (v2 of the bar views; v1 used the
current bar's only): a revised bar, which arrives late, makes every value computed from it late too, so no
point-in-time read sees a correction before it arrived.
"""

from datetime import timedelta

from mlops_pipelines.lib.core.bars import DEFAULT_BAR_CLOCK, BarClock
from mlops_pipelines.lib.features.feature_views import FeatureCatalog, FeatureView

KEYS = {"symbol": "VARCHAR", "event_ts": "TIMESTAMP WITH TIME ZONE", "created_ts": "TIMESTAMP WITH TIME ZONE"}
TTL_BARS = 3  # a row older than three bars is not served

RETURNS = FeatureView(
    name="returns",
    version=3,
    owner="team:signals",
    description="Log returns of the close over 1, 4, 24 and 120 bars: the momentum inputs of most models.",
    ttl_bars=TTL_BARS,
    availability_lag=timedelta(seconds=5),
    depends_on=("raw.market_bars",),
    sql="""
        SELECT symbol,
               "timestamp" + {{ bar_interval }} AS event_ts,
               greatest(available_at, lag(available_at, 1) OVER w, lag(available_at, 4) OVER w,
                        lag(available_at, 24) OVER w, lag(available_at, 120) OVER w) AS created_ts,
               ln(close / lag(close, 1) OVER w) AS ret_1b,
               ln(close / lag(close, 4) OVER w) AS ret_4b,
               ln(close / lag(close, 24) OVER w) AS ret_24b,
               ln(close / lag(close, 120) OVER w) AS ret_120b
        FROM {{ raw.market_bars }}
        WINDOW w AS (PARTITION BY symbol ORDER BY "timestamp")
    """,
    schema={**KEYS, "ret_1b": "DOUBLE", "ret_4b": "DOUBLE", "ret_24b": "DOUBLE", "ret_120b": "DOUBLE"},
    tags={"domain": "momentum"},
)

VOLATILITY = FeatureView(
    name="volatility",
    version=3,
    owner="team:risk",
    description=(
        "Realized volatility of log returns over 24 and 120 bars, annualized with the calendar's bars a year, "
        "the 14-bar average true range relative to the close, and the bar's high-low range relative to the close."
    ),
    ttl_bars=TTL_BARS,
    availability_lag=timedelta(seconds=5),
    depends_on=("raw.market_bars",),
    sql="""
        WITH bars AS (
            SELECT symbol, "timestamp", available_at, high, low, close,
                   ln(close / lag(close) OVER w) AS r,
                   greatest(high - low, abs(high - lag(close) OVER w), abs(low - lag(close) OVER w)) AS true_range,
                   row_number() OVER w AS n
            FROM {{ raw.market_bars }}
            WINDOW w AS (PARTITION BY symbol ORDER BY "timestamp")
        )
        SELECT symbol,
               "timestamp" + {{ bar_interval }} AS event_ts,
               max(available_at) OVER w121 AS created_ts,
               CASE WHEN n > 24 THEN stddev_samp(r) OVER w24 * sqrt({{ bars_per_year }}) END AS rvol_24b,
               CASE WHEN n > 120 THEN stddev_samp(r) OVER w120 * sqrt({{ bars_per_year }}) END AS rvol_120b,
               CASE WHEN n > 14 THEN avg(true_range) OVER w14 / close END AS atr_14b_pct,
               (high - low) / close AS range_pct
        FROM bars
        WINDOW w14 AS (PARTITION BY symbol ORDER BY "timestamp" ROWS BETWEEN 13 PRECEDING AND CURRENT ROW),
               w24 AS (PARTITION BY symbol ORDER BY "timestamp" ROWS BETWEEN 23 PRECEDING AND CURRENT ROW),
               w120 AS (PARTITION BY symbol ORDER BY "timestamp" ROWS BETWEEN 119 PRECEDING AND CURRENT ROW),
               w121 AS (PARTITION BY symbol ORDER BY "timestamp" ROWS BETWEEN 120 PRECEDING AND CURRENT ROW)
    """,
    schema={
        **KEYS,
        "rvol_24b": "DOUBLE",
        "rvol_120b": "DOUBLE",
        "atr_14b_pct": "DOUBLE",
        "range_pct": "DOUBLE",
    },
    tags={"domain": "risk", "drift_group": "level"},
)

OSCILLATORS = FeatureView(
    name="oscillators",
    version=3,
    owner="team:signals",
    description=(
        "Mean-reversion oscillators: 14-bar RSI (simple-average form), the volume z-score against the last "
        "24 bars, and the close relative to its 24-bar simple moving average."
    ),
    ttl_bars=TTL_BARS,
    availability_lag=timedelta(seconds=5),
    depends_on=("raw.market_bars",),
    sql="""
        WITH bars AS (
            SELECT symbol, "timestamp", available_at, close, volume,
                   close - lag(close) OVER w AS change,
                   row_number() OVER w AS n
            FROM {{ raw.market_bars }}
            WINDOW w AS (PARTITION BY symbol ORDER BY "timestamp")
        )
        SELECT symbol,
               "timestamp" + {{ bar_interval }} AS event_ts,
               max(available_at) OVER w24 AS created_ts,
               CASE WHEN n > 14 THEN 100 * avg(greatest(change, 0)) OVER w14
                    / nullif(avg(abs(change)) OVER w14, 0) END AS rsi_14b,
               CASE WHEN n >= 24 THEN (volume - avg(volume) OVER w24)
                    / nullif(stddev_samp(volume) OVER w24, 0) END AS volume_zscore_24b,
               CASE WHEN n >= 24 THEN close / avg(close) OVER w24 - 1 END AS sma_ratio_24b
        FROM bars
        WINDOW w14 AS (PARTITION BY symbol ORDER BY "timestamp" ROWS BETWEEN 13 PRECEDING AND CURRENT ROW),
               w24 AS (PARTITION BY symbol ORDER BY "timestamp" ROWS BETWEEN 23 PRECEDING AND CURRENT ROW)
    """,
    schema={**KEYS, "rsi_14b": "DOUBLE", "volume_zscore_24b": "DOUBLE", "sma_ratio_24b": "DOUBLE"},
    tags={"domain": "mean_reversion"},
)

CROSS_SECTIONAL = FeatureView(
    name="cross_sectional",
    version=4,
    owner="team:signals",
    description=(
        "Where a symbol stands against the market at the same bar: percentile rank of its 24-bar return and "
        "of its 24-bar realized volatility across all symbols, and its 24-bar return relative to its sector "
        "mean. Built on the returns and volatility views; available once every symbol's bar has arrived."
    ),
    ttl_bars=TTL_BARS,
    availability_lag=timedelta(seconds=10),
    depends_on=("raw.market_bars", "returns", "volatility"),
    # v2: the per-bar arrival time and the sector mean are GROUP BYs joined back (v1: two more window sorts of
    # every row); same values. The ranks need their order, so they stay windows. v3: built on returns v2 and
    # volatility v2 (created times that include revised bars); same SQL. v4: names in bars, on returns v3 and
    # volatility v3.
    sql="""
        WITH joined AS MATERIALIZED (
            SELECT r.symbol, r.event_ts, b.sector, r.ret_24b, v.rvol_24b,
                   greatest(r.created_ts, v.created_ts) AS created_ts
            FROM {{ returns }} AS r
            JOIN {{ volatility }} AS v USING (symbol, event_ts)
            JOIN {{ raw.market_bars }} AS b
              ON b.symbol = r.symbol AND b."timestamp" + {{ bar_interval }} = r.event_ts
        ),
        bar_arrived AS (SELECT event_ts, max(created_ts) AS created_ts FROM joined GROUP BY event_ts),
        sector_mean AS (SELECT event_ts, sector, avg(ret_24b) AS ret_24b FROM joined GROUP BY event_ts, sector)
        SELECT j.symbol,
               j.event_ts,
               a.created_ts,
               j.sector,
               CASE WHEN j.ret_24b IS NOT NULL THEN
                   percent_rank() OVER (PARTITION BY j.event_ts, j.ret_24b IS NULL ORDER BY j.ret_24b)
               END AS ret_24b_xs_rank,
               CASE WHEN j.rvol_24b IS NOT NULL THEN
                   percent_rank() OVER (PARTITION BY j.event_ts, j.rvol_24b IS NULL ORDER BY j.rvol_24b)
               END AS rvol_24b_xs_rank,
               j.ret_24b - s.ret_24b AS ret_24b_sector_rel
        FROM joined AS j
        JOIN bar_arrived AS a USING (event_ts)
        JOIN sector_mean AS s ON s.event_ts = j.event_ts AND s.sector IS NOT DISTINCT FROM j.sector
    """,
    schema={
        **KEYS,
        "sector": "VARCHAR",
        "ret_24b_xs_rank": "DOUBLE",
        "rvol_24b_xs_rank": "DOUBLE",
        "ret_24b_sector_rel": "DOUBLE",
    },
    tags={"domain": "cross_sectional"},
)

FEATURE_VIEWS = (RETURNS, VOLATILITY, OSCILLATORS, CROSS_SECTIONAL)


def load_catalog(bar_clock: BarClock = DEFAULT_BAR_CLOCK) -> FeatureCatalog:
    """The validated catalog for ``bar_clock`` (the entry points pass the deployment's: ``Settings.bar_clock``;
    default hourly bars around the clock); raises FeatureGraphError naming the views on a cycle or missing
    dependency."""
    return FeatureCatalog.from_views(FEATURE_VIEWS, bar_clock)
