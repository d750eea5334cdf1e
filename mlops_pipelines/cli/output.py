"""How the ``mlops`` command prints, the same way in every command.

- Nothing is cut: ids, names, hashes and paths are printed whole. A table column that does not fit the terminal
  folds onto the next line instead of ending in an ellipsis; ``--json`` prints the same rows as JSON, for scripts.
- Times are ISO 8601 in UTC (``2026-02-14T23:05:00Z``), whether MLflow gave epoch milliseconds or the warehouse
  a timestamp.
- Written to a file or a pipe (a log, CI), output is not wrapped at 80 columns: a printed command stays on one
  line, so it can be copied from the log and run.

Only typer, rich, the standard library and ``lib/core/times.py`` (standard library only) here: this module is
imported by every command, ``--help`` included.
"""

import json
import sys
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from mlops_pipelines.lib.core.times import utc_time

EXIT_USER_ERROR = 2  # bad input, a name that names nothing, a bad setting, a damaged file: the message says what
EXIT_REFUSED = 1  # the platform said no (a governance rule, a failed check): the message says why
LOG_WIDTH = 400  # columns when stdout is not a terminal: wide enough that no table row or command wraps


def _console(*, stderr: bool = False) -> Console:
    stream = sys.stderr if stderr else sys.stdout
    return Console(stderr=stderr, soft_wrap=True, width=None if stream.isatty() else LOG_WIDTH)


console = _console()
error_console = _console(stderr=True)

JsonOutput = Annotated[
    bool,
    typer.Option(
        "--json", metavar="", help="Print the rows as JSON instead of a table (every field, whole), for scripts."
    ),
]


def _plain(value: Any) -> Any:
    """A JSON-ready value: datetimes as UTC ISO text, anything else JSON cannot hold as text."""
    return utc_time(value) if isinstance(value, datetime) else str(value)


def cell(value: Any) -> str:
    """A value as a table cell shows it (rich markup escaped)."""
    if value is None:
        text = ""
    elif isinstance(value, datetime):
        text = utc_time(value) or ""
    elif isinstance(value, list | tuple):
        text = ", ".join(str(v) for v in value)
    elif isinstance(value, dict):
        text = json.dumps(value, default=_plain)
    else:
        text = str(value)
    return escape(text)


def print_json(data: Any) -> None:
    """One JSON document on stdout (coloured on a terminal, plain in a pipe)."""
    console.print_json(data=data, default=_plain)


def print_rows(
    rows: Sequence[Mapping[str, Any]],
    columns: Sequence[str],
    *,
    as_json: bool,
    title: str | None = None,
    formats: Mapping[str, Callable[[Any], str]] | None = None,
) -> None:
    """Rows as a table of ``columns`` (the headers are the JSON keys), or with ``as_json`` as a JSON array of
    every field. ``formats``: column -> rich markup for the table only (a red INCONSISTENT, say). A cell too wide
    for the terminal folds onto the next line, never cut; piped, the console is wide enough for whole lines."""
    if as_json:
        print_json(list(rows))
        return
    table = Table(title=title)
    for column in columns:
        table.add_column(column, overflow="fold")
    formats = formats or {}
    for row in rows:
        table.add_row(*(formats.get(c, cell)(row.get(c)) for c in columns))
    console.print(table)
