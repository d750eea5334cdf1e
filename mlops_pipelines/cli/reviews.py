"""``mlops reviews``: the compliance sign-off of a version's report, before it may reach production."""

from typing import Annotated

import typer
from rich.markup import escape

from mlops_pipelines.cli.governed import Actor, ModelName, Version, governed, report_url, tracking
from mlops_pipelines.cli.output import JsonOutput, console, error_console, print_rows, utc_time
from mlops_pipelines.settings import Settings, current_actor

reviews_app = typer.Typer(
    help="Compliance sign-off: list, approve, reject.", no_args_is_help=True, rich_markup_mode="markdown"
)


@reviews_app.command("list")
def reviews_list(
    status: Annotated[
        str | None, typer.Option(metavar="STATUS", help="Only PENDING_REVIEW, APPROVED or REJECTED reviews.")
    ] = None,
    as_json: JsonOutput = False,
) -> None:
    """Compliance reviews, newest first, with the report each one is about (a link to it in the MLflow UI, and
    its artifact URI)."""
    settings = Settings.from_env()
    with governed() as lifecycle:
        rows = [
            {
                "model": r["model"],
                "version": r["version"],
                "status": r["status"],
                "requested_at": utc_time(r["requested_at"]),
                "reviewer": r["reviewer"],
                "decided_at": utc_time(r["decided_at"]),
                "comment": r["comment"],
                "report": report_url(lifecycle, settings, r["model"], r["version"]),
                "report_uri": r["report_uri"],
            }
            for r in lifecycle.reviews(status)
        ]
    columns = ["model", "version", "status", "requested_at", "reviewer", "comment", "report"]
    print_rows(rows, columns, as_json=as_json)


def _decide(name: str, version: str, approve: bool, comment: str, actor: str) -> None:
    """Record the decision, then show it in the report stored in MLflow. The audit log is the record: when the
    report cannot be updated, the decision stands and a warning says why the report lags."""
    from mlops_pipelines.lib.governance import compliance

    with governed() as lifecycle:
        status, lagging = compliance.decide_review(
            lifecycle,
            tracking(Settings.from_env()),
            name,
            version,
            approve=approve,
            reviewer=current_actor(actor),
            comment=comment,
        )
    console.print(f"{name} v{version}: compliance review {status}")
    if lagging:
        error_console.print(f"[yellow]warning:[/yellow] {escape(lagging)}")


@reviews_app.command("approve")
def reviews_approve(
    name: ModelName,
    version: Version,
    comment: Annotated[str, typer.Option(metavar="TEXT", help="Required: what was reviewed.")],
    actor: Actor = "",
) -> None:
    """Sign off a version's compliance report (the reviewer must be neither its trainer nor its approver). The
    report in MLflow then shows who signed it off, when, and the comment."""
    _decide(name, version, True, comment, actor)


@reviews_app.command("reject")
def reviews_reject(
    name: ModelName,
    version: Version,
    comment: Annotated[str, typer.Option(metavar="TEXT", help="Required: why.")],
    actor: Actor = "",
) -> None:
    """Reject a version's compliance report; it cannot reach PRODUCTION until a new report is approved."""
    _decide(name, version, False, comment, actor)
