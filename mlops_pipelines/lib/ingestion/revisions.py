"""Re-ingesting days: which bars are unchanged, which are revisions of bars already stored, which were withdrawn.

A bar that comes back with the same values keeps the arrival time it was stored with, so re-running a day
changes nothing. A bar that comes back with different values is a *revision* and carries its real arrival time
: the time the source gives, or the ingestion time when that is earlier, because we
cannot have known the new values before we received them. Point-in-time retrieval therefore never serves a
correction before it existed. The version a revision replaces, and a bar the source no longer has, are kept in
``raw.market_bar_revisions`` with the reason: nothing is lost. A bar whose file cannot be read right now (a
corrupt upload) is not "no longer in the source": it stays stored as it was until the file is fixed or removed.
"""

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime

import duckdb
import numpy as np
import pandas as pd

from mlops_pipelines.lib.core import warehouse
from mlops_pipelines.lib.ingestion.market_bars import BAR_COLUMNS

REVISIONS_TABLE = "raw.market_bar_revisions"  # owned here
REVISION_COLUMNS = {
    **BAR_COLUMNS,  # the stored bar as it was
    "reason": "VARCHAR NOT NULL",  # revised | withdrawn
    "superseded_at": "TIMESTAMP WITH TIME ZONE NOT NULL",
    "superseded_by": "VARCHAR",  # the file that brought the new version (revised)
}
KEY = ["symbol", "timestamp"]
VALUE_COLUMNS = ["sector", "open", "high", "low", "close", "volume"]
TIMES = ("timestamp", "available_at", "superseded_at")


@dataclass(frozen=True)
class Reconciled:
    bars: pd.DataFrame  # the rows the days hold from now on, in ``incoming``'s columns
    superseded: pd.DataFrame  # stored rows replaced ("revised") or gone from the source ("withdrawn")

    @property
    def revised(self) -> int:
        return int((self.superseded["reason"] == "revised").sum())

    @property
    def withdrawn(self) -> int:
        return int((self.superseded["reason"] == "withdrawn").sum())


def reconcile(
    stored: pd.DataFrame, incoming: pd.DataFrame, *, now: datetime, unreadable_files: Collection[str] = ()
) -> Reconciled:
    """Compare the validated ``incoming`` bars of some days with the ``stored`` bars of the same days.
    Stored bars from ``unreadable_files`` that no incoming bar replaces are kept unchanged, not withdrawn."""
    columns = list(incoming.columns)
    if unreadable_files:
        held = stored[stored["source_file"].isin(list(unreadable_files))]
        held = held[~pd.MultiIndex.from_frame(held[KEY]).isin(pd.MultiIndex.from_frame(incoming[KEY]))]
        if len(held):
            incoming = pd.concat([incoming, held[columns]], ignore_index=True)
    merged = incoming.merge(stored[columns], on=KEY, how="outer", suffixes=("", "_stored"), indicator=True)
    both = merged["_merge"] == "both"
    changed = both & ~_same_values(merged)
    unchanged = both & ~changed

    present = merged["_merge"] != "right_only"  # still in the source
    bars = merged.loc[present, columns].copy()
    for column in ("available_at", "source_file"):  # an unchanged bar stays exactly as it was stored
        bars.loc[unchanged[present], column] = merged.loc[unchanged, f"{column}_stored"]
    arrival = pd.Timestamp(now).tz_convert("UTC")
    given = pd.to_datetime(bars.loc[changed[present], "available_at"], utc=True)
    bars.loc[changed[present], "available_at"] = given.where(given > arrival, arrival)

    old = merged.loc[changed | ~present]
    superseded = pd.DataFrame(
        {
            **{c: old[c if c in KEY else f"{c}_stored"].to_numpy() for c in columns},
            "reason": np.where(old["_merge"] == "both", "revised", "withdrawn"),
            "superseded_at": arrival,
            "superseded_by": old["source_file"].where(old["_merge"] == "both").to_numpy(),
        }
    )
    bars = bars.sort_values(KEY).reset_index(drop=True)
    for frame, times in ((bars, ("timestamp", "available_at")), (superseded, TIMES)):
        for column in times:
            frame[column] = pd.to_datetime(frame[column], utc=True).astype("datetime64[us, UTC]")
    return Reconciled(bars=bars, superseded=superseded)


def _same_values(merged: pd.DataFrame) -> pd.Series:
    same = pd.Series(True, index=merged.index)
    for column in VALUE_COLUMNS:
        new, old = merged[column], merged[f"{column}_stored"]
        same &= (new == old) | (new.isna() & old.isna())
    return same


def record_superseded(conn: duckdb.DuckDBPyConnection, superseded: pd.DataFrame) -> None:
    """Append the superseded versions to ``raw.market_bar_revisions`` (every one is kept), inside the caller's
    transaction."""
    warehouse.replace_rows(
        conn,
        REVISIONS_TABLE,
        superseded,
        where="false",  # append
        create_sql=warehouse.columns_sql(REVISION_COLUMNS),
        own_transaction=False,
    )
