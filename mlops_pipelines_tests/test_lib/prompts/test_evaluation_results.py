"""The record of prompt evaluations keeps what was written before it kept worst examples."""

import uuid
from datetime import UTC, datetime
from pathlib import Path

from mlops_pipelines.lib.core import warehouse
from mlops_pipelines.lib.prompts.evaluation_results import PromptEvaluation, evaluations, record_evaluation


def test_a_table_from_before_worst_examples_takes_new_rows_and_keeps_its_old_ones(tmp_path: Path) -> None:
    with warehouse.connect(tmp_path / "w.duckdb") as conn:
        conn.execute("CREATE SCHEMA prompts")
        conn.execute(
            "CREATE TABLE prompts.evaluations (evaluation_id VARCHAR PRIMARY KEY, prompt VARCHAR, version VARCHAR, "
            "passed BOOLEAN, scores VARCHAR, thresholds VARCHAR, failures VARCHAR, source VARCHAR, "
            "evaluated_at TIMESTAMP WITH TIME ZONE)"
        )
        conn.execute(
            "INSERT INTO prompts.evaluations VALUES ('old', 'p', '1', true, '{}', '{}', '[]', 'recorded:x', "
            "TIMESTAMPTZ '2026-11-01 00:00:00+00')"
        )
        new = PromptEvaluation(
            uuid.uuid4().hex,
            "p",
            "1",
            False,
            {"toxicity": 0.9},
            {},
            ["case a: toxicity"],
            "recorded:x",
            datetime(2026, 11, 2, tzinfo=UTC),
            worst=[{"case_id": "a", "scorer": "toxicity", "value": 0.9, "detail": ""}],
        )
        record_evaluation(conn, new)
        newest, oldest = evaluations(conn, "p", "1")
    assert newest.worst == new.worst and oldest.evaluation_id == "old" and oldest.worst == []
