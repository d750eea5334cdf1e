"""The promotion gate, the one path for the promotion asset, the compliance report, the CLI and the API: what
it observes for a version (held-out forecast metrics with their confidence intervals, the holdout backtest after
costs with its intervals, its drift on the data it has not seen against its own training data), the policy
evaluation, and the lifecycle transition that follows."""

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
from mlops_pipelines.lib.monitoring.drift_policy import DriftPolicy, Importance
from mlops_pipelines.lib.monitoring.drift_report import build_report
from mlops_pipelines.lib.monitoring.severity import Severity
from mlops_pipelines.lib.training.datasets import dataset_by_hash
from mlops_pipelines.lib.training.model_specs import ModelSpec

DRIFT_WINDOW = timedelta(days=1)  # hourly monitoring's current window, for which the drift policy is calibrated
DRIFT_REFERENCE = timedelta(days=30)  # and its reference window


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
    and ``drift_severity`` (``training_drift_severity``, a ``Severity``, INSUFFICIENT included). A model outside the
    catalog (``spec`` None) has no known features: its drift is left unmeasured, which fails
    ``max_drift_severity`` unless overridden."""
    mv = client.get_model_version(model, version)
    metrics: dict[str, Any] = dict(client.get_run(mv.run_id).data.metrics) if mv.run_id else {}
    metrics.update(stored_gate_metrics(conn, model, str(version)))
    if spec is not None:
        manifest = json.loads(read_text_artifact(client, mv.run_id, "manifest.json")) if mv.run_id else {}
        cutoff = (manifest.get("training_window") or {}).get("cutoff")
        metrics["drift_severity"] = training_drift_severity(
            conn,
            spec,
            catalog,
            drift_policy,
            dataset_hash=mv.tags.get("dataset_hash"),
            importance=manifest.get("feature_importance") or [],
            cutoff=datetime.fromisoformat(cutoff) if cutoff else None,
        )
    return metrics


def training_drift_severity(
    conn: duckdb.DuckDBPyConnection,
    spec: ModelSpec,
    catalog: FeatureCatalog,
    drift_policy: DriftPolicy,
    *,
    dataset_hash: str | None,
    importance: Importance,
    cutoff: datetime | None = None,
    as_of: datetime | None = None,
) -> Severity:
    """Drift as it concerns one version, on data it has not seen: the model severity (monitoring's calibrated
    thresholds and importance-weighted aggregation) of the last day of features after its training cutoff, before
    ``as_of`` (default: up to the newest row), against the 30 days of features before the cutoff (the market it
    learned). ``importance``: the manifest's ``feature_importance`` as stored ([[feature, gain], ...] or, in older
    manifests, {feature: gain}), or names (equal weights).

    ``cutoff``: the version's training cutoff (its manifest); without one (a version trained before cutoffs were
    recorded), its training set's last decision (``dataset_hash``, from training.datasets).
    ``INSUFFICIENT`` when less than a full day (``DRIFT_WINDOW``) of features came after the cutoff - a version
    trained on every bar just ingested has seen it all - or when its training window is unknown, or when monitoring
    cannot judge the day; what that means for promotion is the policy's ``allow_insufficient_drift``.

    Not the deployed version's monitoring report: a version is judged against what it learned. Right after a
    regime shift a version that has seen little of the new market is judged drifted; weeks later, one trained on
    the new market is not, while the old version still is.
    """
    if cutoff is None:
        dataset = dataset_by_hash(conn, dataset_hash) if dataset_hash else None
        if dataset is not None:
            cutoff = dataset.get("training_cutoff") or dataset["last_decision"]
    if as_of is None:
        newest = last_event_time(conn, catalog.views[next(iter(spec.feature_views))])
        as_of = None if newest is None else newest + timedelta(microseconds=1)  # the newest row included
    if cutoff is None or as_of is None or as_of - cutoff < DRIFT_WINDOW:
        return Severity.INSUFFICIENT
    report = build_report(
        conn,
        spec,
        "",
        catalog,
        drift_policy,
        importance or spec.features(catalog),
        window_end=as_of,
        current=DRIFT_WINDOW,
        reference=DRIFT_REFERENCE,
        reference_end=cutoff,
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
    """The policy's verdict on a version (thresholds merged request > model > strategy > default; the overrides
    are in the result and its hash)."""
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
    reason: str = "",
) -> tuple[PolicyResult, str]:
    """Evaluate the version and apply the verdict (pass: -> STAGING; fail: stays or goes back to TRAINED).
    Request overrides need a ``reason``, kept in the audit row with them. Returns the verdict and the state the
    version is in afterwards."""
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
    return result, lifecycle.gate(model, version, result, actor=actor, reason=reason)


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
    via: str,
    spec: ModelSpec | None,
    catalog: FeatureCatalog,
    promotion_policy: PromotionPolicy,
    drift_policy: DriftPolicy,
    request: dict[str, Any] | None = None,
) -> PromotionOutcome:
    """The one promotion path of the CLI (``mlops models promote``) and the API (``POST /api/v1/ml/{model}/promote``):
    to ``staging`` runs the gate with the request's threshold overrides (which need the ``reason``); to
    ``production`` applies the four-eyes rules (``Lifecycle.promote_to_production``; without a reason the audit row
    says ``promoted via <via>``)."""
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
            reason=reason,
        )
        return PromotionOutcome(model, version, state, result=result)
    if to != "production":
        raise ValueError(f"a promotion goes to staging or production, not {to!r}")
    previous = lifecycle.promote_to_production(model, version, actor=actor, reason=reason or f"promoted via {via}")
    return PromotionOutcome(model, version, lifecycle.state(model, version), previous_production=previous)
