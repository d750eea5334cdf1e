"""Every environment variable the project reads, read here and nowhere else.

| variable | default | meaning |
|---|---|---|
| MLOPS_ENV | local | resource set: local (embedded DuckDB + SQLite stores) or production (below) |
| MLOPS_DATA_DIR | <repo>/data | runtime state: warehouse, online store, MLflow, Dagster home |
| MLOPS_WAREHOUSE_PATH | $MLOPS_DATA_DIR/warehouse.duckdb | the DuckDB warehouse |
| MLOPS_ONLINE_STORE | sqlite | online store backend: sqlite (the file below) or redis (MLOPS_REDIS_URL) |
| MLOPS_ONLINE_STORE_PATH | $MLOPS_DATA_DIR/online_store.sqlite | the embedded online store |
| MLOPS_REDIS_URL | redis://127.0.0.1:6379/0 | the Redis online store (redis:// or rediss://) |
| MLOPS_REDIS_PASSWORD | (none) | its password, if the URL holds none |
| MLOPS_REDIS_PASSWORD_FILE | (none) | a file holding that password (a mounted secret), read at each use |
| MLOPS_MARKET_SOURCE | synthetic | synthetic or folder |
| MLOPS_RAW_DIR | $MLOPS_DATA_DIR/raw | folder of CSV/Parquet bars (source=folder; watched by the sensor) |
| MLOPS_MARKET_START | 2026-01-01 | first daily partition of raw/market_bars (UTC) |
| MLOPS_BAR_INTERVAL | 1h | length of one bar of the source (1min, 15min, 1h, 1d...; must divide a day) |
| MLOPS_MARKET_CALENDAR | 24x7 | trading calendar of the source: 24x7 (around the clock) or equities (252 x 6.5 h) |
| MLOPS_MAX_CLOCK_SKEW | 300 | seconds a bar timestamp or available_at may be ahead of our clock (more: quarantined) |
| MLOPS_SYNTHETIC_SYMBOLS | 24 | synthetic market size |
| MLOPS_SYNTHETIC_SEED | 7 | synthetic market seed |
| MLOPS_REGIME_SHIFT_AT | 2026-02-20 | synthetic regime shift (UTC); empty for none |
| MLOPS_MLFLOW_TRACKING_URI | sqlite:///$MLOPS_DATA_DIR/mlflow/mlflow.db | tracking store (production: the server) |
| MLOPS_MLFLOW_REGISTRY_URI | the tracking URI | MLflow model registry |
| MLOPS_MLFLOW_ARTIFACT_ROOT | $MLOPS_DATA_DIR/mlflow/artifacts | artifacts (a server: mlflow-artifacts:/) |
| MLOPS_MLFLOW_UI_URL | http://127.0.0.1:5000 | the MLflow UI as browsers reach it (links in Dagster metadata, CLI) |
| MLOPS_ACTOR | the OS user | identity recorded in the audit log by the CLI |
| MLOPS_REQUIRE_OS_ACTOR | false | true: the CLI refuses an --actor / MLOPS_ACTOR other than the OS user |
| MLOPS_AUDIT_KEY_FILE | $MLOPS_DATA_DIR/secrets/audit.key | HMAC key of the audit log (made while the log is empty) |
| MLOPS_ALERT_SINKS | log,jsonl | alert sinks: log, jsonl, webhook, slack |
| MLOPS_ALERT_WEBHOOK_URL | (none) | generic webhook for alerts |
| MLOPS_SLACK_WEBHOOK_URL | (none) | Slack incoming webhook for alerts |
| MLOPS_SERVE_HOST | 127.0.0.1 | address the serving API (`mlops serve`) listens on |
| MLOPS_SERVE_PORT | 8000 | port of the serving API |
| MLOPS_SERVE_MODELS | every model spec | models the API serves and warms up (comma-separated) |
| MLOPS_SERVE_MAX_ITEMS | 500 | most symbols or rows one predict call may carry (more: 422) |
| MLOPS_SERVE_REFRESH_S | 1 | seconds between the API's looks at the registry for alias moves |
| MLOPS_SERVE_CACHE_VERSIONS | 8 | versions kept loaded besides those holding an alias |
| MLOPS_SERVE_AS_OF | (now) | clock of feature freshness: empty = now, latest = newest online feature time, or ISO |
| MLOPS_SERVE_TOKENS_FILE | $MLOPS_DATA_DIR/secrets/api_tokens.sqlite | the API's bearer tokens (hashed) |
| MLOPS_SERVE_BACKTEST_MAX_DAYS | 31 | longest window (days) the API's backtest replays synchronously (longer: 422) |
| MLOPS_PREDICTION_LOG_DIR | $MLOPS_DATA_DIR/serving/prediction_log | the API's append-only prediction log (JSONL) |
| MLOPS_PROMPT_RESPONSES | recorded | where prompt evaluations get answers: recorded (JSONL log) or http (a provider) |
| MLOPS_PROMPT_RECORDED_DIR | catalog/prompt_evals/recorded | the recorded answers, `<prompt>.jsonl` (source=recorded) |
| MLOPS_LLM_BASE_URL | (none) | OpenAI-compatible chat-completions API, with its prefix (`http://127.0.0.1:11434/v1`) |
| MLOPS_LLM_API_KEY | (none) | its bearer token, if it needs one |
| MLOPS_LLM_MODEL | the prompt's model | model name to ask for instead of the prompt's (a local server's own model) |
| MLOPS_LLM_TIMEOUT_S | 30 | seconds one chat-completions request may take |
| MLOPS_LLM_MAX_RETRIES | 3 | retries of a request answered 429/5xx or cut off (exponential backoff) |
| MLOPS_LLM_RECORD_DIR | (none) | a directory the http source appends its answers to (replayable as recorded) |
| MLOPS_EXECUTOR | multiprocess | where a run's steps execute: multiprocess (child processes of the run) or celery |
| MLOPS_CELERY_BROKER_URL | redis://127.0.0.1:6379/1 | Redis the Celery executor and workers share (queue, results) |

MLOPS_ENV=production changes defaults only, never code paths: the online store defaults to redis, the MLflow
tracking URI must be given and be the tracking server's http(s) URL (a client on the database itself would need the
artifact store's credentials), and artifacts default to the server's proxied ``mlflow-artifacts:/`` (with any
http(s) tracking URI, in either profile): the server stores them; clients hold no storage credentials.

The webhook URLs carry tokens, the MLflow and Redis URLs may carry a password (``postgresql://user:pass@host/db``):
``Settings.secret_variables`` names the variable each of them came from, and the Dagster resources take them as
``dg.EnvVar`` of that name, so run history stores the name, never the value.
"""

import getpass
import os
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from mlops_pipelines.lib.core.bars import BarClock
from mlops_pipelines.lib.core.errors import ConfigError, MlopsError

if TYPE_CHECKING:
    from mlops_pipelines.lib.features.online_store import OnlineStoreLocation
    from mlops_pipelines.lib.prompts.responses import ResponseSource

REPO_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Settings:
    env: str
    data_dir: Path
    warehouse_path: Path
    online_store_path: Path
    online_store_backend: str  # sqlite | redis
    redis_url: str
    redis_password: str | None = field(repr=False)
    redis_password_file: Path | None
    market_source: str
    raw_dir: Path
    symbol_universe: Path | None
    market_start: str
    bar_clock: BarClock  # MLOPS_BAR_INTERVAL and MLOPS_MARKET_CALENDAR
    max_clock_skew_s: float
    synthetic_symbols: int
    synthetic_seed: int
    regime_shift_at: str | None
    mlflow_tracking_uri: str
    mlflow_registry_uri: str
    mlflow_artifact_root: str
    mlflow_ui_url: str
    audit_key_file: Path
    require_os_actor: bool
    alert_sinks: tuple[str, ...]
    alert_webhook_url: str | None
    slack_webhook_url: str | None
    serve_host: str = "127.0.0.1"
    serve_port: int = 8000
    serve_models: tuple[str, ...] = ()  # empty: every model spec of the catalog
    serve_max_items: int = 500
    serve_refresh_s: float = 1.0
    serve_cache_versions: int = 8
    serve_as_of: str = ""
    serve_tokens_file: Path = Path("data/secrets/api_tokens.sqlite")
    serve_backtest_max_days: int = 31
    prediction_log_dir: Path = Path("data/serving/prediction_log")
    prompt_responses: str = "recorded"  # recorded | http
    prompt_recorded_dir: Path = REPO_ROOT / "mlops_pipelines" / "catalog" / "prompt_evals" / "recorded"
    llm_base_url: str | None = None
    llm_api_key: str | None = field(default=None, repr=False)
    llm_model: str | None = None
    llm_timeout_s: float = 30.0
    llm_max_retries: int = 3
    llm_record_dir: Path | None = None
    executor: str = "multiprocess"  # multiprocess | celery (defs/executor.py)
    celery_broker_url: str = "redis://127.0.0.1:6379/1"
    # setting -> the variable it was read from, for the settings that may hold a credential and were set
    secret_variables: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_env(cls) -> "Settings":
        data_dir = Path(os.environ.get("MLOPS_DATA_DIR", REPO_ROOT / "data")).resolve()
        env = os.environ.get("MLOPS_ENV", "local")
        if env not in ("local", "production"):
            raise ConfigError(f"MLOPS_ENV must be 'local' or 'production', got {env!r}")
        tracking = os.environ.get("MLOPS_MLFLOW_TRACKING_URI", f"sqlite:///{data_dir / 'mlflow' / 'mlflow.db'}")
        secrets = {
            "mlflow_tracking_uri": "MLOPS_MLFLOW_TRACKING_URI",
            "mlflow_registry_uri": "MLOPS_MLFLOW_REGISTRY_URI",
            "alert_webhook_url": "MLOPS_ALERT_WEBHOOK_URL",
            "slack_webhook_url": "MLOPS_SLACK_WEBHOOK_URL",
            "redis_url": "MLOPS_REDIS_URL",
            "redis_password": "MLOPS_REDIS_PASSWORD",
            "llm_api_key": "MLOPS_LLM_API_KEY",
            "celery_broker_url": "MLOPS_CELERY_BROKER_URL",
        }
        if env == "production" and urlsplit(os.environ.get("MLOPS_MLFLOW_TRACKING_URI", "")).scheme not in (
            "http",
            "https",
        ):
            raise ConfigError(
                "MLOPS_ENV=production needs MLOPS_MLFLOW_TRACKING_URI set to the MLflow tracking server's "
                f"http(s):// URL, got {os.environ.get('MLOPS_MLFLOW_TRACKING_URI', '(unset)')!r}"
            )
        served_artifacts = urlsplit(tracking).scheme in ("http", "https")  # the server proxies the artifacts
        online_store_backend = os.environ.get("MLOPS_ONLINE_STORE", "").strip().lower() or (
            "redis" if env == "production" else "sqlite"
        )
        if online_store_backend not in ("sqlite", "redis"):
            raise ConfigError(f"MLOPS_ONLINE_STORE must be 'sqlite' or 'redis', got {online_store_backend!r}")
        redis_url = os.environ.get("MLOPS_REDIS_URL", "").strip() or "redis://127.0.0.1:6379/0"
        if urlsplit(redis_url).scheme not in ("redis", "rediss", "unix"):
            raise ConfigError(f"MLOPS_REDIS_URL must be a redis://, rediss:// or unix:// URL, got {redis_url!r}")
        executor = os.environ.get("MLOPS_EXECUTOR", "").strip().lower() or "multiprocess"
        if executor not in ("multiprocess", "celery"):
            raise ConfigError(f"MLOPS_EXECUTOR must be 'multiprocess' or 'celery', got {executor!r}")
        celery_broker_url = os.environ.get("MLOPS_CELERY_BROKER_URL", "").strip() or "redis://127.0.0.1:6379/1"
        if urlsplit(celery_broker_url).scheme not in ("redis", "rediss"):
            raise ConfigError(
                f"MLOPS_CELERY_BROKER_URL must be a redis:// or rediss:// URL, got {urlsplit(celery_broker_url).scheme}://..."
            )
        market_source = os.environ.get("MLOPS_MARKET_SOURCE", "synthetic")
        bar_clock = bar_clock_from_env()
        if market_source == "synthetic" and bar_clock.calendar != "24x7":
            raise ConfigError(
                f"MLOPS_MARKET_CALENDAR={bar_clock.calendar} needs your own bars (MLOPS_MARKET_SOURCE=folder): "
                "the synthetic market trades around the clock (24x7)"
            )
        prompt_responses = os.environ.get("MLOPS_PROMPT_RESPONSES", "").strip().lower() or "recorded"
        if prompt_responses not in ("recorded", "http"):
            raise ConfigError(f"MLOPS_PROMPT_RESPONSES must be 'recorded' or 'http', got {prompt_responses!r}")
        llm_base_url = os.environ.get("MLOPS_LLM_BASE_URL", "").strip() or None
        if llm_base_url is not None:
            llm_base_url = _http_url("MLOPS_LLM_BASE_URL", llm_base_url)
        elif prompt_responses == "http":
            raise ConfigError("MLOPS_PROMPT_RESPONSES=http needs MLOPS_LLM_BASE_URL (the provider's /v1 URL)")
        if not os.environ.get("MLOPS_MLFLOW_REGISTRY_URI"):  # the registry defaults to the tracking URI
            secrets["mlflow_registry_uri"] = "MLOPS_MLFLOW_TRACKING_URI"
        return cls(
            env=env,
            data_dir=data_dir,
            warehouse_path=Path(os.environ.get("MLOPS_WAREHOUSE_PATH", data_dir / "warehouse.duckdb")),
            online_store_path=Path(os.environ.get("MLOPS_ONLINE_STORE_PATH", data_dir / "online_store.sqlite")),
            online_store_backend=online_store_backend,
            redis_url=redis_url,
            redis_password=os.environ.get("MLOPS_REDIS_PASSWORD") or None,
            redis_password_file=Path(os.environ["MLOPS_REDIS_PASSWORD_FILE"])
            if os.environ.get("MLOPS_REDIS_PASSWORD_FILE")
            else None,
            market_source=market_source,
            raw_dir=Path(os.environ.get("MLOPS_RAW_DIR", data_dir / "raw")),
            symbol_universe=Path(os.environ["MLOPS_SYMBOL_UNIVERSE"])
            if os.environ.get("MLOPS_SYMBOL_UNIVERSE")
            else None,
            market_start=os.environ.get("MLOPS_MARKET_START", "2026-01-01"),
            bar_clock=bar_clock,
            max_clock_skew_s=_non_negative_seconds("MLOPS_MAX_CLOCK_SKEW", "300"),
            synthetic_symbols=_int_env("MLOPS_SYNTHETIC_SYMBOLS", 24),
            synthetic_seed=_int_env("MLOPS_SYNTHETIC_SEED", 7),
            regime_shift_at=os.environ.get("MLOPS_REGIME_SHIFT_AT", "2026-02-20") or None,
            mlflow_tracking_uri=tracking,
            mlflow_registry_uri=os.environ.get("MLOPS_MLFLOW_REGISTRY_URI", tracking),
            mlflow_artifact_root=os.environ.get("MLOPS_MLFLOW_ARTIFACT_ROOT", "").strip()
            or ("mlflow-artifacts:/" if served_artifacts else str(data_dir / "mlflow" / "artifacts")),
            mlflow_ui_url=_http_url("MLOPS_MLFLOW_UI_URL", "http://127.0.0.1:5000"),
            audit_key_file=Path(os.environ.get("MLOPS_AUDIT_KEY_FILE", data_dir / "secrets" / "audit.key")),
            require_os_actor=_flag("MLOPS_REQUIRE_OS_ACTOR"),
            alert_sinks=tuple(s.strip() for s in os.environ.get("MLOPS_ALERT_SINKS", "log,jsonl").split(",") if s),
            alert_webhook_url=os.environ.get("MLOPS_ALERT_WEBHOOK_URL") or None,
            slack_webhook_url=os.environ.get("MLOPS_SLACK_WEBHOOK_URL") or None,
            serve_host=os.environ.get("MLOPS_SERVE_HOST", "127.0.0.1").strip() or "127.0.0.1",
            serve_port=_int_env("MLOPS_SERVE_PORT", 8000, low=0, high=65535),
            serve_models=tuple(m.strip() for m in os.environ.get("MLOPS_SERVE_MODELS", "").split(",") if m.strip()),
            serve_max_items=_int_env("MLOPS_SERVE_MAX_ITEMS", 500, low=1),
            serve_refresh_s=_non_negative_seconds("MLOPS_SERVE_REFRESH_S", "1"),
            serve_cache_versions=_int_env("MLOPS_SERVE_CACHE_VERSIONS", 8, low=0),
            serve_as_of=_as_of("MLOPS_SERVE_AS_OF"),
            serve_backtest_max_days=_int_env("MLOPS_SERVE_BACKTEST_MAX_DAYS", 31, low=1),
            serve_tokens_file=Path(
                os.environ.get("MLOPS_SERVE_TOKENS_FILE", data_dir / "secrets" / "api_tokens.sqlite")
            ),
            prediction_log_dir=Path(
                os.environ.get("MLOPS_PREDICTION_LOG_DIR", data_dir / "serving" / "prediction_log")
            ),
            prompt_responses=prompt_responses,
            prompt_recorded_dir=Path(
                os.environ.get("MLOPS_PROMPT_RECORDED_DIR", "").strip()
                or REPO_ROOT / "mlops_pipelines" / "catalog" / "prompt_evals" / "recorded"
            ),
            llm_base_url=llm_base_url,
            llm_api_key=os.environ.get("MLOPS_LLM_API_KEY") or None,
            llm_model=os.environ.get("MLOPS_LLM_MODEL", "").strip() or None,
            llm_timeout_s=_positive_seconds("MLOPS_LLM_TIMEOUT_S", "30"),
            llm_max_retries=_int_env("MLOPS_LLM_MAX_RETRIES", 3, low=0, high=20),
            llm_record_dir=Path(os.environ["MLOPS_LLM_RECORD_DIR"]) if os.environ.get("MLOPS_LLM_RECORD_DIR") else None,
            executor=executor,
            celery_broker_url=celery_broker_url,
            secret_variables={name: variable for name, variable in secrets.items() if os.environ.get(variable)},
        )

    def online_store(self) -> "OnlineStoreLocation":
        """The online store these settings name, its password read now (from MLOPS_REDIS_PASSWORD or its file)."""
        from mlops_pipelines.lib.features.online_store import OnlineStoreLocation

        password = self.redis_password or read_secret_file(self.redis_password_file, "MLOPS_REDIS_PASSWORD_FILE")
        return OnlineStoreLocation(
            self.online_store_backend,  # type: ignore[arg-type]  # validated in from_env
            self.online_store_path,
            self.redis_url,
            password,
        )

    def response_source(self) -> "ResponseSource":
        """Where prompt evaluations get their answers: the recorded log or the chat-completions provider."""
        from mlops_pipelines.lib.prompts.responses import build_response_source

        return build_response_source(
            self.prompt_responses,
            recorded_dir=self.prompt_recorded_dir,
            base_url=self.llm_base_url,
            api_key=self.llm_api_key,
            timeout_s=self.llm_timeout_s,
            max_retries=self.llm_max_retries,
            model_override=self.llm_model,
            record_to=self.llm_record_dir,
        )


def read_secret_file(path: Path | None, variable: str) -> str | None:
    """A secret mounted as a file (its content, without the trailing newline); None when no file is set."""
    if path is None:
        return None
    try:
        return path.read_text().rstrip("\r\n")
    except OSError as exc:
        raise ConfigError(f"{variable}: cannot read {path}: {exc.strerror}") from exc


def bar_clock_from_env() -> BarClock:
    """MLOPS_BAR_INTERVAL and MLOPS_MARKET_CALENDAR, validated; alone, for the feature catalog (built for the
    clock) without reading the other settings."""
    interval = os.environ.get("MLOPS_BAR_INTERVAL", "").strip() or "1h"
    calendar = os.environ.get("MLOPS_MARKET_CALENDAR", "").strip() or "24x7"
    try:
        clock = BarClock.parse(interval, "24x7")
    except ValueError as exc:
        raise ConfigError(f"MLOPS_BAR_INTERVAL: {exc}") from exc
    try:
        return BarClock(clock.interval, calendar.lower())
    except ValueError as exc:
        raise ConfigError(f"MLOPS_MARKET_CALENDAR: {exc}") from exc


def _int_env(name: str, default: int, *, low: int | None = None, high: int | None = None) -> int:
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    try:
        number = int(value)
    except ValueError as exc:
        raise ConfigError(f"{name} must be a whole number, got {value!r}") from exc
    if (low is not None and number < low) or (high is not None and number > high):
        raise ConfigError(f"{name} must be between {low} and {high if high is not None else 'any'}, got {value!r}")
    return number


def _as_of(name: str) -> str:
    value = os.environ.get(name, "").strip()
    if value in ("", "latest"):
        return value
    try:
        datetime.fromisoformat(value)
    except ValueError as exc:
        raise ConfigError(f"{name} must be empty, 'latest' or an ISO 8601 time, got {value!r}") from exc
    return value


def _non_negative_seconds(name: str, default: str) -> float:
    text = os.environ.get(name, default)
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0 or value == float("inf"):
        raise ConfigError(f"{name} must be a number of seconds >= 0, got {text!r}")
    return value


def _positive_seconds(name: str, default: str) -> float:
    value = _non_negative_seconds(name, default)
    if value == 0:
        raise ConfigError(f"{name} must be a number of seconds > 0, got {os.environ.get(name)!r}")
    return value


def _http_url(name: str, default: str) -> str:
    value = os.environ.get(name, "").strip() or default
    if urlsplit(value).scheme not in ("http", "https") or not urlsplit(value).netloc:
        raise ConfigError(f"{name} must be an http:// or https:// URL, got {value!r}")
    return value.rstrip("/")


def _flag(name: str) -> bool:
    value = os.environ.get(name, "").strip().lower()
    if value not in ("", "0", "false", "no", "1", "true", "yes"):
        raise ConfigError(f"{name} must be true or false, got {value!r}")
    return value in ("1", "true", "yes")


class ActorMismatch(MlopsError, PermissionError):
    """The declared actor is not the OS user, and the deployment requires that it be."""


def current_actor(declared: str = "") -> str:
    """Who is acting (recorded in the audit log): ``declared`` (``--actor``), else MLOPS_ACTOR, else the OS user.

    The first two are self-declared. With MLOPS_REQUIRE_OS_ACTOR=true, a declared name other than the OS user
    is refused: the identity is then the login the command runs under.
    """
    os_user = getpass.getuser()
    actor = declared or os.environ.get("MLOPS_ACTOR") or os_user
    if _flag("MLOPS_REQUIRE_OS_ACTOR") and actor.strip().casefold() != os_user.strip().casefold():
        raise ActorMismatch(
            f"actor {actor!r} is not the OS user {os_user!r}, and MLOPS_REQUIRE_OS_ACTOR is set: act as yourself"
        )
    return actor
