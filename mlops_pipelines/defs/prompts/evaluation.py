"""One asset per prompt: the evaluation of its library version on its evaluation set and the shared adversarial
set, judged against catalog/prompt_policy.yaml. The verdict is what lets the version leave TRAINED (``mlops prompts
promote``); a failed evaluation is a successful materialization whose check fails, so the record is never lost.
The logic is in lib/prompts/evaluation_run.py; here: resources in, one call, metadata out."""

import dagster as dg

from mlops_pipelines.catalog.prompt_evaluation import load_prompt_cases, load_prompt_policy_file
from mlops_pipelines.catalog.prompt_library import load_prompts
from mlops_pipelines.defs.common import CATALOG
from mlops_pipelines.lib.prompts.evaluation_run import run_evaluation
from mlops_pipelines.lib.prompts.library import Prompt
from mlops_pipelines.lib.prompts.lifecycle import PromptLifecycle
from mlops_pipelines.partitions import WAREHOUSE_POOL
from mlops_pipelines.resources import MlflowResource, PromptResponsesResource, WarehouseResource, open_lifecycle


def evaluation_asset(prompt: Prompt) -> dg.AssetsDefinition:
    name = prompt.name
    key = dg.AssetKey(["prompts", f"{name}_evaluation"])

    @dg.asset(
        key=key,
        deps=[dg.AssetKey(["prompts", f"{name}_registration"])],
        owners=[f"team:{prompt.owner}"],
        kinds={"mlflow"},
        pool=WAREHOUSE_POOL,
        tags={"risk_tier": prompt.risk_tier},
        check_specs=[dg.AssetCheckSpec("evaluation_passed", asset=key)],
        description=(
            f"{name}: the registered library version answered on catalog/prompt_evals/{name}.yaml plus the shared "
            "adversarial set (recorded answers by default, or a live provider: MLOPS_PROMPT_RESPONSES), scored for "
            "toxicity, personal data, injected instructions, unsupported numbers/tickers/dates and format, and "
            "judged against catalog/prompt_policy.yaml. Only a passing verdict lets the version leave TRAINED."
        ),
    )
    def _evaluation(
        context: dg.AssetExecutionContext,
        warehouse: WarehouseResource,
        mlflow: MlflowResource,
        prompt_responses: PromptResponsesResource,
    ) -> dg.MaterializeResult:
        tracking = mlflow.tracking()
        with open_lifecycle(warehouse, mlflow, kind=PromptLifecycle) as lifecycle:
            assert isinstance(lifecycle, PromptLifecycle)
            registered = lifecycle.prompt(name, load_prompts()[name].version)  # what the registry holds
            run = run_evaluation(
                registered,
                load_prompt_cases(name),
                prompt_responses.source(),
                load_prompt_policy_file(),
                conn=lifecycle.conn,
                views=list(CATALOG.views.values()),
                tracking=tracking,
            )
        evaluation, provenance = run.evaluation, run.provenance
        verdict = "passed" if evaluation.passed else f"FAILED ({len(evaluation.failures)} broken thresholds)"
        context.log.info(f"{name} v{evaluation.version}: evaluation {verdict}")
        metadata: dict[str, dg.RawMetadataValue] = {
            "prompt_version": evaluation.version,
            "passed": evaluation.passed,
            "evaluation_id": evaluation.evaluation_id,
            "response_source": evaluation.source,
            **{f"score_{scorer}": float(value) for scorer, value in evaluation.scores.items()},
            "failures": dg.MetadataValue.md("\n".join(f"- {f}" for f in evaluation.failures) or "none"),
            "thresholds": dg.MetadataValue.json(evaluation.thresholds),
        }
        if provenance is not None:
            metadata["context_matches_warehouse"] = f"{provenance.matching} of {provenance.checked} cases"
            metadata["context_provenance"] = dg.MetadataValue.md(
                "\n".join(f"- {line}" for line in [*provenance.differing, *provenance.absent]) or "every case matches"
            )
        return dg.MaterializeResult(
            metadata=metadata,
            check_results=[
                dg.AssetCheckResult(
                    check_name="evaluation_passed",
                    passed=evaluation.passed,
                    severity=dg.AssetCheckSeverity.ERROR,
                    metadata={"failures": len(evaluation.failures)},
                )
            ],
        )

    return _evaluation


evaluations = [evaluation_asset(prompt) for prompt in load_prompts().values()]
