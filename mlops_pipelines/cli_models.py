"""``mlops models|experiments|datasets|deployments``: the governed model lifecycle from the command line."""

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Annotated, Any

import typer
from mlflow.exceptions import MlflowException
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from mlops_pipelines.catalog.feature_views import load_catalog
from mlops_pipelines.catalog.models import load_model_specs
from mlops_pipelines.catalog.policies import load_drift_policy_file, load_promotion_policy
from mlops_pipelines.lib.core import warehouse
from mlops_pipelines.lib.core.errors import NotFound
from mlops_pipelines.lib.core.tracking import Tracking
from mlops_pipelines.lib.governance import deployments
from mlops_pipelines.lib.governance.gate import run_gate
from mlops_pipelines.lib.governance.lifecycle import (
    ApprovalRequired,
    IllegalTransition,
    Lifecycle,
    LifecycleError,
    open_lifecycle,
)
from mlops_pipelines.lib.training.datasets import DATASET_REGISTRY
from mlops_pipelines.settings import ActorMismatch, Settings, current_actor

console = Console()
models_app = typer.Typer(
    help="Registered models: list, show, history, promote, approve, rollback, retire, resync.", no_args_is_help=True
)
experiments_app = typer.Typer(help="MLflow experiments (one per model).", no_args_is_help=True)
datasets_app = typer.Typer(help="Training sets, by dataset id.", no_args_is_help=True)
reviews_app = typer.Typer(help="Compliance sign-off: list, approve, reject.", no_args_is_help=True)
deployments_app = typer.Typer(help="Bind a model version to an environment, after a checklist.", no_args_is_help=True)

Actor = Annotated[
    str,
    typer.Option(
        help="Who acts (audit log). Default: $MLOPS_ACTOR or the OS user. Self-declared unless "
        "MLOPS_REQUIRE_OS_ACTOR=true, which refuses any name but the OS user's."
    ),
]


def _tracking(settings: Settings) -> Tracking:
    return Tracking(settings.mlflow_tracking_uri, settings.mlflow_registry_uri, settings.mlflow_artifact_root)


@contextmanager
def _governed() -> Iterator[Lifecycle]:
    """The lifecycle, built as the Dagster resources build it (``open_lifecycle``). A governance refusal is a clear
    message and exit code 1; MLflow errors exit 2, as the root command maps the project's other errors."""
    settings = Settings.from_env()
    try:
        with open_lifecycle(_tracking(settings).client(), settings.warehouse_path, settings.audit_key_file) as lc:
            yield lc
    except (IllegalTransition, ApprovalRequired, LifecycleError, ActorMismatch, ValueError) as exc:
        console.print(f"[red]refused:[/red] {escape(str(exc))}")
        raise typer.Exit(1) from exc
    except MlflowException as exc:
        console.print(f"[red]MLflow:[/red] {escape(exc.message)}")
        raise typer.Exit(2) from exc


def _when(epoch_ms: int | None) -> str:
    return datetime.fromtimestamp(epoch_ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S") if epoch_ms else ""


def _aliases(lifecycle: Lifecycle, model: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for alias in ("production", "staging", "challenger"):
        version = lifecycle.alias_version(model, alias)
        if version is not None:
            out.setdefault(version, "")
            out[version] = ",".join(filter(None, [out[version], alias]))
    return out


@models_app.command("list")
def models_list() -> None:
    """Every model the audit log or MLflow knows, with its versions' states and aliases (from the verified audit
    log) and whether its governance record holds. Exit 1 when one does not (a version inconsistent with the log
    is refused for serving)."""
    table = Table("model", "versions", "production", "staging", "states", "governance")
    broken: dict[str, list[str]] = {}
    with _governed() as lifecycle:
        for name in lifecycle.models():
            record, problems = lifecycle.verify(name)
            states = ", ".join(f"v{v}:{r.state}" for v, r in sorted(record.versions.items(), key=lambda i: int(i[0])))
            table.add_row(
                name,
                str(len(record.versions)),
                record.aliases.get("production", "-"),
                record.aliases.get("staging", "-"),
                states,
                "ok" if not problems else f"[red]INCONSISTENT ({len(problems)})[/red]",
            )
            if problems:
                broken[name] = problems
    console.print(table)
    for name, problems in broken.items():
        console.print(f"[red]{name}:[/red] " + escape("; ".join(problems)))
    if broken:
        raise typer.Exit(1)


@models_app.command("show")
def models_show(name: str, version: Annotated[str | None, typer.Option(help="One version in detail.")] = None) -> None:
    """Versions, states, metrics; with --version: tags, manifest and lineage to dataset and feature views."""
    with _governed() as lifecycle:
        aliases = _aliases(lifecycle, name)
        problems = lifecycle.consistency_problems(name)
        if problems:
            console.print(f"[red]{name} is INCONSISTENT (refused for serving):[/red] " + escape("; ".join(problems)))
        if version is None:
            table = Table("version", "state", "aliases", "key metrics", "dataset", "trained by", "created")
            for mv in lifecycle.versions(name):
                metrics = lifecycle.client.get_run(mv.run_id).data.metrics if mv.run_id else {}
                key = {
                    k: round(v, 4)
                    for k, v in metrics.items()
                    if k in ("sharpe", "hit_rate", "test_auc", "rmse_ratio", "test_rmse")
                }
                table.add_row(
                    str(mv.version),
                    str(mv.tags.get("lifecycle_state")),
                    aliases.get(str(mv.version), ""),
                    json.dumps(key),
                    mv.tags.get("dataset_hash", "")[:12],
                    mv.tags.get("trained_by", ""),
                    str(mv.creation_timestamp),
                )
            console.print(table)
            return
        mv = lifecycle.version(name, version)
        tracking = _tracking(Settings.from_env())
        try:
            manifest = json.loads(tracking.read_text_artifact(mv.run_id, "manifest.json")) if mv.run_id else {}
        except (NotFound, OSError):  # a version registered outside our training runs has no manifest
            manifest = {}
        dataset = (
            lifecycle.conn.execute(
                f"SELECT dataset_id, table_name, row_count, first_decision, last_decision FROM {DATASET_REGISTRY} "
                "WHERE dataset_hash = ? LIMIT 1",
                [mv.tags.get("dataset_hash")],
            ).fetchone()
            if warehouse.table_exists(lifecycle.conn, DATASET_REGISTRY)
            else None
        )
        console.print(
            f"[bold]{name} v{mv.version}[/bold]  state {mv.tags.get('lifecycle_state')}  "
            f"aliases {aliases.get(str(mv.version), '-')}"
        )
        console.print_json(
            json.dumps(
                {
                    "tags": dict(mv.tags),
                    "approvals": lifecycle.approvals(name, str(mv.version)),
                    "compliance_review": lifecycle.review(name, str(mv.version)),
                    "governance_problems": problems,
                    "lineage": {
                        "dataset": dict(
                            zip(
                                ("dataset_id", "table", "rows", "first_decision", "last_decision"),
                                [str(x) for x in dataset],
                                strict=True,
                            )
                        )
                        if dataset
                        else None,
                        "feature_views": manifest.get("config", {}).get("feature_views"),
                        "feature_graph_hash": manifest.get("feature_graph_hash"),
                        "mlflow_run_id": mv.run_id,
                        "git_commit": manifest.get("git_commit"),
                    },
                    "metrics": manifest.get("metrics"),
                    "manifest": {k: v for k, v in manifest.items() if k not in ("metrics", "config")},
                },
                default=str,
            )
        )


@models_app.command("history")
def models_history(name: str) -> None:
    """The audit log of a model: every transition, approval, rejection and override."""
    table = Table("seq", "at", "actor", "version", "action", "from", "to", "reason", "policy", "verified")
    with _governed() as lifecycle:
        for row in lifecycle.history(name):
            table.add_row(
                str(row["seq"]),
                str(row["occurred_at"])[:19],
                row["actor"],
                row["version"],
                row["action"],
                row["from_state"] or "",
                row["to_state"] or "",
                escape(row["reason"] or ""),
                (row["policy_hash"] or "")[:10],
                "yes" if row["verified"] else f"[red]NO: {escape(str(row['problem']))}[/red]",
            )
    console.print(table)


def _overrides(values: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in values:
        key, sep, raw = item.partition("=")
        if not sep:
            raise typer.BadParameter(f"--override {item!r}: use KEY=VALUE")
        out[key.strip()] = None if raw.strip().lower() in ("null", "none") else _number_or_text(raw.strip())
    return out


def _number_or_text(raw: str) -> Any:
    try:
        return float(raw) if "." in raw or "e" in raw.lower() else int(raw)
    except ValueError:
        return raw


@models_app.command("promote")
def models_promote(
    name: str,
    version: Annotated[str, typer.Option(help="Version to promote.")],
    to: Annotated[str, typer.Option(help="staging (policy gate) or production (needs approval).")] = "production",
    override: Annotated[list[str], typer.Option(help="Policy threshold for this request, KEY=VALUE.")] = [],  # noqa: B006
    actor: Actor = "",
    reason: str = "",
) -> None:
    """Run the policy gate (to staging, with optional request overrides) or promote to production."""
    with _governed() as lifecycle:
        actor = current_actor(actor)
        if to == "staging":
            result, state = run_gate(
                lifecycle,
                name,
                version,
                actor=actor,
                spec=load_model_specs().get(name),
                catalog=load_catalog(),
                promotion_policy=load_promotion_policy(),
                drift_policy=load_drift_policy_file(),
                request=_overrides(override),
            )
            for check in result.checks:
                mark = "[green]pass[/green]" if check.passed else "[red]FAIL[/red]"
                console.print(f"  {mark} {check.name}: observed {check.observed}, threshold {check.threshold}")
            console.print(f"{name} v{version} is now {state}")
            if not result.passed:
                raise typer.Exit(1)
        elif to == "production":
            previous = lifecycle.promote_to_production(name, version, actor=actor, reason=reason or "promoted via CLI")
            console.print(
                f"{name} v{version} is in PRODUCTION" + (f"; v{previous} stepped back to STAGING" if previous else "")
            )
        else:
            raise typer.BadParameter("--to must be staging or production")


@models_app.command("approve")
def models_approve(name: str, version: Annotated[str, typer.Option()], comment: str = "", actor: Actor = "") -> None:
    """Approve a STAGING version for production (the approver must not be its trainer)."""
    with _governed() as lifecycle:
        actor = current_actor(actor)
        lifecycle.approve(name, version, approver=actor, comment=comment)
    console.print(f"{actor} approved {name} v{version}")


@models_app.command("rollback")
def models_rollback(name: str, actor: Actor = "", reason: str = "") -> None:
    """Restore the previous production version."""
    with _governed() as lifecycle:
        restored = lifecycle.rollback(name, actor=current_actor(actor), reason=reason or "rollback via CLI")
    console.print(f"{name}: v{restored} is in PRODUCTION again")


@models_app.command("resync")
def models_resync(
    name: str, reason: Annotated[str, typer.Option(help="Required: why (incident, ticket).")], actor: Actor = ""
) -> None:
    """Put MLflow's state tags, recorded hashes and aliases back to what the verified audit log says (audited).
    Refused when the audit log itself fails verification."""
    with _governed() as lifecycle:
        changed = lifecycle.resync(name, actor=current_actor(actor), reason=reason)
    console.print(f"{name}: " + (escape("; ".join(changed)) if changed else "MLflow already agreed with the log"))


@models_app.command("retire")
def models_retire(name: str, version: Annotated[str, typer.Option()], actor: Actor = "", reason: str = "") -> None:
    """PRODUCTION -> RETIRED; artifacts are kept."""
    with _governed() as lifecycle:
        lifecycle.retire(name, version, actor=current_actor(actor), reason=reason or "retired via CLI")
    console.print(f"{name} v{version} retired (artifacts kept)")


@experiments_app.command("show")
def experiments_show(name: str) -> None:
    """The runs of an experiment, newest first, with status and headline metrics."""
    client = _tracking(Settings.from_env()).client()
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        console.print(f"[red]no experiment {name!r}[/red]")
        raise typer.Exit(1)
    table = Table("run", "status", "started", "dagster run", "dataset", "metrics")
    for run in client.search_runs([experiment.experiment_id], order_by=["attributes.start_time DESC"]):
        metrics = {k: round(v, 4) for k, v in sorted(run.data.metrics.items())[:6]}
        table.add_row(
            run.info.run_id[:12],
            run.info.status,
            str(run.info.start_time),
            run.data.tags.get("dagster_run_id", "")[:8],
            run.data.tags.get("dataset_hash", "")[:12],
            json.dumps(metrics),
        )
    console.print(table)


@datasets_app.command("list")
def datasets_list() -> None:
    """Every stored training set."""
    with warehouse.connect(Settings.from_env().warehouse_path, read_only=True) as conn:
        rows = (
            conn.execute(
                f"SELECT dataset_id, model, row_count, train_rows, validation_rows, test_rows, first_decision, "
                f"last_decision, created_at FROM {DATASET_REGISTRY} ORDER BY created_at DESC"
            ).fetchall()
            if warehouse.table_exists(conn, DATASET_REGISTRY)
            else []
        )
    table = Table("id", "model", "rows", "train", "val", "test", "first", "last", "created")
    for row in rows:
        table.add_row(*(str(v)[:19] for v in row))
    console.print(table)


@datasets_app.command("show")
def datasets_show(dataset_id: str) -> None:
    """One training set: hash, table, splits, time range, features, label, the run that built it."""
    with warehouse.connect(Settings.from_env().warehouse_path, read_only=True) as conn:
        cursor = conn.execute(f"SELECT * FROM {DATASET_REGISTRY} WHERE dataset_id = ? LIMIT 1", [dataset_id])
        row = cursor.fetchone()
        columns = [d[0] for d in cursor.description]
    if row is None:
        console.print(f"[red]no dataset {dataset_id!r}[/red]")
        raise typer.Exit(1)
    console.print_json(json.dumps(dict(zip(columns, row, strict=True)), default=str))


@deployments_app.command("create")
def deployments_create(
    model: str,
    version: Annotated[str, typer.Option()],
    environment: Annotated[str, typer.Option(help="staging or production")] = "production",
    actor: Actor = "",
) -> None:
    """Check approvals, policy, drift and rollback target; record the deployment (exit 1 if blocked)."""
    with _governed() as lifecycle:
        record = deployments.create_deployment(lifecycle, model, version, environment, actor=current_actor(actor))
    for item in json.loads(record["checklist"]):
        mark = "[green]ok[/green]" if item["passed"] else "[red]NO[/red]"
        console.print(f"  {mark} {item['name']}: {escape(item['detail'])}")
    console.print(f"deployment {record['deployment_id']}: {record['status']}")
    if record["status"] != "ready":
        raise typer.Exit(1)


@deployments_app.command("list")
def deployments_list(model: str | None = None) -> None:
    with warehouse.connect(Settings.from_env().warehouse_path, read_only=True) as conn:
        rows = deployments.list_deployments(conn, model)
    table = Table("id", "model", "version", "environment", "status", "by", "at")
    for r in rows:
        table.add_row(
            r["deployment_id"],
            r["model"],
            r["version"],
            r["environment"],
            r["status"],
            r["created_by"],
            str(r["created_at"])[:19],
        )
    console.print(table)


@deployments_app.command("show")
def deployments_show(deployment_id: str) -> None:
    with warehouse.connect(Settings.from_env().warehouse_path, read_only=True) as conn:
        rows = [r for r in deployments.list_deployments(conn) if r["deployment_id"] == deployment_id]
    if not rows:
        console.print(f"[red]no deployment {deployment_id!r}[/red]")
        raise typer.Exit(1)
    console.print_json(json.dumps({**rows[0], "checklist": json.loads(rows[0]["checklist"])}, default=str))


@reviews_app.command("list")
def reviews_list(
    status: Annotated[str | None, typer.Option(help="PENDING_REVIEW, APPROVED or REJECTED.")] = None,
) -> None:
    """Compliance reviews, newest first, with the report each one is about."""
    table = Table("model", "version", "status", "requested", "reviewer", "comment", "report")
    with _governed() as lifecycle:
        for r in lifecycle.reviews(status):
            table.add_row(
                r["model"],
                r["version"],
                r["status"],
                str(r["requested_at"])[:19],
                r["reviewer"] or "",
                escape(r["comment"] or ""),
                r["report_uri"] or "",
            )
    console.print(table)


def _decide(name: str, version: str, approve: bool, comment: str, actor: str) -> None:
    with _governed() as lifecycle:
        status = lifecycle.decide_review(name, version, approve=approve, reviewer=current_actor(actor), comment=comment)
    console.print(f"{name} v{version}: compliance review {status}")


@reviews_app.command("approve")
def reviews_approve(
    name: str,
    version: Annotated[str, typer.Option()],
    comment: Annotated[str, typer.Option(help="Required: what was reviewed.")],
    actor: Actor = "",
) -> None:
    """Sign off a version's compliance report (the reviewer must not be its trainer)."""
    _decide(name, version, True, comment, actor)


@reviews_app.command("reject")
def reviews_reject(
    name: str,
    version: Annotated[str, typer.Option()],
    comment: Annotated[str, typer.Option(help="Required: why.")],
    actor: Actor = "",
) -> None:
    """Reject a version's compliance report; it cannot reach PRODUCTION until a new report is approved."""
    _decide(name, version, False, comment, actor)
