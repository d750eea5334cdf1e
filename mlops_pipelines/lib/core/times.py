"""Times as every report, CLI table and API answer shows them: ISO 8601 in UTC, to the second
(``2026-02-14T23:05:00Z``). Standard library only: the CLI imports it at start."""

from datetime import UTC, datetime
from typing import Any


def utc_time(value: Any) -> str | None:
    """ISO 8601 in UTC, to the second: from epoch milliseconds (MLflow) or a datetime (naive means UTC)."""
    if value is None or value != value:  # None, NaN, NaT
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        value = datetime.fromtimestamp(value / 1000, UTC)
    if isinstance(value, datetime):
        value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        return value.strftime("%Y-%m-%dT%H:%M:%SZ")
    return str(value)
