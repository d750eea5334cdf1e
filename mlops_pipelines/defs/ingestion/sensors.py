"""Watches the raw folder and requests ingestion of the days that new or changed files touch."""

import json
from pathlib import Path

import dagster as dg

from mlops_pipelines.lib.files import sha256_file
from mlops_pipelines.lib.market_data import read_source_file
from mlops_pipelines.lib.validation import parse_utc
from mlops_pipelines.partitions import MARKET_DAYS
from mlops_pipelines.resources import MarketDataSource
from mlops_pipelines.settings import Settings


def file_days(path: Path) -> list[str]:
    """The UTC days a file has bars for (unparseable timestamps are validation's business, not the sensor's)."""
    frame = read_source_file(path)
    ts = parse_utc(frame["timestamp"])
    return sorted(set(ts.dropna().dt.strftime("%Y-%m-%d")))


@dg.sensor(
    job_name="ingestion_job",
    minimum_interval_seconds=60,
    # On by default when the deployment reads a folder; the synthetic demo has no files to watch.
    default_status=(
        dg.DefaultSensorStatus.RUNNING
        if Settings.from_env().market_source == "folder"
        else dg.DefaultSensorStatus.STOPPED
    ),
    description="New or changed CSV/Parquet files in the raw folder -> ingestion of the days they touch.",
)
def raw_files_sensor(context: dg.SensorEvaluationContext, market_data: MarketDataSource) -> dg.SensorResult:
    """A file is read only when its size or modification time changed since the last tick (RELIABILITY #9: a
    tick over a large folder stays cheap); a file touched without a content change requests nothing."""
    seen = _cursor(context.cursor)
    known_days = set(MARKET_DAYS.get_partition_keys())
    requests: list[dg.RunRequest] = []
    current: dict[str, dict[str, object]] = {}
    for path in market_data.files():
        stat = path.stat()
        previous = seen.get(str(path), {})
        if (previous.get("mtime_ns"), previous.get("size")) == (stat.st_mtime_ns, stat.st_size):
            current[str(path)] = previous
            continue
        digest = sha256_file(path)
        current[str(path)] = {"sha256": digest, "mtime_ns": stat.st_mtime_ns, "size": stat.st_size}
        if previous.get("sha256") == digest:
            continue
        try:
            days = file_days(path)
        except ValueError as exc:  # a file-level error: ingestion would fail the same way; say so once
            context.log.error(str(exc))
            continue
        for day in days:
            if day not in known_days:
                context.log.warning(f"{path}: bars on {day} are outside the partitions of raw/market_bars; skipped")
                continue
            requests.append(
                dg.RunRequest(
                    run_key=f"ingest:{path}:{digest[:16]}:{day}",
                    partition_key=day,
                    tags={"source_file": str(path)[-200:]},
                )
            )
    return dg.SensorResult(run_requests=requests, cursor=json.dumps(current, sort_keys=True))


def _cursor(text: str | None) -> dict[str, dict[str, object]]:
    """path -> {sha256, mtime_ns, size}; a cursor of an earlier format (path -> sha256) is read as hashes."""
    raw = json.loads(text) if text else {}
    return {path: entry if isinstance(entry, dict) else {"sha256": entry} for path, entry in raw.items()}
