"""`mlops models|reviews|deployments|datasets|experiments` against a real MLflow store and warehouse."""

import json
import re
import shlex
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from typer.testing import CliRunner

from mlops_pipelines import cli
from mlops_pipelines.catalog.feature_views import load_catalog
from mlops_pipelines.catalog.models import DIRECTION_CLASSIFIER
from mlops_pipelines.catalog.policies import load_drift_policy_file, load_promotion_policy
from mlops_pipelines.cli import app
from mlops_pipelines.cli.demo import print_models
from mlops_pipelines.lib.core import warehouse
from mlops_pipelines.lib.core.tracking import Tracking
from mlops_pipelines.lib.governance import compliance
from mlops_pipelines.lib.governance.gate import evaluate_version
from mlops_pipelines.lib.training.datasets import TrainingSet, dataset_hash, store_training_set
from mlops_pipelines.settings import Settings
from mlops_pipelines_tests.test_lib.governance.test_lifecycle import MODEL, governed, new_version, staged_version

runner = CliRunner()


@pytest.fixture
def env(tracking: Tracking, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MLOPS_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("MLOPS_WAREHOUSE_PATH", str(tmp_path / "w.duckdb"))
    monkeypatch.setenv("MLOPS_AUDIT_KEY_FILE", str(tmp_path / "audit.key"))  # where test_lifecycle's helpers keep it
    monkeypatch.setenv("MLOPS_MLFLOW_TRACKING_URI", tracking.tracking_uri)
    monkeypatch.setenv("MLOPS_MLFLOW_ARTIFACT_ROOT", tracking.artifact_root)
    return tmp_path / "w.duckdb"


def gate_inputs() -> dict[str, Any]:
    """What the CLI's gate reads, for a model outside the catalog."""
    return {
        "spec": None,
        "catalog": load_catalog(),
        "promotion_policy": load_promotion_policy(),
        "drift_policy": load_drift_policy_file(),
    }


def invoke(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, " ".join(result.output.split())


def test_operator_flow_from_the_cli(env: Path, tracking: Tracking) -> None:
    version = new_version(tracking, env, trainer="trainer")
    code, out = invoke("models", "list")
    assert code == 0 and MODEL in out and f"v{version}:TRAINED" in out

    overrides = {
        "min_test_rows": None,
        "min_hit_rate": None,
        "max_drawdown": None,
        "min_sharpe_excess_vs_buy_and_hold_ci_low": None,
        "min_sharpe_excess_vs_baseline_ci_low": None,
        "max_drawdown_excess_vs_champion": None,
        "max_drift_severity": None,  # a model outside the catalog: its drift cannot be measured
    }
    promote = ["models", "promote", MODEL, "--version", version, "--to", "staging", "--actor", "ops"]
    for key in overrides:
        promote += ["--override", f"{key}=null"]
    code, out = invoke(*promote)
    assert code == 1 and "need a reason" in out, out  # an override without a reason is refused, nothing written
    with governed(tracking, env) as lifecycle:
        assert lifecycle.state(MODEL, version) == "TRAINED" and not [
            r for r in lifecycle.history(MODEL) if r["policy_hash"]
        ]
    code, out = invoke(*promote, "--reason", "toy model outside the catalog: no backtest, no drift")
    assert code == 0, out
    assert "pass min_sharpe" in out and f"{MODEL} v{version} is now STAGING" in out
    with governed(tracking, env) as lifecycle:
        rows = [r for r in lifecycle.history(MODEL) if r["policy_hash"]]
        unchanged = evaluate_version(lifecycle, MODEL, version, **gate_inputs())
    assert [r["to_state"] for r in rows] == ["VALIDATED", "STAGING"]
    for row in rows:  # each audit row: the overrides, their reason, the thresholds applied, a hash covering them
        assert row["details"]["overrides"] == overrides
        assert row["details"]["override_reason"] == "toy model outside the catalog: no backtest, no drift"
        assert (
            row["details"]["thresholds"]["min_sharpe"] == 0.0 and row["details"]["thresholds"]["min_hit_rate"] is None
        )
        assert "toy model outside the catalog" in row["reason"]
        assert row["policy_hash"] != unchanged.policy_hash == load_promotion_policy().digest()

    code, out = invoke("models", "promote", MODEL, "--version", version, "--actor", "ops")
    assert code == 1 and "refused" in out and "approval" in out
    code, out = invoke("reviews", "approve", MODEL, "--version", version, "--comment", "x", "--actor", "carol")
    assert code == 1 and "nothing pending review" in out  # no compliance report yet for this toy version
    code, out = invoke("models", "approve", MODEL, "--version", version, "--actor", "trainer")
    assert code == 1 and "cannot approve" in out
    code, out = invoke("models", "approve", MODEL, "--version", version, "--actor", "alice", "--comment", "ok")
    assert code == 0, out

    code, out = invoke("models", "history", MODEL)
    assert code == 0 and "approval" in out and "VALIDATED" in out
    code, out = invoke("models", "show", MODEL, "--version", version)
    assert code == 0 and '"trained_by": "trainer"' in out and '"approver": "alice"' in out
    code, out = invoke(
        "deployments", "create", MODEL, "--version", version, "--environment", "production", "--actor", "ops"
    )
    assert code == 1 and "NO lifecycle_state" in out and "blocked" in out
    code, out = invoke(
        "deployments", "create", MODEL, "--version", version, "--environment", "staging", "--actor", "ops"
    )
    assert code == 0 and "ready" in out, out
    code, out = invoke("deployments", "list")
    assert code == 0 and "blocked" in out and "ready" in out
    code, out = invoke("models", "rollback", MODEL, "--actor", "ops")
    assert code == 1 and "no production version" in out
    code, out = invoke("experiments", "show", MODEL)
    assert code == 0 and "FINISHED" in out
    code, out = invoke("datasets", "list")
    assert code == 0
    code, out = invoke("reviews", "list")
    assert code == 0


def test_models_list_says_when_the_registry_lost_what_the_audit_log_knows(
    env: Path, tracking: Tracking, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    version = new_version(tracking, env)
    code, out = invoke("models", "list")
    assert code == 0 and "ok" in out
    # the MLflow database deleted: a new, empty one is what the next command finds
    monkeypatch.setenv("MLOPS_MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'lost' / 'mlflow.db'}")
    code, out = invoke("models", "list")
    assert code == 1 and "INCONSISTENT" in out
    assert f"v{version} is in the audit log but not in the MLflow registry" in out
    code, out = invoke("models", "show", MODEL)
    assert "INCONSISTENT (refused for serving)" in out


def test_a_deployment_can_require_the_cli_actor_to_be_the_os_user(
    env: Path, tracking: Tracking, monkeypatch: pytest.MonkeyPatch
) -> None:
    import getpass

    version = staged_version(tracking, env, approver=None)
    monkeypatch.setenv("MLOPS_REQUIRE_OS_ACTOR", "true")
    code, out = invoke("models", "approve", MODEL, "--version", version, "--actor", "someone-else", "--comment", "x")
    assert code == 1 and "is not the OS user" in out
    monkeypatch.setenv("MLOPS_ACTOR", "someone-else")
    code, out = invoke("models", "approve", MODEL, "--version", version, "--comment", "x")
    assert code == 1 and "is not the OS user" in out
    monkeypatch.delenv("MLOPS_ACTOR")
    code, out = invoke("models", "approve", MODEL, "--version", version, "--comment", "me")
    assert code == 0, out
    with governed(tracking, env) as lifecycle:
        assert [a["approver"] for a in lifecycle.approvals(MODEL, version)] == [getpass.getuser().casefold()]


def staged_with_a_pending_review(tracking: Tracking, db: Path) -> str:
    """A STAGING version, not approved, whose run holds a compliance report under review (as training leaves it)."""
    version = staged_version(tracking, db, approver=None)
    with governed(tracking, db) as lifecycle:
        run_id = lifecycle.run_id(MODEL, version)
        pending = {"status": "PENDING_REVIEW"}
        tracking.log_files(
            run_id,
            {
                "report.html": f"<p>{compliance.status_html(pending)}</p><pre>body</pre>",
                "report.md": f"{compliance.status_markdown(pending)}\nbody\n",
            },
            compliance.FOLDER,
        )
        lifecycle.request_review(MODEL, version, report_uri="file:///report.html", actor="pipeline")
    return version


def test_the_demo_prints_the_three_person_sequence_and_it_works_as_printed(
    env: Path, tracking: Tracking, capsys: pytest.CaptureFixture[str]
) -> None:
    """The next steps the demo prints for a STAGING version: compliance sign-off, approval, promotion by three
    different people. Run exactly as printed (one line each, even in a log), they put it in PRODUCTION, and
    the report in MLflow then shows the sign-off."""
    version = staged_with_a_pending_review(tracking, env)
    print_models(Settings.from_env())
    printed = capsys.readouterr().out
    steps = [line.strip() for line in printed.splitlines() if line.strip().startswith(".venv/bin/mlops ")]
    commands = [shlex.split(step)[1:] for step in steps]
    assert [c[:2] for c in commands] == [["reviews", "approve"], ["models", "approve"], ["models", "promote"]]
    actors = [c[c.index("--actor") + 1] for c in commands]
    assert len(set(actors)) == 3 and "trainer" not in actors
    assert (
        f"#/experiments/{tracking.experiment_id(MODEL)}/runs/" in printed
        and "/artifacts/compliance/report.html" in printed
    )
    for command in commands:
        code, out = invoke(*command)
        assert code == 0, (command, out)
    with governed(tracking, env) as lifecycle:
        assert lifecycle.state(MODEL, version) == "PRODUCTION"
        page = tracking.read_text_artifact(lifecycle.run_id(MODEL, version), compliance.REPORT_HTML)
    assert f"<b>APPROVED</b> by {actors[0]} on 20" in page and page.endswith("<pre>body</pre>")
    code, out = invoke("reviews", "list")
    assert code == 0 and "APPROVED" in out and "/artifacts/compliance/report.html" in out


def test_a_report_that_cannot_be_updated_leaves_the_decision_standing(env: Path, tracking: Tracking) -> None:
    version = staged_version(tracking, env, approver=None)
    with governed(tracking, env) as lifecycle:
        lifecycle.request_review(MODEL, version, report_uri="file:///report.html", actor="pipeline")  # no report
    code, out = invoke("reviews", "approve", MODEL, "--version", version, "--comment", "ok", "--actor", "carol")
    assert code == 0 and "compliance review APPROVED" in out
    assert "warning: the decision is recorded, but the report in MLflow still shows the previous status" in out
    with governed(tracking, env) as lifecycle:
        assert (lifecycle.review(MODEL, version) or {})["status"] == "APPROVED"


def test_unknown_models_and_versions_are_named_with_exit_2(env: Path, tracking: Tracking) -> None:
    version = new_version(tracking, env)
    cases = [
        (("models", "show", "nope"), f"error: no model 'nope'; known models: {MODEL}"),
        (("models", "history", "nope"), f"error: no model 'nope'; known models: {MODEL}"),
        (("models", "show", MODEL, "--version", "abc"), f"error: {MODEL} has no version 'abc'; its versions: 1"),
        (("models", "show", MODEL, "--version", "99"), f"error: {MODEL} has no version '99'; its versions: 1"),
        (("models", "show", "nope", "--version", "1"), "error: no model 'nope'"),
        (("experiments", "show", "nope"), "error: no experiment 'nope'; known experiments: "),
        (("datasets", "show", "nope"), "error: no dataset 'nope'"),
        (("deployments", "show", "nope"), "error: no deployment 'nope'"),
    ]
    for args, expected in cases:
        result = runner.invoke(app, list(args))
        assert result.exit_code == 2 and expected in result.output, (args, result.output)
        assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit)
    for args in (
        ("models", "show", MODEL),
        ("models", "show", MODEL, "--version", version),
        ("models", "history", MODEL),
    ):
        assert invoke(*args)[0] == 0, args  # the placebo: the same commands on names that exist


ISO_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


def as_json(*args: str) -> Any:
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_times_are_utc_iso_and_ids_are_whole(env: Path, tracking: Tracking) -> None:
    version = staged_version(tracking, env)  # approved and signed off: history has approvals, reviews, policies
    with governed(tracking, env) as lifecycle:
        run_id = lifecycle.run_id(MODEL, version)
        created_ms = lifecycle.version(MODEL, version).creation_timestamp
    [row] = as_json("models", "show", MODEL)
    assert row["created"] == datetime.fromtimestamp(created_ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    history = as_json("models", "history", MODEL)
    assert all(ISO_UTC.match(h["at"]) for h in history) and all(h["verified"] is True for h in history)
    assert any(h["policy_hash"] and len(h["policy_hash"]) == 64 for h in history)
    [run] = as_json("experiments", "show", MODEL)
    assert run["run_id"] == run_id and ISO_UTC.match(run["started"])
    [review] = as_json("reviews", "list")
    assert ISO_UTC.match(review["requested_at"]) and ISO_UTC.match(review["decided_at"])
    [model] = as_json("models", "list")
    assert model["states"] == {version: "STAGING"} and model["problems"] == []

    for args in (("models", "show", MODEL), ("models", "history", MODEL), ("experiments", "show", MODEL)):
        out = runner.invoke(app, list(args)).output
        assert not re.search(r"\b1\d{12}\b", out), (args, out)  # no epoch milliseconds
        assert "…" not in out, (args, out)  # nothing cut
    assert run_id in runner.invoke(app, ["experiments", "show", MODEL]).output
    policy_hash = next(h["policy_hash"] for h in history if h["policy_hash"])
    assert policy_hash in runner.invoke(app, ["models", "history", MODEL]).output


def test_datasets_are_read_through_their_owning_module(env: Path) -> None:
    frame = pd.DataFrame(
        {
            "symbol": ["A", "B", "C"],
            "event_timestamp": pd.to_datetime(["2026-01-02T10:00Z", "2026-01-03T10:00Z", "2026-01-04T10:00Z"]),
            "label": [0, 1, 0],
            "ret_1b": [0.1, 0.2, 0.3],
            "split": ["train", "validation", "test"],
        }
    )
    with warehouse.connect(env) as conn:
        dataset_id = store_training_set(
            conn, DIRECTION_CLASSIFIER, TrainingSet(frame, ["ret_1b"], dataset_hash(frame)), run_id="run-7"
        )
    [row] = as_json("datasets", "list")
    assert row["dataset_id"] == dataset_id and row["first_decision"] == "2026-01-02T10:00:00Z"
    assert (row["train_rows"], row["validation_rows"], row["test_rows"]) == (1, 1, 1)
    result = runner.invoke(app, ["datasets", "show", dataset_id])
    assert result.exit_code == 0 and json.loads(result.stdout)["dagster_run_id"] == "run-7"
    assert dataset_id in invoke("datasets", "list")[1]


def test_the_cli_writes_no_sql() -> None:
    """Every table the CLI reads is read by its owning module in lib/ (the CLI calls a read function)."""
    for path in sorted(Path(cli.__file__).parent.glob("*.py")):
        text = path.read_text()
        assert not re.search(r"\bSELECT\b|\.execute\(|\bFROM\s+[a-z_]+\.[a-z_]+", text), path


def test_a_bad_mlflow_ui_url_is_named(env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLOPS_MLFLOW_UI_URL", "127.0.0.1:5000")
    code, out = invoke("reviews", "list")
    assert code == 2 and "error: MLOPS_MLFLOW_UI_URL must be an http:// or https:// URL, got '127.0.0.1:5000'" in out
    monkeypatch.setenv("MLOPS_MLFLOW_UI_URL", "https://mlflow.example/")
    assert Settings.from_env().mlflow_ui_url == "https://mlflow.example"
