"""Watches the raw folder and requests ingestion of the days that new or changed files touch."""

import hashlib
import json
from datetime import UTC, date, datetime, timedelta

import dagster as dg

from mlops_pipelines.defs.resources import SETTINGS
from mlops_pipelines.lib.ingestion.raw_folder import FileEntry, refusal
from mlops_pipelines.lib.ingestion.validation import market_start_advice
from mlops_pipelines.partitions import MARKET_DAYS
from mlops_pipelines.resources import MarketDataSource

# Days after the last partition that a file has bars on are watched until their partition exists, at most this
# far ahead: a bar stamped further in the future is quarantined as such and not waited for.
PENDING_HORIZON = timedelta(days=400)


@dg.sensor(
    job_name="ingestion_job",
    minimum_interval_seconds=60,
    # On by default when the deployment reads a folder; the synthetic demo has no files to watch.
    default_status=(
        dg.DefaultSensorStatus.RUNNING if SETTINGS.market_source == "folder" else dg.DefaultSensorStatus.STOPPED
    ),
    description="New or changed CSV/Parquet files in the raw folder -> one ingestion run per range of days they "
    "touch; files with no bar in any partition, unreadable ones or ones of another bar frequency -> the run of "
    "the first partition.",
)
def raw_files_sensor(context: dg.SensorEvaluationContext, market_data: MarketDataSource) -> dg.SensorResult:
    """A file is read only when its size or modification time changed since the last tick, and hashed first: a
    file touched without a content change requests nothing. Its days come from the folder index the runs share,
    so the run that follows does not read it again to find them.

    Requests: one run per range of consecutive days (a partition range: one run reads each file once). A file
    whose rows all belong to no partition (before the first one, in the future, unparseable), or that cannot be
    read at all, or whose bars are of another frequency than MLOPS_BAR_INTERVAL, sends the first partition's run,
    which quarantines such rows and files. Days after the last partition (bars of today, or stamped ahead) are
    kept in the cursor and requested once their partition exists. Bars before the first partition are logged once
    per tick, as one message saying what MLOPS_MARKET_START to set.
    """
    files, pending = _cursor(context.cursor)
    now = _now()
    known = MARKET_DAYS.get_partition_keys(current_time=now)
    if not known:
        return dg.SensorResult(skip_reason="no partition of raw/market_bars exists yet", cursor=context.cursor)
    known_days, first_day, last_day = set(known), known[0], known[-1]
    latest_day = (now + market_data.max_clock_skew).strftime("%Y-%m-%d")
    horizon = (date.fromisoformat(last_day) + PENDING_HORIZON).isoformat()
    days: set[str] = set()
    changed: list[str] = []
    early: list[FileEntry] = []  # changed files with bars before the first partition
    bar_interval = market_data.clock().interval
    current: dict[str, dict[str, object]] = {}
    with market_data.index() as index:
        for path in market_data.files():
            try:
                stat = path.stat()
                previous = files.get(str(path), {})
                if (previous.get("mtime_ns"), previous.get("size")) == (stat.st_mtime_ns, stat.st_size):
                    current[str(path)] = previous
                    continue
                entry, _ = index.refresh(path)
            except FileNotFoundError:  # removed since the folder was listed
                continue
            current[str(path)] = {"sha256": entry.sha256, "mtime_ns": entry.mtime_ns, "size": entry.size}
            if previous.get("sha256") == entry.sha256:
                continue
            changed.append(f"{path}:{entry.sha256}")
            problem = refusal(entry, bar_interval)
            if problem is not None:
                context.log.error(f"{problem}; the run of {first_day} lists it in raw.quarantined_files")
                days.add(first_day)
                continue
            if entry.days and entry.days[0] < first_day:
                early.append(entry)
            if entry.has_no_partition(first_day, latest_day):
                days.add(first_day)
            days.update(d for d in entry.days if d in known_days)
            pending.update(d for d in entry.days if last_day < d <= horizon)
    if early:
        early.sort(key=lambda e: (e.days[0], e.path))
        earliest, files = date.fromisoformat(early[0].days[0]), [e.path for e in early]
        context.log.warning(market_start_advice(earliest, MARKET_DAYS.start, files=files))
    released = sorted(d for d in pending if d in known_days)
    days.update(released)
    pending.difference_update(released)
    # The same changes give the same run keys (Dagster skips a key it has seen); new content, new keys.
    digest = hashlib.sha256("\n".join([*sorted(changed), *released]).encode()).hexdigest()[:16]
    requests = [_request(first, last, digest) for first, last in _ranges(sorted(days))]
    cursor = json.dumps({"files": current, "pending": sorted(pending)}, sort_keys=True)
    return dg.SensorResult(run_requests=requests, cursor=cursor)


def _now() -> datetime:
    return datetime.now(UTC)


def _request(first: str, last: str, digest: str) -> dg.RunRequest:
    run_key = f"ingest:{first}..{last}:{digest}"
    if first == last:
        return dg.RunRequest(run_key=run_key, partition_key=first)
    tags = {"dagster/asset_partition_range_start": first, "dagster/asset_partition_range_end": last}
    return dg.RunRequest(run_key=run_key, tags=tags)


def _ranges(days: list[str]) -> list[tuple[str, str]]:
    """Sorted days -> (first, last) of each run of consecutive days."""
    ranges: list[tuple[str, str]] = []
    for day in days:
        if ranges and date.fromisoformat(day) - date.fromisoformat(ranges[-1][1]) == timedelta(days=1):
            ranges[-1] = (ranges[-1][0], day)
        else:
            ranges.append((day, day))
    return ranges


def _cursor(text: str | None) -> tuple[dict[str, dict[str, object]], set[str]]:
    """(path -> {sha256, mtime_ns, size}, pending days). Cursors of earlier formats (path -> entry, or
    path -> sha256) are read as their files, with no pending day."""
    raw = json.loads(text) if text else {}
    if isinstance(raw.get("files"), dict):
        return raw["files"], set(raw.get("pending", []))
    return {path: entry if isinstance(entry, dict) else {"sha256": entry} for path, entry in raw.items()}, set()
