"""The production online store: the latest feature vector per entity in Redis, same contract as the SQLite one.

Layout (all keys under one namespace, default ``mlops:online``):

- ``<ns>:current``: the generation being served (a pointer);
- ``<ns>:gen:<generation>``: one hash, entity key -> the vector's values as a JSON list;
- ``<ns>:meta:<generation>``: snapshot id, write time, entity count and the value columns (JSON list).

A refresh writes a new generation beside the served one (its keys carry an expiry while they are written, so a
writer killed mid-way leaves nothing that lives on), then one Lua script checks the generation is complete
(its entity count) and moves the pointer: Redis runs a script atomically, so readers go from the old snapshot
to the new one in one step and never see a mix. The replaced generation then expires after ``retain_s``.
A lookup is one script too (one round trip, atomic): it reads the pointer and every requested entity of that
generation, and the columns when the reader does not know them yet, so every lookup reads one snapshot.

Redis must not evict these keys under memory pressure (``maxmemory-policy noeviction`` or a ``volatile-*``
policy: the served generation carries no expiry). The scripts touch keys derived from the pointer, which a
single Redis server (or a replicated one) allows; Redis Cluster does not, and is not supported.
"""

import json
import time
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any, cast
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
_WRITE_BATCH = 2_000  # entities per HSET while a generation is written
_ORPHAN_TTL_S = 3_600  # how long the keys of a generation being written live unless the switch keeps them

# KEYS: pointer, new data hash, new meta hash. ARGV: generation, expected entities, retain_s, key prefix.
_SWITCH = """
if redis.call('HLEN', KEYS[2]) ~= tonumber(ARGV[2]) or redis.call('EXISTS', KEYS[3]) == 0 then
  return redis.error_reply('online store generation ' .. ARGV[1] .. ' is incomplete: not switched to')
end
local old = redis.call('GET', KEYS[1])
redis.call('PERSIST', KEYS[2])
redis.call('PERSIST', KEYS[3])
redis.call('SET', KEYS[1], ARGV[1])
if old and old ~= ARGV[1] then
  redis.call('EXPIRE', ARGV[4] .. 'gen:' .. old, ARGV[3])
  redis.call('EXPIRE', ARGV[4] .. 'meta:' .. old, ARGV[3])
end
return old
"""

# KEYS: pointer. ARGV: key prefix, the generation whose columns the caller knows, then the entity keys.
# Returns false (no snapshot) or {generation, values, columns or false}; HMGET in slices stays under Lua's
# limit on unpacked arguments.
_LOOKUP = """
local gen = redis.call('GET', KEYS[1])
if not gen then return false end
local data = ARGV[1] .. 'gen:' .. gen
local values = {}
local i, n = 3, #ARGV
while i <= n do
  local last = math.min(i + 999, n)
  local part = redis.call('HMGET', data, unpack(ARGV, i, last))
  for j = 1, #part do values[#values + 1] = part[j] end
  i = last + 1
end
local columns = false
if gen ~= ARGV[2] then columns = redis.call('HGET', ARGV[1] .. 'meta:' .. gen, 'columns') end
return {gen, values, columns}
"""

# KEYS: pointer. ARGV: key prefix. The served snapshot's id and write time, read together.
_META = """
local gen = redis.call('GET', KEYS[1])
if not gen then return false end
return redis.call('HMGET', ARGV[1] .. 'meta:' .. gen, 'snapshot_id', 'written_at')
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
    retain_s: int = 60,
) -> int:
    """Replace the served snapshot with ``frame`` (one row per ``key``) in one step; the entities written.

    Readers keep reading the previous snapshot until the switch, then read only this one. A failure (or a kill)
    before the switch leaves the previous snapshot served and this generation's keys expiring.
    """
    columns, records = snapshot_records(frame, key)
    client = connect(url, password)
    generation = f"{time.time_ns()}-{uuid.uuid4().hex[:8]}"
    prefix = f"{namespace}:"
    data, meta = f"{prefix}gen:{generation}", f"{prefix}meta:{generation}"
    try:
        for start in range(0, len(records), _WRITE_BATCH):
            # MULTI/EXEC: each batch lands with its expiry, or not at all (a kill between the two left keys
            # that never expired)
            pipe = client.pipeline(transaction=True)
            chunk = records[start : start + _WRITE_BATCH]
            pipe.hset(data, mapping={row[0]: json.dumps(row[1:]) for row in chunk})
            pipe.expire(data, _ORPHAN_TTL_S)
            pipe.execute()
        meta_fields = {
            "snapshot_id": snapshot_id,
            "written_at": utc_now_text(),
            "entity_key": key,
            "entities": len(records),
            "columns": json.dumps(columns),
        }
        pipe = client.pipeline(transaction=True)
        pipe.hset(meta, mapping=meta_fields)
        pipe.expire(meta, _ORPHAN_TTL_S)
        pipe.execute()
        client.register_script(_SWITCH)(
            keys=[f"{prefix}current", data, meta], args=[generation, len(records), retain_s, prefix]
        )
    except redis.ConnectionError as exc:
        raise OnlineStoreUnavailable(f"online store {redacted(url)}: {exc}") from exc
    finally:
        client.close()
    return len(records)


class RedisOnlineStoreReader:
    """A long-lived reader for serving (thread-safe: redis-py pools its connections). Every lookup is one
    round trip that reads one snapshot, however many keys it asks for."""

    def __init__(self, url: str, *, password: str | None = None, namespace: str = NAMESPACE) -> None:
        self.url = url
        self._client = connect(url, password)
        self._prefix = f"{namespace}:"
        self._pointer = f"{self._prefix}current"
        self._lookup = self._client.register_script(_LOOKUP)
        self._meta = self._client.register_script(_META)
        self._columns: tuple[str, list[str]] = ("", [])  # (generation, its columns): immutable per generation
        if not self._call(lambda: self._client.exists(self._pointer)):
            raise self._missing()

    def _missing(self) -> OnlineStoreMissing:
        return OnlineStoreMissing(
            f"online store {redacted(self.url)} holds no snapshot under {self._pointer!r}; "
            "materialize features/online_store"
        )

    def _call(self, fn: Any) -> Any:
        try:
            return fn()
        except redis.AuthenticationError as exc:
            raise OnlineStoreUnavailable(f"online store {redacted(self.url)} refused the credentials: {exc}") from exc
        except redis.ConnectionError as exc:
            raise OnlineStoreUnavailable(f"online store {redacted(self.url)} unreachable: {exc}") from exc

    def _served_meta(self) -> list[bytes | None]:
        found = self._call(lambda: self._meta(keys=[self._pointer], args=[self._prefix]))
        if not found:
            raise self._missing()
        return cast(list[bytes | None], found)

    def snapshot_id(self) -> str | None:
        value = self._served_meta()[0]
        return None if value is None else value.decode()

    def written_at(self) -> datetime | None:
        value = self._served_meta()[1]
        return parse_written_at(None if value is None else value.decode())

    def lookup_one(self, entity_key: str) -> dict[str, Any] | None:
        return self.lookup([entity_key])[entity_key]

    def lookup(self, entity_keys: Sequence[str]) -> dict[str, dict[str, Any] | None]:
        """Feature vectors keyed by entity; an unknown entity maps to None."""
        keys = list(dict.fromkeys(entity_keys))
        known = self._columns
        found = self._call(lambda: self._lookup(keys=[self._pointer], args=[self._prefix, known[0], *keys]))
        if not found:
            raise self._missing()
        generation, values, columns = found[0].decode(), found[1], found[2]
        if columns:
            self._columns = known = (generation, json.loads(columns))
        elif generation != known[0]:
            raise MlopsError(f"online store {redacted(self.url)}: generation {generation} has no metadata")
        names = known[1]
        return {
            k: None if v is None else dict(zip(names, json.loads(v), strict=True))
            for k, v in zip(keys, values, strict=True)
        }

    def close(self) -> None:
        self._client.close()
