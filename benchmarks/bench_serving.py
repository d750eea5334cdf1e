"""Serving latency and throughput: our API (``mlops_pipelines.serving``: online feature lookup, freshness and
graph checks, the log write) against MLflow's scoring server (``mlflow models serve``, the features in the
request) on the same registered model, loopback, one worker each, in the same run.

    .venv/bin/python -m benchmarks.bench_serving [--seconds 5] [--trees 150] [--symbols 200]

Cases: 1 symbol and 100 symbols per request, 1 and 8 concurrent clients (threads with keep-alive
``http.client`` connections, the cheapest Python client), each for ``--seconds``. Reports p50, p99 and requests/s
per side and the ratios. Targets (ours): single-symbol p50 at most a quarter of MLflow's, p99 < 5 ms at 1
client and < 20 ms at 8, throughput at 8 clients at least 4x MLflow's; the seeds ask < 200 ms per inference and
< 50 ms for the online features. Before timing, both servers must return the same predictions (PASS/FAIL).
Then where our time goes: each step of the predict path timed in-process, the rest is HTTP and the framework.
"""

import argparse
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd

from benchmarks._common import percentiles
from mlops_pipelines.catalog.feature_views import load_catalog
from mlops_pipelines.lib.core.tracking import Tracking
from mlops_pipelines.lib.features.online_store import OnlineStoreReader, write_snapshot
from mlops_pipelines.lib.governance.lifecycle import open_lifecycle
from mlops_pipelines.lib.governance.promotion_policy import PromotionPolicy, evaluate
from mlops_pipelines.lib.monitoring.served_predictions import PredictionLogWriter, Served
from mlops_pipelines.serving.schemas import Prediction, PredictResponse

MODEL = "bench_direction"
AS_OF = datetime(2026, 2, 14, 12, tzinfo=UTC)
ROOT = Path(__file__).resolve().parents[1]
WIDTHS = (24, 10, 9, 9, 12, 9, 9, 11, 13)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def build_stack(root: Path, n_symbols: int, trees: int) -> tuple[dict[str, str], list[str], pd.DataFrame, Tracking]:
    """A registered, promoted model on the live catalog's features and an online store of ``n_symbols``."""
    data = root / "data"
    env = {
        "MLOPS_DATA_DIR": str(data),
        "MLOPS_SERVE_MODELS": MODEL,
        "MLOPS_SERVE_AS_OF": AS_OF.isoformat(),
        "MLOPS_SERVE_MAX_ITEMS": "500",
    }
    uri = f"sqlite:///{data / 'mlflow' / 'mlflow.db'}"
    (data / "mlflow").mkdir(parents=True)
    tracking = Tracking(uri, uri, str(data / "mlflow" / "artifacts"))
    catalog = load_catalog()
    features = [f for view in catalog.views.values() for f in view.features if f != "sector"]
    rng = np.random.default_rng(0)
    x = pd.DataFrame(rng.normal(size=(20_000, len(features))), columns=features)
    y = ((x.iloc[:, 0] + 0.5 * x.iloc[:, 3] + rng.normal(size=len(x))) > 0).astype(int)
    params = {"objective": "binary", "num_leaves": 15, "learning_rate": 0.05, "verbosity": -1, "num_threads": 1}
    booster = lgb.train(params, lgb.Dataset(x, y), trees)
    with tracking.run(MODEL, run_name="bench", tags={"trained_by": "trainer"}) as run:
        logged = tracking.log_booster(run.info.run_id, booster, x.head(3))
    policy = PromotionPolicy.model_validate({"defaults": {"min_sharpe": 0.0}})
    with open_lifecycle(tracking.client(), data / "warehouse.duckdb", data / "secrets" / "audit.key") as lc:
        lc.register(
            MODEL,
            source=logged.model_uri,
            run_id=run.info.run_id,
            model_id=logged.model_id,
            tags={
                "trained_by": "trainer",
                "artifact_sha256": logged.artifact_sha256,
                "feature_graph_hash": catalog.graph_hash(),
            },
            actor="trainer",
            reason="benchmark",
        )
        lc.gate(MODEL, "1", evaluate(policy, model=MODEL, strategy="s", metrics={"sharpe": 1.0}), actor="pipeline")
        lc.approve(MODEL, "1", approver="approver", comment="bench")
        lc.request_review(MODEL, "1", report_uri="r.html", actor="pipeline")
        lc.decide_review(MODEL, "1", approve=True, reviewer="compliance", comment="bench")
        lc.promote_to_production(MODEL, "1", actor="ops", reason="bench")
    vectors = pd.DataFrame(rng.normal(size=(n_symbols, len(features))), columns=features)
    vectors.insert(0, "entity_key", [f"SYM{i:04d}" for i in range(n_symbols)])
    vectors["sector"] = "tech"
    for view in catalog.views:
        vectors[f"{view}__event_ts"] = pd.Series([AS_OF - timedelta(minutes=30)] * n_symbols)
    write_snapshot(data / "online_store.sqlite", vectors, key="entity_key", snapshot_id="bench")
    return env, features, vectors, tracking


@contextmanager
def process(command: list[str], env: dict[str, str], log: Path, ready: Callable[[], bool]) -> Iterator[None]:
    with open(log, "w") as out:
        proc = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 600
        while not ready():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"{command[:4]} did not start:\n{log.read_text()[-3000:]}")
            time.sleep(0.2)
        yield
    finally:
        with suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def http_ok(port: int, path: str) -> bool:
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        conn.request("GET", path)
        ok = conn.getresponse().status == 200
        conn.close()
        return ok
    except OSError:
        return False


def call(conn: http.client.HTTPConnection, path: str, body: bytes) -> dict[str, Any]:
    conn.request("POST", path, body, {"content-type": "application/json"})
    response = conn.getresponse()
    data = response.read()
    if response.status != 200:
        raise RuntimeError(f"{path}: HTTP {response.status}: {data[:500]!r}")
    return json.loads(data)


def load(port: int, path: str, body: bytes, clients: int, seconds: float) -> tuple[list[float], float]:
    """Latencies (s) of every request and the throughput (req/s) of ``clients`` threads for ``seconds``."""
    latencies: list[list[float]] = [[] for _ in range(clients)]
    warm = threading.Barrier(clients + 1)
    window: list[float] = []

    def loop(i: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        for _ in range(20):  # warm-up, then every client starts measuring together
            call(conn, path, body)
        warm.wait()
        stop = time.monotonic() + seconds
        while not latencies[i] or time.monotonic() < stop:  # at least one measured request per client
            started = time.perf_counter()
            call(conn, path, body)
            latencies[i].append(time.perf_counter() - started)
        conn.close()

    threads = [threading.Thread(target=loop, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    warm.wait()
    began = time.monotonic()
    for thread in threads:
        thread.join()
    window.append(time.monotonic() - began)
    samples = [s for per in latencies for s in per]
    return samples, len(samples) / max(window[0], 1e-9)


def where_time_goes(root: Path, env: dict[str, str], features: list[str], tracking: Tracking, n: int) -> None:
    """Each step of our predict path in-process, per request of ``n`` symbols (median of many)."""
    booster = lgb.Booster(model_file=str(next((root / "data" / "mlflow" / "artifacts").rglob("model.lgb"), "")))
    reader = OnlineStoreReader(Path(env["MLOPS_DATA_DIR"]) / "online_store.sqlite")
    writer = PredictionLogWriter(root / "timing_log")
    symbols = [f"SYM{i:04d}" for i in range(n)]
    steps: dict[str, list[float]] = {"feature lookup": [], "checks + matrix": [], "model": [], "log write": []}
    steps["response model"] = []
    for _ in range(300):
        t0 = time.perf_counter()
        vectors = reader.lookup(symbols)
        t1 = time.perf_counter()
        oldest = (AS_OF - timedelta(hours=3)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        for s in symbols:
            assert all(vectors[s][f"{v}__event_ts"] >= oldest for v in ("returns", "volatility"))  # type: ignore[index]
        matrix = np.array([[vectors[s][f] for f in features] for s in symbols], dtype=float)  # type: ignore[index]
        t2 = time.perf_counter()
        values = booster.predict(matrix, num_threads=1)
        t3 = time.perf_counter()
        writer.append(
            Served("r", i, MODEL, "1", "production", "serve", s, None, float(v), 1.0, "x")
            for i, (s, v) in enumerate(zip(symbols, values, strict=True))
        )
        t4 = time.perf_counter()
        PredictResponse(
            request_id="r",
            model=MODEL,
            version="1",
            alias="production",
            feature_graph_hash="h",
            predictions=[
                Prediction(symbol=s, row=None, prediction=float(v), features_as_of="t")
                for s, v in zip(symbols, values, strict=True)
            ],
        ).model_dump_json()
        t5 = time.perf_counter()
        for name, (a, b) in zip(steps, ((t0, t1), (t1, t2), (t2, t3), (t3, t4), (t4, t5)), strict=True):
            steps[name].append(b - a)
    writer.close()
    parts = ", ".join(f"{name} {np.median(v) * 1e3:.3f} ms" for name, v in steps.items())
    print(f"  where the time goes ({n} symbol{'s' if n > 1 else ''}, in-process medians): {parts}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=5.0, help="duration of each case")
    parser.add_argument("--trees", type=int, default=150, help="boosting rounds of the served model")
    parser.add_argument("--symbols", type=int, default=200, help="symbols in the online store (>= 100)")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench_serving_"))
    try:
        run(root, args)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def run(root: Path, args: argparse.Namespace) -> None:
    env, features, vectors, tracking = build_stack(root, max(args.symbols, 100), args.trees)
    base = {k: v for k, v in os.environ.items() if not k.startswith(("MLOPS_", "MLFLOW_"))}
    ours_port, mlflow_port = free_port(), free_port()
    ours_env = {**base, **env, "MLOPS_SERVE_PORT": str(ours_port), "PYTHONPATH": str(ROOT)}
    uri = (
        tracking.tracking_uri
        if hasattr(tracking, "tracking_uri")
        else f"sqlite:///{root / 'data' / 'mlflow' / 'mlflow.db'}"
    )
    bin_dir = str(Path(sys.executable).parent)  # the scoring server execs `uvicorn` from PATH
    mlflow_env = {**base, "MLFLOW_TRACKING_URI": uri, "MLFLOW_REGISTRY_URI": uri, "PATH": f"{bin_dir}:{base['PATH']}"}
    mlflow_cmd = [
        str(Path(sys.executable).parent / "mlflow"),
        "models",
        "serve",
        "-m",
        f"models:/{MODEL}/1",
        "--env-manager",
        "local",
        "-h",
        "127.0.0.1",
        "-p",
        str(mlflow_port),
        "-w",
        "1",
    ]
    ours_cmd = [sys.executable, "-m", "mlops_pipelines.serving"]
    path_ours = f"/api/v1/models/{MODEL}/predict"
    with (
        process(ours_cmd, ours_env, root / "ours.log", lambda: http_ok(ours_port, "/readyz")),
        process(mlflow_cmd, mlflow_env, root / "mlflow.log", lambda: http_ok(mlflow_port, "/ping")),
    ):
        frame = vectors.set_index("entity_key")
        bodies = {}
        for n in (1, 100):
            symbols = [f"SYM{i:04d}" for i in range(n)]
            ours_body = json.dumps({"symbols": symbols}).encode()
            rows = frame.loc[symbols, features].to_numpy().tolist()
            mlflow_body = json.dumps({"dataframe_split": {"columns": features, "data": rows}}).encode()
            bodies[n] = (ours_body, mlflow_body)
            ours = call(http.client.HTTPConnection("127.0.0.1", ours_port), path_ours, ours_body)
            theirs = call(http.client.HTTPConnection("127.0.0.1", mlflow_port), "/invocations", mlflow_body)
            same = np.allclose([p["prediction"] for p in ours["predictions"]], theirs["predictions"], rtol=1e-9)
            print(f"{'PASS' if same else 'FAIL'}: {n} symbol(s), both servers return the same predictions")
            if not same:
                raise SystemExit(1)
        names = ("case", "ours p50", "p99", "req/s", "mlflow p50", "p99", "req/s", "p50 ratio", "req/s ratio")
        header = "".join(
            f"{name:>{w}}" if i else f"{name:<24}" for i, (name, w) in enumerate(zip(names, WIDTHS, strict=True))
        )
        print(header)
        results = {}
        for n in (1, 100):
            for clients in (1, 8):
                ours_s, ours_rps = load(ours_port, path_ours, bodies[n][0], clients, args.seconds)
                theirs_s, theirs_rps = load(mlflow_port, "/invocations", bodies[n][1], clients, args.seconds)
                (o50, o99), (m50, m99) = percentiles(ours_s), percentiles(theirs_s)
                results[(n, clients)] = (o50, o99, ours_rps, m50, m99, theirs_rps)
                print(
                    f"{f'{n} symbol(s), {clients} client(s)':<24}{o50:>9.2f} {o99:>8.2f} {ours_rps:>8.0f} "
                    f"{m50:>11.2f} {m99:>8.2f} {theirs_rps:>8.0f} {m50 / o50:>10.2f}x {ours_rps / theirs_rps:>12.2f}x"
                )
        o50, o99, _, m50, _, _ = results[(1, 1)]
        checks = {
            "single-symbol p50 <= 1/4 of MLflow's": o50 <= m50 / 4,
            "p99 < 5 ms at 1 client (1 symbol)": o99 < 5,
            "p99 < 20 ms at 8 clients (1 symbol)": results[(1, 8)][1] < 20,
            "req/s at 8 clients >= 4x MLflow's (1 symbol)": results[(1, 8)][2] >= 4 * results[(1, 8)][5],
            "< 200 ms per inference (100 symbols, p99, 8 clients)": results[(100, 8)][1] < 200,
        }
        for name, ok in checks.items():
            print(f"  target {'met' if ok else 'MISSED'}: {name}")
    for n in (1, 100):
        where_time_goes(root, env, features, tracking, n)


if __name__ == "__main__":
    main()
