"""Resource classes. ``defs/resources.py`` instantiates them for the current environment (MLOPS_ENV)."""

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

import dagster as dg
import duckdb
import pandas as pd
from pydantic import Field

from mlops_pipelines.lib.core import warehouse
from mlops_pipelines.lib.core.alerts import JSONL_FILE, Alerter, build_sinks
from mlops_pipelines.lib.core.bars import BarClock
from mlops_pipelines.lib.core.tracking import Tracking, fail_runs_of_dead_dagster_runs, run_ui_url
from mlops_pipelines.lib.features.online_store import OnlineStore, OnlineStoreLocation
from mlops_pipelines.lib.governance import lifecycle
from mlops_pipelines.lib.ingestion import raw_folder, source_files, synthetic_market
from mlops_pipelines.lib.monitoring.drift_policy import DriftPolicy, load_drift_policy
from mlops_pipelines.lib.monitoring.hourly_run import MonitoringFiles
from mlops_pipelines.lib.prompts.responses import ResponseSource, build_response_source
from mlops_pipelines.settings import read_secret_file


class WarehouseResource(dg.ConfigurableResource):
    """The DuckDB warehouse file. Connections are opened per use and closed in ``finally``."""

    path: str = Field(description="Path of the DuckDB file (schemas raw, features, training, monitoring, governance).")
    lock_timeout_s: float = Field(default=300.0, description="How long a writer waits for another process's lock.")
    audit_key_file: str = Field(
        description="File holding the HMAC key of the governance audit log (a path; the key never enters config)."
    )

    @contextmanager
    def connect(self, *, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
        with warehouse.connect(self.path, read_only=read_only, lock_timeout_s=self.lock_timeout_s) as conn:
            yield conn


class MarketDataSource(dg.ConfigurableResource):
    """Where raw bars come from: the seeded synthetic market, or a folder of CSV/Parquet files; and the bars it
    delivers (their length and calendar: the bar clock)."""

    kind: Literal["synthetic", "folder"] = Field(default="synthetic", description="synthetic | folder")
    bar_interval: str = Field(
        default="1h",
        description="Length of one bar (MLOPS_BAR_INTERVAL: 1min, 15min, 1h, 1d...): the grid bars must open on, "
        "and the frequency a file's bars must have; the synthetic market generates bars of it.",
    )
    calendar: str = Field(
        default="24x7", description="Trading calendar of the bars (MLOPS_MARKET_CALENDAR): 24x7 or equities."
    )
    raw_dir: str = Field(default="data/raw", description="Folder of the user's CSV/Parquet files (kind=folder).")
    index_path: str = Field(
        default="",
        description="SQLite index of the raw folder's files (size, mtime, sha256, days), shared by the sensor and "
        "the runs so that a run reads only the files holding its days; empty: in memory, rebuilt by each use.",
    )
    max_clock_skew_s: float = Field(
        default=300.0,
        description="Seconds a bar's timestamp or available_at may be ahead of our clock; later is quarantined.",
    )
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

    def clock(self) -> BarClock:
        """The declared bar clock; raises ValueError naming what is wrong with it."""
        return BarClock.parse(self.bar_interval, self.calendar)

    def synthetic_config(self) -> synthetic_market.SyntheticMarketConfig:
        return synthetic_market.SyntheticMarketConfig(
            bar_interval=self.clock().interval,
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

    @property
    def max_clock_skew(self) -> timedelta:
        return timedelta(seconds=self.max_clock_skew_s)

    def files(self) -> list[Path]:
        return source_files.list_source_files(Path(self.raw_dir))

    @contextmanager
    def index(self) -> Iterator[raw_folder.FolderIndex]:
        with raw_folder.open_index(Path(self.index_path) if self.index_path else None) as index:
            yield index

    def load(self, start: datetime, end: datetime, *, first_bar: datetime, now: datetime) -> raw_folder.SourceBatch:
        """Bars for [start, end) as the source delivers them (unvalidated; file rows keep their text).

        Folder: only the files with bars in the window are read (see ``lib/ingestion/raw_folder.py``), each once; their
        rows that belong to no partition (unparseable timestamp, before ``first_bar``, beyond ``now`` plus the
        clock skew) come too, for validation to quarantine. Files that cannot be read, or whose bars are of
        another frequency than ``bar_interval``, are listed, not raised.
        """
        if self.kind == "synthetic":
            bars = synthetic_market.generate_bars(self.synthetic_config(), start, end)
            return raw_folder.SourceBatch(bars=bars, files_read=sorted(set(bars["source_file"])))
        with self.index() as index:
            return raw_folder.load_window(
                index,
                self.files(),
                start,
                end,
                first_bar=first_bar,
                latest=now + self.max_clock_skew,
                bar_interval=self.clock().interval,
            )


class OnlineStoreResource(dg.ConfigurableResource):
    """The online store serving reads while features refresh: the embedded SQLite file, or Redis in production
    (MLOPS_ONLINE_STORE). Either way a refresh replaces the whole snapshot in one step."""

    backend: Literal["sqlite", "redis"] = Field(default="sqlite", description="sqlite | redis")
    path: str = Field(description="SQLite file holding the latest feature vector per entity (backend sqlite).")
    redis_url: str = Field(
        default="", description="Redis server (backend redis). With a password in it, pass it as dg.EnvVar."
    )
    redis_password: str | None = Field(default=None, description="Redis password; a secret: pass it as dg.EnvVar.")
    redis_password_file: str = Field(
        default="", description="File holding the Redis password (a mounted secret), read at each use."
    )

    def location(self) -> OnlineStoreLocation:
        password = self.redis_password or read_secret_file(
            Path(self.redis_password_file) if self.redis_password_file else None, "MLOPS_REDIS_PASSWORD_FILE"
        )
        return OnlineStoreLocation(self.backend, Path(self.path), self.redis_url, password)

    def write(self, frame: pd.DataFrame, *, key: str, snapshot_id: str) -> int:
        return self.location().write(frame, key=key, snapshot_id=snapshot_id)

    def reader(self) -> OnlineStore:
        return self.location().reader()


def _utc(value: str) -> datetime:
    parsed = datetime.fromisoformat(value)
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


class MonitoringResource(dg.ConfigurableResource):
    """Where hourly monitoring keeps its files, and the policy that judges drift and performance."""

    status_file: str = Field(
        description="JSON file of the latest verdict per model and signal, written atomically by the monitoring "
        "assets and read by retraining_sensor."
    )
    reference_profiles_dir: str = Field(
        description="Cache of reference-window profiles (sorted columns, category counts), one folder per view."
    )
    evidently_dir: str = Field(description="Evidently HTML reports, <model>/<partition>.html.")
    policy_path: str = Field(description="Drift and performance policy (YAML), e.g. catalog/drift_policy.yaml.")
    prediction_log_dir: str = Field(
        default="",
        description="The serving API's append-only prediction log (JSONL segments), ingested hourly into "
        "monitoring.served_predictions; empty: no serving process logs here.",
    )

    def files(self) -> MonitoringFiles:
        return MonitoringFiles(
            status_file=Path(self.status_file),
            reference_profiles=Path(self.reference_profiles_dir),
            evidently_reports=Path(self.evidently_dir),
        )

    def policy(self) -> DriftPolicy:
        """The policy, validated (errors name the file, key and reason)."""
        return load_drift_policy(self.policy_path)


class GovernanceResource(dg.ConfigurableResource):
    """Where the governance documents go (the audit packs the ``governance/audit_pack`` asset writes)."""

    audit_packs_dir: str = Field(description="One folder per audit pack, named by when it was built and its run.")


class AlertsResource(dg.ConfigurableResource):
    """Where alerts go (sinks per environment) and the record of what was already sent."""

    sinks: list[str] = Field(default=["log", "jsonl"], description="log, jsonl, webhook, slack")
    directory: str = Field(description="Holds alerts.jsonl and the dedup state.")
    webhook_url: str | None = Field(
        default=None, description="Generic webhook (sink 'webhook'). A secret: pass it as dg.EnvVar."
    )
    slack_webhook_url: str | None = Field(
        default=None, description="Slack incoming webhook (sink 'slack'); holds its token: pass it as dg.EnvVar."
    )

    def jsonl_path(self) -> Path:
        """The ``jsonl`` sink's file: the record of every alert raised (the audit pack reads it)."""
        return Path(self.directory) / JSONL_FILE

    def alerter(self) -> Alerter:
        directory = Path(self.directory)
        sinks = build_sinks(
            self.sinks,
            jsonl_path=self.jsonl_path(),
            webhook_url=self.webhook_url,
            slack_url=self.slack_webhook_url,
        )
        return Alerter(sinks, directory / "sent_alerts.json")


class PromptResponsesResource(dg.ConfigurableResource):
    """Where prompt evaluations get their answers: the recorded log of what production answered (the default, and
    what the demo and CI use), or a provider speaking the OpenAI-compatible chat-completions protocol."""

    kind: Literal["recorded", "http"] = Field(default="recorded", description="MLOPS_PROMPT_RESPONSES")
    recorded_dir: str = Field(description="The recorded answers, <prompt>.jsonl (MLOPS_PROMPT_RECORDED_DIR).")
    base_url: str | None = Field(default=None, description="The provider's base URL (MLOPS_LLM_BASE_URL).")
    api_key: str | None = Field(default=None, description="The provider's key; a secret: pass it as dg.EnvVar.")
    model_override: str | None = Field(default=None, description="Ask this model instead of the prompt's.")
    timeout_s: float = Field(default=30.0, description="Per request.")
    max_retries: int = Field(default=3, description="On 429, 5xx and timeouts, with backoff.")
    record_dir: str = Field(default="", description="Append live answers here, replayable as a recorded log.")

    def source(self) -> ResponseSource:
        return build_response_source(
            self.kind,
            recorded_dir=Path(self.recorded_dir),
            base_url=self.base_url,
            api_key=self.api_key,
            timeout_s=self.timeout_s,
            max_retries=self.max_retries,
            model_override=self.model_override,
            record_to=Path(self.record_dir) if self.record_dir else None,
        )


class MlflowResource(dg.ConfigurableResource):
    """MLflow tracking and registry at explicit URIs (local default: SQLite under data/mlflow)."""

    tracking_uri: str = Field(
        description="MLflow tracking URI (sqlite:///... or http://...); never a file store. With a password in it, "
        "pass it as dg.EnvVar."
    )
    registry_uri: str = Field(description="MLflow registry URI; usually the tracking URI. Same rule for passwords.")
    artifact_root: str = Field(description="Artifact location for new experiments.")
    ui_url: str = Field(
        default="http://127.0.0.1:5000",
        description="Where operators' browsers reach the MLflow UI (MLOPS_MLFLOW_UI_URL); links in metadata use it.",
    )

    def tracking(self) -> Tracking:
        return Tracking(self.tracking_uri, self.registry_uri, self.artifact_root)

    def run_url(self, experiment_id: str, run_id: str, artifact_path: str = "") -> str:
        """Where an operator opens the run in the MLflow UI; with ``artifact_path``, that artifact of the run."""
        return run_ui_url(self.ui_url, experiment_id, run_id, artifact_path)


@contextmanager
def open_lifecycle(
    warehouse: WarehouseResource,
    mlflow: MlflowResource,
    *,
    kind: type[lifecycle.Lifecycle] = lifecycle.Lifecycle,
    read_only: bool = False,
) -> Iterator[lifecycle.Lifecycle]:
    """The lifecycle of ``kind`` (models; prompts: ``PromptLifecycle``) over MLflow, holding the warehouse
    connection (the cross-process mutex) until the end."""
    with lifecycle.open_lifecycle(
        mlflow.tracking().client(),
        warehouse.path,
        warehouse.audit_key_file,
        read_only=read_only,
        lock_timeout_s=warehouse.lock_timeout_s,
        kind=kind,
    ) as opened:
        yield opened


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
