"""The production stack's files, checked without a Docker engine: the compose file (docker/check_compose.py, as
`make lint` runs it) and the production dagster.yaml (loaded into a real Dagster instance)."""

import shutil
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest
import yaml

DOCKER = Path(__file__).resolve().parents[1] / "docker"
CHECK = [sys.executable, str(DOCKER / "check_compose.py")]


def run_check(directory: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CHECK, str(directory)], capture_output=True, text=True, timeout=120)


def test_the_committed_compose_file_passes() -> None:
    done = run_check(DOCKER)
    assert done.returncode == 0, done.stderr
    assert "10 services" in done.stdout


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (lambda c, e: (c, e.replace("REDIS_PASSWORD=  ", "REDIS_PASSWORD=hunter2")), "REDIS_PASSWORD holds a value"),
        (lambda c, e: (c.replace("${REDIS_PASSWORD:?", "${REDIS_PASSWRD:?"), e), "${REDIS_PASSWRD} is not listed"),
        (
            lambda c, e: (
                c.replace("MLOPS_REDIS_PASSWORD: ${REDIS_PASSWORD:?set", "MLOPS_REDIS_PASSWORD: s3cret #"),
                e,
            ),
            "MLOPS_REDIS_PASSWORD writes a secret literally",
        ),
        (
            lambda c, e: (
                c.replace(
                    "postgresql+psycopg2://mlflow:${MLFLOW_POSTGRES_PASSWORD", "postgresql+psycopg2://mlflow:pw${X"
                ),
                e,
            ),
            "MLFLOW_BACKEND_STORE_URI writes a secret literally",
        ),
        (lambda c, e: (c.replace("condition: service_healthy", "condition: service_healty", 1), e), "service_healty"),
        (lambda c, e: (c.replace("      code-server:\n", "      code-srever:\n", 1), e), "code-srever, which is no"),
        (lambda c, e: (c.replace("redis:7.2.5-bookworm", "redis"), e), "image 'redis' is not pinned"),
        (lambda c, e: (c.replace('"127.0.0.1:3000:3000"', '"3000:3000"'), e), "publishes '3000:3000'"),
        (lambda c, e: (c.replace("- mlops-data:/var/lib/mlops", "- mlops-dta:/var/lib/mlops", 1), e), "mlops-dta"),
    ],
    ids=[
        "secret-in-env-example",
        "undeclared-variable",
        "literal-secret",
        "password-in-uri",
        "misspelled-condition",
        "unknown-service",
        "unpinned-image",
        "port-on-every-interface",
        "undeclared-volume",
    ],
)
def test_a_broken_compose_file_is_refused_naming_the_problem(tmp_path: Path, edit, expected: str) -> None:
    copy = tmp_path / "docker"
    shutil.copytree(DOCKER, copy)
    compose, env = edit((copy / "docker-compose.yaml").read_text(), (copy / ".env.example").read_text())
    (copy / "docker-compose.yaml").write_text(compose)
    (copy / ".env.example").write_text(env)
    assert compose != (DOCKER / "docker-compose.yaml").read_text() or env != (DOCKER / ".env.example").read_text()
    done = run_check(copy)
    assert done.returncode == 1 and expected in done.stderr, done.stderr


def test_a_health_wait_on_a_service_without_health_check_is_refused(tmp_path: Path) -> None:
    copy = tmp_path / "docker"
    shutil.copytree(DOCKER, copy)
    compose = yaml.safe_load((copy / "docker-compose.yaml").read_text())
    del compose["services"]["mlflow"]["healthcheck"]
    (copy / "docker-compose.yaml").write_text(yaml.safe_dump(compose))
    done = run_check(copy)
    assert done.returncode == 1, done.stderr
    assert "waits for mlflow to be healthy; mlflow has no health check" in done.stderr
    assert "mlflow runs for good but has no health check" in done.stderr


def test_production_instance_config_loads_with_serialized_warehouse_writers(tmp_path: Path) -> None:
    """docker/dagster.yaml as Dagster reads it, storage swapped for SQLite (PostgreSQL is the CI path's): the
    warehouse pool limit, the queue and run monitoring are those of the local instance."""
    config = yaml.safe_load((DOCKER / "dagster.yaml").read_text())
    connection = dict(config["storage"]["postgres"]["postgres_db"])
    assert connection.pop("scheme") == "postgresql+psycopg2"  # the driver the image installs
    assert set(connection) == {"hostname", "port", "db_name", "username", "password"}
    assert all("env" in value for value in connection.values())  # no literal
    config["storage"] = {"sqlite": {"base_dir": str(tmp_path / "storage")}}
    for section in ("compute_logs", "local_artifact_storage"):
        config[section]["config"]["base_dir"] = str(tmp_path / section)
    (tmp_path / "dagster.yaml").write_text(yaml.safe_dump(config))
    local = yaml.safe_load((DOCKER.parent / "dagster.yaml").read_text())
    with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
        concurrency = instance.get_concurrency_config()
        assert concurrency.pool_config.default_pool_limit == local["concurrency"]["pools"]["default_limit"] == 1
        assert concurrency.run_queue_config is not None and concurrency.run_queue_config.max_concurrent_runs == 8
        assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"
        assert instance.run_monitoring_enabled
        assert instance.run_monitoring_settings == local["run_monitoring"]
