"""The hourly drift schedule (UTC, across DST changes) and the drift asset on a real instance."""

from datetime import UTC, datetime, timedelta

import dagster as dg

from mlops_pipelines_tests.test_defs.conftest import run_job


def test_one_tick_per_hour_with_the_previous_hour_across_dst(
    definitions: dg.Definitions, instance: dg.DagsterInstance
) -> None:
    schedule = definitions.resolve_schedule_def("drift_schedule")
    assert schedule.execution_timezone == "UTC" and schedule.default_status == dg.DefaultScheduleStatus.RUNNING
    # 2026-03-08 07:00 UTC is the US change to daylight time; 2026-03-29 01:00 UTC the European one
    for day in (datetime(2026, 3, 7, 12, tzinfo=UTC), datetime(2026, 3, 28, 12, tzinfo=UTC)):
        ticks = [day + timedelta(hours=h, minutes=5) for h in range(24)]  # the cron's ticks, in UTC
        keys = []
        for tick in ticks:
            context = dg.build_schedule_context(instance=instance, scheduled_execution_time=tick)
            [request] = schedule.evaluate_tick(context).run_requests or []
            expected = (tick.astimezone(UTC) - timedelta(hours=1)).strftime("%Y-%m-%d-%H:00")
            assert request.partition_key == expected
            keys.append(request.partition_key)
        assert len(set(keys)) == 24  # one partition per hour, none skipped or repeated


def test_drift_asset_without_deployed_models(definitions: dg.Definitions, instance: dg.DagsterInstance) -> None:
    run_job(
        definitions,
        instance,
        "ingestion_job",
        tags={"dagster/asset_partition_range_start": "2026-01-01", "dagster/asset_partition_range_end": "2026-01-03"},
    )
    run_job(definitions, instance, "features_job")
    result = run_job(definitions, instance, "drift_job", tags={"dagster/partition": "2026-01-03-12:00"})
    [event] = result.get_asset_materialization_events()
    assert event.materialization.metadata["most_drifted"].value == "no deployed model"
