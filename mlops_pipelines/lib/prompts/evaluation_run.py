"""One evaluation of one registered prompt version, as the evaluation asset, ``mlops prompts evaluate`` and the API
run it: render every case with the version's template, get the answers from the configured source, score and judge
them (``evaluation.evaluate_version``, which records the verdict).

Where a prompt's context is market data (``features_variable`` of its evaluation set):
- a live provider is asked with the feature store's values at each case's time, so a stated return or volatility
  is checked against what the warehouse knew;
- recorded answers are judged against the context they were given, and that context is compared with this
  warehouse (``ContextProvenance``): a recorded set replayed against another market says so instead of failing
  every answer on numbers it was never shown.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import duckdb

from mlops_pipelines.lib.core.tracking import Tracking
from mlops_pipelines.lib.features.feature_views import FeatureView
from mlops_pipelines.lib.prompts.eval_sets import PromptCases
from mlops_pipelines.lib.prompts.evaluation import evaluate_version
from mlops_pipelines.lib.prompts.evaluation_results import PromptEvaluation
from mlops_pipelines.lib.prompts.library import Prompt, render
from mlops_pipelines.lib.prompts.market_context import (
    ContextProvenance,
    context_provenance,
    with_feature_store_context,
)
from mlops_pipelines.lib.prompts.prompt_policy import PromptPolicy
from mlops_pipelines.lib.prompts.responses import RecordedResponses, ResponseSource


@dataclass(frozen=True)
class EvaluationRun:
    evaluation: PromptEvaluation
    provenance: ContextProvenance | None  # recorded answers to market-data contexts: do they match the warehouse?


def run_evaluation(
    prompt: Prompt,
    cases: PromptCases,
    source: ResponseSource,
    policy: PromptPolicy,
    *,
    conn: duckdb.DuckDBPyConnection,
    views: Sequence[FeatureView],
    tracking: Tracking | None = None,
    request: dict[str, Any] | None = None,
) -> EvaluationRun:
    """Evaluate ``prompt`` (one registered version) on ``cases`` and record the verdict in ``conn``."""
    if cases.prompt != prompt.name:
        raise ValueError(f"evaluation set {cases.source} is for {cases.prompt!r}, not {prompt.name!r}")
    provenance = None
    if cases.features_variable is not None:
        if isinstance(source, RecordedResponses):
            provenance = context_provenance(cases, conn, views)
        else:
            cases = with_feature_store_context(cases, conn, views)
    rendered = {case.id: render(prompt, case.variables) for case in cases.cases}
    responses = source.responses(prompt.name, str(prompt.version), rendered, prompt.model)
    evaluation = evaluate_version(
        prompt.name,
        str(prompt.version),
        cases,
        responses,
        policy,
        risk_tier=prompt.risk_tier,
        conn=conn,
        tracking=tracking,
        request=request,
    )
    return EvaluationRun(evaluation, provenance)
