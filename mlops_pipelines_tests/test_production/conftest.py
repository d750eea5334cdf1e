"""The production profile's services for the tests, started for real on 127.0.0.1 (``../services.py``).

PostgreSQL and the object store are shared by the session (each xdist worker starts its own); every test gets its
own databases, bucket and MLflow server (the registry holds models by name, so two tests cannot share one), on a
copy of a database MLflow migrated once. Everything is stopped in finalizers, also when a test fails; a missing
binary skips on a developer's machine and fails in CI.

These tests are marked ``production``: `make test` leaves them out (they take minutes: real servers, two daemons,
the whole story), `make test-production` runs them, and `.ci/run` runs both.
"""

import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import yaml

from mlops_pipelines.settings import REPO_ROOT
from mlops_pipelines_tests.services import (
    MlflowServer,
    ObjectStore,
    Postgres,
    migrate_mlflow_database,
    start_mlflow_server,
    start_object_store,
    start_postgres,
)

MLFLOW_TEMPLATE = "mlflow_template"
HERE = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.is_relative_to(HERE):
            item.add_marker(pytest.mark.production)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[Postgres]:
    server = start_postgres()
    try:
        yield server
    finally:
        server.service.stop()
        shutil.rmtree(server.directory, ignore_errors=True)


@pytest.fixture(scope="session")
def object_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ObjectStore]:
    store = start_object_store(tmp_path_factory.mktemp("object_store"))
    try:
        yield store
    finally:
        store.service.stop()


@pytest.fixture(scope="session")
def mlflow_template_database(postgres_server: Postgres, tmp_path_factory: pytest.TempPathFactory) -> str:
    postgres_server.create_database(MLFLOW_TEMPLATE)
    migrate_mlflow_database(postgres_server, MLFLOW_TEMPLATE, tmp_path_factory.mktemp("mlflow") / "migrate.log")
    return MLFLOW_TEMPLATE


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


@pytest.fixture
def mlflow_server(
    postgres_server: Postgres, object_store: ObjectStore, mlflow_template_database: str, tmp_path: Path
) -> Iterator[MlflowServer]:
    """This test's MLflow tracking server: its own database (a copy of the migrated template) and bucket."""
    database = postgres_server.create_database(unique("mlflow"), template=mlflow_template_database)
    server = start_mlflow_server(
        postgres_server, database, object_store, unique("artifacts").replace("_", "-"), tmp_path
    )
    try:
        yield server
    finally:
        server.service.stop()


def production_instance_config(directory: Path) -> dict[str, Any]:
    """``docker/dagster.yaml`` as the deployment uses it (storage in PostgreSQL named by DAGSTER_POSTGRES_*, queued
    runs, the warehouse pool, run monitoring), with its volumes under ``directory``."""
    config = yaml.safe_load((REPO_ROOT / "docker" / "dagster.yaml").read_text())
    config["compute_logs"]["config"]["base_dir"] = str(directory / "logs")
    config["local_artifact_storage"]["config"]["base_dir"] = str(directory / "storage")
    return config


def dagster_postgres_environment(postgres: Postgres, database: str) -> dict[str, str]:
    """The DAGSTER_POSTGRES_* variables ``docker/dagster.yaml`` reads, for a new database ``database``."""
    postgres.create_database(database)
    return {
        "DAGSTER_POSTGRES_HOST": "127.0.0.1",
        "DAGSTER_POSTGRES_PORT": str(postgres.port),
        "DAGSTER_POSTGRES_DB": database,
        "DAGSTER_POSTGRES_USER": postgres.user,
        "DAGSTER_POSTGRES_PASSWORD": postgres.password,
    }


@pytest.fixture
def production_instance(
    postgres_server: Postgres, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[dg.DagsterInstance]:
    """A Dagster instance configured by the production ``docker/dagster.yaml``, on its own PostgreSQL database."""
    for name, value in dagster_postgres_environment(postgres_server, unique("dagster")).items():
        monkeypatch.setenv(name, value)
    config = production_instance_config(tmp_path / "dagster")
    (tmp_path / "dagster_home").mkdir()
    with dg.instance_for_test(overrides=config, temp_dir=str(tmp_path / "dagster_home")) as instance:
        yield instance


@pytest.fixture
def production_env(
    data_dir: Path, mlflow_server: MlflowServer, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> MlflowServer:
    """The production profile in this process's environment: MLflow over HTTP, Redis online store, no storage
    credentials anywhere on the client side."""
    monkeypatch.setenv("MLOPS_ENV", "production")
    monkeypatch.setenv("MLOPS_MLFLOW_TRACKING_URI", mlflow_server.url)
    monkeypatch.setenv("MLOPS_REDIS_URL", redis_url)
    for name in ("MLOPS_MLFLOW_REGISTRY_URI", "MLOPS_MLFLOW_ARTIFACT_ROOT", "MLFLOW_S3_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(data_dir / "no-aws-credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(data_dir / "no-aws-config"))
    return mlflow_server
