"""Hostile entity input against both retrieval entry points (a DataFrame, an entity file).

Column names and values are the user's: whatever they are, retrieval returns the entity rows with their columns
unchanged plus the features, or a ``RetrievalError`` that names the column or row; no other table's data ever
appears and the warehouse's catalog of tables (and the folder) is unchanged. Names come from a fixed list
(SQL injection payloads, internal aliases of the retrieval query, control and unicode characters) and from a
seeded generator (hypothesis is not installed).
"""

import csv
import random
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mlops_pipelines.lib.core import warehouse
from mlops_pipelines.lib.features.point_in_time import RetrievalError, get_historical_features, retrieve_to_file
from mlops_pipelines_tests.test_lib.features.test_point_in_time import T0, view, write_history

SECRET = "SECRET-7f3a"
LEAK = "symbol\", (SELECT string_agg(secret, ',') FROM governance.model_audit_log) AS \"leak"
PAYLOADS = [
    LEAK,
    'symbol" FROM _e; CREATE TABLE raw.pwned AS SELECT 1; SELECT 1 AS "y',  # DDL between two statements
    "x'); CREATE TABLE raw.pwned AS SELECT 1; --",
    'x" FROM _e; DROP TABLE features.pit__v1; --',
    "x\"; ATTACH 'pwned.duckdb' AS p; --",
    "x\"; COPY governance.model_audit_log TO 'pwned.csv'; --",
    '"',
    '""',
    "'",
    ";",
    "--",
    "/*",
    "*/",
    "a\nb",
    "a\r\nb",
    "\t",
    "a\x00b",
    "é",
    "𝕏",
    "\u202eevil",
    "\u200b",
    " ",
    "SYMBOL",
    "Event_Timestamp",
    "event_timestamp ",
    "x" * 5000,
    # the retrieval query's own names
    "_row",
    "_e",
    "_src",
    "_c0",
    "_c1",
    "_c2",
    "_f0",
    "_v0_event",
    "__visible_from",
    "event_ts",
    "created_ts",
    "symbol_1",
]
_ALPHABET = "\"';-/*\n\r\t\x00 ()[],.$?\\_aZ0é𝕏\u202e"


def random_names(seed: int, n: int) -> list[str]:
    rng = random.Random(seed)
    return ["".join(rng.choice(_ALPHABET) for _ in range(rng.choice([1, 2, 5, 30, 300]))) for _ in range(n)]


NAMES = [n for n in dict.fromkeys(PAYLOADS + random_names(10, 40)) if n not in ("symbol", "event_timestamp", "pit_x")]
HOSTILE_VALUES = ["A", "x'); DROP TABLE features.pit__v1; --", '"', "\x00", "a\nb", None]


def catalog_state(conn: duckdb.DuckDBPyConnection) -> set[tuple[str, str, str]]:
    return {
        (str(d), str(s), str(t))
        for d, s, t in conn.execute(
            "SELECT database_name, schema_name, table_name FROM duckdb_tables() UNION ALL "
            "SELECT database_name, schema_name, view_name FROM duckdb_views() WHERE NOT internal"
        ).fetchall()
    }


@pytest.fixture
def store(tmp_path: Path) -> Path:
    """A warehouse with one view (``pit``: features of A and B at T0) and a table that must never leak."""
    path = tmp_path / "w.duckdb"
    history = pd.DataFrame(
        {"symbol": ["A", "B"], "event_ts": [T0, T0], "created_ts": [T0, T0], "pit_x": [1.0, 2.0]}
    ).astype({"event_ts": "datetime64[us, UTC]", "created_ts": "datetime64[us, UTC]"})
    with warehouse.connect(path) as conn:
        write_history(conn, view(None), history)
        conn.execute(f"CREATE TABLE governance.model_audit_log AS SELECT '{SECRET}' AS secret")
    return path


def entities_with(name: str, first: bool = False) -> pd.DataFrame:
    n = len(HOSTILE_VALUES)
    frame = pd.DataFrame(
        {
            "symbol": ["A", "B", "Z", "x'); DROP TABLE features.pit__v1; --", "A", "B"][:n],
            "event_timestamp": pd.Series([T0 + pd.Timedelta(minutes=i) for i in range(n)]).astype(
                "datetime64[us, UTC]"
            ),
        }
    )
    frame.insert(0 if first else 2, name, HOSTILE_VALUES)
    return frame


EXPECTED_PIT_X = [1.0, 2.0, np.nan, np.nan, 1.0, 2.0]


def assert_nothing_leaked(result: pd.DataFrame) -> None:
    text = result.astype(str).to_numpy().ravel().tolist() + [str(c) for c in result.columns]
    assert not any(SECRET in cell for cell in text)


def files_in(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir()}


@pytest.mark.parametrize("first", [False, True], ids=["after_keys", "before_keys"])
def test_hostile_column_names_in_a_frame_come_back_unchanged(store: Path, first: bool) -> None:
    with warehouse.connect(store) as conn:  # writable on purpose: nothing may be written through it
        before, files = catalog_state(conn), files_in(store.parent)
        for name in NAMES:
            entities = entities_with(name, first)
            got = get_historical_features(conn, entities, [view(None)])
            assert list(got.columns) == [*entities.columns, "pit_x"], repr(name)
            assert got[name].tolist() == HOSTILE_VALUES, repr(name)
            np.testing.assert_array_equal(got["pit_x"].to_numpy(dtype=float), EXPECTED_PIT_X)
            assert_nothing_leaked(got)
        assert catalog_state(conn) == before
        assert files_in(store.parent) == files


def test_all_hostile_names_at_once(store: Path) -> None:
    entities = entities_with("seed")
    for i, name in enumerate(NAMES):
        entities.insert(i % 3, name, HOSTILE_VALUES)
    with warehouse.connect(store, read_only=True) as conn:
        got = get_historical_features(conn, entities, [view(None)])
    assert list(got.columns) == [*entities.columns, "pit_x"]
    pd.testing.assert_frame_equal(got.drop(columns="pit_x"), entities)
    assert_nothing_leaked(got)


def write_entity_file(frame: pd.DataFrame, path: Path) -> None:
    if path.suffix == ".parquet":
        pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path)
        return
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle, quoting=csv.QUOTE_NONNUMERIC)
        writer.writerow(frame.columns)
        for row in frame.astype(object).itertuples(index=False):
            writer.writerow([v.isoformat() if isinstance(v, pd.Timestamp) else v for v in row])


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_hostile_column_names_in_an_entity_file(store: Path, tmp_path: Path, suffix: str) -> None:
    """Parquet keeps any name, so it must come back exactly; a CSV header is up to DuckDB's reader (it may
    rename or refuse a name), so the result must be the rows and features or a RetrievalError, nothing else."""
    files = tmp_path / "files"
    files.mkdir()
    outcomes = {"ok": 0, "refused": 0}
    with warehouse.connect(store, read_only=True) as conn:
        before = catalog_state(conn)
        for i, name in enumerate(NAMES):
            entities = entities_with(name, first=i % 2 == 1)
            source, out = files / f"e{i}{suffix}", files / f"o{i}.parquet"
            write_entity_file(entities, source)
            try:
                rows = retrieve_to_file(conn, str(source), [view(None)], str(out))
            except RetrievalError as exc:
                assert suffix == ".csv", f"{name!r}: {exc}"
                outcomes["refused"] += 1
                continue
            got = pd.read_parquet(out)
            assert rows == len(entities) and len(got.columns) == 4, repr(name)
            np.testing.assert_array_equal(got["pit_x"].to_numpy(dtype=float), EXPECTED_PIT_X)
            assert got["symbol"].tolist() == entities["symbol"].tolist()
            if suffix == ".parquet":
                assert list(got.columns) == [*entities.columns, "pit_x"], repr(name)
                assert got[name].tolist() == HOSTILE_VALUES
            assert_nothing_leaked(got)
            outcomes["ok"] += 1
        assert catalog_state(conn) == before
        # the connection is still usable: no result left open on it
        conn.register("_probe", pd.DataFrame({"x": [1]}))
        assert conn.sql("SELECT x FROM _probe").fetchall() == [(1,)]
    assert {p.name for p in files.iterdir() if not p.name.startswith(("e", "o"))} == set()  # no stray files
    assert outcomes["ok"] >= len(NAMES) // 2  # the attack really ran through the join, not only into errors


def test_retrieve_to_file_leaves_the_connection_usable(store: Path, tmp_path: Path) -> None:
    """A result left open on the connection made its next register/sql fail (ResourceInUseException)."""
    source = tmp_path / "e.csv"
    write_entity_file(entities_with("note"), source)
    with warehouse.connect(store, read_only=True) as conn:
        assert retrieve_to_file(conn, str(source), [view(None)], str(tmp_path / "o.csv")) == len(HOSTILE_VALUES)
        assert conn.sql("SELECT 1").fetchall() == [(1,)]
        got = get_historical_features(conn, entities_with("note"), [view(None)])
        assert retrieve_to_file(conn, str(source), [view(None)], str(tmp_path / "o.parquet")) == len(got)
    as_csv = pd.read_csv(tmp_path / "o.csv")
    np.testing.assert_array_equal(as_csv["pit_x"].to_numpy(dtype=float), EXPECTED_PIT_X)
    assert list(as_csv.columns) == ["symbol", "event_timestamp", "note", "pit_x"]


@pytest.mark.parametrize(
    ("columns", "message"),
    [
        (["symbol", LEAK], "has no 'event_timestamp' column"),
        ([LEAK, "event_timestamp"], "lacks 'symbol', the entity key of view 'pit'"),
        (["symbol", "symbol", "event_timestamp"], "2 columns named 'symbol'"),
        (["symbol", "event_timestamp", "event_timestamp"], "2 columns named 'event_timestamp'"),
        (["symbol", "event_timestamp", "pit_x"], "'pit_x' of view 'pit' clashes with entity frame"),
        (["symbol", "x" * 5000], r"has no 'event_timestamp' column \(columns: 'symbol', 'xxx.*characters\)"),
    ],
)
def test_bad_entity_columns_are_named(store: Path, columns: list[str], message: str) -> None:
    entities = pd.DataFrame([["A", T0, T0][: len(columns)]], columns=columns)
    with warehouse.connect(store, read_only=True) as conn, pytest.raises(RetrievalError, match=message) as info:
        get_historical_features(conn, entities, [view(None)])
    assert len(str(info.value)) < 400  # a 5000-character name is clipped in the message


@pytest.mark.parametrize(
    ("times", "message"),
    [
        ([T0, None], "entity frame, row 1: event_timestamp is missing"),
        (
            ["2026-03-01T00:00:00Z", "not a time"],
            "entity frame, row 1: event_timestamp 'not a time' is not a timestamp",
        ),
        (["2026-03-01", "x'); DROP TABLE features.pit__v1; --"], "row 1: event_timestamp \"x'\\); DROP"),
    ],
)
def test_bad_entity_times_name_the_row(store: Path, times: list[object], message: str) -> None:
    entities = pd.DataFrame({"symbol": ["A", "B"], "event_timestamp": times})
    with warehouse.connect(store, read_only=True) as conn, pytest.raises(RetrievalError, match=message):
        get_historical_features(conn, entities, [view(None)])


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("symbol,event_timestamp\nA,2026-03-01 00:00:00\nB,notatime\n", "row 2: event_timestamp 'notatime' is not"),
        ("symbol,event_timestamp\nA,2026-03-01 00:00:00\nB,\n", "row 2: event_timestamp is missing"),
        ("symbol,event_timestamp\nA,17\n", "row 1: event_timestamp '17' is not a timestamp"),
        ("symbol\nA\n", "has no 'event_timestamp' column"),
    ],
)
def test_bad_entity_files_name_the_file_and_row(store: Path, tmp_path: Path, content: str, message: str) -> None:
    source, out = tmp_path / "entities.csv", tmp_path / "out.parquet"
    source.write_text(content)
    with warehouse.connect(store, read_only=True) as conn, pytest.raises(RetrievalError) as info:
        retrieve_to_file(conn, str(source), [view(None)], str(out))
    assert str(source) in str(info.value)
    assert message.replace("\\", "") in str(info.value)
    assert not out.exists()


def test_unwritable_output_is_named_and_leaves_nothing(store: Path, tmp_path: Path) -> None:
    source = tmp_path / "e.csv"
    write_entity_file(entities_with("note"), source)
    (tmp_path / "a_file").write_text("")
    with warehouse.connect(store, read_only=True) as conn:
        for out in (tmp_path / "missing_dir" / "o.parquet", tmp_path / "a_file" / "o.csv"):
            with pytest.raises(RetrievalError, match=f"cannot write {out}"):
                retrieve_to_file(conn, str(source), [view(None)], str(out))
        assert conn.sql("SELECT 1").fetchall() == [(1,)]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file", "e.csv", "w.duckdb"]


@pytest.mark.parametrize("name", ['a"b', '"', 'x"; DROP TABLE t; --', "é 𝕏", "a\nb", "_row"])
def test_quote_ident_round_trips_any_name_through_duckdb(name: str) -> None:
    conn = duckdb.connect()
    quoted = warehouse.quote_ident(name)
    conn.execute(f"CREATE TABLE t ({quoted} INTEGER)")
    conn.execute(f"INSERT INTO t ({quoted}) VALUES (7)")
    assert conn.execute(f"SELECT {quoted} FROM t").fetchall() == [(7,)]
    assert [r[0] for r in conn.execute("DESCRIBE t").fetchall()] == [name]


@pytest.mark.parametrize("name", ["", "a\x00b"])
def test_quote_ident_refuses_what_no_identifier_can_be(name: str) -> None:
    with pytest.raises(ValueError, match="not a usable SQL identifier"):
        warehouse.quote_ident(name)
