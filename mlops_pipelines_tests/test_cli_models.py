"""`mlops models|reviews|deployments|datasets|experiments` against a real MLflow store and warehouse."""

from pathlib import Path

import pytest
from typer.testing import CliRunner

from mlops_pipelines.cli import app
from mlops_pipelines.lib.core.tracking import Tracking
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


def invoke(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, " ".join(result.output.split())


def test_operator_flow_from_the_cli(env: Path, tracking: Tracking) -> None:
    version = new_version(tracking, env, trainer="trainer")
    code, out = invoke("models", "list")
    assert code == 0 and MODEL in out and f"v{version}:TRAINED" in out

    code, out = invoke(
        "models",
        "promote",
        MODEL,
        "--version",
        version,
        "--to",
        "staging",
        "--actor",
        "ops",
        "--override",
        "min_test_rows=null",
        "--override",
        "min_hit_rate=null",
        "--override",
        "max_drawdown=null",
        "--override",
        "min_sharpe_excess_vs_buy_and_hold=null",
        "--override",
        "max_drawdown_excess_vs_champion=null",
        "--override",
        "max_drift_severity=null",  # a model outside the catalog: its drift cannot be measured
    )
    assert code == 0, out
    assert "pass min_sharpe" in out and f"{MODEL} v{version} is now STAGING" in out

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
