"""`mlops governance audit-pack` against a real MLflow store and warehouse."""

import json
from pathlib import Path

from mlops_pipelines.lib.core.tracking import Tracking
from mlops_pipelines.lib.governance.audit import AUDIT_TABLE
from mlops_pipelines_tests.test_cli_models import env, invoke  # noqa: F401 (the fixture)
from mlops_pipelines_tests.test_lib.governance.test_audit_pack import assert_self_contained
from mlops_pipelines_tests.test_lib.governance.test_lifecycle import champion_and_challenger, governed


def test_audit_pack_from_the_cli(env: Path, tracking: Tracking, tmp_path: Path) -> None:  # noqa: F811
    champion_and_challenger(tracking, env)
    code, out = invoke("governance", "audit-pack", "--out", str(tmp_path / "pack"), "--json")
    assert code == 0, out
    summary = json.loads(out)
    assert summary["audit_log"] == "OK" and summary["versions"] == 2 and summary["problems"] == []
    assert_self_contained(tmp_path / "pack")

    # the folder exists now: a second pack into it is refused, naming it (exit 2)
    code, out = invoke("governance", "audit-pack", "--out", str(tmp_path / "pack"))
    assert code == 2 and "is not empty" in out
    code, out = invoke("governance", "audit-pack", "--out", str(tmp_path / "p2"), "--since", "yesterday")
    assert code == 2 and "--since 'yesterday' is not an ISO 8601 date" in out

    with governed(tracking, env) as lifecycle:
        lifecycle.conn.execute(f"UPDATE {AUDIT_TABLE} SET reason = 'forged' WHERE seq = 3")
    code, out = invoke("governance", "audit-pack", "--out", str(tmp_path / "forged"), "--since", "2026-01-01")
    assert code == 1 and "FAILED" in out and "audit row 3 was changed" in out
    assert "FAILED" in (tmp_path / "forged" / "index.html").read_text()  # written, and saying so
