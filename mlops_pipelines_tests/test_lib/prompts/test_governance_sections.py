"""The prompt library's part of the governance documents: its section of the audit pack (moves, prompt cards,
its records verified) and its KPIs, on the one audit log the models share, without mixing the two kinds."""

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from mlops_pipelines.catalog.governance import AUDIT_PACK_SECTIONS, KPI_PROVIDERS
from mlops_pipelines.catalog.prompt_library import load_prompts
from mlops_pipelines.lib.core.tracking import Tracking
from mlops_pipelines.lib.governance.audit_pack import OK, Period, build_audit_pack
from mlops_pipelines.lib.governance.kpis import KpiContext
from mlops_pipelines.lib.governance.lifecycle import Lifecycle
from mlops_pipelines_tests.test_lib.prompts.test_prompt_lifecycle import NAME, evaluated, prompts


def test_a_promoted_prompt_is_in_the_audit_pack_with_its_card_and_in_the_kpis(
    tracking: Tracking, tmp_path: Path
) -> None:
    with prompts(tracking, tmp_path) as lifecycle:
        lifecycle.register_version(load_prompts()[NAME], actor="author", reason="from the catalog")
        lifecycle.stage(NAME, "1", evaluated(lifecycle, "1", passed=True), actor="ops")
        lifecycle.approve(NAME, "1", approver="alice", comment="read the evaluation")
        lifecycle.promote_to_production(NAME, "1", actor="bob", reason="go")
        models = lifecycle.of_kind(Lifecycle)
        assert models.rows() == [] and len(models.rows(every_kind=True)) == len(lifecycle.rows()) > 0
        out = tmp_path / "pack"
        result = build_audit_pack(
            out,
            lifecycle=models,
            tracking=tracking,
            period=Period(since=datetime.now(UTC) - timedelta(days=1)),
            policies=[],
            alerts_file=None,
            sections=AUDIT_PACK_SECTIONS,
        )
        now = datetime.now(UTC)
        kpis = {k.name: k for p in KPI_PROVIDERS for k in p(KpiContext(lifecycle.rows(), now - timedelta(1), now))}
    summary = json.loads((out / "pack.json").read_text())
    assert result.verification == OK and summary["versions"] == []  # a prompt is never listed as a model
    (section,) = summary["sections"]
    assert section["status"] == OK and section["title"] == "Prompt versions"
    card = next(out / path for path in section["files"].values() if str(path).endswith(".html"))
    page = card.read_text()
    assert "market_summary" in page and "alice" in page and "<script" not in page
    assert kpis["prompts.approval_turnaround_hours_median"].value is not None
    assert kpis["prompts.policy_violations_total"].value == 0.0
