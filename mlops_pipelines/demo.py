"""The demo's story, on the local instance: a model is trained on the market before its regime shift, the
hourly monitoring replays the days around the shift (NORMAL before, SEVERE after), the retraining sensor turns
the SEVERE report into a retraining run, and a new version appears. Everything runs through Dagster jobs on the
instance `make ui` opens, so the runs, the drift metadata over partitions and the retraining are in the UI."""

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta

import dagster as dg

RETRAINING_SENSOR = "retraining_sensor"
DEMO_OPERATOR = "demo-operator"
UNPROVEN_REASON = (
    "demo: the held-out window ({days:.0f} days) is too short to tell this version's skill from luck (its only "
    "failed checks are confidence-interval bounds); staged so that monitoring watches it, never for production"
)


@dataclass(frozen=True)
class DemoPlan:
    start: date
    train_until: date  # last day the first model sees
    end: date  # last day ingested

    @property
    def monitored_hours(self) -> list[str]:
        """The last hour of each day from the day before the training cut to the end (one drift run per day)."""
        days = (self.end - self.train_until).days
        return [f"{self.train_until + timedelta(days=d):%Y-%m-%d}-23:00" for d in range(days)]


def run(
    definitions: dg.Definitions,
    instance: dg.DagsterInstance,
    plan: DemoPlan,
    say: Callable[[str], None],
) -> list[str]:
    """Materialize the story; returns the run ids of the retraining runs the sensor requested."""

    def job(
        name: str, tags: dict[str, str] | None = None, asset_selection: Sequence[dg.AssetKey] | None = None
    ) -> dg.ExecuteInProcessResult:
        result = definitions.resolve_job_def(name).execute_in_process(
            instance=instance,
            run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}},
            tags=tags,
            asset_selection=asset_selection,
        )
        if not result.success:
            raise RuntimeError(f"{name} failed (run {result.run_id}); see `make ui`")
        return result

    def ingest(first: date, last: date) -> None:
        say(f"ingestion_job {first} .. {last}")
        job(
            "ingestion_job",
            tags={"dagster/asset_partition_range_start": str(first), "dagster/asset_partition_range_end": str(last)},
        )
        say("features_job")
        job("features_job")

    ingest(plan.start, plan.train_until)
    say("training_job (dataset, training, backtest, SHAP, compliance report, promotion gate)")
    job("training_job")
    for line in stage_unproven(definitions):
        say(line)
    if plan.end <= plan.train_until:
        return []
    ingest(plan.train_until + timedelta(days=1), plan.end)

    sensor = definitions.resolve_sensor_def(RETRAINING_SENSOR)
    cursor: str | None = None
    retrainings = []
    for partition in plan.monitored_hours:
        say(f"drift_job {partition} (feature drift, prediction drift, model performance)")
        job("drift_job", tags={"dagster/partition": partition})
        # one sensor tick, as the daemon would run it between two drift runs
        context = dg.build_sensor_context(
            instance=instance, cursor=cursor, resources=definitions.resources, sensor_name=RETRAINING_SENSOR
        )
        tick = sensor.evaluate_tick(context)
        cursor = tick.cursor
        for request in tick.run_requests or []:
            say(f"{RETRAINING_SENSOR} requested {request.run_key}: running it")
            tags = {**request.tags, "dagster/sensor_name": RETRAINING_SENSOR, "dagster/run_key": request.run_key or ""}
            retrainings.append(job("training_job", asset_selection=request.asset_selection, tags=tags).run_id)
    return retrainings


def prompts(definitions: dg.Definitions, instance: dg.DagsterInstance, say: Callable[[str], None]) -> list[str]:
    """The trading assistant's prompts: ``prompts_job`` registers each library version and evaluates it (recorded
    answers), then the demo operator stages every version whose evaluation passed, as ``mlops prompts promote NAME
    --version V --to staging`` does. Returns one line per prompt: its scores and where it stands."""
    from mlops_pipelines.catalog.prompt_library import load_prompts
    from mlops_pipelines.lib.prompts.evaluation_results import latest_evaluation
    from mlops_pipelines.lib.prompts.lifecycle import PromptLifecycle, request_promotion
    from mlops_pipelines.resources import open_lifecycle

    say("prompts_job (register the prompt library's versions, evaluate them on their evaluation sets)")
    result = definitions.resolve_job_def("prompts_job").execute_in_process(
        instance=instance, run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
    )
    if not result.success:
        raise RuntimeError(f"prompts_job failed (run {result.run_id}); see `make ui`")
    lines = []
    resources = definitions.resources or {}
    with open_lifecycle(resources["warehouse"], resources["mlflow"]) as models:
        lifecycle = models.of_kind(PromptLifecycle)
        for name, prompt in load_prompts().items():
            version = str(prompt.version)
            evaluation = latest_evaluation(lifecycle.conn, name, version)
            state = lifecycle.state(name, version)
            if state in ("DRAFT", "TRAINED", "VALIDATED"):  # a re-run leaves later decisions alone
                state = request_promotion(
                    lifecycle,
                    name,
                    version,
                    to="staging",
                    actor=DEMO_OPERATOR,
                    reason="demo: evaluated",
                    via="the demo",
                )
            scores = ", ".join(f"{k} {v:.3g}" for k, v in (evaluation.scores if evaluation else {}).items())
            verdict = "passed" if evaluation and evaluation.passed else "FAILED"
            lines.append(f"prompt {name} v{version}: evaluation {verdict} ({scores}) -> {state}")
    return lines


def document(definitions: dg.Definitions, instance: dg.DagsterInstance, say: Callable[[str], None]) -> str:
    """The governance documents of the story: today's platform KPIs (``governance/kpis``) and the audit pack of
    everything so far (``governance/audit_pack``). Returns the pack's index page."""
    from datetime import UTC, datetime

    today = f"{datetime.now(UTC):%Y-%m-%d}"
    say(f"governance_kpis_job {today} (the platform KPIs) and governance/audit_pack (the audit pack)")
    quiet = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
    kpis = definitions.resolve_job_def("governance_kpis_job").execute_in_process(
        instance=instance, partition_key=today, run_config=quiet
    )
    pack = definitions.resolve_implicit_global_asset_job_def().execute_in_process(
        instance=instance, asset_selection=[dg.AssetKey(["governance", "audit_pack"])], run_config=quiet
    )
    for result in (kpis, pack):
        if not result.success:
            raise RuntimeError(f"{result.job_def.name} failed (run {result.run_id}); see `make ui`")
    [materialization] = pack.asset_materializations_for_node("governance__audit_pack")
    verification = materialization.metadata["audit_log_verification"].value
    index = str(materialization.metadata["index"].value)
    say(f"audit pack (audit log verification {verification}): {index}")
    return index


def stage_unproven(definitions: dg.Definitions, reason: str | None = None) -> list[str]:
    """The demo operator's decision for a version the gate left TRAINED only because its held-out window cannot
    prove skill (every failed check is a confidence-interval bound, ``*_ci_low`` / ``*_ci_high``): stage it with
    those checks overridden and the reason, both kept in the audit log, as
    ``mlops models promote NAME --version V --to staging --override KEY=null --reason ...`` does. A version that
    fails any other check stays TRAINED, unless ``reason`` is given: then every failed check is overridden with
    it (an operator staging a refused version to watch it). Returns what was done, one line per version."""
    from mlops_pipelines.catalog.policies import load_drift_policy_file, load_promotion_policy
    from mlops_pipelines.defs.common import CATALOG, SPECS
    from mlops_pipelines.lib.governance.gate import evaluate_version, run_gate
    from mlops_pipelines.lib.governance.lifecycle import State
    from mlops_pipelines.resources import open_lifecycle

    inputs = {
        "catalog": CATALOG,
        "promotion_policy": load_promotion_policy(),
        "drift_policy": load_drift_policy_file(),
    }
    done = []
    resources = definitions.resources or {}
    # resolved as a run resolves them: a URI given as dg.EnvVar (it may hold a password) is read from its variable
    warehouse, mlflow = (resources[name].process_config_and_initialize() for name in ("warehouse", "mlflow"))
    with open_lifecycle(warehouse, mlflow) as lifecycle:
        for name, spec in SPECS.items():
            version = lifecycle.newest(name)
            if version is None or lifecycle.state(name, version) != State.TRAINED:
                continue
            verdict = evaluate_version(lifecycle, name, version, spec=spec, **inputs)
            failed = [c.name for c in verdict.checks if not c.passed]
            unproven = all(c.endswith(("_ci_low", "_ci_high")) for c in failed)
            if not failed or not (unproven or reason):
                continue
            bars = verdict.metrics.get("holdout_bars", 0.0)
            why = reason or UNPROVEN_REASON.format(days=bars * CATALOG.bar_clock.interval / timedelta(days=1))
            _, state = run_gate(
                lifecycle,
                name,
                version,
                actor=DEMO_OPERATOR,
                spec=spec,
                request=dict.fromkeys(failed),
                reason=why,
                **inputs,
            )
            done.append(f"{DEMO_OPERATOR}: {name} v{version} -> {state}, overriding {', '.join(failed)}: {why}")
    return done
