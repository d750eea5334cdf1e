"""What hourly monitoring watches and what it may do, answered by governance: the deployed versions (the
lifecycle's ``deployed``, from the audit log), the one verified way to load them, and auto-demotion (a rollback
through the lifecycle, audited). ``lib/monitoring`` takes these as arguments: it sits below governance."""

from collections.abc import Iterable

import lightgbm as lgb

from mlops_pipelines.lib.core.tracking import Tracking
from mlops_pipelines.lib.governance.lifecycle import Lifecycle, LifecycleError
from mlops_pipelines.lib.governance.model_loading import load_for_inference
from mlops_pipelines.lib.monitoring.champion_challenger import Contest
from mlops_pipelines.lib.monitoring.hourly_run import DeployedVersion, LoadBooster
from mlops_pipelines.lib.monitoring.model_performance import Demote
from mlops_pipelines.lib.training.model_specs import ModelSpec

MONITORING_ACTOR = "monitoring/model_performance"  # who the audit log says rolled a version back


def deployed_versions(lifecycle: Lifecycle, specs: Iterable[ModelSpec]) -> list[DeployedVersion]:
    """Each model's production version, else its staging one; a model with neither is not monitored."""
    deployed = []
    for spec in specs:
        found = lifecycle.deployed(spec.name)
        if found is None:
            continue
        version, alias = found
        try:
            run_id = lifecycle.run_id(spec.name, version)
        except LifecycleError:
            run_id = ""  # monitored all the same: importance in the spec's order, no validation baseline
        deployed.append(DeployedVersion(spec, version, alias, run_id))
    return deployed


def booster_loader(lifecycle: Lifecycle, tracking: Tracking, live_graph_hash: str) -> LoadBooster:
    """Monitoring's models, through ``load_for_inference`` (governance record, feature graph, artifact hash)."""

    def load(model: DeployedVersion) -> lgb.Booster:
        return load_for_inference(
            lifecycle, tracking, model.name, model.version, live_graph_hash=live_graph_hash
        ).booster

    return load


def auto_demotion(lifecycle: Lifecycle) -> Demote:
    """Roll a production version back to the one it superseded, as ``MONITORING_ACTOR``."""

    def demote(model: DeployedVersion, *, reason: str) -> str:
        return lifecycle.rollback(model.name, actor=MONITORING_ACTOR, reason=reason)

    return demote


def contests(lifecycle: Lifecycle, specs: Iterable[ModelSpec]) -> list[Contest]:
    """Each model's champion (``production``) and challenger (``challenger``), from the audit log; either may be
    None (the comparison then says so)."""
    return [Contest(spec, lifecycle.champion(spec.name), lifecycle.challenger(spec.name)) for spec in specs]
