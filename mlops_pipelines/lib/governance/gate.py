"""The promotion gate, the one path for the promotion asset, the compliance report, the CLI and the API: what
it observes for a version (held-out training metrics, the holdout backtest, its drift against its own training
data), the policy evaluation, and the lifecycle transition that follows."""

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import duckdb
from mlflow import MlflowClient

from mlops_pipelines.lib.core.tracking import read_text_artifact
from mlops_pipelines.lib.evaluation.replay import stored_gate_metrics
from mlops_pipelines.lib.features.feature_store import last_event_time
from mlops_pipelines.lib.features.feature_views import FeatureCatalog
from mlops_pipelines.lib.governance.lifecycle import Lifecycle
from mlops_pipelines.lib.governance.promotion_policy import PolicyResult, PromotionPolicy, evaluate
from mlops_pipelines.lib.monitoring.drift_policy import DriftPolicy
from mlops_pipelines.lib.monitoring.drift_report import build_report
from mlops_pipelines.lib.monitoring.severity import Severity
from mlops_pipelines.lib.training.datasets import dataset_by_hash
from mlops_pipelines.lib.training.model_specs import ModelSpec


def observed_metrics(
    client: MlflowClient,
    conn: duckdb.DuckDBPyConnection,
    model: str,
    version: str,
    spec: ModelSpec | None,
    catalog: FeatureCatalog,
    drift_policy: DriftPolicy,
) -> dict[str, Any]:
    """Everything the policy thresholds compare: the run's metrics, the gate metrics of the holdout backtest,
    and ``drift_severity`` (``training_drift_severity``). A model outside the catalog (``spec`` None) has no
    known features: its drift is left unmeasured, which fails ``max_drift_severity`` unless overridden."""
    mv = client.get_model_version(model, version)
    metrics: dict[str, Any] = dict(client.get_run(mv.run_id).data.metrics) if mv.run_id else {}
    metrics.update(stored_gate_metrics(conn, model, str(version)))
    if spec is not None:
        manifest = json.loads(read_text_artifact(client, mv.run_id, "manifest.json")) if mv.run_id else {}
        metrics["drift_severity"] = training_drift_severity(
            conn,
            spec,
            catalog,
            drift_policy,
            dataset_hash=mv.tags.get("dataset_hash"),
            importance=list(manifest.get("feature_importance", {})),
        )
    return metrics


def training_drift_severity(
    conn: duckdb.DuckDBPyConnection,
    spec: ModelSpec,
    catalog: FeatureCatalog,
    drift_policy: DriftPolicy,
    *,
    dataset_hash: str | None,
    importance: list[str],
    as_of: datetime | None = None,
    current: timedelta = timedelta(days=1),
    reference: timedelta = timedelta(days=30),
) -> Severity:
    """Drift as it concerns one version: the model severity (monitoring's thresholds and aggregation) of the day
    of features before ``as_of`` (default: the newest row) against the last 30 days of the version's own
    training data (``dataset_hash``, from training.datasets).

    Not the deployed version's monitoring report: a version is judged against what it learned. Right after a
    regime shift a retrained version has seen little of the new market and is judged drifted too; weeks later,
    one trained on the new market is not, while the old version still is.
    NORMAL when the training window is unknown (no dataset on record) or there are no features.
    """
    dataset = dataset_by_hash(conn, dataset_hash) if dataset_hash else None
    if dataset is None:
        return Severity.NORMAL
    trained_until = dataset["last_decision"]
    if as_of is None:
        newest = last_event_time(conn, catalog.views[next(iter(spec.feature_views))])
        as_of = None if newest is None else newest + timedelta(microseconds=1)  # the newest row included
    if trained_until is None or as_of is None:
        return Severity.NORMAL
    report = build_report(
        conn,
        spec,
        "",
        catalog,
        drift_policy,
        importance or spec.features(catalog),
        window_end=as_of,
        current=current,
        reference=reference,
        reference_end=trained_until + timedelta(microseconds=1),
    )
    return report.severity


def evaluate_version(
    lifecycle: Lifecycle,
    model: str,
    version: str,
    *,
    spec: ModelSpec | None,
    catalog: FeatureCatalog,
    promotion_policy: PromotionPolicy,
    drift_policy: DriftPolicy,
    request: dict[str, Any] | None = None,
) -> PolicyResult:
    """The policy's verdict on a version (thresholds merged request > model > strategy > default)."""
    strategy = spec.strategy if spec else lifecycle.version(model, version).tags.get("strategy", "")
    metrics = observed_metrics(lifecycle.client, lifecycle.conn, model, version, spec, catalog, drift_policy)
    return evaluate(promotion_policy, model=model, strategy=strategy, metrics=metrics, request=request)


def run_gate(
    lifecycle: Lifecycle,
    model: str,
    version: str,
    *,
    actor: str,
    spec: ModelSpec | None,
    catalog: FeatureCatalog,
    promotion_policy: PromotionPolicy,
    drift_policy: DriftPolicy,
    request: dict[str, Any] | None = None,
) -> tuple[PolicyResult, str]:
    """Evaluate the version and apply the verdict (pass: -> STAGING; fail: stays or goes back to TRAINED).
    Returns the verdict and the state the version is in afterwards."""
    result = evaluate_version(
        lifecycle,
        model,
        version,
        spec=spec,
        catalog=catalog,
        promotion_policy=promotion_policy,
        drift_policy=drift_policy,
        request=request,
    )
    return result, lifecycle.gate(model, version, result, actor=actor)


@dataclass(frozen=True)
class PromotionOutcome:
    """What a promotion request did: the gate's verdict (to staging) or the version it replaced (production)."""

    model: str
    version: str
    state: str
    result: PolicyResult | None = None
    previous_production: str | None = None


def request_promotion(
    lifecycle: Lifecycle,
    model: str,
    version: str,
    *,
    to: str,
    actor: str,
    reason: str,
    spec: ModelSpec | None,
    catalog: FeatureCatalog,
    promotion_policy: PromotionPolicy,
    drift_policy: DriftPolicy,
    request: dict[str, Any] | None = None,
) -> PromotionOutcome:
    """The one promotion path of the CLI (``mlops models promote``) and the API (``POST /api/v1/ml/{model}/promote``):
    to ``staging`` runs the gate with the request's threshold overrides; to ``production`` applies the four-eyes
    rules (``Lifecycle.promote_to_production``)."""
    if to == "staging":
        result, state = run_gate(
            lifecycle,
            model,
            version,
            actor=actor,
            spec=spec,
            catalog=catalog,
            promotion_policy=promotion_policy,
            drift_policy=drift_policy,
            request=request,
        )
        return PromotionOutcome(model, version, state, result=result)
    if to != "production":
        raise ValueError(f"a promotion goes to staging or production, not {to!r}")
    previous = lifecycle.promote_to_production(model, version, actor=actor, reason=reason)
    return PromotionOutcome(model, version, lifecycle.state(model, version), previous_production=previous)
