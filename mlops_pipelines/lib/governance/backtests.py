"""Replaying a registered version: the models it is replayed with (itself and the production champion, both loaded
through ``load_for_inference``), used by the evaluation's backtest asset; and an on-demand replay of one window
(a scenario of catalog/scenarios.yaml, or explicit dates) for the API's ``POST /api/v1/ml/{model}/backtest``.

An on-demand replay writes nothing the gate reads (``evaluation.backtest_results`` and the gate metrics stay the
pipeline's): its metrics are returned, and its equity curves are logged into the version's training run under
``api_backtests/<id>/``.
"""

import json
import math
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import lightgbm as lgb

from mlops_pipelines.lib.core.errors import MlopsError, NotFound
from mlops_pipelines.lib.core.times import utc_time
from mlops_pipelines.lib.core.tracking import Tracking, run_ui_url
from mlops_pipelines.lib.evaluation import replay
from mlops_pipelines.lib.evaluation.scenarios import ScenarioCatalog
from mlops_pipelines.lib.features.feature_views import FeatureCatalog
from mlops_pipelines.lib.governance.lifecycle import Lifecycle
from mlops_pipelines.lib.governance.model_loading import load_for_inference
from mlops_pipelines.lib.ingestion import market_bars
from mlops_pipelines.lib.training.datasets import split_range
from mlops_pipelines.lib.training.model_specs import ModelSpec

ARTIFACT_FOLDER = "api_backtests"  # in the version's training run: one subfolder per on-demand replay


class WindowTooLong(MlopsError, ValueError):
    """An on-demand replay window longer than the synchronous limit (MLOPS_SERVE_BACKTEST_MAX_DAYS)."""

    def __init__(self, days: float, limit: float, field: str) -> None:
        super().__init__(
            f"the window spans {days:g} days; replays answered synchronously are limited to {limit:g} days "
            "(MLOPS_SERVE_BACKTEST_MAX_DAYS): pick a shorter window, or run the model's backtest asset"
        )
        self.days, self.limit, self.field = days, limit, field


class EmptyWindow(MlopsError, ValueError):
    """A replay window with no bars in the warehouse."""


@dataclass(frozen=True)
class ReplayModels:
    """The boosters a version is replayed with (``replay.CANDIDATE``, and ``replay.CHAMPION`` when there is a
    production version other than it that loads on the live feature graph)."""

    boosters: dict[str, lgb.Booster]
    features: list[str]
    champion: str | None
    champion_skipped: str | None  # why the champion is not among them (None when it is, or there is none)


def replay_models(
    lifecycle: Lifecycle, tracking: Tracking, model: str, version: str, *, live_graph_hash: str
) -> ReplayModels:
    """The candidate (refused as ``load_for_inference`` refuses it) and the champion to compare it with; a
    champion that cannot be loaded on the live graph is left out, with the reason."""
    candidate = load_for_inference(lifecycle, tracking, model, version, live_graph_hash=live_graph_hash)
    boosters = {replay.CANDIDATE: candidate.booster}
    champion, skipped = lifecycle.champion(model), None
    if champion is not None and champion != version:
        try:
            loaded = load_for_inference(lifecycle, tracking, model, champion, live_graph_hash=live_graph_hash)
            boosters[replay.CHAMPION] = loaded.booster
        except Exception as exc:  # a champion on another feature graph cannot be replayed on this one
            skipped = f"champion v{champion} not replayed: {exc}"
    replayed = champion if replay.CHAMPION in boosters else None
    return ReplayModels(boosters, candidate.features, replayed, skipped)


def scenario_window(scenarios: ScenarioCatalog, name: str, last_bar: datetime) -> tuple[datetime, datetime]:
    """The window of a scenario of catalog/scenarios.yaml (``NotFound`` naming the scenarios there)."""
    found = scenarios.scenarios.get(name)
    if found is None:
        raise NotFound(f"no scenario {name!r} in catalog/scenarios.yaml; scenarios: {', '.join(scenarios.scenarios)}")
    return found.window(last_bar)


def backtest_window(
    lifecycle: Lifecycle,
    tracking: Tracking,
    spec: ModelSpec,
    catalog: FeatureCatalog,
    scenarios: ScenarioCatalog,
    version: str | None,
    *,
    scenario: str | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    max_days: float,
    ui_url: str,
) -> dict[str, Any]:
    """Replay ``version`` (default: the newest registered) of ``spec``'s model on a scenario or on ``[start,
    end)``, against buy-and-hold, the naive baseline and the champion, after the scenario file's costs; log the
    equity curves (PNG) and the metrics into its training run. Returns the metrics per strategy (a non-finite
    one as null), the window, whether it overlaps the version's training data, and where the PNG is stored (its
    artifact URI, and its page in the MLflow UI at ``ui_url``). A window longer than ``max_days`` is refused
    before anything is loaded (``WindowTooLong``)."""
    model = spec.name
    version = version or lifecycle.newest(model)
    if version is None:
        raise NotFound(f"{model} has no registered version to replay")
    last_bar = market_bars.last_bar_time(lifecycle.conn)
    if last_bar is None:
        raise NotFound(f"{market_bars.BARS_TABLE} is empty: nothing to replay (ingest bars first)")
    if scenario is not None:
        start, end = scenario_window(scenarios, scenario, last_bar)
    assert start is not None and end is not None
    days = (end - start) / timedelta(days=1)
    if days > max_days:
        raise WindowTooLong(days, max_days, "scenario" if scenario is not None else "end")
    models = replay_models(lifecycle, tracking, model, version, live_graph_hash=catalog.graph_hash())
    mv = lifecycle.version(model, version)
    trained = split_range(lifecycle.conn, mv.tags.get("dataset_hash", ""), "train")
    train_end = None if trained is None else trained[1] - replay.decision_lag(spec, catalog).to_pytimedelta()
    name = scenario or "window"
    result = replay.replay(
        lifecycle.conn,
        spec,
        catalog,
        name,
        start,
        end,
        models.boosters,
        models.features,
        cost_bps=scenarios.cost_bps,
        train_end=train_end,
    )
    if result is None:
        raise EmptyWindow(f"no bars in {market_bars.BARS_TABLE} from {utc_time(start)} to {utc_time(end)}")
    backtest_id = f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}_{uuid.uuid4().hex[:8]}"
    folder = f"{ARTIFACT_FOLDER}/{backtest_id}"
    metrics = {
        strategy: {k: (float(v) if math.isfinite(v) else None) for k, v in values.items()}
        for strategy, values in result.metrics.items()
    }
    run_id = lifecycle.run_id(model, version)
    summary = {
        "backtest_id": backtest_id,
        "model": model,
        "version": version,
        "scenario": scenario,
        "start": utc_time(start),
        "end": utc_time(end),
        "bars": 0 if result.equity is None else len(result.equity),
        "in_sample": result.in_sample if train_end is not None else None,
        "training_data_ends": utc_time(train_end),
        "cost_bps": scenarios.cost_bps,
        "champion_version": models.champion,
        "champion_skipped": models.champion_skipped,
        "metrics": metrics,
    }
    tracking.log_files(
        run_id,
        {"equity.png": replay.equity_png(result, f"{model} v{version}"), "metrics.json": json.dumps(summary, indent=2)},
        folder,
    )
    run = tracking.client().get_run(run_id)
    return {
        **summary,
        "mlflow_run_id": run_id,
        "equity_png_uri": f"{run.info.artifact_uri}/{folder}/equity.png",
        "equity_png_url": run_ui_url(ui_url, run.info.experiment_id, run_id, f"{folder}/equity.png"),
    }
