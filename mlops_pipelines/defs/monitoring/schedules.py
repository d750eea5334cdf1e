"""Every hour, five minutes past, the drift job for the hour that just ended (UTC: no DST surprises)."""

import dagster as dg

from mlops_pipelines.defs.monitoring.jobs import drift_job

drift_schedule = dg.build_schedule_from_partitioned_job(
    drift_job,
    name="drift_schedule",
    minute_of_hour=5,
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Hourly drift report for the previous hour's partition (UTC).",
)
