"""The record of every prompt-version evaluation: what the promotion of a prompt version is judged on.

A prompt version may leave TRAINED (evaluated) only when its newest evaluation here passed its thresholds. The
evaluation asset writes one row per run; nothing updates or deletes a row, so the history is the record.
"""

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import duckdb

from mlops_pipelines.lib.core import warehouse

EVALUATIONS_TABLE = "prompts.evaluations"  # owned here: its DDL and every read and write
_COLUMNS = """
    evaluation_id VARCHAR PRIMARY KEY, prompt VARCHAR NOT NULL, version VARCHAR NOT NULL, passed BOOLEAN NOT NULL,
    scores VARCHAR NOT NULL, thresholds VARCHAR NOT NULL, failures VARCHAR NOT NULL, source VARCHAR NOT NULL,
    evaluated_at TIMESTAMP WITH TIME ZONE NOT NULL, worst VARCHAR NOT NULL DEFAULT '[]'
"""


@dataclass(frozen=True)
class PromptEvaluation:
    """One evaluation of one prompt version.

    ``scores``: aggregate per scorer (e.g. {"toxicity": 0.0, "fact_precision": 0.97}); ``thresholds``: the
    effective policy it was judged against; ``failures``: why it failed, one readable line per broken threshold
    (empty when it passed); ``source``: where the responses came from (``recorded:<file>`` or ``http:<base url>``).
    """

    evaluation_id: str
    prompt: str
    version: str
    passed: bool
    scores: dict[str, float]
    thresholds: dict[str, Any]
    failures: list[str]
    source: str
    evaluated_at: datetime
    worst: list[dict[str, Any]] = field(default_factory=list)


def record_evaluation(conn: duckdb.DuckDBPyConnection, evaluation: PromptEvaluation) -> None:
    """Append one evaluation (never replaces an earlier one)."""
    conn.execute("CREATE SCHEMA IF NOT EXISTS prompts")
    conn.execute(f"CREATE TABLE IF NOT EXISTS {EVALUATIONS_TABLE} ({_COLUMNS})")
    # tables from before worst examples were kept: the column added, their rows showing none
    conn.execute(f"ALTER TABLE {EVALUATIONS_TABLE} ADD COLUMN IF NOT EXISTS worst VARCHAR DEFAULT '[]'")
    conn.execute(
        f"INSERT INTO {EVALUATIONS_TABLE} VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            evaluation.evaluation_id,
            evaluation.prompt,
            evaluation.version,
            evaluation.passed,
            json.dumps(evaluation.scores),
            json.dumps(evaluation.thresholds, default=str),
            json.dumps(evaluation.failures),
            evaluation.source,
            evaluation.evaluated_at.astimezone(UTC),
            json.dumps(evaluation.worst, default=str),
        ],
    )


def evaluations(conn: duckdb.DuckDBPyConnection, prompt: str, version: str | None = None) -> list[PromptEvaluation]:
    """Every evaluation of ``prompt`` (of one ``version``), newest first."""
    if not warehouse.table_exists(conn, EVALUATIONS_TABLE):
        return []
    where, params = (
        ("WHERE prompt = ?", [prompt]) if version is None else ("WHERE prompt = ? AND version = ?", [prompt, version])
    )
    rows = warehouse.fetch_dicts(
        conn, f"SELECT * FROM {EVALUATIONS_TABLE} {where} ORDER BY evaluated_at DESC, evaluation_id", list(params)
    )
    return [
        PromptEvaluation(
            evaluation_id=r["evaluation_id"],
            prompt=r["prompt"],
            version=r["version"],
            passed=bool(r["passed"]),
            scores=json.loads(r["scores"]),
            thresholds=json.loads(r["thresholds"]),
            failures=json.loads(r["failures"]),
            source=r["source"],
            evaluated_at=r["evaluated_at"],
            worst=json.loads(r["worst"] or "[]"),
        )
        for r in rows
    ]


def latest_evaluation(conn: duckdb.DuckDBPyConnection, prompt: str, version: str) -> PromptEvaluation | None:
    """The newest evaluation of this prompt version, or None when it was never evaluated."""
    found = evaluations(conn, prompt, version)
    return found[0] if found else None
