"""``mlops datasets``: the stored training sets, by dataset id."""

from typing import Annotated

import typer

from mlops_pipelines.cli.governed import tracking
from mlops_pipelines.cli.output import JsonOutput, print_json, print_rows
from mlops_pipelines.settings import Settings

datasets_app = typer.Typer(help="Training sets, by dataset id.", no_args_is_help=True, rich_markup_mode="markdown")


@datasets_app.command("list")
def datasets_list(as_json: JsonOutput = False) -> None:
    """Every stored training set, newest first: rows per split, decision range (with --json: every field, as
    `datasets show` and the API give it)."""
    from mlops_pipelines.lib.core import warehouse
    from mlops_pipelines.lib.training.dataset_detail import dataset_rows

    with warehouse.connect(Settings.from_env().warehouse_path, read_only=True) as conn:
        rows = dataset_rows(conn)
    columns = [
        "dataset_id",
        "model",
        "row_count",
        "train_rows",
        "validation_rows",
        "test_rows",
        "first_decision",
        "last_decision",
        "created_at",
    ]
    print_rows(rows, columns, as_json=as_json)


@datasets_app.command("show")
def datasets_show(
    dataset_id: Annotated[
        str, typer.Argument(metavar="DATASET_ID", help="As `datasets list` or `models show MODEL` show it.")
    ],
) -> None:
    """One training set: hash, table, splits, time range, features, feature views and their versions, label, the
    run that built it, and the model versions trained on it (JSON)."""
    from mlops_pipelines.lib.core import warehouse
    from mlops_pipelines.lib.training.dataset_detail import dataset_detail

    settings = Settings.from_env()
    with warehouse.connect(settings.warehouse_path, read_only=True) as conn:
        print_json(dataset_detail(conn, tracking(settings).client(), dataset_id))
