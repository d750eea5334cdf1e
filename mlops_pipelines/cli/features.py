"""``mlops features``: the feature catalog, point-in-time retrieval and online lookups."""

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from mlops_pipelines.cli.output import EXIT_REFUSED, EXIT_USER_ERROR, JsonOutput, console, print_rows, utc_time
from mlops_pipelines.lib.core.errors import NotFound
from mlops_pipelines.settings import REPO_ROOT, Settings

if TYPE_CHECKING:
    from mlops_pipelines.lib.features.feature_views import FeatureCatalog

features_app = typer.Typer(
    help="The feature catalog: list, show, hash, lock, diff, retrieve, lookup, docs.",
    no_args_is_help=True,
    rich_markup_mode="markdown",
)
LOCK_PATH = REPO_ROOT / "mlops_pipelines" / "catalog" / "feature_lock.json"
DOCS_PATH = REPO_ROOT / "docs" / "feature_catalog.md"


def _catalog() -> "FeatureCatalog":
    from mlops_pipelines.catalog.feature_views import load_catalog
    from mlops_pipelines.lib.features.feature_views import FeatureGraphError
    from mlops_pipelines.settings import bar_clock_from_env

    try:
        return load_catalog(bar_clock_from_env())
    except (FeatureGraphError, ValueError) as exc:
        console.print(f"[red]invalid feature catalog:[/red] {escape(str(exc))}")
        raise typer.Exit(EXIT_USER_ERROR) from exc


@features_app.command("list")
def features_list(as_json: JsonOutput = False) -> None:
    """Every feature view: version, owner, features, dependencies, TTL."""
    catalog = _catalog()
    rows = [
        {
            "view": name,
            "version": catalog.views[name].version,
            "owner": catalog.views[name].owner,
            "features": list(catalog.views[name].features),
            "depends_on": list(catalog.views[name].depends_on),
            "ttl": str(catalog.views[name].ttl),
        }
        for name in catalog.topological_order()
    ]
    columns = ["view", "version", "owner", "features", "depends_on", "ttl"]
    print_rows(rows, columns, as_json=as_json, title=None if as_json else "Feature views")
    if not as_json:
        console.print(f"feature-graph hash: {catalog.graph_hash()}")


@features_app.command("show")
def features_show(
    name: Annotated[str, typer.Argument(metavar="VIEW", help="Feature view name (`mlops features list`).")],
) -> None:
    """One view: schema, owner, versions registered in the warehouse, upstream and downstream."""
    from mlops_pipelines.lib.core import warehouse
    from mlops_pipelines.lib.features import feature_store

    catalog = _catalog()
    view = catalog.views.get(name)
    if view is None:
        raise NotFound(f"no feature view {name!r}; known: {', '.join(catalog.views)}")
    console.print(f"[bold]{view.name}[/bold] v{view.version}  owner {escape(view.owner)}  table {view.table}")
    console.print(escape(" ".join(view.description.split())))
    console.print(
        f"entity: {', '.join(view.entities)}  event time: {view.event_time}  created time: {view.created_time}"
    )
    console.print(escape(f"TTL: {view.ttl}  availability lag: {view.availability_lag}  tags: {view.tags}"))
    console.print(
        f"upstream: {', '.join(catalog.upstream(name))}  downstream: {', '.join(catalog.downstream(name)) or '-'}"
    )
    print_rows(
        [{"column": column, "type": dtype} for column, dtype in view.schema_.items()],
        ["column", "type"],
        as_json=False,
        title="schema",
    )
    path = Settings.from_env().warehouse_path
    if not path.exists():
        return
    with warehouse.connect(path, read_only=True) as conn:
        history = feature_store.registry_versions(conn, name)
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
    times = ("first_event_ts", "last_event_ts", "registered_at")
    rows = [{**r, **{t: utc_time(r[t]) for t in times}} for r in history.to_dict("records")] if len(history) else []
    if rows:
        print_rows(rows, columns, as_json=False, title="registered versions")


@features_app.command("hash")
def features_hash() -> None:
    """Print the feature-graph hash of the catalog in this checkout."""
    typer.echo(_catalog().graph_hash())


@features_app.command("lock")
def features_lock(
    path: Annotated[Path, typer.Option(metavar="FILE", help="Lock file to write.")] = LOCK_PATH,
) -> None:
    """Write the lock file that ``diff`` compares against (commit it with the change)."""
    path.write_text(json.dumps(_catalog().lock(), indent=2, sort_keys=True) + "\n")
    console.print(f"wrote {escape(str(path))}")


@features_app.command("diff")
def features_diff(
    path: Annotated[Path, typer.Option(metavar="FILE", help="Committed lock file.")] = LOCK_PATH,
) -> None:
    """Compare the catalog with the lock file; exit 1 on a breaking change without a version bump."""
    from mlops_pipelines.lib.features.feature_views import diff_lock

    if not path.exists():
        console.print(f"[red]{escape(str(path))} does not exist[/red]: run `mlops features lock` and commit it")
        raise typer.Exit(EXIT_USER_ERROR)
    changes = diff_lock(json.loads(path.read_text()), _catalog().lock())
    breaking = [c for c in changes if c.breaking]
    for change in changes:
        if change.kind != "unchanged":
            style = "red" if change.breaking else "green"
            console.print(f"[{style}]{escape(change.describe())}[/{style}]")
    if breaking:
        advice = "bump the version of the view(s) named above"
        if all(c.kind == "bar_clock" for c in breaking):
            advice = "lock the catalog for this bar clock"
        console.print(f"[red]{len(breaking)} breaking change(s)[/red]: {advice}")
        raise typer.Exit(EXIT_REFUSED)
    if all(c.kind == "unchanged" for c in changes):
        console.print("feature catalog matches the lock")
    else:
        console.print("no breaking change; run `mlops features lock` to record the new state")


@features_app.command("retrieve")
def features_retrieve(
    entities: Annotated[
        Path, typer.Option(metavar="FILE", help="CSV/Parquet with entity keys and event_timestamp (UTC).")
    ],
    views: Annotated[str, typer.Option(metavar="VIEW[@VERSION],...", help="Comma-separated views to join.")],
    out: Annotated[Path, typer.Option(metavar="FILE", help="Output file (.parquet or .csv).")],
) -> None:
    """Point-in-time correct features for every entity row (left join; no leakage of later rows)."""
    from mlops_pipelines.lib.core import warehouse
    from mlops_pipelines.lib.features import feature_store
    from mlops_pipelines.lib.features.point_in_time import retrieve_to_file

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
def features_lookup(
    entity_keys: Annotated[list[str], typer.Argument(metavar="SYMBOL", help="Entity keys, e.g. SYM0001 SYM0002.")],
) -> None:
    """Read the latest feature vectors from the online store (JSON; null for an unknown key)."""
    reader = Settings.from_env().online_store().reader()
    console.print_json(json.dumps(reader.lookup(entity_keys), default=str))


@features_app.command("docs")
def features_docs(
    out: Annotated[Path, typer.Option(metavar="FILE", help="Markdown page to write.")] = DOCS_PATH,
) -> None:
    """Generate the catalog page (markdown) that documents every view for reuse."""
    from mlops_pipelines.lib.features import feature_store

    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(feature_store.render_catalog_markdown(_catalog()))
    console.print(f"wrote {escape(str(out))}")
