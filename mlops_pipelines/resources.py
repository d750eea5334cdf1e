"""Resource classes. ``defs/resources.py`` instantiates them for the current environment (MLOPS_ENV)."""

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import dagster as dg
import duckdb
import pandas as pd
from pydantic import Field

from mlops_pipelines.lib import market_data, warehouse
from mlops_pipelines.lib.alerts import Alerter, build_sinks
from mlops_pipelines.lib.lifecycle import Lifecycle
from mlops_pipelines.lib.online_store import OnlineStoreReader, write_snapshot
from mlops_pipelines.lib.tracking import Tracking, fail_runs_of_dead_dagster_runs
from mlops_pipelines.lib.validation import parse_utc


class WarehouseResource(dg.ConfigurableResource):
    """The DuckDB warehouse file. Connections are opened per use and closed in ``finally``."""

    path: str = Field(description="Path of the DuckDB file (schemas raw, features, training, monitoring, governance).")
    lock_timeout_s: float = Field(default=300.0, description="How long a writer waits for another process's lock.")

    @contextmanager
    def connect(self, *, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
        with warehouse.connect(self.path, read_only=read_only, lock_timeout_s=self.lock_timeout_s) as conn:
            yield conn


class MarketDataSource(dg.ConfigurableResource):
    """Where raw bars come from: the seeded synthetic market, or a folder of CSV/Parquet files."""

    kind: Literal["synthetic", "folder"] = Field(default="synthetic", description="synthetic | folder")
    raw_dir: str = Field(default="data/raw", description="Folder of the user's CSV/Parquet files (kind=folder).")
    n_symbols: int = Field(default=24, description="Synthetic: number of symbols.")
    n_sectors: int = Field(default=4, description="Synthetic: number of sectors.")
    seed: int = Field(default=7, description="Synthetic: random seed; the same seed gives the same market.")
    origin: str = Field(default="2026-01-01", description="Synthetic: first bar (UTC date).")
    regime_shift_at: str | None = Field(
        default="2026-02-20", description="Synthetic: UTC time of the injected regime shift; empty for none."
    )
    bad_row_rate: float = Field(default=0.002, description="Synthetic: share of rows corrupted like a real feed.")
    universe_file: str = Field(
        default="", description="Text file of the symbols to accept, one per line (# comments); empty: any symbol."
    )

    def synthetic_config(self) -> market_data.SyntheticMarketConfig:
        return market_data.SyntheticMarketConfig(
            n_symbols=self.n_symbols,
            n_sectors=self.n_sectors,
            seed=self.seed,
            origin=_utc(self.origin),
            regime_shift_at=_utc(self.regime_shift_at) if self.regime_shift_at else None,
            bad_row_rate=self.bad_row_rate,
        )

    def universe(self) -> frozenset[str] | None:
        """The symbols ingestion accepts; None when no universe file is configured."""
        if not self.universe_file:
            return None
        path = Path(self.universe_file)
        if not path.is_file():
            raise FileNotFoundError(f"symbol universe {path} does not exist (MLOPS_SYMBOL_UNIVERSE)")
        lines = (line.split("#", 1)[0].strip() for line in path.read_text().splitlines())
        return frozenset(line for line in lines if line)

    def files(self) -> list[Path]:
        return market_data.list_source_files(Path(self.raw_dir))

    def load(self, start: datetime, end: datetime) -> pd.DataFrame:
        """Bars for [start, end) as the source delivers them (unvalidated; file rows keep their text).

        Folder rows whose timestamp cannot be parsed are kept too (they belong to no day): validation
        quarantines them under a partition of their own.
        """
        if self.kind == "synthetic":
            return market_data.generate_bars(self.synthetic_config(), start, end)
        frames = [market_data.read_source_file(path) for path in self.files()]
        if not frames:
            return market_data.read_empty_source()
        bars = pd.concat(frames, ignore_index=True)
        ts = parse_utc(bars["timestamp"])
        in_window = (ts >= pd.Timestamp(start)) & (ts < pd.Timestamp(end))
        return bars[in_window | ts.isna()].reset_index(drop=True)


class OnlineStoreResource(dg.ConfigurableResource):
    """The embedded online store (SQLite, WAL) that serving reads while features refresh."""

    path: str = Field(description="Path of the SQLite file holding the latest feature vector per entity.")

    def write(self, frame: pd.DataFrame, *, key: str, snapshot_id: str) -> int:
        return write_snapshot(self.path, frame, key=key, snapshot_id=snapshot_id)

    def reader(self) -> OnlineStoreReader:
        return OnlineStoreReader(self.path)


def _utc(value: str) -> datetime:
    parsed = datetime.fromisoformat(value)
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


class DriftStatusResource(dg.ConfigurableResource):
    """The latest drift severity per model (a small JSON file the retraining sensor reads)."""

    path: str = Field(description="JSON file written atomically by monitoring/feature_drift.")


class AlertsResource(dg.ConfigurableResource):
    """Where alerts go (sinks per environment) and the record of what was already sent."""

    sinks: list[str] = Field(default=["log", "jsonl"], description="log, jsonl, webhook, slack")
    directory: str = Field(description="Holds alerts.jsonl and the dedup state.")
    webhook_url: str | None = Field(default=None, description="Generic webhook (sink 'webhook').")
    slack_webhook_url: str | None = Field(default=None, description="Slack incoming webhook (sink 'slack').")

    def alerter(self) -> Alerter:
        directory = Path(self.directory)
        sinks = build_sinks(
            self.sinks,
            jsonl_path=directory / "alerts.jsonl",
            webhook_url=self.webhook_url,
            slack_url=self.slack_webhook_url,
        )
        return Alerter(sinks, directory / "sent_alerts.json")


class MlflowResource(dg.ConfigurableResource):
    """MLflow tracking and registry at explicit URIs (local default: SQLite under data/mlflow)."""

    tracking_uri: str = Field(description="MLflow tracking URI (sqlite:///... or http://...); never a file store.")
    registry_uri: str = Field(description="MLflow registry URI; usually the tracking URI.")
    artifact_root: str = Field(description="Artifact location for new experiments.")

    def tracking(self) -> Tracking:
        return Tracking(self.tracking_uri, self.registry_uri, self.artifact_root)

    def run_url(self, experiment_id: str, run_id: str) -> str:
        """Where an operator opens the run (the MLflow UI on its default local port)."""
        return f"http://127.0.0.1:5000/#/experiments/{experiment_id}/runs/{run_id}"


@contextmanager
def open_lifecycle(warehouse: WarehouseResource, mlflow: MlflowResource) -> Iterator[Lifecycle]:
    """The lifecycle over MLflow, holding the warehouse connection (the cross-process mutex) until the end."""
    with warehouse.connect() as conn:
        yield Lifecycle(mlflow.tracking().client(), conn)


def fail_training_runs_of_dead_dagster_runs(
    mlflow: MlflowResource, instance: dg.DagsterInstance, models: Iterable[str], *, found_by: str
) -> list[str]:
    """Mark FAILED the RUNNING MLflow runs of these models' experiments whose Dagster run has ended (a killed
    training never ends its MLflow run). A Dagster run this instance does not know (another instance sharing
    the MLflow server) is taken as alive: only its own instance can tell."""

    def alive(run_id: str) -> bool:
        run = instance.get_run_by_id(run_id)
        return run is None or not run.is_finished

    return fail_runs_of_dead_dagster_runs(mlflow.tracking().client(), models, alive, found_by=found_by)
