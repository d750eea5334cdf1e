"""The CLI's way into MLflow and the governed lifecycle, and the options every lifecycle command shares.

Imports of MLflow and the lifecycle happen inside the functions: a command pays for them when it runs.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer
from rich.markup import escape

from mlops_pipelines.cli.output import EXIT_REFUSED, EXIT_USER_ERROR, error_console
from mlops_pipelines.settings import ActorMismatch, Settings

if TYPE_CHECKING:
    from mlops_pipelines.lib.core.tracking import Tracking
    from mlops_pipelines.lib.governance.lifecycle import Lifecycle

L = TypeVar("L", bound="Lifecycle")

ModelName = Annotated[
    str, typer.Argument(metavar="MODEL", help="Registered model name, e.g. direction_classifier.", show_default=False)
]
Version = Annotated[
    str, typer.Option(metavar="VERSION", help="Model version number (`mlops models show MODEL` lists them).")
]
Actor = Annotated[
    str,
    typer.Option(
        metavar="NAME",
        help="Who acts (audit log). Default: $MLOPS_ACTOR or the OS user. Self-declared unless "
        "MLOPS_REQUIRE_OS_ACTOR=true, which refuses any name but the OS user's.",
        show_default=False,
    ),
]
Reason = Annotated[str, typer.Option(metavar="TEXT", help="Why (recorded in the audit log).", show_default=False)]


def tracking(settings: Settings) -> "Tracking":
    from mlops_pipelines.lib.core.tracking import Tracking

    return Tracking(settings.mlflow_tracking_uri, settings.mlflow_registry_uri, settings.mlflow_artifact_root)


@contextmanager
def governed(kind: "type[L] | None" = None) -> Iterator["L"]:
    """The lifecycle, built as the Dagster resources build it (``open_lifecycle``; ``kind``: ``PromptLifecycle``
    for prompts). A governance refusal is a clear message and exit code 1; MLflow errors exit 2, as the root
    command maps the project's other errors."""
    from mlflow.exceptions import MlflowException

    from mlops_pipelines.lib.governance.lifecycle import (
        ApprovalRequired,
        IllegalTransition,
        Lifecycle,
        LifecycleError,
        open_lifecycle,
    )

    settings = Settings.from_env()
    try:
        with open_lifecycle(
            tracking(settings).client(),
            settings.warehouse_path,
            settings.audit_key_file,
            kind=kind or Lifecycle,  # type: ignore[arg-type]
        ) as lc:
            yield lc  # type: ignore[misc]
    except (IllegalTransition, ApprovalRequired, LifecycleError, ActorMismatch, ValueError) as exc:
        error_console.print(f"[red]refused:[/red] {escape(str(exc))}")
        raise typer.Exit(EXIT_REFUSED) from exc
    except MlflowException as exc:
        error_console.print(f"[red]MLflow:[/red] {escape(exc.message)}")
        raise typer.Exit(EXIT_USER_ERROR) from exc


def require_model(lifecycle: "Lifecycle", name: str) -> None:
    """``NotFound`` naming the model and the known ones (``lib/governance/model_detail.py``)."""
    from mlops_pipelines.lib.governance import model_detail

    model_detail.require_model(lifecycle, name)


def require_version(lifecycle: "Lifecycle", name: str, version: str) -> None:
    """``NotFound`` naming the model, the version and its versions (``lib/governance/model_detail.py``)."""
    from mlops_pipelines.lib.governance import model_detail

    model_detail.require_version(lifecycle, name, version)


def report_url(lifecycle: "Lifecycle", settings: Settings, name: str, version: str) -> str | None:
    """The version's compliance report in the MLflow UI (MLOPS_MLFLOW_UI_URL); None when its training run is not
    on record or not in MLflow (a lost registry is reported by `mlops models list`, not here)."""
    from mlflow.exceptions import MlflowException

    from mlops_pipelines.lib.core.tracking import run_ui_url
    from mlops_pipelines.lib.governance import compliance
    from mlops_pipelines.lib.governance.lifecycle import LifecycleError

    try:
        run_id = lifecycle.run_id(name, version)
        experiment_id = lifecycle.client.get_run(run_id).info.experiment_id
    except (LifecycleError, MlflowException):
        return None
    return run_ui_url(settings.mlflow_ui_url, experiment_id, run_id, compliance.REPORT_HTML)
