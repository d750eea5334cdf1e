"""One owner per warehouse table: its name, DDL and every read and write live in one module; nobody else writes SQL
against it (they call the owner's functions). Checked on the source: SQL that names an owned table, literally or
through the owner's constant, outside its owner fails."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
OWNERS = {  # table -> (owner module, the owner's constant for it)
    "raw.market_bars": ("mlops_pipelines/lib/ingestion/market_bars.py", "BARS_TABLE"),
    "raw.quarantined_bars": ("mlops_pipelines/lib/ingestion/market_bars.py", "QUARANTINE_TABLE"),
    "raw.market_bar_revisions": ("mlops_pipelines/lib/ingestion/revisions.py", "REVISIONS_TABLE"),
    "raw.quarantined_files": ("mlops_pipelines/lib/ingestion/raw_folder.py", "QUARANTINED_FILES_TABLE"),
    "features.catalog": ("mlops_pipelines/lib/features/feature_store.py", "CATALOG_TABLE"),
    "features.lineage": ("mlops_pipelines/lib/features/feature_store.py", "LINEAGE_TABLE"),
    "training.datasets": ("mlops_pipelines/lib/training/datasets.py", "DATASET_REGISTRY"),
    "evaluation.backtest_results": ("mlops_pipelines/lib/evaluation/replay.py", "BACKTEST_TABLE"),
    "evaluation.gate_metrics": ("mlops_pipelines/lib/evaluation/replay.py", "GATE_METRICS_TABLE"),
    "governance.deployments": ("mlops_pipelines/lib/governance/deployments.py", "DEPLOYMENTS_TABLE"),
    "governance.model_audit_log": ("mlops_pipelines/lib/governance/audit.py", "AUDIT_TABLE"),
    "governance.kpis": ("mlops_pipelines/lib/governance/kpis.py", "KPI_TABLE"),
    "inference.batch_predictions": ("mlops_pipelines/lib/inference/batch.py", "BATCH_TABLE"),
    "monitoring.champion_challenger": ("mlops_pipelines/lib/monitoring/champion_challenger.py", "CHALLENGE_TABLE"),
}
# SQL against a table outside its owner that another change of issue #11 removes (the CLI's and monitoring's own
# files, the lifecycle's sequence check, the drift benchmark's fixture): (file, table). Delete a row once it is gone.
PENDING: set[tuple[str, str]] = set()  # (file, table) still to move to its owner: none
_SQL = re.compile(r"\b(?:FROM|JOIN|INTO|UPDATE|TABLE(?:\s+IF\s+NOT\s+EXISTS)?)\s+(\{[\w.]+\}|[a-z_]+\.[a-z_]+\b)")


def sql_tables(text: str) -> set[str]:
    """The owned tables that SQL in ``text`` names, literally or as ``{CONSTANT}`` / ``{module.CONSTANT}``."""
    by_constant = {constant: table for table, (_, constant) in OWNERS.items()}
    found = set()
    for name in _SQL.findall(text):
        if name.startswith("{"):
            table = by_constant.get(name.strip("{}").split(".")[-1])
        else:
            table = name if name in OWNERS else None
        if table is not None:
            found.add(table)
    return found


def test_the_detector_sees_literal_and_constant_sql() -> None:  # placebo for the check below
    assert sql_tables('conn.execute("SELECT reason FROM raw.quarantined_bars")') == {"raw.quarantined_bars"}
    assert sql_tables('f"SELECT * FROM {DATASET_REGISTRY} WHERE x"') == {"training.datasets"}
    assert sql_tables('f"INSERT INTO {market_bars.BARS_TABLE} VALUES"') == {"raw.market_bars"}
    assert sql_tables('"dagster/table_name": BARS_TABLE, "read raw.market_bars"') == set()


@pytest.mark.parametrize("folder", ["mlops_pipelines", "benchmarks"])
def test_no_sql_against_a_table_outside_its_owner(folder: str) -> None:
    offenders = []
    for path in sorted((ROOT / folder).rglob("*.py")):
        name = path.relative_to(ROOT).as_posix()
        for table in sql_tables(path.read_text()):
            if OWNERS[table][0] != name and (name, table) not in PENDING:
                offenders.append(f"{name}: SQL against {table} (owner: {OWNERS[table][0]})")
    assert offenders == []


def test_every_owner_defines_its_table() -> None:
    for table, (owner, constant) in OWNERS.items():
        assert re.search(rf'^{constant} = "{re.escape(table)}"', (ROOT / owner).read_text(), re.M), (table, owner)
