"""The `mlops` command, in-process, against tmp warehouses and lock files."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from mlops_pipelines.cli import LOCK_PATH, app
from mlops_pipelines.lib import feature_store, warehouse
from mlops_pipelines.lib.feature_views import FeatureCatalog
from mlops_pipelines.lib.online_store import write_snapshot
from mlops_pipelines.lib.point_in_time import get_historical_features

runner = CliRunner()


@pytest.fixture(autouse=True)
def wide_console(monkeypatch: pytest.MonkeyPatch) -> None:
    """Rich tables must not wrap names, whatever terminal the tests run in."""
    from rich.console import Console

    from mlops_pipelines import cli, cli_models

    for module in (cli, cli_models):
        monkeypatch.setattr(module, "console", Console(width=250))


def invoke(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.output


def test_hash_and_list(catalog: FeatureCatalog) -> None:
    code, out = invoke("features", "hash")
    assert code == 0 and out.strip() == catalog.graph_hash()
    code, out = invoke("features", "list")
    assert code == 0 and all(name in out for name in catalog.views)


def test_committed_lock_matches_the_catalog() -> None:
    code, out = invoke("features", "diff")
    assert code == 0, out
    assert "matches the lock" in out


@pytest.mark.parametrize(
    ("edit", "exit_code", "expected"),
    [
        (lambda v: v.update(owner="team:previous"), 0, "returns: metadata-only change (owner)"),
        (lambda v: v.update(sql=v["sql"].replace("lag(close, 4)", "lag(close, 3)")), 1, "returns: sql changed"),
        (lambda v: v.update(ttl_seconds=60.0), 1, "returns: ttl_seconds changed"),
        (lambda v: v.update(version=0), 0, "returns: new version"),
    ],
)
def test_diff_against_an_edited_lock(tmp_path: Path, edit, exit_code: int, expected: str) -> None:
    # Editing the lock stands in for editing the code: diff compares the two either way.
    lock = json.loads(LOCK_PATH.read_text())
    edit(lock["views"]["returns"])
    path = tmp_path / "lock.json"
    path.write_text(json.dumps(lock))
    code, out = invoke("features", "diff", "--path", str(path))
    assert code == exit_code, out
    assert expected in " ".join(out.split())


def test_lock_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "lock.json"
    assert invoke("features", "lock", "--path", str(path))[0] == 0
    assert json.loads(path.read_text()) == json.loads(LOCK_PATH.read_text())


def test_retrieve_show_and_lookup(
    feature_warehouse: Path, catalog: FeatureCatalog, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLOPS_WAREHOUSE_PATH", str(feature_warehouse))
    monkeypatch.setenv("MLOPS_ONLINE_STORE_PATH", str(tmp_path / "online.sqlite"))
    with warehouse.connect(feature_warehouse) as conn:
        feature_store.write_registry(conn, catalog, run_id="run-x")
        entities = conn.execute(
            "SELECT symbol, event_ts + INTERVAL 90 SECOND AS event_timestamp FROM features.returns__v2 "
            "USING SAMPLE 50 ROWS (reservoir, 1)"
        ).fetchdf()
        expected = get_historical_features(conn, entities, [catalog.views["returns"], catalog.views["oscillators"]])
        write_snapshot(
            tmp_path / "online.sqlite",
            feature_store.latest_vectors(conn, catalog),
            key="entity_key",
            snapshot_id="run-x",
        )
    entity_file, out_file = tmp_path / "entities.csv", tmp_path / "out.parquet"
    entities.assign(event_timestamp=entities["event_timestamp"].dt.strftime("%Y-%m-%dT%H:%M:%S+00:00")).to_csv(
        entity_file, index=False
    )
    code, out = invoke(
        "features",
        "retrieve",
        "--entities",
        str(entity_file),
        "--views",
        "returns,oscillators@2",
        "--out",
        str(out_file),
    )
    assert code == 0, out
    got = pd.read_parquet(out_file)
    assert got["symbol"].tolist() == expected["symbol"].tolist()
    for column in ("ret_24h", "rsi_14"):
        np.testing.assert_allclose(got[column].astype(float), expected[column].astype(float), equal_nan=True)
    assert got["ret_24h"].notna().any()

    code, out = invoke(
        "features", "retrieve", "--entities", str(entity_file), "--views", "returns@9", "--out", str(out_file)
    )
    assert code == 2 and "returns@9" in out

    code, out = invoke("features", "show", "returns")
    assert code == 0 and "features.returns__v2" in out and "run-x" in out and "cross_sectional" in out
    code, out = invoke("features", "lookup", "SYM0001", "NOPE")
    assert code == 0 and '"NOPE": null' in out and "rsi_14" in out
