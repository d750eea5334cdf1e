"""Alerts on failed runs and on the failed blocking asset checks that made them fail, and the retries of alerts
a sink did not receive. (SEVERE drift and CRITICAL performance alerts are raised by the monitoring assets.)"""

import dagster as dg

from mlops_pipelines.lib.core.alerts import Alert
from mlops_pipelines.resources import AlertsResource


@dg.run_failure_sensor(
    name="run_failure_alerts",
    default_status=dg.DefaultSensorStatus.RUNNING,
    # runs executed outside a code server (`mlops demo`, `dagster job execute`, killed ones included) have no
    # code location: without this they would fail without an alert
    monitor_all_code_locations=True,
    description="Every failed run -> one alert, plus one per failed blocking asset check in it.",
)
def run_failure_alerts(context: dg.RunFailureSensorContext, alerts: AlertsResource) -> None:
    run = context.dagster_run
    alerter = alerts.alerter()
    # A blocking check that fails stops its step, so it always ends in a failed run: this sensor sees them all.
    for entry in context.instance.all_logs(run.run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION):
        evaluation = entry.dagster_event.asset_check_evaluation_data if entry.dagster_event else None
        if evaluation is None or evaluation.passed or not evaluation.blocking:
            continue
        subject = f"{evaluation.asset_key.to_user_string()}:{evaluation.check_name}"
        alerter.raise_alert(
            Alert(
                kind="check_failed",
                subject=subject,
                episode=run.run_id,
                summary=f"blocking check {subject} failed"
                + (f": {evaluation.description}" if evaluation.description else ""),
                details={"run_id": run.run_id, "metadata": {k: str(v.value) for k, v in evaluation.metadata.items()}},
            )
        )
    message = context.failure_event.message or "run failed"
    alerter.raise_alert(
        Alert(
            kind="run_failed",
            subject=run.job_name,
            episode=run.run_id,
            summary=message[:500],
            details={"run_id": run.run_id, "tags": dict(run.tags)},
        )
    )


@dg.sensor(
    name="alert_retries",
    minimum_interval_seconds=300,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Alerts a sink did not receive (webhook or Slack down) -> retried every 5 minutes until delivered; "
    "sinks that got them are not sent them again.",
)
def alert_retries(context: dg.SensorEvaluationContext, alerts: AlertsResource) -> dg.SkipReason:
    # Reads one small file when nothing is pending; else bounded by the alerter's time budget.
    pending = alerts.alerter().flush()
    return dg.SkipReason(f"{pending} deliveries still pending" if pending else "no alert pending")
