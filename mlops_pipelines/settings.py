"""Every environment variable the project reads, read here and nowhere else.

| variable | default | meaning |
|---|---|---|
| MLOPS_ENV | local | resource set: local (embedded DuckDB + SQLite stores) or production |
| MLOPS_DATA_DIR | <repo>/data | runtime state: warehouse, online store, MLflow, Dagster home |
| MLOPS_WAREHOUSE_PATH | $MLOPS_DATA_DIR/warehouse.duckdb | the DuckDB warehouse |
| MLOPS_ONLINE_STORE_PATH | $MLOPS_DATA_DIR/online_store.sqlite | the embedded online store |
| MLOPS_MARKET_SOURCE | synthetic | synthetic or folder |
| MLOPS_RAW_DIR | $MLOPS_DATA_DIR/raw | folder of CSV/Parquet bars (source=folder; watched by the sensor) |
| MLOPS_MARKET_START | 2026-01-01 | first daily partition of raw/market_bars (UTC) |
| MLOPS_SYNTHETIC_SYMBOLS | 24 | synthetic market size |
| MLOPS_SYNTHETIC_SEED | 7 | synthetic market seed |
| MLOPS_REGIME_SHIFT_AT | 2026-02-20 | synthetic regime shift (UTC); empty for none |
| MLOPS_MLFLOW_TRACKING_URI | sqlite:///$MLOPS_DATA_DIR/mlflow/mlflow.db | MLflow tracking store |
| MLOPS_MLFLOW_REGISTRY_URI | the tracking URI | MLflow model registry |
| MLOPS_MLFLOW_ARTIFACT_ROOT | $MLOPS_DATA_DIR/mlflow/artifacts | where new experiments store artifacts |
| MLOPS_ACTOR | the OS user | identity recorded in the audit log by the CLI |
| MLOPS_ALERT_SINKS | log,jsonl | alert sinks: log, jsonl, webhook, slack |
| MLOPS_ALERT_WEBHOOK_URL | (none) | generic webhook for alerts |
| MLOPS_SLACK_WEBHOOK_URL | (none) | Slack incoming webhook for alerts |
"""

import getpass
import os
from dataclasses import dataclass
from pathlib import Path

from mlops_pipelines.lib.errors import ConfigError

REPO_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Settings:
    env: str
    data_dir: Path
    warehouse_path: Path
    online_store_path: Path
    market_source: str
    raw_dir: Path
    symbol_universe: Path | None
    market_start: str
    synthetic_symbols: int
    synthetic_seed: int
    regime_shift_at: str | None
    mlflow_tracking_uri: str
    mlflow_registry_uri: str
    mlflow_artifact_root: str
    alert_sinks: tuple[str, ...]
    alert_webhook_url: str | None
    slack_webhook_url: str | None

    @classmethod
    def from_env(cls) -> "Settings":
        data_dir = Path(os.environ.get("MLOPS_DATA_DIR", REPO_ROOT / "data")).resolve()
        env = os.environ.get("MLOPS_ENV", "local")
        if env not in ("local", "production"):
            raise ConfigError(f"MLOPS_ENV must be 'local' or 'production', got {env!r}")
        tracking = os.environ.get("MLOPS_MLFLOW_TRACKING_URI", f"sqlite:///{data_dir / 'mlflow' / 'mlflow.db'}")
        return cls(
            env=env,
            data_dir=data_dir,
            warehouse_path=Path(os.environ.get("MLOPS_WAREHOUSE_PATH", data_dir / "warehouse.duckdb")),
            online_store_path=Path(os.environ.get("MLOPS_ONLINE_STORE_PATH", data_dir / "online_store.sqlite")),
            market_source=os.environ.get("MLOPS_MARKET_SOURCE", "synthetic"),
            raw_dir=Path(os.environ.get("MLOPS_RAW_DIR", data_dir / "raw")),
            symbol_universe=Path(os.environ["MLOPS_SYMBOL_UNIVERSE"])
            if os.environ.get("MLOPS_SYMBOL_UNIVERSE")
            else None,
            market_start=os.environ.get("MLOPS_MARKET_START", "2026-01-01"),
            synthetic_symbols=_int_env("MLOPS_SYNTHETIC_SYMBOLS", 24),
            synthetic_seed=_int_env("MLOPS_SYNTHETIC_SEED", 7),
            regime_shift_at=os.environ.get("MLOPS_REGIME_SHIFT_AT", "2026-02-20") or None,
            mlflow_tracking_uri=tracking,
            mlflow_registry_uri=os.environ.get("MLOPS_MLFLOW_REGISTRY_URI", tracking),
            mlflow_artifact_root=os.environ.get("MLOPS_MLFLOW_ARTIFACT_ROOT", str(data_dir / "mlflow" / "artifacts")),
            alert_sinks=tuple(s.strip() for s in os.environ.get("MLOPS_ALERT_SINKS", "log,jsonl").split(",") if s),
            alert_webhook_url=os.environ.get("MLOPS_ALERT_WEBHOOK_URL") or None,
            slack_webhook_url=os.environ.get("MLOPS_SLACK_WEBHOOK_URL") or None,
        )


def _int_env(name: str, default: int) -> int:
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    try:
        return int(value)
    except ValueError as exc:
        raise ConfigError(f"{name} must be a whole number, got {value!r}") from exc


def current_actor() -> str:
    """Who is acting (recorded in the audit log): MLOPS_ACTOR, else the OS user."""
    return os.environ.get("MLOPS_ACTOR") or getpass.getuser()
