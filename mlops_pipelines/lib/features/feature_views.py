"""The feature-view contract: definitions, their DAG, the feature-graph hash, lock and diff.

A view's SQL names its inputs as ``{{ raw.market_bars }}`` or ``{{ other_view }}``; rendering replaces each
reference with the physical table (``raw.market_bars``, ``features.other_view__v<version>``). The SQL returns
the entity key(s), ``event_ts`` and ``created_ts`` (when the inputs became available); the materializer adds
the view's availability lag to ``created_ts``.

Views count windows in bars (``lag(close, 24)``, ``ROWS BETWEEN 23 PRECEDING``) and never assume a bar length:
the SQL writes ``{{ bar_interval }}`` for the length of one bar and ``{{ bars_per_year }}`` for the annualization
factor, and a TTL in bars (``ttl_bars``). A catalog is built for one bar clock (``lib/core/bars.py``), which fills
them in; the clock is part of the lock and of the feature-graph hash, so a model trained on hourly features is
refused on daily ones.
"""

import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from mlops_pipelines.lib.core.bars import DEFAULT_BAR_CLOCK, BarClock
from mlops_pipelines.lib.core.errors import MlopsError
from mlops_pipelines.lib.core.warehouse import quote_ident

RAW_TABLES = frozenset({"raw.market_bars"})
BAR_PARAMETERS = frozenset({"bar_interval", "bars_per_year"})  # filled in from the catalog's bar clock
_REF = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_.]*)\s*\}\}")
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_VERSION = re.compile(r"[0-9]+")
BREAKING_FIELDS = (
    "sql",
    "schema",
    "depends_on",
    "entities",
    "event_time",
    "created_time",
    "ttl_seconds",
    "ttl_bars",
    "availability_lag_seconds",
)
METADATA_FIELDS = ("owner", "description", "tags")


class FeatureGraphError(MlopsError, ValueError):
    """The catalog of feature views is not a valid DAG (cycle, missing or undeclared dependency, clash)."""


class ViewRefError(MlopsError, LookupError):
    """A feature view reference (``NAME`` or ``NAME@VERSION``) is malformed or names no known view version."""


class FeatureView(BaseModel):
    """One versioned feature view, as code."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    version: int = Field(ge=1)
    owner: str
    description: str
    entities: tuple[str, ...] = ("symbol",)
    event_time: str = "event_ts"
    created_time: str = "created_ts"
    ttl: timedelta | None = Field(
        default=None, description="Oldest a row may be and still be served, as a duration; or give ttl_bars."
    )
    ttl_bars: int | None = Field(
        default=None, ge=1, description="The TTL counted in bars; the catalog sets ttl from it for its bar clock."
    )
    availability_lag: timedelta = timedelta(0)
    depends_on: tuple[str, ...]
    sql: str
    schema_: dict[str, str] = Field(alias="schema")
    tags: dict[str, str] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _snake_case(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError(f"feature view name {value!r} must be snake_case")
        return value

    @field_validator("schema_")
    @classmethod
    def _upper_types(cls, value: dict[str, str]) -> dict[str, str]:
        return {column: dtype.strip().upper() for column, dtype in value.items()}

    @model_validator(mode="after")
    def _schema_has_keys(self) -> "FeatureView":
        required = (*self.entities, self.event_time, self.created_time)
        missing = [c for c in required if c not in self.schema_]
        if missing:
            raise ValueError(f"feature view {self.name!r}: declared schema lacks key column(s) {missing}")
        if not self.features:
            raise ValueError(f"feature view {self.name!r}: declares no feature columns")
        if self.ttl is not None and self.ttl_bars is not None:
            raise ValueError(f"feature view {self.name!r}: give ttl or ttl_bars, not both")
        refs = set(sql_references(self.sql))
        if refs != set(self.depends_on):
            raise ValueError(
                f"feature view {self.name!r}: SQL references {sorted(refs)} but depends_on declares "
                f"{sorted(self.depends_on)}; they must match"
            )
        return self

    @property
    def table(self) -> str:
        return f"features.{self.name}__v{self.version}"

    @property
    def key_columns(self) -> tuple[str, ...]:
        return (*self.entities, self.event_time, self.created_time)

    @property
    def features(self) -> list[str]:
        keys = set(self.key_columns)
        return [c for c in self.schema_ if c not in keys]

    def for_bars(self, clock: BarClock) -> "FeatureView":
        """The view as a catalog for ``clock`` serves it: ``ttl`` set from ``ttl_bars``."""
        if self.ttl_bars is None:
            return self
        return self.model_copy(update={"ttl": clock.interval * self.ttl_bars})

    def contract(self, catalog: "FeatureCatalog") -> dict[str, Any]:
        """The hashed part of the definition: what changes the data a view produces (for any bar clock: the
        clock is hashed once, beside the views)."""
        return {
            "name": self.name,
            "version": self.version,
            "sql": normalize_sql(self.sql),
            "schema": [[column, dtype] for column, dtype in self.schema_.items()],
            "depends_on": sorted(catalog.resolve_dependency(d) for d in self.depends_on),
            "entities": list(self.entities),
            "event_time": self.event_time,
            "created_time": self.created_time,
            "ttl_seconds": _seconds(self.ttl) if self.ttl_bars is None else None,
            "ttl_bars": self.ttl_bars,
            "availability_lag_seconds": _seconds(self.availability_lag),
        }

    def metadata(self) -> dict[str, Any]:
        return {
            "owner": self.owner,
            "description": " ".join(self.description.split()),
            "tags": dict(sorted(self.tags.items())),
        }


def _seconds(value: timedelta | None) -> float | None:
    return None if value is None else value.total_seconds()


def sql_references(sql: str) -> list[str]:
    """The tables and views a view's SQL reads (``{{ name }}``, bar parameters left out)."""
    return sorted(set(_REF.findall(sql)) - BAR_PARAMETERS)


def normalize_sql(sql: str) -> str:
    """Comments removed and whitespace collapsed, outside string literals; case is kept (literals matter)."""
    out: list[str] = []
    i, n = 0, len(sql)

    def space() -> None:
        if out and out[-1] != " ":
            out.append(" ")

    while i < n:
        ch = sql[i]
        if ch == "'":
            j = i + 1
            while j < n:
                if sql[j] == "'" and (j + 1 >= n or sql[j + 1] != "'"):
                    break
                j += 2 if sql[j] == "'" else 1
            out.append(sql[i : j + 1])
            i = j + 1
        elif sql.startswith("--", i):
            j = sql.find("\n", i)
            i = n if j < 0 else j
            space()
        elif sql.startswith("/*", i):
            j = sql.find("*/", i + 2)
            i = n if j < 0 else j + 2
            space()
        elif ch.isspace():
            space()
            i += 1
        else:
            out.append(ch)
            i += 1
    return "".join(out).strip()


@dataclass(frozen=True)
class FeatureCatalog:
    """All feature views, validated as a DAG at construction, for one bar clock (the views' TTLs in bars are
    resolved for it, and their SQL rendered with it)."""

    views: Mapping[str, FeatureView]
    bar_clock: BarClock = field(default_factory=BarClock)

    @classmethod
    def from_views(cls, views: Iterable[FeatureView], bar_clock: BarClock | None = None) -> "FeatureCatalog":
        bar_clock = bar_clock or DEFAULT_BAR_CLOCK
        by_name: dict[str, FeatureView] = {}
        for view in views:
            if view.name in BAR_PARAMETERS:
                raise FeatureGraphError(f"{view.name!r} names a bar parameter of the SQL: name the view otherwise")
            if view.name in by_name:
                raise FeatureGraphError(
                    f"feature view {view.name!r} is defined twice (versions {by_name[view.name].version} and "
                    f"{view.version}); keep one definition per name and bump its version"
                )
            by_name[view.name] = view.for_bars(bar_clock)
        catalog = cls(views=dict(sorted(by_name.items())), bar_clock=bar_clock)
        catalog._validate()
        return catalog

    def _validate(self) -> None:
        for view in self.views.values():
            for dep in view.depends_on:
                if dep not in RAW_TABLES and dep not in self.views:
                    raise FeatureGraphError(
                        f"feature view {view.name!r} depends on {dep!r}, which is neither a raw table "
                        f"({', '.join(sorted(RAW_TABLES))}) nor a feature view in the catalog"
                    )
        owners: dict[str, str] = {}
        for view in self.views.values():
            for feature in view.features:
                if feature in owners:
                    raise FeatureGraphError(
                        f"feature {feature!r} is produced by both {owners[feature]!r} and {view.name!r}; "
                        "feature names must be unique across views"
                    )
                owners[feature] = view.name
        self.topological_order()

    def topological_order(self) -> list[str]:
        """Views in dependency order; raises naming the views on a cycle."""
        order: list[str] = []
        state: dict[str, int] = {}  # 1 = visiting, 2 = done

        def visit(name: str, path: list[str]) -> None:
            if state.get(name) == 2:
                return
            if state.get(name) == 1:
                cycle = [*path[path.index(name) :], name]
                raise FeatureGraphError(f"feature views form a cycle: {' -> '.join(cycle)}")
            state[name] = 1
            for dep in self.views[name].depends_on:
                if dep in self.views:
                    visit(dep, [*path, name])
            state[name] = 2
            order.append(name)

        for name in self.views:
            visit(name, [])
        return order

    def resolve_dependency(self, dep: str) -> str:
        return dep if dep in RAW_TABLES else f"{dep}@{self.views[dep].version}"

    def upstream(self, name: str) -> list[str]:
        return list(self.views[name].depends_on)

    def downstream(self, name: str) -> list[str]:
        return sorted(v.name for v in self.views.values() if name in v.depends_on)

    def render_body(self, name: str) -> str:
        """The view's SQL with references replaced by physical tables, the bar parameters by the catalog's clock
        and the availability lag applied: the rows the materializer indexes (lib/features/feature_store.py)."""
        view = self.views[name]
        parameters = {
            "bar_interval": self.bar_clock.sql_interval,
            "bars_per_year": f"{self.bar_clock.periods_per_year:g}",
        }

        def table_for(match: re.Match[str]) -> str:
            ref = match.group(1)
            if ref in parameters:
                return parameters[ref]
            return ref if ref in RAW_TABLES else self.views[ref].table

        body = _REF.sub(table_for, view.sql)
        lag_us = int(view.availability_lag.total_seconds() * 1_000_000)
        created = quote_ident(view.created_time)
        return f"SELECT * REPLACE ({created} + INTERVAL ({lag_us}) MICROSECOND AS {created}) FROM ({body}) AS _view"

    def graph_hash(self) -> str:
        """sha256 over the canonical JSON of the bar clock and every view's contract (sorted by name)."""
        contracts = [self.views[name].contract(self) for name in sorted(self.views)]
        hashed = {"bars": self.bar_clock.describe(), "views": contracts}
        canonical = json.dumps(hashed, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
        return hashlib.sha256(canonical.encode()).hexdigest()

    def lock(self) -> dict[str, Any]:
        """The content of ``catalog/feature_lock.json``: the hash, the bar clock, every view's contract and
        metadata."""
        return {
            "bars": self.bar_clock.describe(),
            "feature_graph_hash": self.graph_hash(),
            "views": {name: {**view.contract(self), **view.metadata()} for name, view in self.views.items()},
        }


@dataclass(frozen=True)
class ViewChange:
    view: str
    kind: str  # "breaking" | "version_bump" | "metadata" | "added" | "removed" | "unchanged" | "bar_clock"
    fields: tuple[str, ...] = ()

    @property
    def breaking(self) -> bool:
        return self.kind in ("breaking", "removed", "bar_clock")

    def describe(self) -> str:
        what = ", ".join(self.fields)
        return {
            "breaking": f"{self.view}: {what} changed without a version bump (bump the version to publish it)",
            "removed": f"{self.view}: removed from the catalog (consumers pinned to it would break)",
            "version_bump": f"{self.view}: new version ({what})",
            "metadata": f"{self.view}: metadata-only change ({what})",
            "added": f"{self.view}: new view",
            "unchanged": f"{self.view}: unchanged",
            "bar_clock": f"{self.view}: the catalog was locked for {what} (MLOPS_BAR_INTERVAL, MLOPS_MARKET_CALENDAR): "
            "every view's values change meaning; "
            "lock the catalog for this deployment's bars (`mlops features lock`); models trained on the other "
            "bars are refused at load (feature-graph hash)",
        }[self.kind]


def diff_lock(locked: Mapping[str, Any], current: Mapping[str, Any]) -> list[ViewChange]:
    """Compare a committed lock with the current catalog's lock, view by view."""
    old_views: Mapping[str, Mapping[str, Any]] = locked.get("views", {})
    new_views: Mapping[str, Mapping[str, Any]] = current.get("views", {})
    changes: list[ViewChange] = []
    # a lock from before the bar clock was declared was made for hourly bars around the clock
    old_bars = locked.get("bars", DEFAULT_BAR_CLOCK.describe())
    new_bars = current.get("bars", DEFAULT_BAR_CLOCK.describe())
    if old_bars != new_bars:
        changes.append(
            ViewChange("bar clock", "bar_clock", (f"{_clock(old_bars)}, this checkout declares {_clock(new_bars)}",))
        )
    for name in sorted(set(old_views) | set(new_views)):
        old, new = old_views.get(name), new_views.get(name)
        if old is None:
            changes.append(ViewChange(name, "added"))
            continue
        if new is None:
            changes.append(ViewChange(name, "removed"))
            continue
        contract = tuple(f for f in BREAKING_FIELDS if old.get(f) != new.get(f))
        metadata = tuple(f for f in METADATA_FIELDS if old.get(f) != new.get(f))
        if new["version"] < old["version"]:
            changes.append(
                ViewChange(name, "breaking", (f"version went back from {old['version']} to {new['version']}",))
            )
        elif new["version"] > old["version"]:
            changes.append(ViewChange(name, "version_bump", (f"v{old['version']} -> v{new['version']}", *contract)))
        elif contract:
            changes.append(ViewChange(name, "breaking", contract))
        elif metadata:
            changes.append(ViewChange(name, "metadata", metadata))
        else:
            changes.append(ViewChange(name, "unchanged"))
    return changes


def _clock(bars: Mapping[str, Any]) -> str:
    return f"{bars['interval']} bars on the {bars['calendar']} calendar"


def schema_mismatches(declared: Mapping[str, str], actual: Mapping[str, str]) -> list[str]:
    """Human-readable differences between a declared schema and a table's columns (order included)."""
    problems = [f"missing column {c!r} ({t})" for c, t in declared.items() if c not in actual]
    problems += [f"undeclared column {c!r} ({t})" for c, t in actual.items() if c not in declared]
    problems += [
        f"column {c!r} is {actual[c]}, declared {t}"
        for c, t in declared.items()
        if c in actual and actual[c].upper() != t
    ]
    if not problems and list(declared) != list(actual):
        problems.append(f"column order {list(actual)} differs from declared {list(declared)}")
    return problems


def parse_view_ref(ref: str) -> tuple[str, int | None]:
    """``name`` or ``name@version`` (a whole number); anything else raises ``ViewRefError``."""
    name, at, version = ref.partition("@")
    name, version = name.strip(), version.strip()
    if not name or (at and not _VERSION.fullmatch(version)):
        raise ViewRefError(f"feature view reference {ref!r} is not NAME or NAME@VERSION (VERSION a whole number)")
    return name, int(version) if at else None


def feature_columns(views: Sequence[FeatureView]) -> list[str]:
    return [f for view in views for f in view.features]
