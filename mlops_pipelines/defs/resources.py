"""The code location's settings and its resources for the current environment (one switch: MLOPS_ENV).

``SETTINGS`` is read once, when the code location is imported: what the definitions' shape depends on (the first
partition, the raw-folder sensor's default status) comes from it, and nothing else in ``defs/`` or
``partitions.py`` reads the environment. The resources are built from the environment each time the definitions
are loaded (``resources``), so a code server reload, or a test that points MLOPS_DATA_DIR elsewhere, gets fresh
paths and URIs.
"""

from typing import Any

import dagster as dg

from mlops_pipelines.catalog.policies import DRIFT_POLICY_PATH
from mlops_pipelines.resources import (
    AlertsResource,
    GovernanceResource,
    MarketDataSource,
    MlflowResource,
    MonitoringResource,
    OnlineStoreResource,
    PromptResponsesResource,
    WarehouseResource,
)
from mlops_pipelines.settings import Settings

SETTINGS = Settings.from_env()


def secret(settings: Settings, name: str) -> Any:
    """A setting that may hold a credential (a webhook token, a password in a URI). When it came from the
    environment it is passed as ``dg.EnvVar``: Dagster stores ``{"env": "<variable>"}`` in the job snapshot of
    every run and reads the value only when it builds the resource, so the value never lands in run history."""
    variable = settings.secret_variables.get(name)
    return dg.EnvVar(variable) if variable else getattr(settings, name)  # a str subclass: fits any str field


def resources_for(settings: Settings) -> dict[str, dg.ConfigurableResource]:
    # production differs only in where the files and services live (paths/URIs come from the environment);
    # asset code never branches on the environment.
    return {
        "warehouse": WarehouseResource(path=str(settings.warehouse_path), audit_key_file=str(settings.audit_key_file)),
        "market_data": MarketDataSource(
            kind=settings.market_source,  # type: ignore[arg-type]
            bar_interval=settings.bar_clock.label,
            calendar=settings.bar_clock.calendar,
            raw_dir=str(settings.raw_dir),
            index_path=str(settings.data_dir / "raw_index.sqlite"),
            max_clock_skew_s=settings.max_clock_skew_s,
            n_symbols=settings.synthetic_symbols,
            seed=settings.synthetic_seed,
            origin=settings.market_start,
            regime_shift_at=settings.regime_shift_at,
            universe_file=str(settings.symbol_universe or ""),
        ),
        "online_store": OnlineStoreResource(
            backend=settings.online_store_backend,  # type: ignore[arg-type]
            path=str(settings.online_store_path),
            redis_url=secret(settings, "redis_url"),
            redis_password=secret(settings, "redis_password"),
            redis_password_file=str(settings.redis_password_file or ""),
        ),
        "alerts": AlertsResource(
            sinks=list(settings.alert_sinks),
            directory=str(settings.data_dir / "alerts"),
            webhook_url=secret(settings, "alert_webhook_url"),
            slack_webhook_url=secret(settings, "slack_webhook_url"),
        ),
        "monitoring": MonitoringResource(
            status_file=str(settings.data_dir / "monitoring" / "drift_status.json"),
            reference_profiles_dir=str(settings.data_dir / "monitoring" / "reference_profiles"),
            evidently_dir=str(settings.data_dir / "monitoring" / "evidently"),
            policy_path=str(DRIFT_POLICY_PATH),
            prediction_log_dir=str(settings.prediction_log_dir),
        ),
        "prompt_responses": PromptResponsesResource(
            kind=settings.prompt_responses,  # type: ignore[arg-type]  # validated in from_env
            recorded_dir=str(settings.prompt_recorded_dir),
            base_url=settings.llm_base_url,
            api_key=secret(settings, "llm_api_key"),
            model_override=settings.llm_model,
            timeout_s=settings.llm_timeout_s,
            max_retries=settings.llm_max_retries,
            record_dir=str(settings.llm_record_dir or ""),
        ),
        "governance": GovernanceResource(audit_packs_dir=str(settings.data_dir / "governance" / "audit_packs")),
        "mlflow": MlflowResource(
            tracking_uri=secret(settings, "mlflow_tracking_uri"),
            registry_uri=secret(settings, "mlflow_registry_uri"),
            artifact_root=settings.mlflow_artifact_root,
            ui_url=settings.mlflow_ui_url,
        ),
    }


@dg.definitions
def resources() -> dg.Definitions:
    return dg.Definitions(resources=resources_for(Settings.from_env()))
