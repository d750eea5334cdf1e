"""Point-in-time retrieval against a deliberately naive row-by-row reference."""

from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlops_pipelines.lib.core import warehouse
from mlops_pipelines.lib.core.warehouse import quote_ident
from mlops_pipelines.lib.features import feature_store
from mlops_pipelines.lib.features.feature_views import FeatureView
from mlops_pipelines.lib.features.point_in_time import RetrievalError, get_historical_features, retrieve_to_file
from mlops_pipelines_tests.reference_impls import naive_point_in_time


def indexed_select(view: FeatureView, body_sql: str) -> str:
    """The exact point-in-time index, as defined (the reference ``feature_store.write_indexed`` must equal): a row's
    ``__visible_from`` is ``max(event, created)`` (never, when either is NULL), or NULL when a later row of its key
    (in (event, created) order) becomes visible no later: a suffix minimum per key."""
    keys = ", ".join(quote_ident(k) for k in view.entities)
    e, c = quote_ident(view.event_time), quote_ident(view.created_time)
    columns = ", ".join(quote_ident(col) for col in view.schema_)
    never = "'infinity'::TIMESTAMPTZ"
    visible = f"greatest(coalesce({e}, {never}), coalesce({c}, {never}))"
    return f"""
        SELECT {columns},
               CASE WHEN _visible < coalesce(min(_visible) OVER _later, {never}) THEN _visible END AS __visible_from
        FROM (SELECT *, {visible} AS _visible FROM ({body_sql}) AS _body) AS _rows
        WINDOW _later AS (PARTITION BY {keys} ORDER BY {e}, {c} ROWS BETWEEN 1 FOLLOWING AND UNBOUNDED FOLLOWING)
    """


T0 = pd.Timestamp("2026-03-01", tz="UTC")


def view(ttl: timedelta | None, name: str = "pit") -> FeatureView:
    return FeatureView(
        name=name,
        version=1,
        owner="team:test",
        description="test view",
        ttl=ttl,
        depends_on=("raw.market_bars",),
        sql="SELECT * FROM {{ raw.market_bars }}",
        schema={
            "symbol": "VARCHAR",
            "event_ts": "TIMESTAMP WITH TIME ZONE",
            "created_ts": "TIMESTAMP WITH TIME ZONE",
            f"{name}_x": "DOUBLE",
        },
    )


def write_history(conn, v: FeatureView, history: pd.DataFrame) -> None:
    """The materializer's path: fast index, then the exact one for the keys it cannot decide."""
    conn.register("_hist", history)
    feature_store.write_indexed(conn, v, "SELECT * FROM _hist")
    conn.unregister("_hist")


def random_case(seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Minute-grained times on a small grid so that ties, equal visibility and TTL boundaries are common."""
    rng = np.random.default_rng(seed)
    n = 400
    event = T0 + pd.to_timedelta(rng.integers(0, 120, n), unit="min")
    # created: mostly shortly after the event, sometimes much later (late corrections), sometimes before it
    delay = rng.choice([0, 1, 2, 5, 30, 90, -3], size=n, p=[0.2, 0.2, 0.15, 0.15, 0.15, 0.1, 0.05])
    history = pd.DataFrame(
        {
            "symbol": rng.choice(["A", "B", "C", "D"], n),
            "event_ts": event,
            "created_ts": event + pd.to_timedelta(delay, unit="min"),
            "pit_x": rng.normal(size=n),
        }
    )
    # exact duplicates of (symbol, event_ts, created_ts) make the answer ambiguous; the contract has none
    history = history.drop_duplicates(["symbol", "event_ts", "created_ts"]).reset_index(drop=True)
    history.loc[rng.random(len(history)) < 0.03, "created_ts"] = pd.NaT  # unknown creation: never visible
    for col in ("event_ts", "created_ts"):
        history[col] = history[col].astype("datetime64[us, UTC]")
    m = 300
    entities = pd.DataFrame(
        {
            "symbol": rng.choice(["A", "B", "C", "D", "NOFEATURES"], m),
            "event_timestamp": (T0 + pd.to_timedelta(rng.integers(-10, 240, m), unit="min")).astype(
                "datetime64[us, UTC]"
            ),
            "label": rng.normal(size=m),
        }
    )
    return history, entities


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("ttl", [None, timedelta(minutes=15), timedelta(minutes=1)])
def test_matches_naive_reference_on_random_data(tmp_path: Path, seed: int, ttl: timedelta | None) -> None:
    history, entities = random_case(seed)
    v = view(ttl)
    with warehouse.connect(tmp_path / "w.duckdb") as conn:
        write_history(conn, v, history)
        got = get_historical_features(conn, entities, [v])
    expected = naive_point_in_time(entities, history, key="symbol", features=["pit_x"], ttl=ttl)
    assert len(got) == len(entities)
    assert got["symbol"].tolist() == entities["symbol"].tolist()  # order and multiplicity kept
    np.testing.assert_array_equal(got["label"].to_numpy(), entities["label"].to_numpy())
    np.testing.assert_allclose(
        got["pit_x"].to_numpy(dtype=float), expected["pit_x"].to_numpy(dtype=float), equal_nan=True
    )
    assert got["pit_x"].notna().any() and got["pit_x"].isna().any()  # the case exercises both outcomes


@pytest.mark.parametrize("seed", range(6))
def test_fast_index_equals_the_exact_definition(tmp_path: Path, seed: int) -> None:
    """``write_indexed`` (lead, then the exact suffix minimum for undecided keys) against ``indexed_select``
    (the suffix minimum everywhere), on data mixing append-only keys with keys that have late rows and ties,
    and on a two-column entity key."""
    history, _ = random_case(seed)
    rng = np.random.default_rng(seed)
    hours = pd.Timestamp("2026-03-02", tz="UTC") + pd.to_timedelta(np.arange(50), unit="h")
    append_only = pd.DataFrame(  # created 30 s after each event: every row visible, the fast path decides all
        {"symbol": "APPEND", "event_ts": hours, "created_ts": hours + pd.Timedelta(seconds=30)}
    ).assign(pit_x=rng.normal(size=50))
    # a dip two rows on: the fast path keeps the first row (4 < 5), the exact index drops it (3 <= 4)
    dip = pd.DataFrame(
        {"symbol": "DIP", "event_ts": [T0, T0 + pd.Timedelta(minutes=1), T0 + pd.Timedelta(minutes=2)]}
    ).assign(created_ts=lambda d: d["event_ts"] + pd.to_timedelta([4, 4, 1], unit="min"), pit_x=[1.0, 2.0, 3.0])
    rows = pd.concat([history, append_only, dip], ignore_index=True)
    for col in ("event_ts", "created_ts"):
        rows[col] = rows[col].astype("datetime64[us, UTC]")
    rows["desk"] = rng.choice(["x", "y"], len(rows))
    two_keys = view(None, "pk").model_copy(
        update={
            "entities": ("symbol", "desk"),
            "schema_": {"desk": "VARCHAR", **view(None, "pk").schema_},
        }
    )
    with warehouse.connect(tmp_path / "w.duckdb") as conn:
        conn.register("_hist", rows.rename(columns={"pit_x": "pk_x"}))
        for v in (view(None, "pk"), two_keys):
            conn.execute(f"CREATE OR REPLACE TABLE features.expected AS {indexed_select(v, 'SELECT * FROM _hist')}")
            feature_store.write_indexed(conn, v, "SELECT * FROM _hist")
            expected = conn.execute("SELECT * FROM features.expected ORDER BY ALL").fetchdf()
            got = conn.execute(f"SELECT * FROM {v.table} ORDER BY ALL").fetchdf()
            pd.testing.assert_frame_equal(got, expected)
            dropped = expected.loc[expected["symbol"] == "DIP", "__visible_from"].isna().tolist()
            assert dropped == [True, True, False] or len(v.entities) == 2
            assert expected.loc[expected["symbol"] == "APPEND", "__visible_from"].notna().all()


def test_boundaries_late_rows_and_ties(tmp_path: Path) -> None:
    m = pd.Timedelta(minutes=1)
    history = pd.DataFrame(
        [
            ("A", T0, T0, 1.0),  # visible from T0
            ("A", T0 + 10 * m, T0 + 60 * m, 2.0),  # late row: newer event but created at +60
            ("A", T0, T0 + 5 * m, 3.0),  # correction of the T0 event, created at +5: wins the tie from +5 on
            ("B", T0, T0, 9.0),
        ],
        columns=["symbol", "event_ts", "created_ts", "pit_x"],
    )
    for col in ("event_ts", "created_ts"):
        history[col] = history[col].astype("datetime64[us, UTC]")
    entities = pd.DataFrame(
        [
            ("A", T0 - m),  # before anything exists -> NULL
            ("A", T0),  # event <= t and created <= t, both inclusive -> 1.0
            ("A", T0 + 5 * m),  # correction now visible -> 3.0
            ("A", T0 + 59 * m),  # the +10 event is not created yet: best is the T0 row, older than the TTL -> NULL
            ("A", T0 + 60 * m),  # the +10 row is visible now, but +10 < t - 30m -> NULL (2.0 without TTL)
            ("B", T0 + 30 * m),  # exactly at the TTL boundary (inclusive) -> 9.0
            ("B", T0 + 30 * m + pd.Timedelta(microseconds=1)),  # one microsecond past -> NULL
            ("Z", T0),  # unknown entity -> NULL
        ],
        columns=["symbol", "event_timestamp"],
    )
    v = view(timedelta(minutes=30))
    with warehouse.connect(tmp_path / "w.duckdb") as conn:
        write_history(conn, v, history)
        got = get_historical_features(conn, entities, [v])["pit_x"].tolist()
        no_ttl = get_historical_features(conn, entities, [v.model_copy(update={"ttl": None})])
    assert np.isnan(got[0]) and got[1:3] == [1.0, 3.0]
    assert np.isnan(got[3]) and np.isnan(got[4])
    assert got[5] == 9.0
    assert np.isnan(got[6]) and np.isnan(got[7])
    assert no_ttl["pit_x"].tolist()[3:5] == [3.0, 2.0]


def test_several_views_join_side_by_side(tmp_path: Path) -> None:
    history, entities = random_case(42)
    a, b = view(None, "pa"), view(timedelta(minutes=20), "pb")
    hist_a = history.rename(columns={"pit_x": "pa_x"})
    hist_b = history.assign(pit_x=history["pit_x"] * 2).rename(columns={"pit_x": "pb_x"})
    with warehouse.connect(tmp_path / "w.duckdb") as conn:
        write_history(conn, a, hist_a)
        write_history(conn, b, hist_b)
        got = get_historical_features(conn, entities, [a, b])
    exp_a = naive_point_in_time(entities, hist_a, key="symbol", features=["pa_x"], ttl=None)
    exp_b = naive_point_in_time(entities, hist_b, key="symbol", features=["pb_x"], ttl=timedelta(minutes=20))
    np.testing.assert_allclose(got["pa_x"].to_numpy(dtype=float), exp_a["pa_x"].to_numpy(dtype=float), equal_nan=True)
    np.testing.assert_allclose(got["pb_x"].to_numpy(dtype=float), exp_b["pb_x"].to_numpy(dtype=float), equal_nan=True)


def test_request_errors_name_the_problem(tmp_path: Path) -> None:
    v = view(None)
    with warehouse.connect(tmp_path / "w.duckdb") as conn:
        with pytest.raises(RetrievalError, match="event_timestamp"):
            get_historical_features(conn, pd.DataFrame({"symbol": ["A"]}), [v])
        with pytest.raises(RetrievalError, match="'symbol'.*'pit'"):
            get_historical_features(conn, pd.DataFrame({"event_timestamp": [T0]}), [v])
        with pytest.raises(RetrievalError, match="pit_x.*clashes"):
            get_historical_features(conn, pd.DataFrame({"symbol": ["A"], "event_timestamp": [T0], "pit_x": [1]}), [v])


NANOS = [1, 2, 499, 500, 501, 998, 999]


@pytest.mark.parametrize("t0", [T0, pd.Timestamp("1969-12-31 23:00", tz="UTC")], ids=["2026", "before_1970"])
def test_nanosecond_entity_times_are_cut_not_rounded(tmp_path: Path, t0: pd.Timestamp) -> None:
    """An entity time 1..999 ns before a row becomes visible must not see it, on both paths and for every kind
    of entity file: DuckDB rounds nanoseconds to the nearest microsecond when it casts, which served the row up
    to 500 ns early. Before 1970 cutting towards zero would round up: it must be a floor."""
    hour = pd.Timedelta(hours=1)
    history = pd.DataFrame(
        {"symbol": ["A", "A"], "event_ts": [t0 - hour, t0], "created_ts": [t0 - hour, t0], "pit_x": [1.0, 2.0]}
    ).astype({"event_ts": "datetime64[us, UTC]", "created_ts": "datetime64[us, UTC]"})
    times = [t0 - pd.Timedelta(nanoseconds=n) for n in NANOS] + [t0, t0 + pd.Timedelta(nanoseconds=1)]
    entities = pd.DataFrame({"symbol": "A", "event_timestamp": pd.Series(times).astype("datetime64[ns, UTC]")})
    expected = naive_point_in_time(entities, history, key="symbol", features=["pit_x"], ttl=None)["pit_x"].tolist()
    assert expected == [1.0] * len(NANOS) + [2.0, 2.0]  # the reference compares at full precision

    iso = [t.isoformat() for t in times]  # nine fraction digits
    files = {
        "tz.parquet": lambda p: entities.to_parquet(p),
        "naive.parquet": lambda p: entities.assign(
            event_timestamp=entities["event_timestamp"].dt.tz_localize(None)
        ).to_parquet(p),
        "offset.csv": lambda p: entities.assign(event_timestamp=iso).to_csv(p, index=False),
        "naive.csv": lambda p: entities.assign(event_timestamp=[t.replace("+00:00", "") for t in iso]).to_csv(
            p, index=False
        ),
    }
    v = view(None)
    with warehouse.connect(tmp_path / "w.duckdb") as conn:
        write_history(conn, v, history)
        got = get_historical_features(conn, entities, [v])
        assert got["pit_x"].tolist() == expected
        assert got["event_timestamp"].tolist() == [t.floor("us") for t in times]
        for name, write in files.items():
            write(tmp_path / name)
            retrieve_to_file(conn, str(tmp_path / name), [v], str(tmp_path / f"out_{name}.parquet"))
            from_file = pd.read_parquet(tmp_path / f"out_{name}.parquet")
            assert from_file["pit_x"].tolist() == expected, name
            assert from_file["event_timestamp"].tolist() == [t.floor("us") for t in times], name


def test_to_utc_micros_floors() -> None:
    ns = pd.Series(["2026-03-01T00:00:00.000000999Z", "1969-12-31T23:59:59.999999001Z", "2026-03-01T00:00:00"])
    got = warehouse.to_utc_micros(ns)
    assert str(got.dtype) == "datetime64[us, UTC]"
    assert got.tolist() == [
        pd.Timestamp("2026-03-01", tz="UTC"),
        pd.Timestamp("1969-12-31T23:59:59.999999", tz="UTC"),
        pd.Timestamp("2026-03-01", tz="UTC"),
    ]
