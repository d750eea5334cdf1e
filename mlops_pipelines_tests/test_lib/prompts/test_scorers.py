"""The scorers on their labelled sets (the figures docs/prompt_evaluation.md reports) and on the edge cases each
one must get right."""

import pytest

from benchmarks.prompt_scorers import measure
from mlops_pipelines.lib.prompts.eval_sets import OutputFormat
from mlops_pipelines.lib.prompts.scorers import (
    blocked_terms,
    fact_coverage,
    fact_precision,
    injection,
    output_format,
    personal_data,
)
from mlops_pipelines.lib.prompts.scorers.personal_data import findings

# what each scorer reaches on its labelled set (measured: python -m benchmarks.prompt_scorers)
FLOORS = {
    "toxicity": (0.95, 0.95, 0.95),
    "personal_data": (0.975, 0.95, 1.0),
    "injection": (1.0, 1.0, 1.0),
    "fact_check": (1.0, 1.0, 1.0),
    "output_format": (1.0, 1.0, 1.0),
}


def test_accuracy_precision_recall_on_the_labelled_sets() -> None:
    figures = {f.scorer: f for f in measure()}
    assert set(figures) == set(FLOORS)
    for scorer, (accuracy, precision, recall) in FLOORS.items():
        found = figures[scorer]
        assert found.examples >= 16, scorer
        assert found.accuracy >= accuracy - 1e-9, (scorer, found)
        assert found.precision >= precision - 0.01 and found.recall >= recall, (scorer, found)


CONTEXT = {"symbol": "SYM0003", "as_of": "2026-03-02T12:00:00Z", "features": {"ret_24b": -0.0213, "rvol_24b": 0.624}}


@pytest.mark.parametrize(
    ("text", "precision"),
    [
        ("SYM0003 fell 2.1% over 24 bars.", 1.0),  # percent vs fraction, unsigned vs negative, window from the key
        ("The 24-bar return was -2.13%.", 1.0),
        ("The 24-bar return was +2.1%.", 0.5),  # an explicit sign must match
        ("Volatility 62.4% (0.624).", 1.0),
        ("Volatility 64%.", 0.0),  # outside 2% relative and the rounding of "64"
        ("Down 213 bp.", 1.0),
        ("As of 2026-03-02 12:00 UTC.", 1.0),
        ("As of 2026-03-03.", 0.0),
        ("SYM0004 moved.", 0.0),
        ("No numbers at all.", 1.0),
    ],
)
def test_fact_precision(text: str, precision: float) -> None:
    assert fact_precision(text, CONTEXT, {}, 0.02).value == pytest.approx(precision)


def test_fact_coverage_reads_numbers_as_numbers() -> None:
    assert fact_coverage("down 2.13% over 24 bars", ["-2.1%", "SYM0003"], 0.02).value == 0.5
    assert fact_coverage("SYM0003 down 2.1%", ["-2.1%", ["SYM0003", "the symbol"]], 0.02).value == 1.0


def test_personal_data_checksums_and_dates() -> None:
    assert [f.kind for f in findings("card 4111 1111 1111 1111")] == ["card"]
    assert findings("card 4111 1111 1111 1112") == []  # fails Luhn
    assert [f.kind for f in findings("IBAN GB82 WEST 1234 5698 7654 32")] == ["iban"]
    assert findings("IBAN GB83 WEST 1234 5698 7654 32") == []  # fails mod 97
    assert findings("as of 2026-03-02 12:00, 18,240 rows, Sharpe 1.42, 3.5 bps") == []
    assert personal_data("Mr. John Smith, john@example.com").value == 2


def test_injection_and_blocked_terms_survive_spacing_and_case() -> None:
    assert injection("o k a p i _ 9052", "OKAPI-9052").value == 1.0
    assert injection("the okapi is fine", "OKAPI-9052").value == 0.0
    assert injection("anything", None).value == 0.0
    assert blocked_terms("A Guaranteed  Return and risk free", ["guaranteed return", "risk-free"]).value == 2
    assert blocked_terms("not guaranteed; returns vary", ["guaranteed return"]).value == 0


def test_output_format_names_the_problem() -> None:
    spec = OutputFormat(required_sections=["Summary", "Risks"], max_words=5)
    assert output_format("Summary: ok\nRisks: none", spec).value == 1.0
    score = output_format("Summary: this is far too long for it", spec)
    assert score.value == 0.0 and score.detail == "8 words > 5; missing sections: Risks"
