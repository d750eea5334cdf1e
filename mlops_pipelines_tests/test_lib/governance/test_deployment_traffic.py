"""A production deployment's traffic (shadow, canary share): one function changes it (API and CLI), each change
is one verified row of the governance audit log that moves no state or alias, and the canary split is a stable
hash of (model, symbol)."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mlops_pipelines.cli import app
from mlops_pipelines.lib.core.errors import NotFound
from mlops_pipelines.lib.core.tracking import Tracking
from mlops_pipelines.lib.governance import deployments
from mlops_pipelines.lib.governance.audit import AUDIT_TABLE
from mlops_pipelines.lib.governance.deployments import Traffic, canary_bucket, to_canary
from mlops_pipelines.lib.governance.lifecycle import LifecycleError
from mlops_pipelines_tests.test_lib.governance.test_lifecycle import MODEL, governed, staged_version

SYMBOLS = [f"S{i:05d}" for i in range(20_000)]


def test_the_canary_split_is_a_stable_share_of_symbols() -> None:
    for share in (0.05, 0.3, 0.5):
        n = sum(to_canary(MODEL, s, share) for s in SYMBOLS)
        assert abs(n - share * len(SYMBOLS)) <= 4 * math.sqrt(len(SYMBOLS) * share * (1 - share)), (share, n)
    assert not any(to_canary(MODEL, s, 0.0) for s in SYMBOLS) and all(to_canary(MODEL, s, 1.0) for s in SYMBOLS)
    small = {s for s in SYMBOLS if to_canary(MODEL, s, 0.1)}
    assert small <= {s for s in SYMBOLS if to_canary(MODEL, s, 0.3)}  # raising the share only adds symbols
    # another model splits the symbols independently
    other = {s for s in SYMBOLS if to_canary("other_model", s, 0.1)}
    assert len(small & other) < 0.2 * len(small)


def test_the_canary_split_is_the_same_in_every_process() -> None:
    """Not Python's ``hash`` (seeded per process): two processes with different hash seeds agree."""
    code = (
        "from mlops_pipelines.lib.governance.deployments import canary_bucket\n"
        f"print([canary_bucket({MODEL!r}, f'S{{i:05d}}') for i in range(50)])"
    )
    seen = []
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
        seen.append(out.stdout)
    assert seen[0] == seen[1] == str([canary_bucket(MODEL, s) for s in SYMBOLS[:50]]) + "\n"


def deployed(tracking: Tracking, db: Path) -> tuple[str, str]:
    """A production version and its ready production deployment, and a staging deployment of it."""
    version = staged_version(tracking, db)
    with governed(tracking, db) as lifecycle:
        lifecycle.promote_to_production(MODEL, version, actor="ops", reason="test")
        ready = deployments.create_deployment(lifecycle, MODEL, version, "production", actor="ops")
        staging = deployments.create_deployment(lifecycle, MODEL, version, "staging", actor="ops")
        marked = lifecycle.client.get_registered_model(MODEL).tags.get(deployments.DEPLOYMENT_TAG)
    assert marked == ready["deployment_id"]  # what serving processes watch; a staging deployment leaves it
    assert ready["status"] == "ready" and staging["status"] == "ready", ready["checklist"]
    return ready["deployment_id"], staging["deployment_id"]


def test_a_traffic_change_is_one_verified_audit_row_that_moves_nothing_else(tracking: Tracking, tmp_path: Path) -> None:
    db = tmp_path / "w.duckdb"
    deployment, staging = deployed(tracking, db)
    with governed(tracking, db) as lifecycle:
        before = lifecycle.record(MODEL)
        assert deployments.serving_traffic(lifecycle.conn, before) == (deployment, Traffic())
        old, new = deployments.set_traffic(lifecycle, deployment, canary_share=0.2, actor="Olga ", reason="try")
        assert (old, new) == (Traffic(), Traffic(shadow=False, canary_share=0.2))
        old, new = deployments.set_traffic(lifecycle, deployment, shadow=True, actor="olga", reason="and shadow")
        assert new == Traffic(shadow=True, canary_share=0.2)  # what was not given stayed
        record, problems = lifecycle.verify(MODEL)
        rows = [r for r in lifecycle.history(MODEL) if r["action"] == "traffic"]
    assert not problems
    assert [(r["actor"], r["reason"], r["details"]["old"], r["details"]["new"], r["verified"]) for r in rows] == [
        ("olga", "try", {"shadow": False, "canary_share": 0.0}, {"shadow": False, "canary_share": 0.2}, True),
        ("olga", "and shadow", {"shadow": False, "canary_share": 0.2}, {"shadow": True, "canary_share": 0.2}, True),
    ]
    assert record.aliases == before.aliases and record.head != before.head  # the head moves: servers follow it
    assert {v: r.state for v, r in record.versions.items()} == {v: r.state for v, r in before.versions.items()}
    assert deployments.traffic_of(record, deployment) == Traffic(shadow=True, canary_share=0.2)

    with governed(tracking, db) as lifecycle:
        for share in (1.5, -0.1, math.nan, math.inf, True, "0.1"):
            with pytest.raises(ValueError, match="canary_share must be a number from 0 to 1"):
                deployments.set_traffic(lifecycle, deployment, canary_share=share, actor="olga", reason="x")  # type: ignore[arg-type]
        with pytest.raises(LifecycleError, match="ready staging deployment: traffic is configured on ready production"):
            deployments.set_traffic(lifecycle, staging, shadow=True, actor="olga", reason="x")
        with pytest.raises(NotFound, match="no deployment 'nope'"):
            deployments.set_traffic(lifecycle, "nope", shadow=True, actor="olga", reason="x")
        assert len([r for r in lifecycle.history(MODEL) if r["action"] == "traffic"]) == 2  # refusals wrote nothing


def test_a_traffic_row_written_behind_the_lifecycle_does_not_count(tracking: Tracking, tmp_path: Path) -> None:
    """Attack: turn the canary to 100% by editing the newest traffic row in the warehouse, without the audit key.
    The row fails verification, is reported, and serving keeps the last verified configuration."""
    db = tmp_path / "w.duckdb"
    deployment, _ = deployed(tracking, db)
    with governed(tracking, db) as lifecycle:
        deployments.set_traffic(lifecycle, deployment, canary_share=0.1, actor="olga", reason="ten percent")
        deployments.set_traffic(lifecycle, deployment, canary_share=0.2, actor="olga", reason="twenty percent")
        forged = {"deployment_id": deployment, "old": {}, "new": {"shadow": True, "canary_share": 1.0}}
        lifecycle.conn.execute(
            f"UPDATE {AUDIT_TABLE} SET details = ? WHERE seq = (SELECT max(seq) FROM {AUDIT_TABLE})",
            [json.dumps(forged)],
        )
        record, problems = lifecycle.verify(MODEL)
        assert problems
        assert deployments.serving_traffic(lifecycle.conn, record) == (deployment, Traffic(canary_share=0.1))


def test_the_cli_changes_traffic_through_the_same_function(
    tracking: Tracking, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "w.duckdb"
    monkeypatch.setenv("MLOPS_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("MLOPS_WAREHOUSE_PATH", str(db))
    monkeypatch.setenv("MLOPS_AUDIT_KEY_FILE", str(tmp_path / "audit.key"))
    monkeypatch.setenv("MLOPS_MLFLOW_TRACKING_URI", tracking.tracking_uri)
    monkeypatch.setenv("MLOPS_MLFLOW_ARTIFACT_ROOT", tracking.artifact_root)
    deployment, staging = deployed(tracking, db)

    def invoke(*args: str) -> tuple[int, str]:
        result = CliRunner().invoke(app, ["deployments", "traffic", *args])
        return result.exit_code, " ".join(result.output.split())

    code, out = invoke(deployment, "--canary-share", "0.1", "--shadow", "--reason", "canary", "--actor", "olga")
    assert code == 0 and "shadow False -> True, canary share 0 -> 0.1" in out, out
    code, out = invoke(deployment, "--canary-share", "1.5", "--actor", "olga")
    assert code == 2 and "Invalid value for '--canary-share'" in out and "less than or equal to 1" in out, out
    code, out = invoke(deployment, "--actor", "olga")
    assert code == 2 and "give --canary-share, --shadow/--no-shadow or both" in out, out
    code, out = invoke(staging, "--no-shadow", "--actor", "olga")
    assert code == 1 and "refused" in out and "ready production deployments" in out, out
    shown = CliRunner().invoke(app, ["deployments", "show", deployment])
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.output)["traffic"] == {"shadow": True, "canary_share": 0.1}
    assert json.loads(shown.output)["active"] is True
    with governed(tracking, db) as lifecycle:
        (row,) = [r for r in lifecycle.history(MODEL) if r["action"] == "traffic"]
        assert (row["actor"], row["reason"], row["details"]["new"]) == (
            "olga",
            "canary",
            {"shadow": True, "canary_share": 0.1},
        )
