"""``mlops governance``: audit-ready documentation of the governance record."""

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from mlops_pipelines.cli.governed import tracking
from mlops_pipelines.cli.output import EXIT_REFUSED, JsonOutput, console, print_json
from mlops_pipelines.settings import Settings

governance_app = typer.Typer(
    help="Audit-ready documentation: the audit pack of a period.", no_args_is_help=True, rich_markup_mode="markdown"
)

When = Annotated[
    str | None,
    typer.Option(
        metavar="TIME",
        help="ISO 8601 date or time, UTC unless it carries an offset (`2026-01-01`, `2026-01-01T09:30:00Z`).",
        show_default=False,
    ),
]


@governance_app.command("audit-pack")
def audit_pack(
    out: Annotated[Path, typer.Option("--out", metavar="DIR", help="New (or empty) folder to write the pack into.")],
    since: When = None,
    until: When = None,
    as_json: JsonOutput = False,
) -> None:
    """Collect, for the period [--since, --until): the model versions promoted or retired with their model cards
    and compliance reports, the policies in force with their history, the audit log with its hash-chain
    verification, deployments with their checklists and the drift alerts raised, into one folder whose
    `index.html` opens without any of our tools. Exit 1 when the audit log fails verification (the pack is
    written and says FAILED, with every problem)."""
    from mlops_pipelines.catalog.governance import AUDIT_PACK_SECTIONS, POLICY_SOURCES
    from mlops_pipelines.lib.core.alerts import JSONL_FILE
    from mlops_pipelines.lib.governance.audit_pack import OK, Period, build_audit_pack, parse_bound
    from mlops_pipelines.lib.governance.lifecycle import open_lifecycle

    period = Period(since=parse_bound("--since", since), until=parse_bound("--until", until))
    settings = Settings.from_env()
    client = tracking(settings)
    with open_lifecycle(client.client(), settings.warehouse_path, settings.audit_key_file, read_only=True) as lifecycle:
        result = build_audit_pack(
            out,
            lifecycle=lifecycle,
            tracking=client,
            period=period,
            policies=POLICY_SOURCES,
            alerts_file=settings.data_dir / "alerts" / JSONL_FILE,  # the directory defs/resources.py gives alerts
            sections=AUDIT_PACK_SECTIONS,
        )
    summary = {
        "path": str(result.path),
        "index": str(result.path / "index.html"),
        "period": period.describe(),
        "audit_log": result.verification,
        "problems": result.problems,
        "versions": result.versions,
        "deployments": result.deployments,
        "drift_alerts": result.alerts,
        "files": result.files,
    }
    if as_json:
        print_json(summary)
    else:
        mark = "[green]OK[/green]" if result.verification == OK else "[red]FAILED[/red]"
        console.print(f"audit pack of {escape(period.describe())}: {escape(str(result.path / 'index.html'))}")
        console.print(
            f"  audit log verification {mark}; {result.versions} versions promoted or retired, "
            f"{result.deployments} deployments, {result.alerts} drift alerts and verdicts, {result.files} files"
        )
        for problem in result.problems:
            console.print(f"  [red]problem:[/red] {escape(problem)}")
    if result.verification != OK:
        raise typer.Exit(EXIT_REFUSED)
