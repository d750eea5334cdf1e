"""One ingestion run over a window of days: validate what the source delivered, reconcile it with the bars
already stored, and write bars, revisions, quarantined rows and the list of unreadable files in one transaction
(all of it, or none). Each table's SQL stays with its owner (``market_bars.py``, ``revisions.py``,
``raw_folder.py``)."""

from collections import Counter
from collections.abc import Callable, Collection, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import duckdb
import pandas as pd

from mlops_pipelines.lib.core.alerts import Alert, Alerter
from mlops_pipelines.lib.core.warehouse import table_schema, transaction
from mlops_pipelines.lib.ingestion import market_bars
from mlops_pipelines.lib.ingestion.market_bars import reason_counts
from mlops_pipelines.lib.ingestion.raw_folder import FileEntry, SourceBatch, record_unreadable
from mlops_pipelines.lib.ingestion.revisions import reconcile, record_superseded
from mlops_pipelines.lib.ingestion.validation import (
    DEFAULT_MAX_CLOCK_SKEW,
    market_start_advice,
    parse_utc,
    validate_bars,
)


@dataclass(frozen=True)
class IngestionOutcome:
    """What a run stored, for its report."""

    accepted: pd.DataFrame  # the validated bars the source delivered for the window
    quarantined: pd.DataFrame  # the rows rejected, with their reasons
    quarantine_ratio: float
    revised: int  # stored bars whose values changed: stamped with their arrival
    withdrawn: int  # stored bars the source no longer has
    schema: dict[str, str]  # raw.market_bars: column -> type
    files_read: list[str] = field(default_factory=list)
    unreadable: list[FileEntry] = field(default_factory=list)
    before_first_partition: str | None = None  # what to set to ingest the bars before the first partition

    @property
    def reasons(self) -> Counter[str]:
        return reason_counts(self.quarantined["reason"])

    def summary(self) -> str:
        return (
            f"{len(self.accepted)} bars accepted, {len(self.quarantined)} quarantined ({self.quarantine_ratio:.3%}); "
            f"{self.revised} revised, {self.withdrawn} withdrawn"
        )


def ingest_window(
    batch: SourceBatch,
    connect: Callable[[], AbstractContextManager[duckdb.DuckDBPyConnection]],
    *,
    start: datetime,
    end: datetime,
    partition_keys: Sequence[str],
    first_bar: datetime,
    now: datetime,
    run_id: str,
    bar_interval: timedelta,
    universe: Collection[str] | None = None,
    max_clock_skew: timedelta = DEFAULT_MAX_CLOCK_SKEW,
    list_unreadable_files: bool = True,
) -> IngestionOutcome:
    """Validate ``batch`` (the source's rows for ``[start, end)``, the days ``partition_keys``), then, on one
    connection from ``connect`` and in one transaction: replace the days' bars (unchanged bars keep their arrival
    time; revised and withdrawn ones go to the revisions table), replace the days' quarantined rows and the
    partition-less ones of the files read, and (``list_unreadable_files``: the source is a folder) make
    ``raw.quarantined_files`` the batch's unreadable files. Validation runs before the warehouse is opened;
    ``bar_interval`` is the source's declared bar length (the grid, and a bar's close)."""
    result = validate_bars(
        batch.bars,
        now=now,
        universe=universe,
        first_bar=first_bar,
        max_clock_skew=max_clock_skew,
        bar_interval=bar_interval,
    )
    with connect() as conn:
        with transaction(conn):
            market_bars.create_tables(conn)
            stored = market_bars.bars_in_window(conn, start, end)
            unreadable = [e.path for e in batch.unreadable]  # their stored bars stay: not withdrawn
            reconciled = reconcile(stored, result.accepted, now=now, unreadable_files=unreadable)
            market_bars.replace_window(conn, reconciled.bars, start, end)
            record_superseded(conn, reconciled.superseded)
            market_bars.replace_quarantined(
                conn, result.quarantined, partition_keys=list(partition_keys), files_read=batch.files_read
            )
            if list_unreadable_files:
                record_unreadable(conn, batch.unreadable, run_id=run_id, now=now)
        schema = table_schema(conn, market_bars.BARS_TABLE)
    return IngestionOutcome(
        accepted=result.accepted,
        quarantined=result.quarantined,
        quarantine_ratio=result.quarantine_ratio,
        revised=reconciled.revised,
        withdrawn=reconciled.withdrawn,
        schema=schema,
        files_read=batch.files_read,
        unreadable=batch.unreadable,
        before_first_partition=_before_first_partition(result.quarantined, first_bar),
    )


def _before_first_partition(quarantined: pd.DataFrame, first_bar: datetime) -> str | None:
    """One message for all the quarantined bars before the first partition (None when there is none)."""
    timestamp = parse_utc(quarantined["timestamp"])
    before = timestamp < pd.Timestamp(first_bar)
    if not before.any():
        return None
    times, sources = timestamp[before], quarantined["source_file"][before].astype(str)
    first = int(times.to_numpy().argmin())
    first_file = sources.iloc[first]
    files = [first_file, *sorted(set(sources) - {first_file})]
    return market_start_advice(times.iloc[first], first_bar, files=files, bars=len(times))


def alert_unreadable(alerter: Alerter, unreadable: Sequence[FileEntry], *, run_id: str) -> None:
    """One ``file_quarantined`` alert per file content: the alerter deduplicates on (path, sha256)."""
    for entry in unreadable:
        alerter.raise_alert(
            Alert(
                kind="file_quarantined",
                subject=entry.path,
                episode=entry.sha256,
                summary=str(entry.error),
                details={"size": entry.size, "sha256": entry.sha256, "run_id": run_id},
            )
        )
