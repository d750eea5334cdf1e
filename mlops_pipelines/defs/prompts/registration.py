"""One asset per prompt of the library: registers the catalog's version in MLflow's prompt registry (DRAFT, once;
a version number registered with other content fails the run) and renders the prompt card of every registered
version into MLflow, linked from the asset's metadata. The logic is in lib/prompts/; here: resources in, library
calls, metadata out."""

import dagster as dg

from mlops_pipelines.catalog.prompt_library import load_prompts
from mlops_pipelines.defs.common import PIPELINE_ACTOR
from mlops_pipelines.lib.prompts.card import CARD_HTML, CARD_MD, build_card, render_markdown, store_card
from mlops_pipelines.lib.prompts.library import Prompt
from mlops_pipelines.lib.prompts.lifecycle import PromptLifecycle
from mlops_pipelines.partitions import WAREHOUSE_POOL
from mlops_pipelines.resources import MlflowResource, WarehouseResource, open_lifecycle


def registration_asset(prompt: Prompt) -> dg.AssetsDefinition:
    name = prompt.name

    @dg.asset(
        key=["prompts", f"{name}_registration"],
        owners=[f"team:{prompt.owner}"],
        kinds={"mlflow"},
        pool=WAREHOUSE_POOL,
        tags={"risk_tier": prompt.risk_tier},
        description=(
            f"{name}: the library's version (catalog/prompts/{name}.yaml) registered in MLflow's prompt registry as "
            "DRAFT (once; a version is never edited, a number registered with other content fails the run), and "
            "the prompt card of every registered version (template and its diff, evaluations against thresholds, "
            "approvals, audit-chain head) in MLflow, linked below."
        ),
    )
    def _registration(
        context: dg.AssetExecutionContext, warehouse: WarehouseResource, mlflow: MlflowResource
    ) -> dg.MaterializeResult:
        current = load_prompts()[name]
        tracking = mlflow.tracking()
        with open_lifecycle(warehouse, mlflow, kind=PromptLifecycle) as lifecycle:
            assert isinstance(lifecycle, PromptLifecycle)
            version, created = lifecycle.register_version(
                current, actor=PIPELINE_ACTOR, reason=f"registered from catalog/prompts/{name}.yaml"
            )
            context.log.info(f"{name} v{version}: {'registered (DRAFT)' if created else 'already registered'}")
            links: dict[str, dg.MetadataValue] = {}
            current_card = None
            for pv in lifecycle.versions(name):
                card = build_card(lifecycle, name, str(pv.version))
                experiment_id, run_id = store_card(lifecycle, tracking, card)
                links[f"card_v{pv.version}"] = dg.MetadataValue.url(mlflow.run_url(experiment_id, run_id, CARD_HTML))
                if str(pv.version) == version:
                    current_card = card
            assert current_card is not None
        return dg.MaterializeResult(
            metadata={
                "prompt_version": version,
                "newly_registered": created,
                "lifecycle_state": current_card.state,
                "content_sha256": current.content_hash(),
                "risk_tier": current.risk_tier,
                "audit_head": str(current_card.audit_head),
                "card": links[f"card_v{version}"],
                "card_markdown_artifact": CARD_MD,
                **links,
                "prompt_card": dg.MetadataValue.md(render_markdown(current_card)),
            }
        )

    return _registration


registrations = [registration_asset(prompt) for prompt in load_prompts().values()]
