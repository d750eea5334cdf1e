"""MLflow over HTTP on PostgreSQL with artifacts proxied to a real S3-compatible store: what the production
profile's clients rely on."""

import os
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest

from mlops_pipelines.lib.core.tracking import Tracking
from mlops_pipelines.settings import Settings
from mlops_pipelines_tests.services import MlflowServer


@pytest.mark.slow
def test_models_logged_by_a_client_without_credentials_land_in_the_bucket(
    production_env: MlflowServer, tmp_path: Path
) -> None:
    """The production settings point at the server and its proxied artifacts; a booster logged and loaded back
    travels through the server into the bucket (its files are there), and the client never had S3 credentials.
    (The bug: ``mlflow-artifacts:/`` was taken for a local path, and the files went to ./mlflow-artifacts:.)"""
    settings = Settings.from_env()
    assert settings.mlflow_artifact_root == "mlflow-artifacts:/" and settings.online_store_backend == "redis"
    assert not any(name.startswith("AWS_") and "KEY" in name for name in os.environ)
    assert "MLFLOW_S3_ENDPOINT_URL" not in os.environ
    tracking = Tracking(settings.mlflow_tracking_uri, settings.mlflow_registry_uri, settings.mlflow_artifact_root)
    features = pd.DataFrame(np.random.default_rng(1).random((64, 3)), columns=["a", "b", "c"])
    booster = lgb.train({"verbose": -1}, lgb.Dataset(features, features["a"] * 2), num_boost_round=3)
    with tracking.run("served_artifacts", run_name="probe", tags={}) as run:
        logged = tracking.log_booster(run.info.run_id, booster, features.head(2))
        tracking.log_dict(run.info.run_id, {"checked": True}, "reports/probe.json")
    assert tracking.client().get_experiment_by_name("served_artifacts").artifact_location == (
        "mlflow-artifacts:/served_artifacts"
    )
    stored = {path.relative_to(production_env.bucket).as_posix() for path in production_env.objects()}
    assert f"served_artifacts/{run.info.run_id}/artifacts/reports/probe.json" in stored
    assert f"served_artifacts/models/{logged.model_id}/artifacts/model.lgb" in stored
    assert not any(Path.cwd().glob("mlflow-artifacts*")) and not (tmp_path / "data" / "mlflow").exists()
    loaded = tracking.load_verified_booster(logged.model_uri, logged.artifact_sha256)
    assert loaded.num_feature() == 3
    assert '"checked": true' in tracking.read_text_artifact(run.info.run_id, "reports/probe.json")


def test_production_profile_refuses_a_tracking_uri_that_is_not_a_server(monkeypatch: pytest.MonkeyPatch) -> None:
    """MLOPS_ENV=production without the server's URL (or with a SQLite/database URI, whose clients would need the
    artifact store's credentials) stops at startup naming the variable."""
    from mlops_pipelines.lib.core.errors import ConfigError

    monkeypatch.setenv("MLOPS_ENV", "production")
    for uri in (None, "sqlite:///tmp/mlflow.db", "postgresql://u:p@db/mlflow"):
        if uri is None:
            monkeypatch.delenv("MLOPS_MLFLOW_TRACKING_URI", raising=False)
        else:
            monkeypatch.setenv("MLOPS_MLFLOW_TRACKING_URI", uri)
        with pytest.raises(ConfigError, match="MLOPS_MLFLOW_TRACKING_URI"):
            Settings.from_env()
    monkeypatch.setenv("MLOPS_MLFLOW_TRACKING_URI", "https://mlflow.internal")
    monkeypatch.delenv("MLOPS_MLFLOW_ARTIFACT_ROOT", raising=False)
    assert Settings.from_env().mlflow_artifact_root == "mlflow-artifacts:/"
    monkeypatch.setenv("MLOPS_MLFLOW_ARTIFACT_ROOT", "s3://bucket/prefix")  # an explicit root is kept
    assert Settings.from_env().mlflow_artifact_root == "s3://bucket/prefix"


def test_a_missing_service_binary_skips_on_a_laptop_and_fails_in_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    from mlops_pipelines_tests.conftest import require

    assert require("/usr/bin/true", "x", "y") == "/usr/bin/true"
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="apt-get install postgresql"):
        require(None, "PostgreSQL (initdb)", "apt-get install postgresql")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI installs it: apt-get install postgresql"):
        require(None, "PostgreSQL (initdb)", "apt-get install postgresql")
