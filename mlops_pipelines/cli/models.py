"""``mlops models`` and ``mlops experiments``: the governed model lifecycle and its MLflow runs."""

from typing import Annotated, Any

import typer
from rich.markup import escape

from mlops_pipelines.cli.governed import (
    Actor,
    ModelName,
    Reason,
    Version,
    governed,
    require_model,
    require_version,
    tracking,
)
from mlops_pipelines.cli.output import (
    EXIT_REFUSED,
    JsonOutput,
    cell,
    console,
    error_console,
    print_json,
    print_rows,
    utc_time,
)
from mlops_pipelines.settings import Settings, current_actor

models_app = typer.Typer(
    help="Registered models: list, show, history, promote, approve, rollback, retire, resync.",
    no_args_is_help=True,
    rich_markup_mode="markdown",
)
experiments_app = typer.Typer(
    help="MLflow experiments (one per model).", no_args_is_help=True, rich_markup_mode="markdown"
)

HEADLINE_METRICS = ("sharpe", "hit_rate", "test_auc", "rmse_ratio", "test_rmse")


def _states(states: dict[str, str]) -> str:
    return escape(", ".join(f"v{v}:{s}" for v, s in states.items()))


def _governance(value: str) -> str:
    return "ok" if value == "ok" else f"[red]{escape(value)}[/red]"


@models_app.command("list")
def models_list(as_json: JsonOutput = False) -> None:
    """Every model the audit log or MLflow knows, with its versions' states and aliases (from the verified audit
    log) and whether its governance record holds. Exit 1 when one does not (a version inconsistent with the log
    is refused for serving)."""
    rows = []
    with governed() as lifecycle:
        for name in lifecycle.models():
            record, problems = lifecycle.verify(name)
            rows.append(
                {
                    "model": name,
                    "versions": len(record.versions),
                    "production": record.aliases.get("production"),
                    "staging": record.aliases.get("staging"),
                    "states": {v: r.state for v, r in sorted(record.versions.items(), key=lambda i: int(i[0]))},
                    "governance": f"INCONSISTENT ({len(problems)})" if problems else "ok",
                    "problems": problems,
                }
            )
    columns = ["model", "versions", "production", "staging", "states", "governance"]
    formats = {"states": _states, "governance": _governance}
    print_rows(rows, columns, as_json=as_json, formats=formats)
    broken = [row for row in rows if row["problems"]]
    if not as_json:
        for row in broken:
            console.print(f"[red]{escape(row['model'])}:[/red] " + escape("; ".join(row["problems"])))
    if broken:
        raise typer.Exit(EXIT_REFUSED)


@models_app.command("show")
def models_show(
    name: ModelName,
    version: Annotated[
        str | None, typer.Option(metavar="VERSION", help="One version in detail: tags, approvals, lineage.")
    ] = None,
    as_json: JsonOutput = False,
) -> None:
    """Versions, states, metrics; with --version: tags, manifest, lineage to dataset and feature views, the
    version's audit history, approvals, compliance review and deployments (what the API's version detail gives).
    An unknown model or version is an error (exit 2) naming what exists."""
    from mlops_pipelines.lib.governance.model_detail import version_aliases, version_detail

    with governed() as lifecycle:
        if version is None:
            require_model(lifecycle, name)
        else:
            require_version(lifecycle, name, version)
        problems = lifecycle.consistency_problems(name)
        if problems:
            message = f"{name} is INCONSISTENT (refused for serving): " + "; ".join(problems)
            error_console.print(f"[red]{escape(message)}[/red]")
        if version is None:
            aliases = version_aliases(lifecycle, name)
            rows = [_version_row(lifecycle, mv, aliases) for mv in lifecycle.versions(name)]
            columns = ["version", "state", "aliases", "metrics", "dataset_id", "trained_by", "created"]
            print_rows(rows, columns, as_json=as_json)
            return
        detail = version_detail(lifecycle, tracking(Settings.from_env()), name, version)
    if not as_json:
        console.print(
            f"[bold]{escape(name)} v{escape(version)}[/bold]  state {escape(str(detail['state']))}  "
            f"aliases {escape(detail['aliases'] or '-')}"
        )
    print_json(detail)


def _version_row(lifecycle: Any, mv: Any, aliases: dict[str, str]) -> dict[str, Any]:
    metrics = lifecycle.client.get_run(mv.run_id).data.metrics if mv.run_id else {}
    return {
        "version": str(mv.version),
        "state": mv.tags.get("lifecycle_state"),
        "aliases": aliases.get(str(mv.version), ""),
        "metrics": {k: round(v, 4) for k, v in metrics.items() if k in HEADLINE_METRICS},
        "dataset_id": mv.tags.get("dataset_hash", "")[:12],  # the id `mlops datasets show` takes
        "trained_by": mv.tags.get("trained_by", ""),
        "created": utc_time(mv.creation_timestamp),
    }


def _verified(value: Any) -> str:
    return "yes" if value is True else f"[red]NO: {escape(str(value))}[/red]"


@models_app.command("history")
def models_history(name: ModelName, as_json: JsonOutput = False) -> None:
    """The audit log of a model: every transition, approval, review, rejection and override, oldest first.
    An unknown model is an error (exit 2) naming the known ones."""
    from mlops_pipelines.lib.governance.model_detail import history_rows

    with governed() as lifecycle:
        require_model(lifecycle, name)
        rows = history_rows(lifecycle, name)
    columns = ["seq", "at", "actor", "version", "action", "from", "to", "reason", "policy_hash", "verified"]
    print_rows(rows, columns, as_json=as_json, formats={"verified": _verified})


def _overrides(values: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in values:
        key, sep, raw = item.partition("=")
        if not sep:
            raise typer.BadParameter(f"{item!r}: use KEY=VALUE", param_hint="--override")
        out[key.strip()] = None if raw.strip().lower() in ("null", "none") else _number_or_text(raw.strip())
    return out


def _number_or_text(raw: str) -> Any:
    try:
        return float(raw) if "." in raw or "e" in raw.lower() else int(raw)
    except ValueError:
        return raw


@models_app.command("promote")
def models_promote(
    name: ModelName,
    version: Version,
    to: Annotated[
        str, typer.Option(metavar="STAGE", help="staging (runs the policy gate) or production (needs sign-offs).")
    ] = "production",
    override: Annotated[
        list[str],
        typer.Option(
            metavar="KEY=VALUE", help="A policy threshold for this request only (repeatable; null disables it)."
        ),
    ] = [],  # noqa: B006
    actor: Actor = "",
    reason: Reason = "",
) -> None:
    """Run the policy gate (to staging, with optional request overrides, which need a --reason: the audit log keeps
    the overrides, the reason and the effective thresholds) or promote to production: a compliance reviewer, an
    approver and the requester, three people none of whom trained the version."""
    from mlops_pipelines.catalog.feature_views import load_catalog
    from mlops_pipelines.catalog.models import load_model_specs
    from mlops_pipelines.catalog.policies import load_drift_policy_file, load_promotion_policy
    from mlops_pipelines.lib.governance.gate import request_promotion

    if to not in ("staging", "production"):
        raise typer.BadParameter("must be staging or production", param_hint="--to")
    with governed() as lifecycle:
        actor = current_actor(actor)
        outcome = request_promotion(
            lifecycle,
            name,
            version,
            to=to,
            actor=actor,
            reason=reason,
            via="the CLI",
            spec=load_model_specs().get(name),
            catalog=load_catalog(Settings.from_env().bar_clock),
            promotion_policy=load_promotion_policy(),
            drift_policy=load_drift_policy_file(),
            request=_overrides(override),
        )
        if outcome.result is not None:
            for check in outcome.result.checks:
                mark = "[green]pass[/green]" if check.passed else "[red]FAIL[/red]"
                console.print(
                    f"  {mark} {escape(f'{check.name}: observed {check.observed}, threshold {check.threshold}')}"
                )
            console.print(f"{name} v{version} is now {outcome.state}")
            if not outcome.result.passed:
                raise typer.Exit(EXIT_REFUSED)
        else:
            previous = outcome.previous_production
            console.print(
                f"{name} v{version} is in PRODUCTION" + (f"; v{previous} stepped back to STAGING" if previous else "")
            )


@models_app.command("approve")
def models_approve(
    name: ModelName,
    version: Version,
    comment: Annotated[str, typer.Option(metavar="TEXT", help="What was checked.", show_default=False)] = "",
    actor: Actor = "",
) -> None:
    """Approve a STAGING version for production (the approver must be neither its trainer nor its compliance
    reviewer)."""
    with governed() as lifecycle:
        actor = current_actor(actor)
        lifecycle.approve(name, version, approver=actor, comment=comment)
    console.print(f"{actor} approved {name} v{version}")


@models_app.command("rollback")
def models_rollback(name: ModelName, actor: Actor = "", reason: Reason = "") -> None:
    """Restore the previous production version."""
    with governed() as lifecycle:
        restored = lifecycle.rollback(name, actor=current_actor(actor), reason=reason or "rollback via CLI")
    console.print(f"{name}: v{restored} is in PRODUCTION again")


@models_app.command("resync")
def models_resync(
    name: ModelName,
    reason: Annotated[str, typer.Option(metavar="TEXT", help="Required: why (incident, ticket).")],
    actor: Actor = "",
) -> None:
    """Put MLflow's state tags, recorded hashes and aliases back to what the verified audit log says (audited).
    Refused when the audit log itself fails verification."""
    with governed() as lifecycle:
        changed = lifecycle.resync(name, actor=current_actor(actor), reason=reason)
    console.print(f"{name}: " + (escape("; ".join(changed)) if changed else "MLflow already agreed with the log"))


@models_app.command("retire")
def models_retire(name: ModelName, version: Version, actor: Actor = "", reason: Reason = "") -> None:
    """PRODUCTION -> RETIRED; artifacts are kept."""
    with governed() as lifecycle:
        lifecycle.retire(name, version, actor=current_actor(actor), reason=reason or "retired via CLI")
    console.print(f"{name} v{version} retired (artifacts kept)")


def _headline(metrics: dict[str, Any]) -> str:
    return cell({k: round(v, 4) for k, v in list(metrics.items())[:6] if v is not None})


@experiments_app.command("show")
def experiments_show(
    name: Annotated[str, typer.Argument(metavar="EXPERIMENT", help="Experiment name (the model's name).")],
    as_json: JsonOutput = False,
) -> None:
    """The runs of an experiment, newest first, with status and their first metrics; with --json every run whole
    (metrics, params, tags, its link in the MLflow UI), as the API gives it."""
    from mlops_pipelines.lib.training.experiments import experiment_detail

    settings = Settings.from_env()
    detail = experiment_detail(tracking(settings).client(), settings.mlflow_ui_url, name)
    columns = ["run_id", "status", "started", "dagster_run_id", "dataset_id", "metrics"]
    print_rows(detail["runs"], columns, as_json=as_json, formats={"metrics": _headline})
