"""The code location: everything under ``defs/`` is discovered and loaded."""

import logging
from pathlib import Path

import dagster as dg


class _NoLocationNameMismatch(logging.Filter):
    """Drops Dagster's warning that the project's ``code_location_name`` (pyproject.toml ``[tool.dg.project]``)
    differs from the name the location is loaded under. ``dagster ... -m mlops_pipelines.definitions`` loads it
    under the module's name; the project uses no app-managed components (the only thing the name is used for), so
    the warning, printed on every such command, says nothing an operator can act on."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not (message.startswith("The code location name") and "does not match the name" in message)


logging.getLogger("dagster.components.core.component_tree").addFilter(_NoLocationNameMismatch())


@dg.definitions
def defs() -> dg.Definitions:
    return dg.load_from_defs_folder(path_within_project=Path(__file__).parent)
