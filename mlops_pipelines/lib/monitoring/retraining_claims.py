"""One retraining request per drift episode, even when two sensor ticks race (two Dagster daemons on one instance:
a second one started by mistake, or the old one still running during a deploy).

Dagster de-duplicates run requests by run key, but by looking for a run with the key before creating one: two
ticks evaluated in the same second both find none and both create a run. So a tick first *claims* the episode's
run key: it creates ``<directory>/<sha256 of the key>.claim`` with ``O_CREAT | O_EXCL``, which exactly one process
wins, on one machine or on a shared data directory. A tick that loses does not request; the sensor looks again at
its next tick, when the winner's run exists and Dagster's run key covers it.

A claim whose run never appeared (its daemon died between the claim and the run) would block the episode forever,
so a claim older than the lease may be taken over: the tick renames the stale file away (one rename wins) and
claims afresh. The limit: a tick that read the stale claim just before another took it over could rename the new
claim away and claim too; that needs a daemon crash and two ticks within the same milliseconds after the lease.
"""

import hashlib
import os
import uuid
from datetime import datetime, timedelta
from pathlib import Path

LEASE = timedelta(minutes=10)  # a claimant's tick creates its run within seconds; after this, it died


def _path(directory: Path, key: str) -> Path:
    return directory / f"{hashlib.sha256(key.encode()).hexdigest()}.claim"


def claim(directory: Path, key: str, now: datetime, lease: timedelta = LEASE) -> bool:
    """Whether this caller may request ``key``: it created the claim, or took over one older than ``lease``."""
    directory.mkdir(parents=True, exist_ok=True)
    path = _path(directory, key)
    if _create(path, key, now):
        return True
    try:  # the claim's age from its file's time: a claim being written has no content yet, but has a time
        age = now.timestamp() - path.stat().st_mtime
    except FileNotFoundError:
        return _create(path, key, now)
    if age < lease.total_seconds():
        return False
    try:  # one rename of the stale claim wins; the others find it gone
        path.rename(path.with_name(f"{path.name}.stale-{uuid.uuid4().hex}"))
    except FileNotFoundError:
        return False
    return _create(path, key, now)


def _create(path: Path, key: str, now: datetime) -> bool:
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as out:
        out.write(f"{now.isoformat()}\n{key}\n")
    return True
