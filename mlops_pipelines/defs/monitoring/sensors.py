"""SEVERE feature drift or a CRITICAL performance drop of a deployed model -> one retraining run of that model
(dataset -> training -> evaluation -> promotion gate). Reads only the status file and the instance's runs: it
returns in milliseconds (a sensor tick has a time limit). Two ticks racing (two daemons) request an episode once:
each claims its run key first (``lib/monitoring/retraining_claims.py``)."""

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg

from mlops_pipelines.defs.common import SPECS, TRAINING_CUTOFF_TAG
from mlops_pipelines.lib.monitoring import retraining_claims
from mlops_pipelines.lib.monitoring.drift_status import Signal, read_status
from mlops_pipelines.lib.monitoring.severity import PerformanceStatus, Severity
from mlops_pipelines.resources import MonitoringResource

COOLDOWN = timedelta(hours=24)  # one drift episode -> one retraining
# signal -> the verdict that retrains
TRIGGERS: dict[str, str] = {Signal.FEATURE_DRIFT: Severity.SEVERE, Signal.PERFORMANCE: PerformanceStatus.CRITICAL}
ACTIVE = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
]


def retraining_assets(model: str) -> list[dg.AssetKey]:
    return [
        dg.AssetKey(["training", f"{model}_dataset"]),
        dg.AssetKey(model),
        *(
            dg.AssetKey(f"{model}_{suffix}")
            for suffix in ("backtest", "explanations", "compliance_report", "promotion")
        ),
    ]


@dg.sensor(
    job_name="training_job",
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="SEVERE feature drift or CRITICAL performance -> retrain that model, once per episode (cooldown), "
    "one run at a time.",
)
def retraining_sensor(context: dg.SensorEvaluationContext, monitoring: MonitoringResource) -> dg.SensorResult:
    cursor: dict[str, dict[str, str]] = json.loads(context.cursor) if context.cursor else {}
    claims = Path(monitoring.status_file).with_name("retraining_claims")  # one request per episode across ticks
    requests, skipped = [], []
    for model, signals in sorted(read_status(monitoring.status_file).items()):
        firing = {name: entry for name, entry in signals.items() if entry.get("severity") == TRIGGERS.get(name)}
        if model not in SPECS or not firing:
            continue
        window_end = max(entry["window_end"] for entry in firing.values())
        seen = cursor.get(model, {})
        if seen.get("window_end") == window_end:
            continue  # this report was handled already
        last = seen.get("triggered_window_end")
        if last and datetime.fromisoformat(window_end) - datetime.fromisoformat(last) < COOLDOWN:
            skipped.append(dg.SkipReason(f"{model}: in cooldown since the retraining for {last}"))
            cursor[model] = {**seen, "window_end": window_end}
            continue
        key = f"retrain:{model}:{window_end}"
        triggered = {"window_end": window_end, "triggered_window_end": window_end}
        if context.instance.get_run_records(dg.RunsFilter(tags={"dagster/run_key": key}), limit=1):
            cursor[model] = triggered  # another tick (another daemon) requested it
            continue
        active = context.instance.get_run_records(
            dg.RunsFilter(statuses=ACTIVE, tags={"retrain_model": model}), limit=1
        )
        if active:
            skipped.append(dg.SkipReason(f"{model}: a retraining run is already in progress"))
            continue  # not recorded: look again at the next tick
        if not retraining_claims.claim(claims, key, datetime.now(UTC)):
            skipped.append(dg.SkipReason(f"{model}: another tick (another daemon) is requesting {key}"))
            continue  # not recorded: at the next tick its run exists
        requests.append(
            dg.RunRequest(
                run_key=key,
                asset_selection=retraining_assets(model),
                tags={
                    "retrain_model": model,
                    "trigger": ",".join(sorted(firing)),
                    "drift_window_end": window_end,
                    TRAINING_CUTOFF_TAG: window_end,  # retrain on what was known then, the same on a re-run
                    "drifting_version": ",".join(sorted({str(e.get("version")) for e in firing.values()})),
                },
            )
        )
        cursor[model] = {**triggered, "triggered_at": datetime.now(UTC).isoformat()}
    return dg.SensorResult(
        run_requests=requests,
        cursor=json.dumps(cursor, sort_keys=True),
        skip_reason=skipped[0] if skipped and not requests else None,
    )
