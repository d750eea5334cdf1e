"""The demo's whole story on the production profile: the Dagster instance of ``docker/dagster.yaml`` on
PostgreSQL, MLflow over HTTP on PostgreSQL with artifacts in a real S3-compatible bucket, the online store on
Redis, and the serving API answering from them."""

from datetime import date
from pathlib import Path

import dagster as dg
import pytest
import redis
from fastapi.testclient import TestClient

from mlops_pipelines import demo
from mlops_pipelines.catalog.models import MODEL_SPECS
from mlops_pipelines.lib.core.tracking import MODEL_FILE
from mlops_pipelines.serving.app import create_app
from mlops_pipelines.settings import Settings
from mlops_pipelines_tests.conftest import wait_until
from mlops_pipelines_tests.services import MlflowServer
from mlops_pipelines_tests.test_defs.conftest import settings_lifecycle

# Trained up to the day before the synthetic regime shift (2026-02-20), then two hourly drift runs: the calm day
# before the shift and its first day (SEVERE, as in the local story); 8 symbols, as `mlops demo` in CI.
PLAN = demo.DemoPlan(start=date(2026, 1, 1), train_until=date(2026, 2, 19), end=date(2026, 2, 21))


@pytest.mark.slow
def test_the_demo_story_runs_on_the_production_services(
    production_env: MlflowServer,
    production_instance: dg.DagsterInstance,
    redis_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MLOPS_SYNTHETIC_SYMBOLS", "8")
    monkeypatch.setenv("MLOPS_SERVE_AS_OF", "2026-02-21T23:00:00+00:00")  # replaying the story's last hour
    from mlops_pipelines.definitions import defs

    retrainings = demo.run(defs(), production_instance, PLAN, lambda _: None)

    # Dagster: every run, and the sensor's retraining runs, are rows of the PostgreSQL run storage
    assert type(production_instance.run_storage).__name__ == "PostgresRunStorage"
    assert retrainings, "the SEVERE drift of the regime shift requested no retraining"
    for run_id in retrainings:
        run = production_instance.get_run_by_id(run_id)
        assert run is not None and run.status == dg.DagsterRunStatus.SUCCESS
        assert run.tags["dagster/sensor_name"] == demo.RETRAINING_SENSOR
    jobs = {r.job_name for r in production_instance.get_runs()}
    assert {"ingestion_job", "features_job", "training_job", "drift_job"} <= jobs

    # MLflow over HTTP: the governance record verifies, every version's model file is an object in the bucket
    stored = {path.relative_to(production_env.bucket).as_posix() for path in production_env.objects()}
    with settings_lifecycle() as lifecycle:
        for model in MODEL_SPECS:
            record, problems = lifecycle.verify(model)
            assert problems == [], f"{model}: {problems}"
            assert record.versions, f"{model}: no version registered"
            for version in record.versions.values():
                source = str(version.registered["source"])
                location = lifecycle.client.get_logged_model(source.removeprefix("models:/")).artifact_location
                assert location.startswith("mlflow-artifacts:/"), location
                assert f"{location.removeprefix('mlflow-artifacts:/')}/{MODEL_FILE}" in stored
        retrained = [m for m in MODEL_SPECS if len(lifecycle.record(m).versions) > 1]
        staged = {m: lifecycle.record(m).aliases.get("staging") for m in MODEL_SPECS}
    assert retrained, "no model got a second version from the retraining runs"

    # the online store is Redis, and the serving API reads it
    settings = Settings.from_env()
    assert settings.online_store_backend == "redis"
    assert redis.Redis.from_url(redis_url).dbsize() > 0
    model, version = next((m, v) for m, v in staged.items() if v is not None)
    with TestClient(create_app(settings, models=[model])) as api:
        wait_until("the API has loaded its aliases", lambda: api.get("/readyz").status_code == 200)
        answer = api.post(f"/api/v1/models/{model}/predict", json={"symbols": ["SYM0000"], "alias": "staging"})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["version"] == version and len(body["predictions"]) == 1
    assert not any(Path.cwd().glob("mlflow-artifacts*"))
