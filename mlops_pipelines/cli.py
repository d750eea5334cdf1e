"""The ``mlops`` command: the feature catalog, point-in-time retrieval, online lookups and the demo."""

import json
import os
import shutil
import sys
from datetime import date
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from typer.core import TyperGroup

from mlops_pipelines.catalog.feature_views import load_catalog
from mlops_pipelines.cli_models import datasets_app, deployments_app, experiments_app, models_app, reviews_app
from mlops_pipelines.lib.core import warehouse
from mlops_pipelines.lib.core.errors import MlopsError
from mlops_pipelines.lib.features import feature_store
from mlops_pipelines.lib.features.feature_views import FeatureGraphError, diff_lock
from mlops_pipelines.lib.features.online_store import OnlineStoreReader
from mlops_pipelines.lib.features.point_in_time import retrieve_to_file
from mlops_pipelines.settings import REPO_ROOT, Settings

EXIT_USER_ERROR = 2  # bad input, a bad setting, a missing or damaged file: the message says what to fix


class _Commands(TyperGroup):
    """The root command group: maps the project's errors (``lib/core/errors.py``) to one red line on stderr and exit
    code 2, once for every command below it; any other exception is a bug and keeps its traceback."""

    def invoke(self, ctx: Any) -> Any:  # typer.Context is narrower than the base (typer's own click Context)
        try:
            return super().invoke(ctx)
        except MlopsError as exc:
            Console(stderr=True, soft_wrap=True).print(f"[red]error:[/red] {escape(str(exc))}")
            raise typer.Exit(EXIT_USER_ERROR) from exc


app = typer.Typer(
    cls=_Commands,
    help="mlops_pipelines: feature store, models and monitoring from the command line.",
    no_args_is_help=True,
)
features_app = typer.Typer(
    help="The feature catalog: list, show, hash, lock, diff, retrieve, lookup, docs.", no_args_is_help=True
)
app.add_typer(features_app, name="features")
app.add_typer(models_app, name="models")
app.add_typer(experiments_app, name="experiments")
app.add_typer(datasets_app, name="datasets")
app.add_typer(deployments_app, name="deployments")
app.add_typer(reviews_app, name="reviews")
console = Console()
LOCK_PATH = REPO_ROOT / "mlops_pipelines" / "catalog" / "feature_lock.json"
DOCS_PATH = REPO_ROOT / "docs" / "feature_catalog.md"


def _catalog():
    try:
        return load_catalog()
    except (FeatureGraphError, ValueError) as exc:
        console.print(f"[red]invalid feature catalog:[/red] {exc}")
        raise typer.Exit(2) from exc


@features_app.command("list")
def features_list() -> None:
    """Every feature view: version, owner, features, dependencies."""
    catalog = _catalog()
    table = Table("view", "version", "owner", "features", "depends on", "TTL", title="Feature views")
    for name in catalog.topological_order():
        view = catalog.views[name]
        table.add_row(
            name, str(view.version), view.owner, ", ".join(view.features), ", ".join(view.depends_on), str(view.ttl)
        )
    console.print(table)
    console.print(f"feature-graph hash: {catalog.graph_hash()}")


@features_app.command("show")
def features_show(name: str) -> None:
    """One view: schema, owner, versions registered in the warehouse, upstream and downstream."""
    catalog = _catalog()
    view = catalog.views.get(name)
    if view is None:
        console.print(f"[red]no feature view {name!r}[/red]; known: {', '.join(catalog.views)}")
        raise typer.Exit(1)
    console.print(f"[bold]{view.name}[/bold] v{view.version}  owner {view.owner}  table {view.table}")
    console.print(" ".join(view.description.split()))
    console.print(
        f"entity: {', '.join(view.entities)}  event time: {view.event_time}  created time: {view.created_time}"
    )
    console.print(f"TTL: {view.ttl}  availability lag: {view.availability_lag}  tags: {view.tags}")
    console.print(
        f"upstream: {', '.join(catalog.upstream(name))}  downstream: {', '.join(catalog.downstream(name)) or '-'}"
    )
    schema = Table("column", "type", title="schema")
    for column, dtype in view.schema_.items():
        schema.add_row(column, dtype)
    console.print(schema)
    path = Settings.from_env().warehouse_path
    if path.exists():
        with warehouse.connect(path, read_only=True) as conn:
            history = feature_store.registry_versions(conn, name)
        if len(history):
            columns = [
                "version",
                "table_name",
                "row_count",
                "first_event_ts",
                "last_event_ts",
                "registered_at",
                "dagster_run_id",
                "is_current",
            ]
            versions = Table(*columns, title="registered versions")
            for row in history[columns].itertuples(index=False):
                versions.add_row(*(str(value) for value in row))
            console.print(versions)


@features_app.command("hash")
def features_hash() -> None:
    """Print the feature-graph hash of the catalog in this checkout."""
    typer.echo(_catalog().graph_hash())


@features_app.command("lock")
def features_lock(path: Annotated[Path, typer.Option(help="Lock file to write.")] = LOCK_PATH) -> None:
    """Write the lock file that ``diff`` compares against (commit it with the change)."""
    path.write_text(json.dumps(_catalog().lock(), indent=2, sort_keys=True) + "\n")
    console.print(f"wrote {path}")


@features_app.command("diff")
def features_diff(path: Annotated[Path, typer.Option(help="Committed lock file.")] = LOCK_PATH) -> None:
    """Compare the catalog with the lock file; exit 1 on a breaking change without a version bump."""
    if not path.exists():
        console.print(f"[red]{path} does not exist[/red]: run `mlops features lock` and commit it")
        raise typer.Exit(2)
    changes = diff_lock(json.loads(path.read_text()), _catalog().lock())
    breaking = [c for c in changes if c.breaking]
    for change in changes:
        if change.kind != "unchanged":
            style = "red" if change.breaking else "green"
            console.print(f"[{style}]{change.describe()}[/{style}]")
    if breaking:
        console.print(f"[red]{len(breaking)} breaking change(s)[/red]: bump the version of the view(s) named above")
        raise typer.Exit(1)
    if all(c.kind == "unchanged" for c in changes):
        console.print("feature catalog matches the lock")
    else:
        console.print("no breaking change; run `mlops features lock` to record the new state")


@features_app.command("retrieve")
def features_retrieve(
    entities: Annotated[Path, typer.Option(help="CSV/Parquet with entity keys and event_timestamp (UTC).")],
    views: Annotated[str, typer.Option(help="Comma-separated views, each NAME or NAME@VERSION.")],
    out: Annotated[Path, typer.Option(help="Output file (.parquet or .csv).")],
) -> None:
    """Point-in-time correct features for every entity row (left join; no leakage of later rows)."""
    refs = [v.strip() for v in views.split(",") if v.strip()]
    if not refs:
        raise typer.BadParameter(f"names no feature view: {views!r}", param_hint="--views")
    catalog = _catalog()
    settings = Settings.from_env()
    with warehouse.connect(settings.warehouse_path, read_only=True) as conn:
        resolved = feature_store.resolve_view_refs(conn, catalog, refs)
        rows = retrieve_to_file(conn, str(entities), resolved, str(out))
    console.print(f"wrote {rows} rows with {sum(len(v.features) for v in resolved)} features to {escape(str(out))}")


@features_app.command("lookup")
def features_lookup(entity_keys: list[str]) -> None:
    """Read the latest feature vectors from the online store."""
    reader = OnlineStoreReader(Settings.from_env().online_store_path)
    console.print_json(json.dumps(reader.lookup(entity_keys), default=str))


@features_app.command("docs")
def features_docs(out: Annotated[Path, typer.Option(help="Markdown page to write.")] = DOCS_PATH) -> None:
    """Generate the catalog page (markdown) that documents every view for reuse."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(feature_store.render_catalog_markdown(_catalog()))
    console.print(f"wrote {out}")


@app.command()
def demo(
    start: Annotated[str, typer.Option(help="First day to ingest (UTC).")] = "2026-01-01",
    train_until: Annotated[
        str, typer.Option(help="Last day the first model is trained on (before the synthetic regime shift).")
    ] = "2026-02-14",
    end: Annotated[str, typer.Option(help="Last day to ingest (UTC), inclusive; monitored day by day.")] = "2026-02-21",
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
    try:
        retrainings = story.run(
            defs(), dg.DagsterInstance.get(), plan, lambda step: console.print(f"[bold]{escape(step)}[/bold]")
        )
    except RuntimeError as exc:
        console.print(f"[red]{escape(str(exc))}[/red]")
        raise typer.Exit(1) from exc
    _print_summary(settings, home)
    _print_monitoring(settings, retrainings)


def _print_summary(settings: Settings, home: Path) -> None:
    catalog = load_catalog()
    table = Table("table", "rows", title="What was built")
    with warehouse.connect(settings.warehouse_path, read_only=True) as conn:
        for name in (
            "raw.market_bars",
            "raw.quarantined_bars",
            *(v.table for v in catalog.views.values()),
            "features.catalog",
        ):
            table.add_row(name, f"{warehouse.row_count(conn, name):,}")
        reasons = conn.execute(
            "SELECT reason, count(*) FROM raw.quarantined_bars GROUP BY 1 ORDER BY 2 DESC LIMIT 5"
        ).fetchall()
    console.print(table)
    if reasons:
        console.print(escape("quarantined rows by reason: " + "; ".join(f"{r} ({n})" for r, n in reasons)))
    console.print(f"feature-graph hash: {catalog.graph_hash()}")
    _print_models(settings)
    console.print(f"warehouse: {settings.warehouse_path}\nonline store: {settings.online_store_path}")
    console.print(f"MLflow: {settings.mlflow_tracking_uri}  ->  `make mlflow-ui` (http://127.0.0.1:5000)")
    console.print(f"Dagster home: {home}  ->  `make ui` opens the UI on it (http://127.0.0.1:3000)")


def _print_models(settings: Settings) -> None:
    from mlops_pipelines.lib.core.tracking import Tracking
    from mlops_pipelines.lib.governance.lifecycle import open_lifecycle

    tracking = Tracking(settings.mlflow_tracking_uri, settings.mlflow_registry_uri, settings.mlflow_artifact_root)
    table = Table("model", "version", "state", "headline metrics", title="Model versions")
    staged = []
    with open_lifecycle(tracking.client(), settings.warehouse_path, settings.audit_key_file) as lifecycle:
        for name in lifecycle.models():
            for mv in lifecycle.versions(name):
                metrics = lifecycle.client.get_run(mv.run_id).data.metrics if mv.run_id else {}
                shown = {k: round(v, 3) for k, v in metrics.items() if k in ("sharpe", "hit_rate", "rmse_ratio")}
                state = lifecycle.state(name, mv.version)
                table.add_row(name, str(mv.version), state, json.dumps(shown))
                if state == "STAGING":
                    staged.append((name, str(mv.version)))
    console.print(table)
    for name, version in staged:
        console.print(
            f"{name} v{version} awaits approval: `.venv/bin/mlops models approve {name} --version "
            f"{version} --actor <reviewer>` then `.venv/bin/mlops models promote {name} --version {version}`"
        )


def _print_monitoring(settings: Settings, retrainings: list[str]) -> None:
    with warehouse.connect(settings.warehouse_path, read_only=True) as conn:
        if not warehouse.table_exists(conn, "monitoring.model_drift_reports"):
            return
        rows = conn.execute(
            """SELECT d.model, d.version, d.partition_key, any_value(d.model_severity),
                      any_value(p.model_severity), any_value(m.model_status)
               FROM monitoring.model_drift_reports d
               LEFT JOIN monitoring.prediction_drift_reports p USING (partition_key, model)
               LEFT JOIN monitoring.model_performance m USING (partition_key, model)
               GROUP BY ALL ORDER BY d.model, d.partition_key"""
        ).fetchall()
    tables: dict[str, Table] = {}
    for model, version, *cells in rows:
        title = f"{model} v{version}: one drift run per day"
        table = tables.setdefault(
            title, Table("hour (UTC)", "feature drift", "prediction drift", "performance", title=title)
        )
        table.add_row(*(str(c) for c in cells))
    for table in tables.values():
        console.print(table)
    console.print(f"retraining runs requested by retraining_sensor: {len(retrainings)}")


def main() -> None:
    app(prog_name="mlops")


if __name__ == "__main__":
    sys.exit(main())
