"""The ``mlops`` command: the feature catalog, the model lifecycle, reviews, deployments and the demo.

One module per command group (``features``, ``models``, ``reviews``, ``deployments``, ``datasets``, ``tokens``
with ``serve``, ``governance``, ``demo``).
The CLI starts at once: at module level these import only typer, rich, the standard library and light project
modules (settings, errors); each command imports what it needs (DuckDB, pandas, MLflow, Dagster, LightGBM) in
its body. ``test_cli_startup.py`` holds that line.

Exit codes: 0 done; 1 refused by the platform (a governance rule, a failed check, a breaking catalog change);
2 an operator's error (bad input, a name that names nothing, a bad setting, a damaged file), one line on stderr.
"""

import sys
from typing import Any

import typer
from rich.markup import escape
from typer.core import TyperGroup

from mlops_pipelines.cli.datasets import datasets_app
from mlops_pipelines.cli.demo import demo
from mlops_pipelines.cli.deployments import deployments_app
from mlops_pipelines.cli.features import features_app
from mlops_pipelines.cli.governance import governance_app
from mlops_pipelines.cli.models import experiments_app, models_app
from mlops_pipelines.cli.output import EXIT_USER_ERROR, error_console
from mlops_pipelines.cli.prompts import prompts_app
from mlops_pipelines.cli.reviews import reviews_app
from mlops_pipelines.cli.tokens import serve, tokens_app
from mlops_pipelines.lib.core.errors import MlopsError


class _Commands(TyperGroup):
    """The root command group: maps the project's errors (``lib/core/errors.py``) to one red line on stderr and exit
    code 2, once for every command below it; any other exception is a bug and keeps its traceback."""

    def invoke(self, ctx: Any) -> Any:  # typer.Context is narrower than the base (typer's own click Context)
        try:
            return super().invoke(ctx)
        except MlopsError as exc:
            error_console.print(f"[red]error:[/red] {escape(str(exc))}")
            raise typer.Exit(EXIT_USER_ERROR) from exc


app = typer.Typer(
    cls=_Commands,
    help="mlops_pipelines: feature store, models and monitoring from the command line.",
    no_args_is_help=True,
    rich_markup_mode="markdown",
)
app.add_typer(features_app, name="features")
app.add_typer(models_app, name="models")
app.add_typer(experiments_app, name="experiments")
app.add_typer(datasets_app, name="datasets")
app.add_typer(deployments_app, name="deployments")
app.add_typer(reviews_app, name="reviews")
app.add_typer(tokens_app, name="tokens")
app.add_typer(prompts_app, name="prompts")
app.add_typer(governance_app, name="governance")
app.command()(demo)
app.command()(serve)


def main() -> None:
    app(prog_name="mlops")


if __name__ == "__main__":
    sys.exit(main())
