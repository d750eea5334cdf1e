"""A served stack on real stores, built once per module: an MLflow SQLite store, a DuckDB warehouse with the audit
log, an online store, and small LightGBM models registered and promoted through the lifecycle on the live
catalog's features; plus real uvicorn processes on 127.0.0.1 serving it."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest

from mlops_pipelines.catalog.feature_views import load_catalog
from mlops_pipelines.lib.core.tracking import Tracking
from mlops_pipelines.lib.features.online_store import write_snapshot
from mlops_pipelines.lib.governance.lifecycle import Lifecycle, open_lifecycle
from mlops_pipelines.lib.governance.promotion_policy import PromotionPolicy, evaluate
from mlops_pipelines.settings import Settings
from mlops_pipelines_tests.conftest import wait_until

ROOT = Path(__file__).resolve().parents[2]
MODEL = "toy_direction"  # production v1; v2 staged, approved and signed off (ready to promote)
STALE_GRAPH = "toy_stale"  # production v1 trained on an older feature graph: 409
AS_OF = datetime(2026, 2, 14, 12, tzinfo=UTC)  # the freshness clock of the served stack (MLOPS_SERVE_AS_OF)
SYMBOLS = [f"SYM{i:02d}" for i in range(120)]
STALE_SYMBOL = "OLDSYM"  # its features are older than the views' TTL at AS_OF: 503
MAX_ITEMS = 100
PASSING = PromotionPolicy.model_validate({"defaults": {"min_sharpe": 0.0}})


@dataclass
class Stack:
    root: Path
    env: dict[str, str]
    settings: Settings
    features: list[str]
    vectors: pd.DataFrame
    boosters: dict[tuple[str, str], lgb.Booster] = field(default_factory=dict)

    def tracking(self) -> Tracking:
        s = self.settings
        return Tracking(s.mlflow_tracking_uri, s.mlflow_registry_uri, s.mlflow_artifact_root)

    @contextmanager
    def lifecycle(self) -> Iterator[Lifecycle]:
        s = self.settings
        with open_lifecycle(self.tracking().client(), s.warehouse_path, s.audit_key_file) as lifecycle:
            yield lifecycle


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _register(stack: Stack, model: str, seed: int, *, graph_hash: str, views: dict[str, int]) -> str:
    rng = np.random.default_rng(seed)
    x = pd.DataFrame(rng.normal(size=(300, len(stack.features))), columns=stack.features)
    booster = lgb.train({"objective": "binary", "verbosity": -1}, lgb.Dataset(x, (x.iloc[:, 0] > 0).astype(int)), 5)
    tracking = stack.tracking()
    with tracking.run(model, run_name="toy", tags={"trained_by": "trainer"}) as run:
        tracking.client().log_metric(run.info.run_id, "sharpe", 1.0)
        logged = tracking.log_booster(run.info.run_id, booster, x.head(3))
        tracking.log_dict(run.info.run_id, {"config": {"feature_views": views}}, "manifest.json")
    with stack.lifecycle() as lifecycle:
        mv = lifecycle.register(
            model,
            source=logged.model_uri,
            run_id=run.info.run_id,
            model_id=logged.model_id,
            tags={"trained_by": "trainer", "artifact_sha256": logged.artifact_sha256, "feature_graph_hash": graph_hash},
            actor="trainer",
            reason="test",
        )
    stack.boosters[(model, str(mv.version))] = booster
    return str(mv.version)


def signed_off(lifecycle: Lifecycle, model: str, version: str) -> None:
    """Gate passed, approved by ``reviewer``, compliance signed by ``compliance``: ``ops`` may promote it."""
    result = evaluate(PASSING, model=model, strategy="s", metrics={"sharpe": 1.0})
    lifecycle.gate(model, version, result, actor="pipeline")
    lifecycle.approve(model, version, approver="reviewer", comment="ok")
    lifecycle.request_review(model, version, report_uri="report.html", actor="pipeline")
    lifecycle.decide_review(model, version, approve=True, reviewer="compliance", comment="signed off")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, mlflow_template: Path) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("serving")
    data = root / "data"
    (data / "mlflow").mkdir(parents=True)
    shutil.copy(mlflow_template, data / "mlflow" / "mlflow.db")
    env = {
        "MLOPS_DATA_DIR": str(data),
        "MLOPS_SERVE_MODELS": f"{MODEL},{STALE_GRAPH}",
        "MLOPS_SERVE_AS_OF": AS_OF.isoformat(),
        "MLOPS_SERVE_MAX_ITEMS": str(MAX_ITEMS),
        "MLOPS_SERVE_REFRESH_S": "0.3",
    }
    with pytest.MonkeyPatch.context() as patch:
        for name in list(os.environ):
            if name.startswith("MLOPS_"):
                patch.delenv(name)
        for name, value in env.items():
            patch.setenv(name, value)
        settings = Settings.from_env()
    catalog = load_catalog()
    features = [f for view in catalog.views.values() for f in view.features if f != "sector"]
    rng = np.random.default_rng(1)
    vectors = pd.DataFrame(rng.normal(size=(len(SYMBOLS) + 1, len(features))), columns=features)
    vectors.iloc[3, 2] = np.nan  # a rolling feature not yet defined: served as missing, never refused
    vectors.insert(0, "entity_key", [*SYMBOLS, STALE_SYMBOL])
    vectors["sector"] = "tech"
    for i, view in enumerate(catalog.views):
        fresh = AS_OF - timedelta(minutes=30 + i)
        vectors[f"{view}__event_ts"] = pd.Series([fresh] * len(SYMBOLS) + [AS_OF - timedelta(hours=10)]).dt.tz_convert(
            "UTC"
        )
    write_snapshot(settings.online_store_path, vectors, key="entity_key", snapshot_id="test")
    built = Stack(root, env, settings, features, vectors)
    live = {name: view.version for name, view in catalog.views.items()}
    v1 = _register(built, MODEL, 1, graph_hash=catalog.graph_hash(), views=live)
    v2 = _register(built, MODEL, 2, graph_hash=catalog.graph_hash(), views=live)
    old = _register(built, STALE_GRAPH, 3, graph_hash="0" * 64, views={**live, "returns": live["returns"] - 1})
    with built.lifecycle() as lifecycle:
        for model, version in ((MODEL, v1), (STALE_GRAPH, old)):
            signed_off(lifecycle, model, version)
            lifecycle.promote_to_production(model, version, actor="ops", reason="test")
        signed_off(lifecycle, MODEL, v2)
    yield built


@dataclass
class Server:
    process: subprocess.Popen
    url: str
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text()[-4000:]


@contextmanager
def serving(stack: Stack, name: str = "server", *, ready: bool = True, **extra_env: str) -> Iterator[Server]:
    """``python -m mlops_pipelines.serving`` on a free loopback port, ready (``/readyz``) when yielded; with
    ``ready=False`` as soon as it is up (``/healthz``)."""
    port = free_port()
    log_path = stack.root / f"{name}-{port}.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLOPS_")}
    env.update(stack.env, MLOPS_SERVE_PORT=str(port), PYTHONPATH=str(ROOT), **extra_env)
    with open(log_path, "w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "mlops_pipelines.serving"], env=env, stdout=out, stderr=subprocess.STDOUT
        )
    server = Server(process, f"http://127.0.0.1:{port}", log_path)
    try:

        def answers() -> bool:
            try:
                return httpx.get(f"{server.url}/{'readyz' if ready else 'healthz'}", timeout=5).status_code == 200
            except httpx.TransportError:
                return False

        wait_until("the server answers", answers, watch=[process], log=server.log)
        yield server
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def served_json(path: Path) -> list[dict]:
    return [json.loads(line) for p in sorted(path.glob("*.jsonl")) for line in p.read_text().splitlines() if line]
