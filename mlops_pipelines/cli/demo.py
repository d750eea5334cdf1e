"""``mlops demo``: the platform's story on the local instance, and the summary an operator reads after it."""

import os
import shutil
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from mlops_pipelines.cli.governed import report_url, tracking
from mlops_pipelines.cli.output import EXIT_REFUSED, console, print_rows
from mlops_pipelines.settings import REPO_ROOT, Settings

if TYPE_CHECKING:
    from mlops_pipelines.lib.governance.lifecycle import Lifecycle

MLOPS = ".venv/bin/mlops"


def demo(
    start: Annotated[str, typer.Option(metavar="DATE", help="First day to ingest (UTC).")] = "2026-01-01",
    train_until: Annotated[
        str,
        typer.Option(
            metavar="DATE", help="Last day the first model is trained on (before the synthetic regime shift)."
        ),
    ] = "2026-02-14",
    end: Annotated[
        str, typer.Option(metavar="DATE", help="Last day to ingest (UTC), inclusive; monitored day by day.")
    ] = "2026-02-21",
) -> None:
    """Materialize the whole graph on the local instance (data/dagster_home): ingest, features, train, then
    replay the days after the training cut through the hourly monitoring and the retraining sensor."""
    settings = Settings.from_env()
    home = Path(os.environ.setdefault("DAGSTER_HOME", str(settings.data_dir / "dagster_home")))
    home.mkdir(parents=True, exist_ok=True)
    if not (home / "dagster.yaml").exists():
        shutil.copy(REPO_ROOT / "dagster.yaml", home / "dagster.yaml")

    import dagster as dg

    from mlops_pipelines import demo as story
    from mlops_pipelines.definitions import defs

    first, last = date.fromisoformat(start), date.fromisoformat(end)
    plan = story.DemoPlan(start=first, train_until=min(date.fromisoformat(train_until), last), end=last)
    definitions, instance = defs(), dg.DagsterInstance.get()

    def say(step: str) -> None:
        console.print(f"[bold]{escape(step)}[/bold]")

    try:
        retrainings = story.run(definitions, instance, plan, say)
        for line in story.prompts(definitions, instance, say):
            say(line)
        story.document(definitions, instance, say)
    except RuntimeError as exc:
        console.print(f"[red]{escape(str(exc))}[/red]")
        raise typer.Exit(EXIT_REFUSED) from exc
    print_summary(settings, home)
    print_monitoring(settings, retrainings)
    print_serving(settings)


def print_summary(settings: Settings, home: Path) -> None:
    """What was built: row counts per table, quarantine reasons, the models and what to do next."""
    from mlops_pipelines.catalog.feature_views import load_catalog
    from mlops_pipelines.lib.core import warehouse
    from mlops_pipelines.lib.ingestion.market_bars import BARS_TABLE, QUARANTINE_TABLE, quarantine_reasons
    from mlops_pipelines.settings import bar_clock_from_env

    catalog = load_catalog(bar_clock_from_env())
    table = Table("table", "rows", title="What was built")
    with warehouse.connect(settings.warehouse_path, read_only=True) as conn:
        for name in (
            BARS_TABLE,
            QUARANTINE_TABLE,
            *(v.table for v in catalog.views.values()),
            "features.catalog",
        ):
            table.add_row(name, f"{warehouse.row_count(conn, name):,}")
        reasons = quarantine_reasons(conn)
    console.print(table)
    if reasons:
        console.print(escape("quarantined rows by reason: " + "; ".join(f"{r} ({n})" for r, n in reasons)))
    console.print(f"feature-graph hash: {catalog.graph_hash()}")
    print_models(settings)
    console.print(f"warehouse: {settings.warehouse_path}\nonline store: {settings.online_store().describe()}")
    console.print(f"MLflow: {settings.mlflow_tracking_uri}  ->  `make mlflow-ui` ({settings.mlflow_ui_url})")
    console.print(f"Dagster home: {home}  ->  `make ui` opens the UI on it (http://127.0.0.1:3000)")


def promotion_steps(lifecycle: "Lifecycle", model: str, version: str) -> list[str]:
    """The commands that take a STAGING version to production from where it stands: the compliance sign-off
    (while its review is pending), the approval, the promotion - three different people, none of them the
    trainer (the README's sequence; carol, alice and bob stand for them). Empty when its report was rejected
    or never written: a new report must be approved first."""
    status = (lifecycle.review(model, version) or {}).get("status")
    if status not in ("PENDING_REVIEW", "APPROVED"):
        return []
    steps = []
    if status == "PENDING_REVIEW":
        steps.append(f'{MLOPS} reviews approve {model} --version {version} --actor carol --comment "report read"')
    if not lifecycle.approvals(model, version, current_stay=True):
        steps.append(f'{MLOPS} models approve {model} --version {version} --actor alice --comment "reviewed"')
    steps.append(f"{MLOPS} models promote {model} --version {version} --actor bob")
    return steps


def print_models(settings: Settings) -> None:
    """Every version with its state and headline metrics; for each STAGING one, its report and the next steps."""
    from mlops_pipelines.lib.governance.lifecycle import open_lifecycle

    rows: list[dict[str, Any]] = []
    next_steps: list[str] = []
    with open_lifecycle(tracking(settings).client(), settings.warehouse_path, settings.audit_key_file) as lifecycle:
        for name in lifecycle.models():
            for mv in lifecycle.versions(name):
                version = str(mv.version)
                metrics = lifecycle.client.get_run(mv.run_id).data.metrics if mv.run_id else {}
                state = lifecycle.state(name, version)
                shown = {k: round(v, 3) for k, v in metrics.items() if k in ("sharpe", "hit_rate", "rmse_ratio")}
                rows.append({"model": name, "version": version, "state": state, "headline metrics": shown})
                if state != "STAGING":
                    continue
                review = (lifecycle.review(name, version) or {}).get("status", "not requested")
                next_steps.append(
                    f"{name} v{version} is STAGING, compliance review {review}; report: "
                    f"{report_url(lifecycle, settings, name, version)}"
                )
                steps = promotion_steps(lifecycle, name, version)
                if steps:
                    next_steps.append(
                        "  to put it in production, a compliance reviewer, an approver and a promoter (three "
                        "people, none of them its trainer) run:"
                    )
                    next_steps += [f"  {step}" for step in steps]
                else:
                    next_steps.append(f"  it needs a new, approved report: materialize {name}_compliance_report")
    columns = ["model", "version", "state", "headline metrics"]
    print_rows(rows, columns, as_json=False, title="Model versions")
    for line in next_steps:
        console.print(escape(line))


def print_monitoring(settings: Settings, retrainings: list[str]) -> None:
    """The monitoring timeline: one table per model version, one row per monitored hour."""
    from mlops_pipelines.lib.core import warehouse
    from mlops_pipelines.lib.monitoring.health import monitoring_timeline

    with warehouse.connect(settings.warehouse_path, read_only=True) as conn:
        timeline = monitoring_timeline(conn).rename(columns={"partition_key": "hour"})
    by_version: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in timeline.to_dict("records"):
        by_version.setdefault((str(row["model"]), str(row["version"])), []).append({str(k): v for k, v in row.items()})
    for (model, version), rows in by_version.items():
        columns = ["hour", "feature_drift", "prediction_drift", "performance"]
        print_rows(rows, columns, as_json=False, title=f"{model} v{version}: one drift run per day (UTC)")
    console.print(f"retraining runs requested by retraining_sensor: {len(retrainings)}")


def print_serving(settings: Settings) -> None:
    """Start the serving API briefly on a free loopback port, make one prediction over HTTP, print it: what
    `make serve` gives (freshness judged at the newest stored features, as the demo's data is in the past)."""
    import dataclasses
    import json
    import socket
    import threading
    import time

    import httpx
    import uvicorn

    from mlops_pipelines.lib.features.online_store import OnlineStoreReader
    from mlops_pipelines.serving.app import create_app

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    served = dataclasses.replace(settings, serve_as_of="latest", serve_port=port)
    server = uvicorn.Server(uvicorn.Config(create_app(served), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/readyz", timeout=30).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.5)
        (symbol,) = OnlineStoreReader(settings.online_store_path).entity_keys(1)
        for model in served.serve_models or _spec_names():
            aliases = {
                a["alias"] for a in httpx.get(f"{url}/api/v1/models/{model}/status", timeout=30).json()["aliases"]
            }
            alias = next((a for a in ("production", "staging") if a in aliases), "production")
            answer = httpx.post(
                f"{url}/api/v1/models/{model}/predict", json={"symbols": [symbol], "alias": alias}, timeout=60
            )
            body = answer.json()
            if answer.status_code == 200:
                first = body["predictions"][0]
                shown = {k: body[k] for k in ("model", "version", "alias", "request_id")} | {
                    k: first[k] for k in ("symbol", "prediction", "features_as_of")
                }
            else:
                shown = body
            console.print(
                f"serving API: POST /api/v1/models/{model}/predict -> {answer.status_code} {json.dumps(shown)}"
            )
    finally:
        server.should_exit = True
        thread.join(timeout=60)
    console.print("`make serve` starts it on http://127.0.0.1:8000 (README: curl for predict, status, promote)")


def _spec_names() -> list[str]:
    from mlops_pipelines.catalog.models import MODEL_SPECS

    return list(MODEL_SPECS)
