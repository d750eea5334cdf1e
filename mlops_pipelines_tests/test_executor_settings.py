"""MLOPS_EXECUTOR and MLOPS_CELERY_BROKER_URL: validated when read, the broker's password never echoed, and the
executor every job gets (defs/executor.py)."""

import pytest

from mlops_pipelines.defs.executor import broker, celery_app_args, step_executor
from mlops_pipelines.lib.core.errors import ConfigError
from mlops_pipelines.settings import Settings


def test_the_default_is_dagsters_own_executor(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLOPS_EXECUTOR", raising=False)
    assert Settings.from_env().executor == "multiprocess" and step_executor(Settings.from_env()) is None


def test_celery_takes_the_broker_by_the_variables_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLOPS_EXECUTOR", "Celery")
    monkeypatch.setenv("MLOPS_CELERY_BROKER_URL", "redis://:s3cret@redis:6379/1")
    settings = Settings.from_env()
    executor = step_executor(settings)
    assert executor is not None and executor.name == "celery_executor"
    assert broker(settings) == {"env": "MLOPS_CELERY_BROKER_URL"}  # what the executor's config holds
    assert celery_app_args(settings)["broker"] == "redis://:s3cret@redis:6379/1"  # a worker reads it at start


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("MLOPS_EXECUTOR", "k8s", "MLOPS_EXECUTOR must be 'multiprocess' or 'celery', got 'k8s'"),
        ("MLOPS_CELERY_BROKER_URL", "amqp://user:s3cret@rabbit//", "must be a redis:// or rediss:// URL, got amqp://"),
    ],
)
def test_a_bad_value_is_refused_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, expected: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError, match=variable) as raised:
        Settings.from_env()
    assert expected in str(raised.value) and "s3cret" not in str(raised.value)
