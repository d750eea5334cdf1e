"""Shared fixtures: every test gets its own data directory (warehouse, online store) under tmp_path.

Also ``wait_until``, the one way a test waits for another process: bounded by progress, not by a guess.
"""

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

import pandas as pd
import pytest
import redis

from mlops_pipelines.catalog.feature_views import load_catalog
from mlops_pipelines.lib.core import warehouse
from mlops_pipelines.lib.features import feature_store
from mlops_pipelines.lib.features.feature_views import FeatureCatalog
from mlops_pipelines.lib.ingestion.synthetic_market import SyntheticMarketConfig, generate_bars
from mlops_pipelines.lib.ingestion.validation import validate_bars

SMALL_MARKET = SyntheticMarketConfig(n_symbols=6, n_sectors=3, regime_shift_at=datetime(2026, 1, 8, tzinfo=UTC))
# A safety net only, so that a hung test ends: a slow or busy machine never comes near it. What a test really
# waits for is a sign of progress (a file, an event, a process exiting); a process it waits on that dies ends
# the wait at once, with that process's output.
CEILING_S = 1800.0
T = TypeVar("T")


def wait_until(
    what: str,
    condition: Callable[[], T | None],
    *,
    watch: Sequence[subprocess.Popen] = (),
    log: Callable[[], str] | None = None,
    ceiling_s: float = CEILING_S,
    interval_s: float = 0.2,
) -> T:
    """Poll ``condition`` until it returns something truthy, and return that. Fails as soon as a process in
    ``watch`` has exited without the condition holding (then nothing will make it hold), and after
    ``ceiling_s`` (a hung test). ``log`` adds what the watched processes wrote to the failure message."""
    deadline = time.monotonic() + ceiling_s
    while True:
        if value := condition():
            return value
        exited = [p for p in watch if p.poll() is not None]
        if exited and not (value := condition()):  # look again: it may have held just before the exit
            codes = ", ".join(f"pid {p.pid} exited {p.returncode}" for p in exited)
            raise AssertionError(f"{what}: never happened ({codes})\n{log() if log else ''}")
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within the {ceiling_s:.0f} s ceiling\n{log() if log else ''}")
        time.sleep(interval_s)


def finished(process: subprocess.Popen) -> Callable[[], bool]:
    """For ``wait_until``: the process has exited (whatever its exit code; the caller checks it)."""
    return lambda: process.poll() is not None


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests marked slow spread over both workers of ``make test``, each worker starting with its share.

    ``--dist worksteal`` hands the first half of this list to one worker and the second half to the other; an
    idle worker then steals the tail of the other's queue. So every other slow test goes first in each half:
    they start at once, in parallel, and the short tests fill in around them instead of one slow test ending
    the run alone."""
    slow = [item for item in items if item.get_closest_marker("slow")]
    fast = [item for item in items if not item.get_closest_marker("slow")]
    first, second = slow[0::2], slow[1::2]
    cut = max(0, len(items) // 2 - len(first))
    items[:] = first + fast[:cut] + second + fast[cut:]


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point every MLOPS_* path at tmp_path, so nothing touches the working directory."""
    monkeypatch.setenv("MLOPS_DATA_DIR", str(tmp_path / "data"))
    for name in (
        "MLOPS_WAREHOUSE_PATH",
        "MLOPS_ONLINE_STORE",
        "MLOPS_ONLINE_STORE_PATH",
        "MLOPS_RAW_DIR",
        "MLOPS_MARKET_SOURCE",
        "MLOPS_REDIS_URL",
        "MLOPS_REDIS_PASSWORD",
        "MLOPS_REDIS_PASSWORD_FILE",
    ):
        monkeypatch.delenv(name, raising=False)
    return tmp_path / "data"


def free_port() -> int:
    """A TCP port nothing listens on right now (the server started on it retries if another process wins it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def require(binary: str | None, what: str, install: str) -> str:
    """The binary's path; a missing one skips the test on a developer's machine and fails it in CI (``CI`` set),
    where ``.ci/run`` installs it."""
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail(f"{what} is not installed (CI installs it: {install})")
        pytest.skip(f"{what} is not installed ({install})")
    return binary


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Redis server (the Debian package's ``redis-server``) on 127.0.0.1, no persistence, in a temporary
    directory, for this test session (each xdist worker gets its own); its URL. Without the binary the tests
    that need it are skipped on a developer's machine and fail in CI (``CI`` set), where ``.ci/run`` installs it."""
    binary = require(shutil.which("redis-server"), "redis-server", "apt-get install redis-server")
    directory = tmp_path_factory.mktemp("redis")
    for _ in range(5):
        port = free_port()
        options = {"port": str(port), "bind": "127.0.0.1", "save": "", "appendonly": "no", "dir": str(directory)}
        options["logfile"] = str(directory / "redis.log")
        server = subprocess.Popen(
            [binary, *(part for name, value in options.items() for part in (f"--{name}", value))],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        url = f"redis://127.0.0.1:{port}/0"

        def answers(url: str = url) -> bool:
            try:
                return bool(redis.Redis.from_url(url, socket_connect_timeout=1).ping())
            except redis.ConnectionError:
                return False

        try:
            wait_until("redis-server answers", answers, watch=[server], interval_s=0.05, ceiling_s=60)
        except AssertionError:
            server.kill()
            server.wait()
            continue  # the port was taken meanwhile: another one
        try:
            yield url
        finally:
            server.terminate()
            server.wait(timeout=60)
        return
    pytest.fail(f"redis-server did not start; its log: {directory / 'redis.log'}")


@pytest.fixture
def redis_url(redis_server: str) -> str:
    """The session's Redis server, emptied for this test."""
    redis.Redis.from_url(redis_server).flushall()
    return redis_server


@pytest.fixture(scope="session")
def small_bars() -> pd.DataFrame:
    """Ten days of six symbols, validated."""
    raw = generate_bars(SMALL_MARKET, datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 11, tzinfo=UTC))
    return validate_bars(raw).accepted


@pytest.fixture
def catalog() -> FeatureCatalog:
    return load_catalog()


@pytest.fixture
def feature_warehouse(tmp_path: Path, small_bars: pd.DataFrame, catalog: FeatureCatalog) -> Iterator[Path]:
    """A warehouse file with raw bars and every feature view materialized."""
    path = tmp_path / "warehouse.duckdb"
    with warehouse.connect(path) as conn:
        conn.register("_bars", small_bars)
        conn.execute("CREATE TABLE raw.market_bars AS SELECT * FROM _bars")
        conn.unregister("_bars")
        for name in catalog.topological_order():
            feature_store.materialize_view(conn, catalog, name)
    yield path


@pytest.fixture(scope="session")
def mlflow_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An MLflow SQLite store migrated once per session; tests get a copy (migrations take seconds)."""
    from mlops_pipelines.lib.core.tracking import Tracking

    root = tmp_path_factory.mktemp("mlflow_template")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    Tracking(uri, uri, str(root / "artifacts")).experiment_id("template")
    return root / "mlflow.db"


@pytest.fixture
def tracking(tmp_path: Path, mlflow_template: Path):
    """A real MLflow tracking + registry store (SQLite) under tmp_path."""
    import shutil

    from mlops_pipelines.lib.core.tracking import Tracking

    (tmp_path / "mlflow").mkdir()
    shutil.copy(mlflow_template, tmp_path / "mlflow" / "mlflow.db")
    uri = f"sqlite:///{tmp_path / 'mlflow' / 'mlflow.db'}"
    return Tracking(uri, uri, str(tmp_path / "mlflow" / "artifacts"))
