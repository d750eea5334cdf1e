"""The production online store: the latest feature vector per entity in Redis, same contract as the SQLite one.

Layout (all keys under one namespace, default ``mlops:online``):

- ``<ns>:live``: the served snapshot, one hash: entity key -> the vector's values as a JSON list, plus the
  field ``META`` (a name no entity key has): snapshot id, write time, entity count and the value columns;
- ``<ns>:staging:<generation>``: a snapshot being written.

A refresh writes the whole new snapshot into its own staging hash (each batch in MULTI/EXEC with an expiry,
so a writer killed mid-way leaves nothing that lives on), then one Lua script checks that the staging hash is
complete (its field count), RENAMEs it over ``live`` and removes the expiry. Redis runs a script atomically:
readers go from the old snapshot to the new one in one step and never see a mix. The old snapshot is deleted
by the RENAME (in the background with ``lazyfree-lazy-server-del yes``).

A lookup is one HMGET on ``live`` of the metadata field and every requested key: one command, so one round
trip and one snapshot, however many keys; the metadata says which snapshot it was and how old.

Redis must not evict these keys under memory pressure (``maxmemory-policy noeviction``, or a ``volatile-*``
policy: the served snapshot carries no expiry); a refresh needs memory for two snapshots at once.
"""

import json
import time
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pandas as pd
import redis

from mlops_pipelines.lib.core.errors import MlopsError
from mlops_pipelines.lib.features.online_store import (
    OnlineStoreMissing,
    parse_written_at,
    snapshot_records,
    utc_now_text,
)

NAMESPACE = "mlops:online"
META = "\x00meta"  # the metadata field of a snapshot hash (no entity key starts with NUL: refused on write)
_WRITE_BATCH = 2_000  # entities per HSET while a snapshot is written
_ORPHAN_TTL_S = 3_600  # how long a staging hash lives unless the switch makes it the served snapshot

# KEYS: staging hash, live hash. ARGV: the fields the staging hash must hold (entities + META).
_SWITCH = """
if redis.call('HLEN', KEYS[1]) ~= tonumber(ARGV[1]) then
  return redis.error_reply('online store snapshot ' .. KEYS[1] .. ' is incomplete: not switched to')
end
redis.call('RENAME', KEYS[1], KEYS[2])
redis.call('PERSIST', KEYS[2])
return 1
"""


class OnlineStoreUnavailable(MlopsError, ConnectionError):
    """The Redis server of the online store cannot be reached (or refused the credentials)."""


def redacted(url: str) -> str:
    """``url`` without its password, for messages and metadata."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username or ''}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def connect(url: str, password: str | None = None) -> redis.Redis:
    """A client for ``url`` (redis:// or rediss://); ``password`` wins over one in the URL."""
    options: dict[str, Any] = {"socket_connect_timeout": 5, "socket_timeout": 30}
    if password is not None:
        options["password"] = password
    try:
        return redis.Redis.from_url(url, **options)
    except ValueError as exc:
        raise OnlineStoreUnavailable(f"online store URL {redacted(url)} is not a Redis URL: {exc}") from exc


def write_snapshot(
    url: str,
    frame: pd.DataFrame,
    *,
    key: str,
    snapshot_id: str,
    password: str | None = None,
    namespace: str = NAMESPACE,
) -> int:
    """Replace the served snapshot with ``frame`` (one row per ``key``) in one step; the entities written.

    Readers keep reading the previous snapshot until the switch, then read only this one. A failure (or a kill)
    before the switch leaves the previous snapshot served and this one's staging hash expiring.
    """
    columns, records = snapshot_records(frame, key)
    bad = [row[0] for row in records if not isinstance(row[0], str) or row[0].startswith("\x00")]
    if bad:
        raise ValueError(f"online store snapshot: {key!r} values must be text not starting with NUL, e.g. {bad[:3]}")
    client = connect(url, password)
    staging, live = f"{namespace}:staging:{time.time_ns()}-{uuid.uuid4().hex[:8]}", f"{namespace}:live"
    meta = {
        "snapshot_id": snapshot_id,
        "written_at": utc_now_text(),
        "entity_key": key,
        "entities": len(records),
        "columns": columns,
    }
    try:
        # MULTI/EXEC: each batch lands with its expiry, or not at all
        for start in range(0, max(len(records), 1), _WRITE_BATCH):
            mapping = {row[0]: json.dumps(row[1:]) for row in records[start : start + _WRITE_BATCH]}
            if start == 0:
                mapping[META] = json.dumps(meta)
            pipe = client.pipeline(transaction=True)
            pipe.hset(staging, mapping=mapping)
            pipe.expire(staging, _ORPHAN_TTL_S)
            pipe.execute()
        client.register_script(_SWITCH)(keys=[staging, live], args=[len(records) + 1])
    except redis.ConnectionError as exc:
        raise OnlineStoreUnavailable(f"online store {redacted(url)}: {exc}") from exc
    finally:
        client.close()
    return len(records)


class RedisOnlineStoreReader:
    """A long-lived reader for serving (thread-safe: redis-py pools its connections). Every lookup is one
    command (HMGET), so one round trip that reads one snapshot, however many keys it asks for."""

    def __init__(self, url: str, *, password: str | None = None, namespace: str = NAMESPACE) -> None:
        self.url = url
        self._client = connect(url, password)
        self._live = f"{namespace}:live"
        self._meta: tuple[bytes, dict[str, Any]] = (b"", {})  # the last metadata seen, raw and parsed
        self._read_meta()  # fails now if the store is unreachable or holds no snapshot

    def _missing(self) -> OnlineStoreMissing:
        return OnlineStoreMissing(
            f"online store {redacted(self.url)} holds no snapshot under {self._live!r}; "
            "materialize features/online_store"
        )

    def _hmget(self, fields: list[str]) -> list[bytes | None]:
        try:
            found = self._client.hmget(self._live, fields)
        except redis.AuthenticationError as exc:
            raise OnlineStoreUnavailable(f"online store {redacted(self.url)} refused the credentials: {exc}") from exc
        except redis.ConnectionError as exc:
            raise OnlineStoreUnavailable(f"online store {redacted(self.url)} unreachable: {exc}") from exc
        return found  # type: ignore[return-value]

    def _parsed(self, raw: bytes | None) -> dict[str, Any]:
        if raw is None:
            raise self._missing()
        known = self._meta
        if raw != known[0]:  # another snapshot: parse its metadata once
            known = self._meta = (raw, json.loads(raw))
        return known[1]

    def _read_meta(self) -> dict[str, Any]:
        return self._parsed(self._hmget([META])[0])

    def snapshot_id(self) -> str | None:
        return self._read_meta()["snapshot_id"]

    def written_at(self) -> datetime | None:
        return parse_written_at(self._read_meta()["written_at"])

    def lookup_one(self, entity_key: str) -> dict[str, Any] | None:
        meta, value = self._hmget([META, entity_key])
        names = self._parsed(meta)["columns"]
        return None if value is None else dict(zip(names, json.loads(value), strict=True))

    def lookup(self, entity_keys: Sequence[str]) -> dict[str, dict[str, Any] | None]:
        """Feature vectors keyed by entity; an unknown entity maps to None."""
        keys = list(dict.fromkeys(entity_keys))
        found = self._hmget([META, *keys])
        names = self._parsed(found[0])["columns"]
        values = found[1:]
        # one JSON parse for every vector found (a C call), not one per entity
        rows = iter(json.loads(b"[" + b",".join(v for v in values if v is not None) + b"]"))
        return {
            k: None if v is None else dict(zip(names, next(rows), strict=True))
            for k, v in zip(keys, values, strict=True)
        }

    def close(self) -> None:
        self._client.close()
