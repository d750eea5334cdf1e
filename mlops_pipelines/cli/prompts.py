"""``mlops prompts``: the prompt library (catalog/prompts/), its lock, and the governed lifecycle of its versions in
MLflow's prompt registry (the models' lifecycle and audit log; see docs/prompts.md)."""

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape

from mlops_pipelines.cli.governed import Actor, Reason, governed
from mlops_pipelines.cli.output import (
    EXIT_REFUSED,
    EXIT_USER_ERROR,
    JsonOutput,
    console,
    error_console,
    print_json,
    print_rows,
    utc_time,
)
from mlops_pipelines.lib.core.errors import NotFound
from mlops_pipelines.settings import Settings, current_actor

if TYPE_CHECKING:
    from mlops_pipelines.lib.prompts.library import Prompt
    from mlops_pipelines.lib.prompts.lifecycle import PromptLifecycle

prompts_app = typer.Typer(
    help="The prompt library: list, show, history, render, register, evaluate, promote, approve, rollback, retire,"
    " lock, diff.",
    no_args_is_help=True,
    rich_markup_mode="markdown",
)
PromptName = Annotated[
    str, typer.Argument(metavar="PROMPT", help="Prompt name, e.g. market_summary.", show_default=False)
]
PromptVersionOption = Annotated[
    str, typer.Option(metavar="VERSION", help="Prompt version number (`mlops prompts show PROMPT` lists them).")
]


def _library(directory: Path | None = None) -> dict[str, "Prompt"]:
    from mlops_pipelines.catalog.prompt_library import PROMPTS_DIR, load_prompts

    return load_prompts(directory or PROMPTS_DIR)


Library = Annotated[
    Path | None, typer.Option(metavar="DIR", help="The prompt folder (default: mlops_pipelines/catalog/prompts).")
]


def _kind() -> "type[PromptLifecycle]":
    from mlops_pipelines.lib.prompts.lifecycle import PromptLifecycle

    return PromptLifecycle


def _require(lifecycle: "PromptLifecycle", name: str, version: str | None = None) -> None:
    known = lifecycle.models()
    if name not in known:
        raise NotFound(f"no registered prompt {name!r}; registered: {', '.join(known) or 'none yet'}")
    if version is not None:
        versions = set(lifecycle.record(name).versions) | {str(v.version) for v in lifecycle.versions(name)}
        if version not in versions:
            listed = ", ".join(sorted(versions, key=int)) or "none"
            raise NotFound(f"prompt {name} has no version {version!r}; its versions: {listed}")


@prompts_app.command("list")
def prompts_list(as_json: JsonOutput = False) -> None:
    """Every prompt of the library or the registry: the catalog's version, the registered versions' states and
    aliases (from the verified audit log), and whether its governance record holds (exit 1 when one does not)."""
    library = _library()
    rows = []
    with governed(_kind()) as lifecycle:
        for name in sorted(set(library) | set(lifecycle.models())):
            record, problems = lifecycle.verify(name)
            rows.append(
                {
                    "prompt": name,
                    "catalog_version": library[name].version if name in library else None,
                    "owner": library[name].owner if name in library else None,
                    "risk_tier": library[name].risk_tier if name in library else None,
                    "production": record.aliases.get("production"),
                    "staging": record.aliases.get("staging"),
                    "states": {v: r.state for v, r in sorted(record.versions.items(), key=lambda i: int(i[0]))},
                    "governance": f"INCONSISTENT ({len(problems)})" if problems else "ok",
                    "problems": problems,
                }
            )
    columns = ["prompt", "catalog_version", "owner", "risk_tier", "production", "staging", "states", "governance"]
    print_rows(rows, columns, as_json=as_json)
    broken = [row for row in rows if row["problems"]]
    if not as_json:
        for row in broken:
            console.print(f"[red]{escape(row['prompt'])}:[/red] " + escape("; ".join(row["problems"])))
    if broken:
        raise typer.Exit(EXIT_REFUSED)


@prompts_app.command("show")
def prompts_show(
    name: PromptName,
    version: Annotated[str | None, typer.Option(metavar="VERSION", help="One version in detail.")] = None,
    as_json: JsonOutput = False,
) -> None:
    """The registered versions of a prompt (state, aliases, author, latest evaluation); with --version: its
    template, settings, metadata, evaluations and approvals."""
    from mlops_pipelines.lib.prompts.evaluation_results import evaluations, latest_evaluation

    with governed(_kind()) as lifecycle:
        _require(lifecycle, name, version)
        record = lifecycle.record(name)
        aliases: dict[str, list[str]] = {}
        for alias, holder in record.aliases.items():
            aliases.setdefault(holder, []).append(alias)
        problems = lifecycle.consistency_problems(name)
        if problems:
            error_console.print(f"[red]{escape(name)} is INCONSISTENT:[/red] " + escape("; ".join(problems)))
        if version is None:
            rows = []
            for pv in lifecycle.versions(name):
                found = latest_evaluation(lifecycle.conn, name, str(pv.version))
                rows.append(
                    {
                        "version": str(pv.version),
                        "state": record.versions[str(pv.version)].state if str(pv.version) in record.versions else None,
                        "aliases": ",".join(aliases.get(str(pv.version), [])),
                        "author": pv.tags.get("authored_by"),
                        "evaluation": None if found is None else ("passed" if found.passed else "FAILED"),
                        "created": utc_time(pv.creation_timestamp),
                    }
                )
            print_rows(rows, ["version", "state", "aliases", "author", "evaluation", "created"], as_json=as_json)
            return
        prompt = lifecycle.prompt(name, version)
        detail = {
            "prompt": name,
            "version": version,
            "state": lifecycle.state(name, version),
            "aliases": aliases.get(version, []),
            "author": lifecycle.record(name).versions[version].trainer,
            "spec": prompt.model_dump(mode="json"),
            "content_sha256": prompt.content_hash(),
            "approvals": lifecycle.approvals(name, version),
            "evaluations": [e.__dict__ for e in evaluations(lifecycle.conn, name, version)],
            "governance_problems": problems,
        }
    if not as_json:
        console.print(f"[bold]{escape(name)} v{escape(version)}[/bold]  state {escape(str(detail['state']))}")
    print_json(detail)


@prompts_app.command("history")
def prompts_history(name: PromptName, as_json: JsonOutput = False) -> None:
    """The audit log of a prompt: every registration, evaluation verdict, approval, promotion, rollback and
    retirement, oldest first, each row verified against the hash chain."""
    from mlops_pipelines.lib.governance.model_detail import history_rows

    with governed(_kind()) as lifecycle:
        _require(lifecycle, name)
        rows = history_rows(lifecycle, name)
    columns = ["seq", "at", "actor", "version", "action", "from", "to", "reason", "verified"]
    print_rows(rows, columns, as_json=as_json)


def _variables(values: list[str], file: Path | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if file is not None:
        try:
            loaded = json.loads(file.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise typer.BadParameter(f"{file}: {exc}", param_hint="--vars-file") from exc
        if not isinstance(loaded, dict):
            raise typer.BadParameter(f"{file}: expected a JSON object of variables", param_hint="--vars-file")
        out.update(loaded)
    for item in values:
        key, sep, value = item.partition("=")
        if not sep:
            raise typer.BadParameter(f"{item!r}: use NAME=VALUE", param_hint="--var")
        out[key.strip()] = value
    return out


@prompts_app.command("render")
def prompts_render(
    name: PromptName,
    var: Annotated[list[str], typer.Option(metavar="NAME=VALUE", help="A variable (repeatable).")] = [],  # noqa: B006
    vars_file: Annotated[
        Path | None, typer.Option(metavar="FILE", help="A JSON object of variables (multi-line values).")
    ] = None,
    version: Annotated[
        str | None, typer.Option(metavar="VERSION", help="A registered version (default: the catalog's file).")
    ] = None,
) -> None:
    """The prompt with its variables filled in, as the model would receive it. Every declared variable is
    required and no other is accepted (exit 2 naming it)."""
    from mlops_pipelines.lib.prompts.library import render

    variables = _variables(var, vars_file)
    if version is None:
        library = _library()
        if name not in library:
            raise NotFound(f"no prompt {name!r} in the library; known: {', '.join(library)}")
        prompt = library[name]
    else:
        with governed(_kind()) as lifecycle:
            _require(lifecycle, name, version)
            prompt = lifecycle.prompt(name, version)
    typer.echo(render(prompt, variables))


@prompts_app.command("register")
def prompts_register(
    name: Annotated[str | None, typer.Argument(metavar="[PROMPT]", help="One prompt (default: all).")] = None,
    actor: Actor = "",
) -> None:
    """Register the library's current versions in MLflow's prompt registry (DRAFT), as the registration assets
    do; a version already registered with the same content is left alone, one with other content is refused."""
    library = _library()
    if name is not None and name not in library:
        raise NotFound(f"no prompt {name!r} in the library; known: {', '.join(library)}")
    with governed(_kind()) as lifecycle:
        actor = current_actor(actor)
        for prompt in [library[name]] if name else library.values():
            version, created = lifecycle.register_version(prompt, actor=actor, reason="registered from the catalog")
            console.print(f"{prompt.name} v{version}: " + ("registered (DRAFT)" if created else "already registered"))


@prompts_app.command("evaluate")
def prompts_evaluate(name: PromptName, version: PromptVersionOption, as_json: JsonOutput = False) -> None:
    """Evaluate a registered version as the asset prompts/<name>_evaluation does: its answers to the evaluation set
    (recorded, or the provider of MLOPS_PROMPT_RESPONSES=http) scored and judged against catalog/prompt_policy.yaml.
    The verdict is recorded (what `promote --to staging` judges on); exit 1 when it failed."""
    from mlops_pipelines.catalog.feature_views import load_catalog
    from mlops_pipelines.catalog.prompt_evaluation import load_prompt_cases, load_prompt_policy_file
    from mlops_pipelines.cli.governed import tracking
    from mlops_pipelines.lib.prompts.evaluation_run import run_evaluation

    settings = Settings.from_env()
    with governed(_kind()) as lifecycle:
        _require(lifecycle, name, version)
        run = run_evaluation(
            lifecycle.prompt(name, version),
            load_prompt_cases(name),
            settings.response_source(),
            load_prompt_policy_file(),
            conn=lifecycle.conn,
            views=list(load_catalog(settings.bar_clock).views.values()),
            tracking=tracking(settings),
        )
    evaluation = run.evaluation
    if as_json:
        print_json({**evaluation.__dict__, "evaluated_at": utc_time(evaluation.evaluated_at)})
    else:
        verdict = "[green]passed[/green]" if evaluation.passed else "[red]FAILED[/red]"
        console.print(f"{name} v{version}: {verdict} ({evaluation.source})")
        print_rows(
            [{"scorer": k, "score": round(v, 4)} for k, v in evaluation.scores.items()],
            ["scorer", "score"],
            as_json=False,
        )
        for failure in evaluation.failures:
            console.print(f"  - {escape(failure)}")
    if not evaluation.passed:
        raise typer.Exit(EXIT_REFUSED)


@prompts_app.command("promote")
def prompts_promote(
    name: PromptName,
    version: PromptVersionOption,
    to: Annotated[
        str,
        typer.Option(metavar="STAGE", help="staging (judged on its latest evaluation) or production (four eyes)."),
    ] = "staging",
    override_reason: Annotated[
        str,
        typer.Option(
            metavar="TEXT",
            help="Stage a version whose latest evaluation failed anyway, and why (audited; you cannot approve it).",
            show_default=False,
        ),
    ] = "",
    actor: Actor = "",
    reason: Reason = "",
) -> None:
    """To staging: a version whose latest evaluation passed goes to STAGING; a failed or missing evaluation keeps
    it where it is (exit 1). To production: needs an approval by someone other than its author and you."""
    from mlops_pipelines.lib.prompts.lifecycle import request_promotion

    if to not in ("staging", "production"):
        raise typer.BadParameter("must be staging or production", param_hint="--to")
    with governed(_kind()) as lifecycle:
        _require(lifecycle, name, version)
        state = request_promotion(
            lifecycle,
            name,
            version,
            to=to,
            actor=current_actor(actor),
            reason=reason,
            via="the CLI",
            override_reason=override_reason,
        )
        last = lifecycle.history(name)[-1]
    console.print(f"{name} v{version} is now {state}")
    if to == "staging" and state != "STAGING":
        error_console.print(f"[red]refused:[/red] {escape(str(last['reason']))}")
        raise typer.Exit(EXIT_REFUSED)


@prompts_app.command("approve")
def prompts_approve(
    name: PromptName,
    version: PromptVersionOption,
    comment: Annotated[str, typer.Option(metavar="TEXT", help="What was checked.", show_default=False)] = "",
    actor: Actor = "",
) -> None:
    """Approve a STAGING version for production (not by its author, nor by whoever overrode its evaluation)."""
    with governed(_kind()) as lifecycle:
        actor = current_actor(actor)
        _require(lifecycle, name, version)
        lifecycle.approve(name, version, approver=actor, comment=comment)
    console.print(f"{actor} approved {name} v{version}")


@prompts_app.command("rollback")
def prompts_rollback(name: PromptName, actor: Actor = "", reason: Reason = "") -> None:
    """Restore the previous production version (the current one steps back to STAGING)."""
    with governed(_kind()) as lifecycle:
        _require(lifecycle, name)
        restored = lifecycle.rollback(name, actor=current_actor(actor), reason=reason or "rollback via CLI")
    console.print(f"{name}: v{restored} is in PRODUCTION again")


@prompts_app.command("retire")
def prompts_retire(name: PromptName, version: PromptVersionOption, actor: Actor = "", reason: Reason = "") -> None:
    """PRODUCTION -> RETIRED; the version stays in the registry."""
    with governed(_kind()) as lifecycle:
        _require(lifecycle, name, version)
        lifecycle.retire(name, version, actor=current_actor(actor), reason=reason or "retired via CLI")
    console.print(f"{name} v{version} retired (kept in the registry)")


def _lock_path() -> Path:
    from mlops_pipelines.catalog.prompt_library import PROMPT_LOCK_PATH

    return PROMPT_LOCK_PATH


@prompts_app.command("lock")
def prompts_lock(
    path: Annotated[Path | None, typer.Option(metavar="FILE", help="Lock file to write.")] = None,
    library: Library = None,
) -> None:
    """Write the lock file that ``diff`` compares against (commit it with the change)."""
    from mlops_pipelines.lib.prompts.library import lock

    path = path or _lock_path()
    path.write_text(json.dumps(lock(_library(library)), indent=2, sort_keys=True) + "\n")
    console.print(f"wrote {escape(str(path))}")


@prompts_app.command("diff")
def prompts_diff(
    path: Annotated[Path | None, typer.Option(metavar="FILE", help="Committed lock file.")] = None,
    library: Library = None,
) -> None:
    """Compare the library with the lock file; exit 1 when a template, its variables, model settings or output
    changed without a version bump (naming what changed). Metadata edits pass."""
    from mlops_pipelines.lib.prompts.library import diff_lock, lock

    path = path or _lock_path()
    if not path.exists():
        console.print(f"[red]{escape(str(path))} does not exist[/red]: run `mlops prompts lock` and commit it")
        raise typer.Exit(EXIT_USER_ERROR)
    changes = diff_lock(json.loads(path.read_text()), lock(_library(library)))
    for change in changes:
        if change.kind != "unchanged":
            style = "red" if change.breaking else "green"
            console.print(f"[{style}]{escape(change.describe())}[/{style}]")
    breaking = [c for c in changes if c.breaking]
    if breaking:
        console.print(f"[red]{len(breaking)} breaking change(s)[/red]: bump the version of the prompt(s) named above")
        raise typer.Exit(EXIT_REFUSED)
    if all(c.kind == "unchanged" for c in changes):
        console.print("prompt library matches the lock")
    else:
        console.print("no breaking change; run `mlops prompts lock` to record the new state")
