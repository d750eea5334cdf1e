"""The evaluation of one prompt version: score every response, aggregate per version, judge the aggregates
against the effective thresholds of the prompt policy, and record the verdict (``evaluation_results``).

Aggregates (``AGGREGATES``): the worst response for ``toxicity`` (max), ``fact_precision`` and ``fact_coverage``
(min); counts over all responses for ``blocked_terms``, ``personal_data`` and ``injection_leaks``; shares for
``format_pass_rate`` (of the cases whose format is checked) and ``response_rate`` (cases answered / cases).
Every failure is one readable line naming the case, the scorer, its value and the threshold it broke.
"""

import json
import logging
import tempfile
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb

from mlops_pipelines.lib.core.tracking import Tracking
from mlops_pipelines.lib.prompts.eval_sets import EvalCase, OutputFormat, PromptCases
from mlops_pipelines.lib.prompts.evaluation_results import PromptEvaluation, record_evaluation
from mlops_pipelines.lib.prompts.prompt_policy import PromptPolicy
from mlops_pipelines.lib.prompts.responses import Responses
from mlops_pipelines.lib.prompts.scorers import (
    Score,
    blocked_terms,
    fact_coverage,
    fact_precision,
    injection,
    output_format,
    personal_data,
    toxicity,
)

logger = logging.getLogger(__name__)
SCORERS = (
    "toxicity",
    "blocked_terms",
    "personal_data",
    "injection",
    "fact_precision",
    "fact_coverage",
    "output_format",
)
DEFAULT_FACT_TOLERANCE = 0.02


@dataclass(frozen=True)
class CaseResult:
    case_id: str
    kind: str
    answered: bool
    scores: dict[str, Score]  # empty when the case was not answered


@dataclass(frozen=True)
class VersionScores:
    cases: list[CaseResult]
    aggregates: dict[str, float]


def score_response(
    case: EvalCase, text: str, spec: OutputFormat, terms: list[str], tolerance: float
) -> dict[str, Score]:
    """Every scorer on one response (the format only where the case checks it)."""
    scores = {
        "toxicity": toxicity(text),
        "blocked_terms": blocked_terms(text, terms),
        "personal_data": personal_data(text),
        "injection": injection(text, case.canary),
        "fact_precision": fact_precision(text, case.context, case.variables, tolerance),
        "fact_coverage": fact_coverage(text, case.facts, tolerance),
    }
    if case.check_format:
        scores["output_format"] = output_format(text, spec)
    return scores


def score_version(
    cases: PromptCases, responses: Responses, *, terms: list[str], tolerance: float = DEFAULT_FACT_TOLERANCE
) -> VersionScores:
    """Each case's scores and the version's aggregates (``AGGREGATES`` in the module docstring)."""
    results = []
    for case in cases.cases:
        response = responses.by_case.get(case.id)
        scores = score_response(case, response.text, cases.format, terms, tolerance) if response else {}
        results.append(CaseResult(case.id, case.kind, response is not None, scores))
    answered = [r for r in results if r.answered]

    def values(name: str) -> list[float]:
        return [r.scores[name].value for r in answered if name in r.scores]

    with_facts = {c.id for c in cases.cases if c.facts}
    formats = values("output_format")
    aggregates = {
        "toxicity": max(values("toxicity"), default=0.0),
        "blocked_terms": sum(values("blocked_terms")),
        "personal_data": sum(values("personal_data")),
        "injection_leaks": sum(values("injection")),
        "fact_precision": min(values("fact_precision"), default=0.0),
        "fact_precision_mean": sum(values("fact_precision")) / len(answered) if answered else 0.0,
        "fact_coverage": min(
            (r.scores["fact_coverage"].value for r in answered if r.case_id in with_facts), default=1.0
        ),
        "format_pass_rate": sum(formats) / len(formats) if formats else 1.0,
        "response_rate": len(answered) / len(results) if results else 0.0,
        "prompt_tokens": float(sum(r.prompt_tokens or 0 for r in responses.by_case.values())),
        "completion_tokens": float(sum(r.completion_tokens or 0 for r in responses.by_case.values())),
    }
    return VersionScores(results, aggregates)


# threshold -> (aggregate, aggregate passes, per-response scorer, a response breaks it)
_RULES: dict[str, tuple[str, Callable[[float, float], bool], str, Callable[[float, float], bool]]] = {
    "max_toxicity": ("toxicity", lambda o, t: o <= t, "toxicity", lambda v, t: v > t),
    "max_blocked_terms": ("blocked_terms", lambda o, t: o <= t, "blocked_terms", lambda v, t: v > 0),
    "max_personal_data": ("personal_data", lambda o, t: o <= t, "personal_data", lambda v, t: v > 0),
    "max_injection_leaks": ("injection_leaks", lambda o, t: o <= t, "injection", lambda v, t: v > 0),
    "min_fact_precision": ("fact_precision", lambda o, t: o >= t, "fact_precision", lambda v, t: v < t),
    "min_fact_coverage": ("fact_coverage", lambda o, t: o >= t, "fact_coverage", lambda v, t: v < t),
    "min_format_pass_rate": ("format_pass_rate", lambda o, t: o >= t, "output_format", lambda v, t: v < 1),
}


def judge(scores: VersionScores, thresholds: Mapping[str, Any]) -> list[str]:
    """Every broken threshold, one line per offending case: ``case <id>: <scorer> <value> breaks <threshold>
    <limit> (<what was found>)``; empty when the version passes."""
    failures = []
    rate = thresholds.get("min_response_rate")
    if rate is not None and scores.aggregates["response_rate"] < rate:
        for result in scores.cases:
            if not result.answered:
                failures.append(f"case {result.case_id}: no response, breaks min_response_rate {rate:g}")
    for key, (aggregate, passes, scorer, breaks) in _RULES.items():
        limit = thresholds.get(key)
        if limit is None or passes(scores.aggregates[aggregate], limit):
            continue
        offending = [r for r in scores.cases if scorer in r.scores and breaks(r.scores[scorer].value, limit)]
        for result in offending:
            score = result.scores[scorer]
            detail = f" ({score.detail})" if score.detail else ""
            failures.append(f"case {result.case_id}: {scorer} {score.value:.3g} breaks {key} {limit:g}{detail}")
        if not offending:  # a count over several responses, none over the limit alone
            failures.append(f"{aggregate} {scores.aggregates[aggregate]:.3g} breaks {key} {limit:g}")
    return failures


# how bad a response's score is, 0 = clean: higher is worse for the first group, lower for the second
_WORSE_HIGH = ("toxicity", "blocked_terms", "personal_data", "injection")
_WORSE_LOW = ("fact_precision", "fact_coverage", "output_format")


def worst_examples(scores: VersionScores, limit: int = 5) -> list[dict[str, Any]]:
    """The ``limit`` worst (case, scorer) results of a version, worst first, clean ones left out: what its prompt
    card shows next to the aggregates, passed or not."""
    found = []
    for result in scores.cases:
        for name, score in result.scores.items():
            badness = score.value if name in _WORSE_HIGH else 1.0 - score.value if name in _WORSE_LOW else 0.0
            if badness > 0:
                found.append((badness, result.case_id, name, score.value, score.detail))
    found.sort(key=lambda f: (-f[0], f[1], f[2]))
    return [{"case_id": c, "scorer": n, "value": v, "detail": d} for _, c, n, v, d in found[:limit]]


def evaluate_version(
    prompt: str,
    version: str,
    cases: PromptCases,
    responses: Responses,
    policy: PromptPolicy,
    *,
    risk_tier: str,
    conn: duckdb.DuckDBPyConnection,
    tracking: Tracking | None = None,
    request: dict[str, Any] | None = None,
    evaluated_at: datetime | None = None,
) -> PromptEvaluation:
    """Score ``responses`` to ``cases``, judge them against the policy's effective thresholds for this prompt and
    risk tier (and a request's overrides), record the verdict in ``conn`` and return it. With ``tracking``, the
    evaluation is then also an MLflow run (``mlflow.genai.evaluate`` with these scorers, experiment
    ``prompts/<prompt>``) tagged with the prompt, version and evaluation id."""
    thresholds = policy.effective(prompt, risk_tier, request)
    tolerance = thresholds.get("fact_tolerance")
    tolerance = DEFAULT_FACT_TOLERANCE if tolerance is None else float(tolerance)
    scores = score_version(cases, responses, terms=policy.blocked_terms, tolerance=tolerance)
    failures = judge(scores, thresholds)
    evaluation = PromptEvaluation(
        evaluation_id=uuid.uuid4().hex,
        prompt=prompt,
        version=str(version),
        passed=not failures,
        scores=dict(scores.aggregates),
        thresholds={**thresholds, "policy_hash": policy.digest(), "risk_tier": risk_tier},
        failures=failures,
        source=responses.source,
        evaluated_at=evaluated_at or datetime.now(UTC),
        worst=worst_examples(scores),
    )
    record_evaluation(conn, evaluation)  # first: the verdict stands even if MLflow is unreachable
    if tracking is not None:
        log_to_mlflow(tracking, evaluation, cases, responses, scores, policy.blocked_terms, tolerance)
    return evaluation


def case_table(scores: VersionScores) -> list[dict[str, Any]]:
    """One row per case: every scorer's value and what it found (the worst examples of a prompt card)."""
    rows = []
    for result in scores.cases:
        row: dict[str, Any] = {"case_id": result.case_id, "kind": result.kind, "answered": result.answered}
        for name, score in result.scores.items():
            row[name] = score.value
            if score.detail:
                row[f"{name}_detail"] = score.detail
        rows.append(row)
    return rows


def log_to_mlflow(
    tracking: Tracking,
    evaluation: PromptEvaluation,
    cases: PromptCases,
    responses: Responses,
    scores: VersionScores,
    terms: list[str],
    tolerance: float,
) -> str:
    """One MLflow run for the evaluation: ``mlflow.genai.evaluate`` runs the same rule-based scorers over the
    answered cases (each answer a trace with its assessments, in the run's Traces tab), and the run gets the
    aggregates as metrics, the verdict as tags and the per-case table as ``case_scores.json``. Returns the run id."""
    import mlflow
    from mlflow.entities import Feedback
    from mlflow.genai import evaluate as genai_evaluate
    from mlflow.genai.scorers import scorer

    by_id = {c.id: c for c in cases.cases}

    def make(name: str):
        def score(inputs: dict[str, Any], outputs: str) -> Feedback:
            case = by_id[inputs["case_id"]]
            found = score_response(case, outputs, cases.format, terms, tolerance).get(name)
            if found is None:  # a case whose format is not checked
                return Feedback(value=None, rationale="not checked for this case")
            return Feedback(value=found.value, rationale=found.detail or "clean")

        return scorer(score, name=name)

    data = [
        {"inputs": {"case_id": c.id, "variables": c.variables}, "outputs": responses.by_case[c.id].text}
        for c in cases.cases
        if c.id in responses.by_case
    ]
    tags = {
        "prompt": evaluation.prompt,
        "prompt_version": evaluation.version,
        "evaluation_id": evaluation.evaluation_id,
        "passed": str(evaluation.passed).lower(),
        "response_source": evaluation.source,
    }
    experiment = f"prompts/{evaluation.prompt}"
    with tracking.run(experiment, run_name=f"{evaluation.prompt}-v{evaluation.version}-evaluation", tags=tags) as run:
        run_id = run.info.run_id
        client = tracking.client()
        mlflow.set_tracking_uri(tracking.tracking_uri)
        mlflow.set_registry_uri(tracking.registry_uri)
        with mlflow.start_run(run_id=run_id):
            if data:
                genai_evaluate(data=data, scorers=[make(name) for name in SCORERS])
        for name, value in evaluation.scores.items():
            client.log_metric(run_id, name, value)
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "case_scores.json"
            verdict = {
                "passed": evaluation.passed,
                "failures": evaluation.failures,
                "thresholds": evaluation.thresholds,
            }
            path.write_text(json.dumps({"verdict": verdict, "cases": case_table(scores)}, indent=2, default=str))
            client.log_artifact(run_id, str(path))
    logger.info("prompt %s v%s evaluation logged to MLflow run %s", evaluation.prompt, evaluation.version, run_id)
    return run_id
