"""``mlops tokens`` and ``mlops serve``: the serving API's bearer tokens, and the API itself."""

from pathlib import Path
from typing import Annotated

import typer

from mlops_pipelines.cli.output import JsonOutput, console, print_rows, utc_time
from mlops_pipelines.settings import Settings

tokens_app = typer.Typer(
    help="Bearer tokens of the serving API: create (shown once), list, revoke.",
    no_args_is_help=True,
    rich_markup_mode="markdown",
)


@tokens_app.command("create")
def tokens_create(
    actor: Annotated[str, typer.Option(metavar="NAME", help="Who the token identifies (the four-eyes identity).")],
    role: Annotated[str, typer.Option(metavar="ROLE", help="viewer, operator, reviewer or approver.")],
) -> None:
    """Create a token; it is printed once and stored only as a hash (MLOPS_SERVE_TOKENS_FILE)."""
    from mlops_pipelines.lib.governance import tokens

    if role not in tokens.ROLES:
        raise typer.BadParameter(f"must be one of {', '.join(tokens.ROLES)}", param_hint="--role")
    info, token = tokens.create(Settings.from_env().serve_tokens_file, actor=actor, role=role)
    console.print(f"token {info.token_id} for {info.actor} ({info.role}); shown once, store it now:")
    print(token)


@tokens_app.command("list")
def tokens_list(as_json: JsonOutput = False) -> None:
    """Every token, active or revoked (never the secrets)."""
    from mlops_pipelines.lib.governance import tokens

    rows = [
        {
            "token_id": t.token_id,
            "actor": t.actor,
            "role": t.role,
            "created_at": utc_time(t.created_at),
            "revoked_at": utc_time(t.revoked_at) if t.revoked_at else None,
        }
        for t in tokens.list_tokens(Settings.from_env().serve_tokens_file)
    ]
    print_rows(rows, ["token_id", "actor", "role", "created_at", "revoked_at"], as_json=as_json)


@tokens_app.command("revoke")
def tokens_revoke(
    token_id: Annotated[str, typer.Argument(metavar="TOKEN_ID", help="As `mlops tokens list` shows it.")],
) -> None:
    """Revoke a token at once: every later request with it gets 401."""
    from mlops_pipelines.lib.governance import tokens

    info = tokens.revoke(Settings.from_env().serve_tokens_file, token_id)
    console.print(f"token {info.token_id} of {info.actor} revoked at {utc_time(info.revoked_at)}")


def serve(
    reference: Annotated[
        Path | None, typer.Option(metavar="FILE", help="Write the API reference page (markdown) there and exit.")
    ] = None,
) -> None:
    """Start the serving API on MLOPS_SERVE_HOST:MLOPS_SERVE_PORT (default 127.0.0.1:8000); docs at /docs."""
    from mlops_pipelines.serving.app import create_app, run

    settings = Settings.from_env()
    if reference is not None:
        from mlops_pipelines.serving.reference import render

        reference.write_text(render(create_app(settings)))
        console.print(f"wrote {reference}")
        return
    console.print(f"serving on http://{settings.serve_host}:{settings.serve_port} (OpenAPI: /docs)")
    run(settings)
