"""``mlops deployments``: bind a model version to an environment, after a checklist."""

import json
from typing import Annotated

import typer
from rich.markup import escape

from mlops_pipelines.cli.governed import Actor, ModelName, Reason, Version, governed, tracking
from mlops_pipelines.cli.output import EXIT_REFUSED, JsonOutput, console, print_json, print_rows, utc_time
from mlops_pipelines.lib.core.errors import NotFound
from mlops_pipelines.settings import Settings, current_actor

deployments_app = typer.Typer(
    help="Bind a model version to an environment, after a checklist.", no_args_is_help=True, rich_markup_mode="markdown"
)


@deployments_app.command("create")
def deployments_create(
    model: ModelName,
    version: Version,
    environment: Annotated[str, typer.Option(metavar="ENV", help="staging or production.")] = "production",
    actor: Actor = "",
) -> None:
    """Check approvals, policy, drift and rollback target; record the deployment (exit 1 if blocked)."""
    from mlops_pipelines.lib.governance import deployments

    with governed() as lifecycle:
        record = deployments.create_deployment(lifecycle, model, version, environment, actor=current_actor(actor))
    for item in json.loads(record["checklist"]):
        mark = "[green]ok[/green]" if item["passed"] else "[red]NO[/red]"
        console.print(f"  {mark} {escape(item['name'])}: {escape(item['detail'])}")
    console.print(f"deployment {record['deployment_id']}: {record['status']}")
    if record["status"] != "ready":
        raise typer.Exit(EXIT_REFUSED)


@deployments_app.command("list")
def deployments_list(
    model: Annotated[str | None, typer.Option(metavar="MODEL", help="Only this model's deployments.")] = None,
    as_json: JsonOutput = False,
) -> None:
    """Every recorded deployment, newest first."""
    from mlops_pipelines.lib.core import warehouse
    from mlops_pipelines.lib.governance import deployments

    with warehouse.connect(Settings.from_env().warehouse_path, read_only=True) as conn:
        found = deployments.list_deployments(conn, model)
    rows = [
        {
            "deployment_id": r["deployment_id"],
            "model": r["model"],
            "version": r["version"],
            "environment": r["environment"],
            "status": r["status"],
            "created_by": r["created_by"],
            "created_at": utc_time(r["created_at"]),
        }
        for r in found
    ]
    columns = ["deployment_id", "model", "version", "environment", "status", "created_by", "created_at"]
    print_rows(rows, columns, as_json=as_json)


@deployments_app.command("show")
def deployments_show(
    deployment_id: Annotated[str, typer.Argument(metavar="DEPLOYMENT_ID", help="As `deployments list` shows it.")],
) -> None:
    """One deployment with its checklist and its traffic (shadow, canary share; ``active``: serving follows it), as
    JSON."""
    from mlops_pipelines.lib.governance import deployments
    from mlops_pipelines.lib.governance.lifecycle import open_lifecycle

    settings = Settings.from_env()
    client = tracking(settings).client()
    with open_lifecycle(client, settings.warehouse_path, settings.audit_key_file, read_only=True) as lifecycle:
        found = deployments.deployment_record(lifecycle.conn, deployment_id)
        if found is None:
            raise NotFound(f"no deployment {deployment_id!r}; `mlops deployments list` shows the recorded ones")
        (found,) = deployments.with_traffic(lifecycle, [found])
    print_json({**found, "checklist": json.loads(found["checklist"]), "created_at": utc_time(found["created_at"])})


@deployments_app.command("traffic")
def deployments_traffic(
    deployment_id: Annotated[str, typer.Argument(metavar="DEPLOYMENT_ID", help="A ready production deployment.")],
    canary_share: Annotated[
        float | None,
        typer.Option(min=0.0, max=1.0, metavar="SHARE", help="Share of symbols (0 to 1) the challenger answers."),
    ] = None,
    shadow: Annotated[
        bool | None,
        typer.Option("--shadow/--no-shadow", help="The challenger also scores every request, off the response path."),
    ] = None,
    reason: Reason = "",
    actor: Actor = "",
) -> None:
    """Change what a production deployment shares with the challenger (what is not given stays); audited."""
    from mlops_pipelines.lib.governance import deployments

    if shadow is None and canary_share is None:
        raise typer.BadParameter("give --canary-share, --shadow/--no-shadow or both")
    with governed() as lifecycle:
        old, new = deployments.set_traffic(
            lifecycle,
            deployment_id,
            shadow=shadow,
            canary_share=canary_share,
            actor=current_actor(actor),
            reason=reason,
        )
    console.print(
        f"deployment {deployment_id}: shadow {old.shadow} -> {new.shadow}, "
        f"canary share {old.canary_share:g} -> {new.canary_share:g}"
    )
