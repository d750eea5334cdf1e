"""Feature views of the trading desk, as code. Edit here; bump ``version`` when SQL, schema, dependencies,
entity, TTL or availability lag change (CI's ``mlops features diff`` rejects a breaking change without one).

Horizons are in bars (hourly bars: ``ret_24h`` is the log return over the last 24 bars). A rolling feature is
NULL until its window is full, never computed on a partial window.

A row's created time is the latest arrival among the bars its features read (v2 of the bar views; v1 used the
current bar's only): a revised bar, which arrives late, makes every value computed from it late too, so no
point-in-time read sees a correction before it arrived.
"""

from datetime import timedelta

from mlops_pipelines.lib.features.feature_views import FeatureCatalog, FeatureView

KEYS = {"symbol": "VARCHAR", "event_ts": "TIMESTAMP WITH TIME ZONE", "created_ts": "TIMESTAMP WITH TIME ZONE"}
TTL = timedelta(hours=3)

RETURNS = FeatureView(
    name="returns",
    version=2,
    owner="team:signals",
    description="Log returns of the close over 1, 4, 24 and 120 hourly bars: the momentum inputs of most models.",
    ttl=TTL,
    availability_lag=timedelta(seconds=5),
    depends_on=("raw.market_bars",),
    sql="""
        SELECT symbol,
               "timestamp" + INTERVAL 1 HOUR AS event_ts,
               greatest(available_at, lag(available_at, 1) OVER w, lag(available_at, 4) OVER w,
                        lag(available_at, 24) OVER w, lag(available_at, 120) OVER w) AS created_ts,
               ln(close / lag(close, 1) OVER w) AS ret_1h,
               ln(close / lag(close, 4) OVER w) AS ret_4h,
               ln(close / lag(close, 24) OVER w) AS ret_24h,
               ln(close / lag(close, 120) OVER w) AS ret_120h
        FROM {{ raw.market_bars }}
        WINDOW w AS (PARTITION BY symbol ORDER BY "timestamp")
    """,
    schema={**KEYS, "ret_1h": "DOUBLE", "ret_4h": "DOUBLE", "ret_24h": "DOUBLE", "ret_120h": "DOUBLE"},
    tags={"domain": "momentum"},
)

VOLATILITY = FeatureView(
    name="volatility",
    version=2,
    owner="team:risk",
    description=(
        "Annualized realized volatility of hourly log returns over 24 and 120 bars, the 14-bar average true "
        "range relative to the close, and the bar's high-low range relative to the close."
    ),
    ttl=TTL,
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
               "timestamp" + INTERVAL 1 HOUR AS event_ts,
               max(available_at) OVER w121 AS created_ts,
               CASE WHEN n > 24 THEN stddev_samp(r) OVER w24 * sqrt(8760) END AS realized_vol_24h,
               CASE WHEN n > 120 THEN stddev_samp(r) OVER w120 * sqrt(8760) END AS realized_vol_120h,
               CASE WHEN n > 14 THEN avg(true_range) OVER w14 / close END AS atr_14_pct,
               (high - low) / close AS range_pct
        FROM bars
        WINDOW w14 AS (PARTITION BY symbol ORDER BY "timestamp" ROWS BETWEEN 13 PRECEDING AND CURRENT ROW),
               w24 AS (PARTITION BY symbol ORDER BY "timestamp" ROWS BETWEEN 23 PRECEDING AND CURRENT ROW),
               w120 AS (PARTITION BY symbol ORDER BY "timestamp" ROWS BETWEEN 119 PRECEDING AND CURRENT ROW),
               w121 AS (PARTITION BY symbol ORDER BY "timestamp" ROWS BETWEEN 120 PRECEDING AND CURRENT ROW)
    """,
    schema={
        **KEYS,
        "realized_vol_24h": "DOUBLE",
        "realized_vol_120h": "DOUBLE",
        "atr_14_pct": "DOUBLE",
        "range_pct": "DOUBLE",
    },
    tags={"domain": "risk", "drift_group": "level"},
)

OSCILLATORS = FeatureView(
    name="oscillators",
    version=2,
    owner="team:signals",
    description=(
        "Mean-reversion oscillators: 14-bar RSI (simple-average form), the volume z-score against the last "
        "24 bars, and the close relative to its 24-bar simple moving average."
    ),
    ttl=TTL,
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
               "timestamp" + INTERVAL 1 HOUR AS event_ts,
               max(available_at) OVER w24 AS created_ts,
               CASE WHEN n > 14 THEN 100 * avg(greatest(change, 0)) OVER w14
                    / nullif(avg(abs(change)) OVER w14, 0) END AS rsi_14,
               CASE WHEN n >= 24 THEN (volume - avg(volume) OVER w24)
                    / nullif(stddev_samp(volume) OVER w24, 0) END AS volume_zscore_24h,
               CASE WHEN n >= 24 THEN close / avg(close) OVER w24 - 1 END AS sma_ratio_24h
        FROM bars
        WINDOW w14 AS (PARTITION BY symbol ORDER BY "timestamp" ROWS BETWEEN 13 PRECEDING AND CURRENT ROW),
               w24 AS (PARTITION BY symbol ORDER BY "timestamp" ROWS BETWEEN 23 PRECEDING AND CURRENT ROW)
    """,
    schema={**KEYS, "rsi_14": "DOUBLE", "volume_zscore_24h": "DOUBLE", "sma_ratio_24h": "DOUBLE"},
    tags={"domain": "mean_reversion"},
)

CROSS_SECTIONAL = FeatureView(
    name="cross_sectional",
    version=3,
    owner="team:signals",
    description=(
        "Where a symbol stands against the market at the same bar: percentile rank of its 24-bar return and "
        "of its 24-bar realized volatility across all symbols, and its 24-bar return relative to its sector "
        "mean. Built on the returns and volatility views; available once every symbol's bar has arrived."
    ),
    ttl=TTL,
    availability_lag=timedelta(seconds=10),
    depends_on=("raw.market_bars", "returns", "volatility"),
    # v2: the per-bar arrival time and the sector mean are GROUP BYs joined back (v1: two more window sorts of
    # every row); same values. The ranks need their order, so they stay windows. v3: built on returns v2 and
    # volatility v2 (created times that include revised bars); same SQL.
    sql="""
        WITH joined AS MATERIALIZED (
            SELECT r.symbol, r.event_ts, b.sector, r.ret_24h, v.realized_vol_24h,
                   greatest(r.created_ts, v.created_ts) AS created_ts
            FROM {{ returns }} AS r
            JOIN {{ volatility }} AS v USING (symbol, event_ts)
            JOIN {{ raw.market_bars }} AS b
              ON b.symbol = r.symbol AND b."timestamp" + INTERVAL 1 HOUR = r.event_ts
        ),
        bar_arrived AS (SELECT event_ts, max(created_ts) AS created_ts FROM joined GROUP BY event_ts),
        sector_mean AS (SELECT event_ts, sector, avg(ret_24h) AS ret_24h FROM joined GROUP BY event_ts, sector)
        SELECT j.symbol,
               j.event_ts,
               a.created_ts,
               j.sector,
               CASE WHEN j.ret_24h IS NOT NULL THEN
                   percent_rank() OVER (PARTITION BY j.event_ts, j.ret_24h IS NULL ORDER BY j.ret_24h)
               END AS ret_24h_xs_rank,
               CASE WHEN j.realized_vol_24h IS NOT NULL THEN
                   percent_rank() OVER (PARTITION BY j.event_ts, j.realized_vol_24h IS NULL ORDER BY j.realized_vol_24h)
               END AS vol_24h_xs_rank,
               j.ret_24h - s.ret_24h AS ret_24h_sector_rel
        FROM joined AS j
        JOIN bar_arrived AS a USING (event_ts)
        JOIN sector_mean AS s ON s.event_ts = j.event_ts AND s.sector IS NOT DISTINCT FROM j.sector
    """,
    schema={
        **KEYS,
        "sector": "VARCHAR",
        "ret_24h_xs_rank": "DOUBLE",
        "vol_24h_xs_rank": "DOUBLE",
        "ret_24h_sector_rel": "DOUBLE",
    },
    tags={"domain": "cross_sectional"},
)

FEATURE_VIEWS = (RETURNS, VOLATILITY, OSCILLATORS, CROSS_SECTIONAL)


def load_catalog() -> FeatureCatalog:
    """The validated catalog; raises FeatureGraphError naming the views on a cycle or missing dependency."""
    return FeatureCatalog.from_views(FEATURE_VIEWS)
