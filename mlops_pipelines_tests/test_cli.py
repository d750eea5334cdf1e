"""The `mlops` command, in-process, against tmp warehouses and lock files."""

import io
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from mlops_pipelines.cli import app, output
from mlops_pipelines.cli.features import LOCK_PATH
from mlops_pipelines.lib.core import warehouse
from mlops_pipelines.lib.features import feature_store
from mlops_pipelines.lib.features.feature_views import FeatureCatalog
from mlops_pipelines.lib.features.online_store import write_snapshot
from mlops_pipelines.lib.features.point_in_time import get_historical_features
from mlops_pipelines_tests.test_lib.features.test_retrieval_input import LEAK, PAYLOADS, SECRET

runner = CliRunner()


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
            "SELECT symbol, event_ts + INTERVAL 90 SECOND AS event_timestamp FROM features.returns__v3 "
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
        "returns,oscillators@3",
        "--out",
        str(out_file),
    )
    assert code == 0, out
    got = pd.read_parquet(out_file)
    assert got["symbol"].tolist() == expected["symbol"].tolist()
    for column in ("ret_24b", "rsi_14b"):
        np.testing.assert_allclose(got[column].astype(float), expected[column].astype(float), equal_nan=True)
    assert got["ret_24b"].notna().any()

    code, out = invoke(
        "features", "retrieve", "--entities", str(entity_file), "--views", "returns@9", "--out", str(out_file)
    )
    assert code == 2 and "returns@9" in out

    code, out = invoke("features", "show", "returns")
    assert code == 0 and "features.returns__v3" in out and "run-x" in out and "cross_sectional" in out
    code, out = invoke("features", "lookup", "SYM0001", "NOPE")
    assert code == 0 and '"NOPE": null' in out and "rsi_14b" in out


def retrieve(*args: str) -> tuple[int, str]:
    """``mlops features retrieve``; fails the test on a traceback (an exception other than the exit)."""
    result = runner.invoke(app, ["features", "retrieve", *args])
    assert not isinstance(result.exception, Exception), result.exception
    return result.exit_code, " ".join(result.output.split())


def test_retrieve_user_errors_exit_2_with_a_message_naming_the_field(
    feature_warehouse: Path, catalog: FeatureCatalog, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLOPS_WAREHOUSE_PATH", str(feature_warehouse))
    with warehouse.connect(feature_warehouse) as conn:
        feature_store.write_registry(conn, catalog, run_id="run-x")
    good, bad_time, out = tmp_path / "entities.csv", tmp_path / "bad_time.csv", tmp_path / "out.parquet"
    good.write_text("symbol,event_timestamp\nSYM0001,2026-01-05T10:00:00Z\n")
    bad_time.write_text("symbol,event_timestamp\nSYM0001,2026-01-05T10:00:00Z\nSYM0002,notatime\n")
    (tmp_path / "a_file").write_text("")
    cases = [
        (["--views", ",,,"], "Invalid value for --views: names no feature view: ',,,'"),
        (["--views", " "], "Invalid value for --views"),
        (["--views", "returns@abc"], "error: feature view reference 'returns@abc' is not NAME or NAME@VERSION"),
        (["--views", "returns@"], "error: feature view reference 'returns@' is not NAME or NAME@VERSION"),
        (["--views", "returns,nope"], "error: feature view 'nope' is not in the catalog or registry"),
        (["--views", "returns@9"], "error: feature view 'returns@9' is not in the catalog or registry (registered"),
        (["--entities", str(bad_time)], f"error: entity file {bad_time}, row 2: event_timestamp 'notatime' is not"),
        (["--entities", str(tmp_path / "nope.csv")], f"error: entity file {tmp_path}/nope.csv does not exist"),
        (["--out", str(tmp_path / "missing" / "o.csv")], f"error: cannot write {tmp_path}/missing/o.csv: No such"),
        (["--out", str(tmp_path / "a_file" / "o.csv")], f"error: cannot write {tmp_path}/a_file/o.csv: Not a dir"),
    ]
    for override, expected in cases:
        code, output = retrieve("--entities", str(good), "--views", "returns", "--out", str(out), *override)
        assert code == 2 and expected in output, (override, output)
        assert not out.exists()
    assert retrieve("--entities", str(good), "--views", "returns", "--out", str(out))[0] == 0  # the placebo

    monkeypatch.setenv("MLOPS_ENV", "bogus")
    code, output = retrieve("--entities", str(good), "--views", "returns", "--out", str(out))
    assert code == 2 and "error: MLOPS_ENV must be 'local' or 'production', got 'bogus'" in output
    monkeypatch.setenv("MLOPS_ENV", "local")
    monkeypatch.setenv("MLOPS_WAREHOUSE_PATH", str(tmp_path / "nope.duckdb"))
    code, output = retrieve("--entities", str(good), "--views", "returns", "--out", str(out))
    assert code == 2 and f"error: warehouse {tmp_path / 'nope.duckdb'} does not exist" in output
    monkeypatch.setenv("MLOPS_ONLINE_STORE_PATH", str(tmp_path / "nope.sqlite"))
    result = runner.invoke(app, ["features", "lookup", "SYM0001"])
    assert result.exit_code == 2 and f"error: online store {tmp_path / 'nope.sqlite'} does not exist" in " ".join(
        result.output.split()
    )


def test_retrieve_from_a_hostile_entity_file_leaks_nothing(
    feature_warehouse: Path, catalog: FeatureCatalog, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The column name that returned another table's rows through this command, then the rest of the fixed
    hostile names (test_lib/features/test_retrieval_input.py) as extra columns of a Parquet file."""
    monkeypatch.setenv("MLOPS_WAREHOUSE_PATH", str(feature_warehouse))
    with warehouse.connect(feature_warehouse) as conn:
        conn.execute(f"CREATE TABLE governance.model_audit_log AS SELECT '{SECRET}' AS secret")
        tables = conn.execute("SELECT schema_name, table_name FROM duckdb_tables() ORDER BY ALL").fetchall()
    entities = pd.DataFrame({"symbol": ["SYM0001"], "event_timestamp": ["2026-01-05T10:00:00Z"]})
    cases = [(entities.assign(**{LEAK: ["a"]}), suffix) for suffix in (".csv", ".parquet")]
    cases += [(entities.assign(**{name: ["a"]}), ".parquet") for name in PAYLOADS]
    for i, (frame, suffix) in enumerate(cases):
        source, out = tmp_path / f"entities{i}{suffix}", tmp_path / f"out{i}{suffix}"
        frame.to_csv(source, index=False) if suffix == ".csv" else frame.to_parquet(source)
        code, output = retrieve("--entities", str(source), "--views", "returns", "--out", str(out))
        assert code == 0, output
        got = pd.read_csv(out) if suffix == ".csv" else pd.read_parquet(out)
        assert list(got.columns) == [*frame.columns, *catalog.views["returns"].features]
        assert got.iloc[:, 2].tolist() == ["a"] and got["ret_1b"].notna().all()
        assert SECRET not in got.to_csv() and SECRET not in output
    with warehouse.connect(feature_warehouse, read_only=True) as conn:
        assert conn.execute("SELECT schema_name, table_name FROM duckdb_tables() ORDER BY ALL").fetchall() == tables


def test_output_to_a_log_is_not_wrapped(catalog: FeatureCatalog, tmp_path: Path) -> None:
    """Piped (a log, CI), rows and printed commands stay on one line whatever COLUMNS says about a terminal."""
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    done = subprocess.run(
        [sys.executable, "-c", "from mlops_pipelines.cli import main; main()", "features", "list"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
        env=env,
        cwd=tmp_path,
    )
    lines = done.stdout.splitlines()
    for name in catalog.views:
        view = catalog.views[name]
        [row] = [line for line in lines if line.startswith(f"│ {name} ")]
        assert ", ".join(view.features) in row and ", ".join(view.depends_on) in row, row


def test_a_narrow_terminal_folds_ids_instead_of_cutting_them(monkeypatch: pytest.MonkeyPatch) -> None:
    from rich.console import Console

    screen = Console(width=40, file=io.StringIO(), color_system=None)
    monkeypatch.setattr(output, "console", screen)
    run_id = "4ebae24782a345e8b77ab81009029e80"
    path = "/var/lib/mlops/data/mlflow/artifacts/2/4ebae24782a345e8b77ab81009029e80/artifacts/compliance/report.html"
    rows = [{"run_id": run_id, "status": "FINISHED", "report": path}]
    output.print_rows(rows, ["run_id", "status", "report"], as_json=False)
    text = screen.file.getvalue()  # type: ignore[attr-defined]
    assert "…" not in text
    for column, value in ((0, run_id), (2, path)):
        cells = [line.split("│")[column + 1].strip() for line in text.splitlines() if line.count("│") == 4]
        assert "".join(cells) == value


def test_every_option_and_argument_reads_well_in_help() -> None:
    """No `<str>` placeholder for an option, and a line of help for every option and argument."""
    import typer

    def commands(group: Any, path: str) -> Iterator[tuple[str, Any]]:
        for name, command in getattr(group, "commands", {}).items():
            yield from commands(command, f"{path} {name}")
        if not hasattr(group, "commands"):
            yield path, group

    found = list(commands(typer.main.get_command(app), "mlops"))
    assert len(found) > 25
    for path, command in found:
        for param in command.params:
            assert param.help, (path, param.name)
            if param.param_type_name == "option" and not param.is_flag:
                assert param.metavar, (path, param.name)
        result = runner.invoke(app, [*path.split()[1:], "--help"])
        assert result.exit_code == 0 and "Usage: " in result.output
        options = result.output.split("Options")[-1]
        assert not re.search(r"<(str|int|float|path|list\[str\])>", options), (path, options)


def test_an_unknown_feature_view_is_named_with_exit_2(catalog: FeatureCatalog) -> None:
    code, out = invoke("features", "show", "nope")
    assert code == 2 and f"error: no feature view 'nope'; known: {', '.join(catalog.views)}" in " ".join(out.split())


def test_json_output_is_never_wrapped(capsys: pytest.CaptureFixture[str]) -> None:
    """A value longer than any console width (a reviewer's comment, a manifest) keeps --json parseable."""
    rows = [{"comment": "x" * 1000 + " word" * 300, "at": datetime(2026, 2, 14, 23, 5, tzinfo=UTC)}]
    output.print_rows(rows, ["comment", "at"], as_json=True)
    assert json.loads(capsys.readouterr().out) == [{"comment": rows[0]["comment"], "at": "2026-02-14T23:05:00Z"}]
