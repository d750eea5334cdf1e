"""The market context of a prompt case from the feature store: the values a symbol's features had as of a time
(point in time: the newest row whose inputs were available by then), so that a market summary's stated return or
volatility is checked against what the warehouse knew, not against numbers typed into a file."""

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime

import duckdb
import pandas as pd

from mlops_pipelines.lib.core.errors import NotFound
from mlops_pipelines.lib.features.feature_views import FeatureView
from mlops_pipelines.lib.features.point_in_time import ENTITY_TIME, get_historical_features
from mlops_pipelines.lib.prompts.eval_sets import PromptCases, feature_lines


def feature_values(
    conn: duckdb.DuckDBPyConnection,
    views: Sequence[FeatureView],
    symbol: str,
    as_of: str | datetime,
    features: Sequence[str],
) -> dict[str, float]:
    """``features`` of ``symbol`` as of ``as_of`` (UTC when naive). NotFound names the symbol, the time and the
    feature the store has no value for (an unknown feature, a symbol never seen, a window not yet full)."""
    wanted = [v for v in views if set(v.features) & set(features)]
    unknown = sorted(set(features) - {f for v in wanted for f in v.features})
    if unknown:
        raise NotFound(f"no feature view in the catalog produces {', '.join(unknown)}")
    when = pd.Timestamp(as_of)
    when = when.tz_localize("UTC") if when.tzinfo is None else when.tz_convert("UTC")
    frame = get_historical_features(conn, pd.DataFrame({"symbol": [symbol], ENTITY_TIME: [when]}), wanted)
    values = {}
    for name in features:
        value = frame[name].iloc[0]
        if pd.isna(value):
            raise NotFound(f"the feature store has no {name} for {symbol} as of {when.isoformat()}")
        values[name] = float(value)
    return values


def with_feature_store_context(
    cases: PromptCases, conn: duckdb.DuckDBPyConnection, views: Sequence[FeatureView]
) -> PromptCases:
    """``cases`` with the ``features`` of every case whose context names a ``symbol`` and an ``as_of`` replaced by
    the feature store's values of the same features at that time, in the context and in the prompt's features
    variable (its ``name=value`` lines; text appended after them, an adversarial input, is kept)."""
    refreshed = []
    for case in cases.cases:
        symbol, as_of = case.context.get("symbol"), case.context.get("as_of")
        features = case.context.get("features")
        if not (isinstance(symbol, str) and as_of and isinstance(features, dict)):
            refreshed.append(case)
            continue
        values = feature_values(conn, views, symbol, as_of, list(features))
        variables = dict(case.variables)
        name = cases.features_variable
        if name is not None and isinstance(variables.get(name), str):
            old, new = feature_lines(features), feature_lines(values)
            text = variables[name]
            variables[name] = new + text[len(old) :] if text.startswith(old) else new
        context = {**case.context, "features": values}
        refreshed.append(case.model_copy(update={"context": context, "variables": variables}))
    return replace(cases, cases=refreshed)


@dataclass(frozen=True)
class ContextProvenance:
    """Whether the contexts a recorded evaluation set was answered from are what this warehouse holds.

    ``differing``: one line per feature whose recorded value is not the warehouse's; ``absent``: cases whose symbol
    or time this warehouse has no features for (another market, a universe without the symbol)."""

    checked: int
    matching: int
    differing: list[str]
    absent: list[str]


def context_provenance(
    cases: PromptCases, conn: duckdb.DuckDBPyConnection, views: Sequence[FeatureView], *, tolerance: float = 1e-5
) -> ContextProvenance:
    """Compare every case's recorded feature context with the feature store's values at the same time (relative
    ``tolerance``; the files keep six significant digits)."""
    checked, matching, differing, absent = 0, 0, [], []
    for case in cases.cases:
        symbol, as_of = case.context.get("symbol"), case.context.get("as_of")
        features = case.context.get("features")
        if not (isinstance(symbol, str) and as_of and isinstance(features, dict)):
            continue
        checked += 1
        try:
            values = feature_values(conn, views, symbol, as_of, list(features))
        except (NotFound, duckdb.Error) as exc:
            absent.append(f"case {case.id}: {exc}")
            continue
        wrong = [
            f"case {case.id}: {name} recorded {float(recorded):.6g}, warehouse {values[name]:.6g}"
            for name, recorded in features.items()
            if abs(float(recorded) - values[name]) > tolerance * max(1.0, abs(values[name]))
        ]
        differing.extend(wrong)
        matching += not wrong
    return ContextProvenance(checked, matching, differing, absent)
