"""Every hour, ten minutes past (after the decisions at five past), batch inference for the hour that just ended.
Stopped by default: turn it on where something consumes the batch scores."""

import dagster as dg

from mlops_pipelines.defs.inference.jobs import inference_job

inference_schedule = dg.build_schedule_from_partitioned_job(
    inference_job,
    name="inference_schedule",
    minute_of_hour=10,
    default_status=dg.DefaultScheduleStatus.STOPPED,
    description="Hourly batch inference for the previous hour's partition (UTC); stopped by default.",
)
