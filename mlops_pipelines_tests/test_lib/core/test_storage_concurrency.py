"""Real processes against the warehouse, the online store and the MLflow store: locks, kills, concurrent use."""

import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pandas as pd
import pytest
import redis

from mlops_pipelines.lib.core import warehouse
from mlops_pipelines.lib.features.online_store import (
    OnlineStoreLocation,
    OnlineStoreMissing,
    write_snapshot,
)
from mlops_pipelines.lib.features.online_store_redis import NAMESPACE
from mlops_pipelines_tests.conftest import CEILING_S, wait_until

pytestmark = pytest.mark.slow


def spawn(code: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def wait_for(path: Path, child: subprocess.Popen) -> None:
    """Until the child has created ``path`` (it has loaded and reached that point); fails at once if it died."""
    wait_until(
        f"{path.name} appears", path.exists, watch=[child], log=lambda: child.stderr.read() if child.stderr else ""
    )


def test_killed_writer_leaves_the_previous_table_intact(tmp_path: Path) -> None:
    """A table replaced the way the feature materializer does (CREATE OR REPLACE inside ``warehouse.transaction``)
    keeps its previous content when the writer is killed mid-way."""
    db, started = tmp_path / "w.duckdb", tmp_path / "started"
    with warehouse.connect(db) as conn, warehouse.transaction(conn):
        conn.execute("CREATE OR REPLACE TABLE features.t AS SELECT range AS x FROM range(10)")
    child = spawn(f"""
        from pathlib import Path
        from mlops_pipelines.lib.core import warehouse
        with warehouse.connect({str(db)!r}) as conn, warehouse.transaction(conn):
            Path({str(started)!r}).touch()
            conn.execute("CREATE OR REPLACE TABLE features.t AS "
                "SELECT range AS x, md5(CAST(range AS VARCHAR)) AS h FROM range(400000000)")
    """)
    wait_for(started, child)
    time.sleep(1.0)
    assert child.poll() is None, "the write finished before it could be killed; make it bigger"
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    with warehouse.connect(db) as conn:
        assert warehouse.table_schema(conn, "features.t") == {"x": "BIGINT"}
        assert warehouse.row_count(conn, "features.t") == 10


def test_tables_replaced_together_are_replaced_all_or_nothing(tmp_path: Path) -> None:
    """Ingestion replaces the day's bars and its quarantined rows in one transaction: a failure in the second
    write leaves the first table as it was."""
    with warehouse.connect(tmp_path / "w.duckdb") as conn:
        warehouse.replace_rows(conn, "raw.a", pd.DataFrame({"x": [1, 2]}), where="true")
        warehouse.replace_rows(conn, "raw.b", pd.DataFrame({"y": [1]}), where="true")
        with pytest.raises(duckdb.ConversionException, match="not a number"), warehouse.transaction(conn):
            warehouse.replace_rows(conn, "raw.a", pd.DataFrame({"x": [9]}), where="true", own_transaction=False)
            warehouse.replace_rows(
                conn, "raw.b", pd.DataFrame({"y": ["not a number"]}), where="true", own_transaction=False
            )
        assert conn.execute("SELECT x FROM raw.a ORDER BY x").fetchall() == [(1,), (2,)]
        assert conn.execute("SELECT y FROM raw.b").fetchall() == [(1,)]


@pytest.mark.parametrize(
    "error",
    [
        duckdb.IOException(
            "IO Error: Trying to read a database file with version number 39, but we can only read version 64"
        ),
        duckdb.SerializationException("Serialization Error: Failed to deserialize: field id mismatch"),
    ],
)
def test_unreadable_storage_version_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, error: duckdb.Error
) -> None:
    """What DuckDB raises for a file of another storage version (faked: writing one needs that other build)."""

    def connect(*args: object, **kwargs: object) -> None:
        raise error

    monkeypatch.setattr(duckdb, "connect", connect)
    expected = r"w\.duckdb.*storage version.*pin the matching"
    with pytest.raises(warehouse.WarehouseVersionError, match=expected), warehouse.connect(tmp_path / "w.duckdb"):
        pass


def test_writer_waits_for_another_process_lock(tmp_path: Path) -> None:
    db, held, release = tmp_path / "w.duckdb", tmp_path / "held", tmp_path / "release"
    child = spawn(f"""
        import time
        from pathlib import Path
        from mlops_pipelines.lib.core import warehouse
        with warehouse.connect({str(db)!r}) as conn:
            Path({str(held)!r}).touch()
            while not Path({str(release)!r}).exists():
                time.sleep(0.01)
    """)
    wait_for(held, child)
    with (
        pytest.raises(warehouse.WarehouseLockTimeout, match="stayed locked"),
        warehouse.connect(db, lock_timeout_s=0.3),
    ):
        pass
    start = time.monotonic()
    threading.Timer(1.0, release.touch).start()  # the other process lets go a second from now
    with warehouse.connect(db, lock_timeout_s=CEILING_S) as conn:
        conn.execute("CREATE TABLE raw.after AS SELECT 1 AS x")
    assert time.monotonic() - start >= 1.0  # it really waited for the other process
    assert child.wait() == 0, child.stderr.read() if child.stderr else ""


def snapshot(generation: int, n: int = 200) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "entity_key": [f"SYM{i:04d}" for i in range(n)],
            "generation": [generation] * n,
            "x": [float(generation)] * n,
            "event_ts": pd.Series([pd.Timestamp("2026-01-01", tz="UTC")] * n).astype("datetime64[us, UTC]"),
        }
    )


@pytest.fixture(params=["sqlite", "redis"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> OnlineStoreLocation:
    """The online store contract holds for both backends: the embedded SQLite file and Redis (a real server)."""
    if request.param == "sqlite":
        return OnlineStoreLocation("sqlite", tmp_path / "online.sqlite")
    return OnlineStoreLocation("redis", tmp_path / "unused.sqlite", request.getfixturevalue("redis_url"))


def reader_code(store: OnlineStoreLocation) -> str:
    """Python source, for a child process, that opens a reader on ``store`` as ``store``."""
    return (
        "from pathlib import Path\n"
        "from mlops_pipelines.lib.features.online_store import OnlineStoreLocation\n"
        f"store = OnlineStoreLocation({store.backend!r}, Path({str(store.path)!r}), {store.redis_url!r}).reader()\n"
    )


def test_online_store_lookups(store: OnlineStoreLocation) -> None:
    with pytest.raises(OnlineStoreMissing, match="materialize features/online_store"):
        store.reader()
    before = datetime.now(UTC)
    store.write(snapshot(1), key="entity_key", snapshot_id="run-1")
    reader = store.reader()
    assert reader.lookup_one("SYM0003") == {"generation": 1, "x": 1.0, "event_ts": "2026-01-01T00:00:00.000000Z"}
    assert reader.lookup_one("NOPE") is None
    many = reader.lookup(["SYM0001", "NOPE", "SYM0001", "SYM0150"])
    assert list(many) == ["SYM0001", "NOPE", "SYM0150"] and many["NOPE"] is None
    assert reader.snapshot_id() == "run-1"
    written_at = reader.written_at()  # staleness: how old the served snapshot is
    assert written_at is not None and before <= written_at <= datetime.now(UTC)
    assert len(reader.lookup([f"SYM{i:04d}" for i in range(200)] * 3)) == 200  # chunking beyond 500 parameters
    assert reader.lookup([]) == {}
    with pytest.raises(ValueError, match="duplicate 'entity_key'"):
        store.write(pd.concat([snapshot(2), snapshot(2)]), key="entity_key", snapshot_id="bad")
    assert reader.snapshot_id() == "run-1"  # the failed write changed nothing
    odd = snapshot(3, 3).assign(flag=[True, False, True], x=[1.5, float("nan"), None], note=["a", None, "c"])
    store.write(odd, key="entity_key", snapshot_id="run-3")  # booleans, missing values and text, alike in both
    assert reader.lookup(["SYM0000", "SYM0001", "SYM0150"]) == {
        "SYM0000": {"generation": 3, "x": 1.5, "event_ts": "2026-01-01T00:00:00.000000Z", "flag": 1, "note": "a"},
        "SYM0001": {"generation": 3, "x": None, "event_ts": "2026-01-01T00:00:00.000000Z", "flag": 0, "note": None},
        "SYM0150": None,  # gone with the refresh
    }
    reader.close()


def test_online_store_reader_in_another_process_never_sees_a_torn_snapshot(
    tmp_path: Path, store: OnlineStoreLocation
) -> None:
    ready = tmp_path / "ready"
    # more keys than one SQLite statement takes (the lookup reads them in chunks, from one snapshot) and than
    # one Redis write batch (a refresh is several commands, switched to at once)
    n = 5000
    store.write(snapshot(0, n), key="entity_key", snapshot_id="0")
    reader = spawn(
        reader_code(store)
        + f"""
import time
keys = [f"SYM{{i:04d}}" for i in range({n})]
Path({str(ready)!r}).touch()
seen, reads, deadline = set(), 0, time.monotonic() + {CEILING_S}
while time.monotonic() < deadline and not Path({str(ready)!r} + ".stop").exists():
    vectors = store.lookup(keys)
    generations = {{v["generation"] for v in vectors.values()}}
    assert len(generations) == 1, f"torn read: {{generations}}"
    assert all(v["x"] == float(v["generation"]) for v in vectors.values())
    seen |= generations
    reads += 1
print(len(seen), reads)
"""
    )
    wait_for(ready, reader)
    for generation in range(1, 40):
        store.write(snapshot(generation, n), key="entity_key", snapshot_id=str(generation))
        time.sleep(0.02)
    Path(f"{ready}.stop").touch()
    out, err = reader.communicate(timeout=CEILING_S)
    assert reader.returncode == 0, err
    generations_seen, reads = map(int, out.split())
    assert generations_seen >= 5 and reads > generations_seen  # it really read while the writer wrote


def test_redis_refresh_killed_midway_leaves_readers_on_the_previous_snapshot(redis_url: str, tmp_path: Path) -> None:
    """A writer killed (SIGKILL) while it writes a new snapshot: the switch never ran, so readers keep the previous
    complete snapshot; the half-written staging hash expires on its own; the next refresh succeeds."""
    store = OnlineStoreLocation("redis", tmp_path / "unused.sqlite", redis_url)
    store.write(snapshot(1, 50), key="entity_key", snapshot_id="complete")
    client = redis.Redis.from_url(redis_url)
    writer = spawn(f"""
        import pandas as pd
        from mlops_pipelines.lib.features import online_store_redis
        n = 400_000
        frame = pd.DataFrame({{"entity_key": [f"K{{i:07d}}" for i in range(n)], "generation": 2, "x": 2.0}})
        online_store_redis.write_snapshot({redis_url!r}, frame, key="entity_key", snapshot_id="killed")
    """)

    def half_written() -> list[bytes]:
        return list(client.scan_iter(f"{NAMESPACE}:staging:*"))

    (partial,) = wait_until("the writer has begun its snapshot", half_written, watch=[writer], interval_s=0.005)
    os.kill(writer.pid, signal.SIGKILL)
    writer.wait()
    reader = store.reader()
    assert reader.snapshot_id() == "complete", "the write finished before it could be killed; enlarge it"
    assert 0 < client.hlen(partial) < 400_000  # it really died half-way
    assert 0 < client.ttl(partial) <= 3600  # and what it left expires
    vectors = reader.lookup([f"SYM{i:04d}" for i in range(50)] + ["K0000000"])
    assert vectors.pop("K0000000") is None and {v["generation"] for v in vectors.values()} == {1}  # type: ignore[index]
    store.write(snapshot(3, 50), key="entity_key", snapshot_id="after")  # the placebo: a refresh that completes
    assert reader.snapshot_id() == "after" and reader.lookup_one("SYM0007") == {
        "generation": 3,
        "x": 3.0,
        "event_ts": "2026-01-01T00:00:00.000000Z",
    }
    assert client.ttl(f"{NAMESPACE}:live") == -1  # the served snapshot never expires
    assert list(client.scan_iter(f"{NAMESPACE}:staging:*")) == [partial]  # only the killed writer's, expiring


def test_processes_starting_together_on_a_fresh_mlflow_store_all_succeed(tmp_path: Path) -> None:
    """The store is created and migrated once, under a lock (MLflow migrates without one: concurrent first uses
    race); the experiment is created once."""
    uri, go = f"sqlite:///{tmp_path / 'mlflow.db'}", tmp_path / "go"
    children = [
        spawn(f"""
            import time
            from pathlib import Path
            from mlops_pipelines.lib.core.tracking import Tracking
            Path({str(go)!r} + ".{i}").touch()  # loaded: the race is between the stores' creation alone
            while not Path({str(go)!r}).exists():
                time.sleep(0.005)
            tracking = Tracking({uri!r}, {uri!r}, {str(tmp_path / "artifacts")!r})
            with tracking.run("shared", run_name="r{i}", tags={{}}) as run:
                print(run.info.experiment_id)
        """)
        for i in range(3)
    ]
    for i, child in enumerate(children):
        wait_for(Path(f"{go}.{i}"), child)
    go.touch()
    outputs = [child.communicate(timeout=CEILING_S) for child in children]
    for child, (_, err) in zip(children, outputs, strict=True):
        assert child.returncode == 0, err[-3000:]
    assert len({out.strip() for out, _ in outputs}) == 1  # one experiment, found or created by each


def test_truncated_warehouse_is_refused_at_open_naming_the_file(tmp_path: Path) -> None:
    """A file cut short (a full disk, an interrupted copy) used to open and serve reads until a query reached a
    missing block. Cut at half, at a block edge, one byte short, and inside the headers: every open refuses it."""
    intact = tmp_path / "intact.duckdb"
    with warehouse.connect(intact) as conn:
        for i in range(3):
            conn.execute(f"CREATE TABLE raw.t{i} AS SELECT range AS x, md5(range::VARCHAR) AS h FROM range(200000)")
    size = intact.stat().st_size
    with warehouse.connect(intact, read_only=True) as conn:  # the placebo: the intact file opens and reads
        assert warehouse.row_count(conn, "raw.t2") == 200_000
    for cut in (size // 2, size - 262_144, size - 1, 5000):
        damaged = tmp_path / f"cut_{cut}.duckdb"
        damaged.write_bytes(intact.read_bytes()[:cut])
        for read_only in (True, False):
            with (
                pytest.raises(warehouse.WarehouseCorrupt, match=re.escape(str(damaged))),
                warehouse.connect(damaged, read_only=read_only),
            ):
                pass
        assert damaged.stat().st_size == cut  # a refused writable open did not touch the file


def test_online_store_wal_stays_bounded_under_concurrent_reads(tmp_path: Path) -> None:
    """With a reader always inside a read transaction SQLite's automatic checkpoints never reset the WAL: it grew
    by a whole snapshot per refresh. Each refresh now truncates it once the readers of older snapshots are done."""
    path, ready = tmp_path / "online.sqlite", tmp_path / "ready"
    n = 2000
    write_snapshot(path, snapshot(0, n), key="entity_key", snapshot_id="0")
    reader = spawn(f"""
        import time
        from pathlib import Path
        from mlops_pipelines.lib.features.online_store import OnlineStoreReader
        store = OnlineStoreReader({str(path)!r})
        keys = [f"SYM{{i:04d}}" for i in range({n})]
        store.lookup(keys)
        Path({str(ready)!r}).touch()
        seen, reads, deadline = set(), 0, time.monotonic() + {CEILING_S}
        while time.monotonic() < deadline and not Path({str(ready)!r} + ".stop").exists():
            seen |= {{v["generation"] for v in store.lookup(keys).values()}}
            reads += 1
        print(len(seen), reads)
    """)
    wait_for(ready, reader)
    wal, sizes = Path(f"{path}-wal"), []
    for generation in range(1, 31):
        write_snapshot(path, snapshot(generation, n), key="entity_key", snapshot_id=str(generation))
        sizes.append(wal.stat().st_size if wal.exists() else 0)
    Path(f"{ready}.stop").touch()
    out, err = reader.communicate(timeout=CEILING_S)
    assert reader.returncode == 0, err
    generations_seen, reads = map(int, out.split())
    assert generations_seen >= 5 and reads > 30  # the reader really read throughout the refreshes
    assert max(sizes) <= 2 * path.stat().st_size, sizes  # was ~30 snapshots' worth, growing with every refresh


def test_a_file_shorter_than_its_free_blocks_still_opens_and_a_cut_into_used_blocks_does_not(tmp_path: Path) -> None:
    """DuckDB trims free blocks from the end of the file but its header keeps counting them (here: the blocks of
    a rolled-back write); that file is complete and must open. Cutting into the blocks it uses must not."""
    path = tmp_path / "trimmed.duckdb"
    with warehouse.connect(path) as conn:
        conn.execute("CREATE TABLE raw.a AS SELECT range AS x, md5(range::VARCHAR) AS h FROM range(300000)")
        conn.execute("CHECKPOINT")
        conn.execute("BEGIN")
        conn.execute("CREATE TABLE raw.big AS SELECT range AS x, md5(range::VARCHAR) AS h FROM range(3000000)")
        conn.execute("ROLLBACK")
        conn.execute("CHECKPOINT")
        conn.execute("INSERT INTO raw.a SELECT range, 'x' FROM range(10)")
        conn.execute("CHECKPOINT")
    with warehouse.connect(path, read_only=True) as conn:
        block_size, total = conn.execute("SELECT block_size, total_blocks FROM pragma_database_size()").fetchall()[0]
        assert path.stat().st_size < 3 * 4096 + block_size * total  # the situation this test is about
        assert warehouse.row_count(conn, "raw.a") == 300_010
    content = path.read_bytes()
    for cut in (len(content) - 1, len(content) - 300_000):
        path.write_bytes(content[:cut])
        with pytest.raises(warehouse.WarehouseCorrupt, match="trimmed.duckdb"), warehouse.connect(path, read_only=True):
            pass
