"""The feature-view contract: DAG validation, the feature-graph hash, lock and diff."""

import json
import re
import subprocess
import sys
from datetime import timedelta

import pytest

from mlops_pipelines.catalog.feature_views import FEATURE_VIEWS, RETURNS, VOLATILITY
from mlops_pipelines.lib.features.feature_views import (
    FeatureCatalog,
    FeatureGraphError,
    FeatureView,
    ViewRefError,
    diff_lock,
    normalize_sql,
    parse_view_ref,
    schema_mismatches,
)


def catalog_with(*replacements: FeatureView) -> FeatureCatalog:
    by_name = {v.name: v for v in FEATURE_VIEWS}
    by_name.update({v.name: v for v in replacements})
    return FeatureCatalog.from_views(by_name.values())


def edit(view: FeatureView, **changes: object) -> FeatureView:
    data = view.model_dump(by_alias=True)
    data.update(changes)
    return FeatureView.model_validate(data)


def test_catalog_has_the_desk_features() -> None:
    catalog = FeatureCatalog.from_views(FEATURE_VIEWS)
    assert len(catalog.views) >= 4
    assert sum(len(v.features) for v in catalog.views.values()) >= 12
    order = catalog.topological_order()
    assert order.index("returns") < order.index("cross_sectional") > order.index("volatility")


def test_graph_hash_is_the_same_in_another_process() -> None:
    code = "from mlops_pipelines.catalog.feature_views import load_catalog; print(load_catalog().graph_hash())"
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert other == FeatureCatalog.from_views(FEATURE_VIEWS).graph_hash()
    assert FeatureCatalog.from_views(reversed(FEATURE_VIEWS)).graph_hash() == other  # definition order is irrelevant


@pytest.mark.parametrize(
    "changes",
    [
        {"owner": "team:someone-else"},
        {"description": "A different description."},
        {"tags": {"domain": "other"}},
        {"sql": RETURNS.sql.replace("SELECT symbol,", "SELECT   symbol, -- the key\n")},  # whitespace and comments
    ],
)
def test_metadata_and_formatting_do_not_change_the_hash(changes: dict[str, object]) -> None:
    assert catalog_with(edit(RETURNS, **changes)).graph_hash() == catalog_with().graph_hash()


@pytest.mark.parametrize(
    "changes",
    [
        {"sql": RETURNS.sql.replace("lag(close, 4)", "lag(close, 5)")},
        {"ttl_bars": 4},
        {"ttl": timedelta(hours=3), "ttl_bars": None},  # the same TTL, but as a duration: no longer in bars
        {"availability_lag": timedelta(seconds=6)},
        {"version": RETURNS.version + 1},
        {"schema": {**RETURNS.schema_, "ret_1b": "FLOAT"}},
    ],
)
def test_contract_changes_change_the_hash(changes: dict[str, object]) -> None:
    assert catalog_with(edit(RETURNS, **changes)).graph_hash() != catalog_with().graph_hash()


def test_upstream_version_bump_changes_downstream_contract() -> None:
    bumped = catalog_with(edit(RETURNS, version=RETURNS.version + 1))
    assert f"returns@{RETURNS.version + 1}" in bumped.views["cross_sectional"].contract(bumped)["depends_on"]


def test_cycle_is_rejected_naming_the_views() -> None:
    a = edit(RETURNS, depends_on=("volatility",), sql="SELECT * FROM {{ volatility }}")
    b = edit(VOLATILITY, depends_on=("returns",), sql="SELECT * FROM {{ returns }}")
    with pytest.raises(
        FeatureGraphError, match=r"cycle: (returns -> volatility -> returns|volatility -> returns -> volatility)"
    ):
        catalog_with(a, b)


def test_missing_dependency_is_rejected_naming_both_views() -> None:
    broken = edit(RETURNS, depends_on=("prices",), sql="SELECT * FROM {{ prices }}")
    with pytest.raises(FeatureGraphError, match="'returns' depends on 'prices'"):
        catalog_with(broken)


def test_sql_must_reference_exactly_the_declared_dependencies() -> None:
    with pytest.raises(ValueError, match="SQL references"):
        edit(RETURNS, depends_on=("raw.market_bars", "volatility"))


def test_duplicate_feature_names_and_views_are_rejected() -> None:
    clash = edit(VOLATILITY, name="volatility_copy")
    with pytest.raises(FeatureGraphError, match="'rvol_24b' is produced by both 'volatility' and"):
        catalog_with(clash)
    with pytest.raises(FeatureGraphError, match="defined twice"):
        FeatureCatalog.from_views([RETURNS, edit(RETURNS, version=RETURNS.version + 1)])


def test_schema_must_declare_keys() -> None:
    schema = {k: v for k, v in RETURNS.schema_.items() if k != "created_ts"}
    with pytest.raises(ValueError, match="lacks key column"):
        edit(RETURNS, schema=schema)


def lock_of(catalog: FeatureCatalog) -> dict[str, object]:
    return json.loads(json.dumps(catalog.lock()))  # as it comes back from the committed file


def test_diff_classifies_changes() -> None:
    locked = lock_of(catalog_with())
    assert {c.kind for c in diff_lock(locked, lock_of(catalog_with()))} == {"unchanged"}

    changes = {c.view: c for c in diff_lock(locked, lock_of(catalog_with(edit(RETURNS, owner="team:x"))))}
    assert changes["returns"].kind == "metadata" and not changes["returns"].breaking

    sql_change = edit(RETURNS, sql=RETURNS.sql.replace("lag(close, 4)", "lag(close, 5)"))
    changes = {c.view: c for c in diff_lock(locked, lock_of(catalog_with(sql_change)))}
    assert changes["returns"].breaking and changes["returns"].fields == ("sql",)
    assert "returns: sql changed without a version bump" in changes["returns"].describe()
    # the downstream view is unaffected: its dependency resolves to the same version
    assert changes["cross_sectional"].kind == "unchanged"

    bumped = edit(sql_change, version=RETURNS.version + 1)
    changes = {c.view: c for c in diff_lock(locked, lock_of(catalog_with(bumped)))}
    assert changes["returns"].kind == "version_bump" and not changes["returns"].breaking
    # ... and the downstream view now depends on the new returns version without its own bump: breaking
    assert changes["cross_sectional"].breaking and changes["cross_sectional"].fields == ("depends_on",)


@pytest.mark.parametrize("field", ["ttl", "ttl_bars", "entities"])
def test_diff_flags_ttl_and_entity_changes(field: str) -> None:
    changes: dict[str, object] = {
        "ttl": {"ttl": timedelta(hours=9), "ttl_bars": None},
        "ttl_bars": {"ttl_bars": 9},
        "entities": {"entities": ("symbol", "venue"), "schema": {**RETURNS.schema_, "venue": "VARCHAR"}},
    }[field]
    changed = edit(RETURNS, **changes)
    kinds = {c.view: c for c in diff_lock(lock_of(catalog_with()), lock_of(catalog_with(changed)))}
    assert kinds["returns"].breaking
    assert {"ttl": "ttl_seconds"}.get(field, field) in kinds["returns"].fields


def test_removed_and_added_views() -> None:
    locked = lock_of(catalog_with())
    extra = edit(
        RETURNS,
        name="returns_fast",
        schema={**{k: v for k, v in RETURNS.schema_.items() if not k.startswith("ret_")}, "ret_fast": "DOUBLE"},
    )
    changes = {c.view: c.kind for c in diff_lock(locked, lock_of(catalog_with(extra)))}
    assert changes["returns_fast"] == "added"
    reduced = FeatureCatalog.from_views([v for v in FEATURE_VIEWS if v.name != "oscillators"])
    removed = {c.view: c for c in diff_lock(locked, lock_of(reduced))}
    assert removed["oscillators"].breaking


def test_normalize_sql_keeps_literals() -> None:
    assert normalize_sql("SELECT  'a  --b'  -- note\n FROM /* x */ t") == "SELECT 'a  --b' FROM t"


def test_schema_mismatches_name_columns() -> None:
    problems = schema_mismatches({"a": "DOUBLE", "b": "VARCHAR"}, {"a": "BIGINT", "c": "VARCHAR"})
    assert "missing column 'b' (VARCHAR)" in problems
    assert "undeclared column 'c' (VARCHAR)" in problems
    assert "column 'a' is BIGINT, declared DOUBLE" in problems


@pytest.mark.parametrize(
    ("ref", "parsed"),
    [("returns", ("returns", None)), ("returns@2", ("returns", 2)), (" returns @ 3 ", ("returns", 3))],
)
def test_view_refs_parse(ref: str, parsed: tuple[str, int | None]) -> None:
    assert parse_view_ref(ref) == parsed


@pytest.mark.parametrize("ref", ["returns@abc", "returns@", "@2", "", "returns@-1", "returns@²", "returns@1.5"])
def test_malformed_view_refs_are_named(ref: str) -> None:
    with pytest.raises(ViewRefError, match=f"reference {re.escape(repr(ref))} is not NAME or NAME@VERSION"):
        parse_view_ref(ref)
