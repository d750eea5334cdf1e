"""``mlops datasets``: the stored training sets, by dataset id."""

from typing import Annotated

import typer

from mlops_pipelines.cli.output import JsonOutput, print_json, print_rows, utc_time
from mlops_pipelines.lib.core.errors import NotFound
from mlops_pipelines.settings import Settings

datasets_app = typer.Typer(help="Training sets, by dataset id.", no_args_is_help=True, rich_markup_mode="markdown")
TIMES = ("first_decision", "last_decision", "created_at")


@datasets_app.command("list")
def datasets_list(as_json: JsonOutput = False) -> None:
    """Every stored training set, newest first: rows per split, decision range."""
    from mlops_pipelines.lib.core import warehouse
    from mlops_pipelines.lib.training.datasets import list_datasets

    with warehouse.connect(Settings.from_env().warehouse_path, read_only=True) as conn:
        rows = [{**r, **{t: utc_time(r[t]) for t in TIMES}} for r in list_datasets(conn)]
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
    """One training set: hash, table, splits, time range, features, label, the run that built it (JSON)."""
    from mlops_pipelines.lib.core import warehouse
    from mlops_pipelines.lib.training.datasets import dataset_record

    with warehouse.connect(Settings.from_env().warehouse_path, read_only=True) as conn:
        found = dataset_record(conn, dataset_id)
    if found is None:
        raise NotFound(f"no dataset {dataset_id!r}; `mlops datasets list` shows the stored ones")
    print_json({**found, **{t: utc_time(found[t]) for t in TIMES}})
