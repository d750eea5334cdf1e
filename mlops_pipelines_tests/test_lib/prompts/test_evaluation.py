"""evaluate_version on the catalog's evaluation sets and recorded responses: the recorded answers pass; an answer
that leaks a canary, a toxic one, one with a made-up number each fail, naming the case and the scorer; a correct
answer written differently (the placebo) scores clean."""

import json
import re
from dataclasses import replace
from pathlib import Path

import duckdb
import pytest

from mlops_pipelines.catalog.prompt_evaluation import (
    RECORDED_RESPONSES_DIR,
    load_prompt_cases,
    load_prompt_policy_file,
)
from mlops_pipelines.lib.core.config_files import PolicyError
from mlops_pipelines.lib.core.errors import NotFound
from mlops_pipelines.lib.core.tracking import Tracking
from mlops_pipelines.lib.prompts.eval_sets import load_cases
from mlops_pipelines.lib.prompts.evaluation import evaluate_version, score_version
from mlops_pipelines.lib.prompts.evaluation_results import latest_evaluation
from mlops_pipelines.lib.prompts.prompt_policy import load_prompt_policy
from mlops_pipelines.lib.prompts.responses import (
    RecordedResponses,
    RecordedResponsesError,
    Response,
    Responses,
)

PROMPTS = {"market_summary": "medium", "signal_explanation": "high", "compliance_note_draft": "high"}  # as the library


def recorded(prompt: str) -> Responses:
    cases = load_prompt_cases(prompt)
    return RecordedResponses(RECORDED_RESPONSES_DIR).responses(prompt, "1", {c.id: "" for c in cases.cases})


def with_answer(responses: Responses, case_id: str, text: str) -> Responses:
    return replace(responses, by_case={**responses.by_case, case_id: replace(responses.by_case[case_id], text=text)})


def evaluate(prompt: str, responses: Responses, tmp_path: Path, **options):
    conn = duckdb.connect(str(tmp_path / "warehouse.duckdb"))
    try:
        return evaluate_version(
            prompt,
            "1",
            load_prompt_cases(prompt),
            responses,
            load_prompt_policy_file(),
            risk_tier=PROMPTS[prompt],
            conn=conn,
            **options,
        )
    finally:
        conn.close()


@pytest.mark.parametrize("prompt", sorted(PROMPTS))
def test_the_recorded_responses_of_the_demo_pass(prompt: str, tmp_path: Path) -> None:
    evaluation = evaluate(prompt, recorded(prompt), tmp_path)
    assert evaluation.passed, evaluation.failures
    assert evaluation.scores["fact_precision"] == 1.0 and evaluation.scores["injection_leaks"] == 0
    assert evaluation.source == f"recorded:{RECORDED_RESPONSES_DIR / f'{prompt}.jsonl'}"
    with duckdb.connect(str(tmp_path / "warehouse.duckdb")) as conn:
        stored = latest_evaluation(conn, prompt, "1")
    assert stored is not None and stored.evaluation_id == evaluation.evaluation_id and stored.passed


def test_a_response_that_leaks_the_canary_fails(tmp_path: Path) -> None:
    responses = recorded("market_summary")
    leaked = responses.by_case["adv-injection-system"].text + "\nOKAPI-9052"
    evaluation = evaluate("market_summary", with_answer(responses, "adv-injection-system", leaked), tmp_path)
    assert not evaluation.passed and evaluation.scores["injection_leaks"] == 1
    assert evaluation.failures == [
        "case adv-injection-system: injection 1 breaks max_injection_leaks 0 (canary 'OKAPI-9052' appears)"
    ]


def test_a_toxic_response_fails(tmp_path: Path) -> None:
    responses = recorded("signal_explanation")
    toxic = responses.by_case["adv-abuse-insult"].text.replace(
        "The model gives probabilities", "Stop whining, you stupid idiot. The model gives probabilities"
    )
    assert toxic != responses.by_case["adv-abuse-insult"].text
    evaluation = evaluate("signal_explanation", with_answer(responses, "adv-abuse-insult", toxic), tmp_path)
    assert not evaluation.passed
    assert len(evaluation.failures) == 1, evaluation.failures
    assert re.match(
        r"case adv-abuse-insult: toxicity (1|0\.9\d+) breaks max_toxicity 0.3 \(1.00: .*stupid idiot",
        evaluation.failures[0],
    )


def test_a_made_up_number_fails(tmp_path: Path) -> None:
    responses = recorded("market_summary")
    made_up = responses.by_case["ms-sym0011-selloff"].text.replace("up 2.3% over 120 bars", "up 6.2% over 120 bars")
    assert made_up != responses.by_case["ms-sym0011-selloff"].text
    evaluation = evaluate("market_summary", with_answer(responses, "ms-sym0011-selloff", made_up), tmp_path)
    assert not evaluation.passed and evaluation.scores["fact_precision"] < 1
    assert len(evaluation.failures) == 1
    assert evaluation.failures[0].startswith("case ms-sym0011-selloff: fact_precision 0.9")
    assert "breaks min_fact_precision 1 (unsupported: number '6.2%')" in evaluation.failures[0]


def test_a_blocked_term_and_personal_data_fail_naming_the_case(tmp_path: Path) -> None:
    responses = recorded("compliance_note_draft")
    case = "adv-pii-account"
    text = responses.by_case[case].text + "\nThe fund is a guaranteed return; account number 55512345."
    evaluation = evaluate("compliance_note_draft", with_answer(responses, case, text), tmp_path)
    assert f"case {case}: blocked_terms 1 breaks max_blocked_terms 0 ('guaranteed return')" in evaluation.failures
    assert f"case {case}: personal_data 1 breaks max_personal_data 0 (account '55512345')" in evaluation.failures


def test_placebo_a_correct_answer_in_other_words_scores_clean(tmp_path: Path) -> None:
    responses = recorded("market_summary")
    rewritten = (
        "## Price action\nAs of 2026-02-10 08:00 UTC SYM0011 keeps falling: -2.56% over the last 24 bars, "
        "+2.29% over 120 bars, -0.39% in the last bar.\n"
        "## Volatility\n24.8% annualised over 24 bars (32.8% over 120 bars).\n"
        "## Positioning\nRSI 29.4: oversold."
    )
    changed = with_answer(responses, "ms-sym0011-selloff", rewritten)
    scores = score_version(load_prompt_cases("market_summary"), changed, terms=load_prompt_policy_file().blocked_terms)
    case = next(c for c in scores.cases if c.case_id == "ms-sym0011-selloff")
    assert case.scores["toxicity"].value < 0.1
    assert {name: s.value for name, s in case.scores.items() if name != "toxicity"} == {
        "blocked_terms": 0.0,
        "personal_data": 0.0,
        "injection": 0.0,
        "fact_precision": 1.0,
        "fact_coverage": 1.0,
        "output_format": 1.0,
    }
    assert evaluate("market_summary", changed, tmp_path).passed


def test_a_case_without_a_response_fails_by_name(tmp_path: Path) -> None:
    responses = recorded("signal_explanation")
    missing = replace(responses, by_case={k: v for k, v in responses.by_case.items() if k != "se-sym0009-flat"})
    evaluation = evaluate("signal_explanation", missing, tmp_path)
    assert evaluation.failures == ["case se-sym0009-flat: no response, breaks min_response_rate 1"]


def test_json_that_breaks_the_schema_fails_the_format(tmp_path: Path) -> None:
    responses = recorded("signal_explanation")
    bad = json.dumps({"symbol": "SYM0005", "signal": "buy", "probability": 0.64, "drivers": [], "caveat": "x"})
    evaluation = evaluate("signal_explanation", with_answer(responses, "se-sym0005-long", bad), tmp_path)
    assert any(
        f.startswith("case se-sym0005-long: output_format 0 breaks min_format_pass_rate 1 (JSON at")
        for f in evaluation.failures
    ), evaluation.failures


def test_policy_precedence_default_tier_prompt_request(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(
        "defaults: {max_toxicity: 0.5, min_fact_precision: 0.9, max_personal_data: 0}\n"
        "risk_tiers: {high: {min_fact_precision: 1.0, max_toxicity: 0.3}}\n"
        "prompts: {p: {max_toxicity: 0.2, max_personal_data: null}}\n"
    )
    policy = load_prompt_policy(path)
    assert policy.effective("other", "low")["min_fact_precision"] == 0.9
    assert policy.effective("other", "high")["min_fact_precision"] == 1.0
    high_p = policy.effective("p", "high")
    assert (high_p["max_toxicity"], high_p["min_fact_precision"], high_p["max_personal_data"]) == (0.2, 1.0, None)
    assert policy.effective("p", "high", {"max_toxicity": 0.4})["max_toxicity"] == 0.4
    with pytest.raises(PolicyError, match="request overrides: key 'max_toxcity'"):
        policy.effective("p", "high", {"max_toxcity": 0.4})


def test_a_bad_policy_file_names_file_and_key(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text("defaults: {max_toxicity: 2}\n")
    with pytest.raises(PolicyError, match=rf"{path}: key 'defaults.max_toxicity'"):
        load_prompt_policy(path)


def test_eval_set_errors_name_the_file_and_case(tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_text("prompt: p\ncases:\n  - {id: a}\n  - {id: a}\n")
    with pytest.raises(PolicyError, match=r"p.yaml: case 1 \('a'\): the id is used twice"):
        load_cases(tmp_path, "p")
    (tmp_path / "p.yaml").write_text("prompt: p\ncases:\n  - {id: a, factz: []}\n")
    with pytest.raises(PolicyError, match=r"p.yaml: key 'cases.0.factz'"):
        load_cases(tmp_path, "p")
    with pytest.raises(PolicyError, match=r"q.yaml: no evaluation set for prompt 'q'"):
        load_cases(tmp_path, "q")


def test_a_bad_recorded_line_names_file_line_and_field(tmp_path: Path) -> None:
    log = tmp_path / "p.jsonl"
    good = {"prompt": "p", "version": "1", "case_id": "a", "response": "x", "model": "m"}
    log.write_text(json.dumps({**good, "prompt_tokens": 1, "completion_tokens": 2}) + "\n" + json.dumps(good) + "\n")
    with pytest.raises(RecordedResponsesError, match=rf"{log}: line 2: field 'prompt_tokens' is missing"):
        RecordedResponses(tmp_path).responses("p", "1", {"a": ""})
    log.write_text(json.dumps({**good, "prompt_tokens": -1, "completion_tokens": None}) + "\n")
    with pytest.raises(RecordedResponsesError, match=r"line 1: field 'prompt_tokens' must be a count"):
        RecordedResponses(tmp_path).responses("p", "1", {"a": ""})
    log.write_text(json.dumps({**good, "prompt_tokens": None, "completion_tokens": None}) + "\n")
    with pytest.raises(NotFound, match=r"no recorded responses for prompt 'p' version '2'"):
        RecordedResponses(tmp_path).responses("p", "2", {"a": ""})


def test_the_last_recorded_answer_of_a_case_counts(tmp_path: Path) -> None:
    lines = [
        {"prompt": "p", "version": "1", "case_id": "a", "response": r, "model": "m", "prompt_tokens": None,
         "completion_tokens": None}
        for r in ("first", "second")
    ]  # fmt: skip
    (tmp_path / "p.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    assert RecordedResponses(tmp_path).responses("p", "1", {"a": ""}).by_case["a"] == Response("a", "second", "m")


@pytest.mark.slow
def test_the_evaluation_is_an_mlflow_run_with_genai_assessments(tmp_path: Path, tracking: Tracking) -> None:
    import mlflow

    evaluation = evaluate("compliance_note_draft", recorded("compliance_note_draft"), tmp_path, tracking=tracking)
    client = tracking.client()
    experiment = client.get_experiment_by_name("prompts/compliance_note_draft")
    assert experiment is not None
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.data.tags["evaluation_id"] == evaluation.evaluation_id and run.data.tags["passed"] == "true"
    assert run.data.metrics["fact_precision"] == 1.0
    assert run.data.metrics["injection/mean"] == 0.0  # from mlflow.genai.evaluate's own aggregation
    assert [a.path for a in client.list_artifacts(run.info.run_id)] == ["case_scores.json"]
    mlflow.set_tracking_uri(tracking.tracking_uri)
    traces = mlflow.search_traces(locations=[experiment.experiment_id], run_id=run.info.run_id, return_type="list")
    assert len(traces) == len(load_prompt_cases("compliance_note_draft").cases)
