"""Alerts on failed runs. (SEVERE drift alerts are raised by monitoring/feature_drift itself.)"""

import dagster as dg

from mlops_pipelines.lib.alerts import Alert
from mlops_pipelines.resources import AlertsResource


@dg.run_failure_sensor(
    name="run_failure_alerts",
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Every failed run -> one alert to the configured sinks.",
)
def run_failure_alerts(context: dg.RunFailureSensorContext, alerts: AlertsResource) -> None:
    run = context.dagster_run
    message = context.failure_event.message or "run failed"
    alerts.alerter().raise_alert(
        Alert(
            kind="run_failed",
            subject=run.job_name,
            episode=run.run_id,
            summary=message[:500],
            details={"run_id": run.run_id, "tags": dict(run.tags)},
        )
    )
