"""One training run end to end: MLflow run, training, artifacts, manifest, model card, registration.

Registration is the last step: a run that fails before it leaves no model version, and its MLflow run is
marked FAILED. If registration itself fails half-way, the half-created version is deleted.
"""

import hashlib
import json
import tempfile
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from mlflow.entities.model_registry import ModelVersion

from mlops_pipelines.lib.core.plots import figure, png_bytes
from mlops_pipelines.lib.core.tracking import DAGSTER_RUN_TAG, LoggedModel, Tracking, git_commit, package_versions
from mlops_pipelines.lib.features.feature_views import FeatureCatalog
from mlops_pipelines.lib.features.point_in_time import ENTITY_TIME
from mlops_pipelines.lib.training.datasets import TrainingSet, immutable_table
from mlops_pipelines.lib.training.model_card import render_model_card
from mlops_pipelines.lib.training.model_specs import ModelSpec
from mlops_pipelines.lib.training.training import TrainedModel, signature_frame, train

REPO_ROOT = Path(__file__).resolve().parents[2]


class Registry(Protocol):
    """Where a finished run registers its model: the governed lifecycle (``lib/governance/lifecycle.py``), passed
    in by the caller so that training does not depend on governance."""

    def register(
        self,
        model: str,
        *,
        source: str,
        run_id: str,
        model_id: str | None,
        tags: dict[str, str],
        actor: str,
        reason: str,
    ) -> ModelVersion: ...


@dataclass(frozen=True)
class TrainingOutcome:
    model: TrainedModel
    run_id: str
    version: str
    manifest: dict[str, Any]
    model_card: str
    importance_png: bytes


def config_hash(spec: ModelSpec) -> str:
    return hashlib.sha256(json.dumps(spec.model_dump(mode="json"), sort_keys=True).encode()).hexdigest()


def importance_plot(model: TrainedModel, title: str) -> bytes:
    top = model.importance.head(20)[::-1]
    fig = figure(7, 0.3 * len(top) + 1.2)
    ax = fig.add_subplot()
    ax.barh(top.index, top.to_numpy(), color="#3b6ea5")
    ax.set_xlabel("total gain")
    ax.set_title(title)
    fig.tight_layout()
    return png_bytes(fig, dpi=100)


def data_summary(data: TrainingSet) -> dict[str, Any]:
    frame = data.frame
    return {
        "rows": len(frame),
        **{split: int((frame["split"] == split).sum()) for split in ("train", "validation", "test")},
        "first": str(frame[ENTITY_TIME].min()),
        "last": str(frame[ENTITY_TIME].max()),
        "symbols": int(frame["symbol"].nunique()),
    }


def train_and_register(
    spec: ModelSpec,
    data: TrainingSet,
    catalog: FeatureCatalog,
    tracking: Tracking,
    open_registry: Callable[[], AbstractContextManager[Registry]],
    *,
    actor: str,
    dagster_run_id: str,
    asset_key: str,
) -> TrainingOutcome:
    tags = {
        DAGSTER_RUN_TAG: dagster_run_id,
        "asset_key": asset_key,
        "trained_by": actor,
        "model": spec.name,
        "dataset_hash": data.dataset_hash,
    }
    with tracking.run(spec.name, run_name=f"{spec.name}-{dagster_run_id[:8]}", tags=tags) as run:
        run_id = run.info.run_id
        client = tracking.client()
        _log_inputs(tracking, run_id, spec, data)
        model = train(spec, data)
        for key, value in model.metrics.items():
            client.log_metric(run_id, key, value)
        # rows are in time order, so the first ones are training rows
        logged = tracking.log_booster(run_id, model.booster, signature_frame(data.frame, data.features))
        manifest = build_manifest(spec, data, catalog, model, logged, run_id=run_id, dagster_run_id=dagster_run_id)
        card = render_model_card(spec, catalog, manifest, data_summary(data))
        png = importance_plot(model, f"{spec.name}: feature importance")
        tracking.log_dict(run_id, manifest, "manifest.json")
        client.log_text(run_id, card, "model_card.md")
        with tempfile.TemporaryDirectory() as tmp:
            (Path(tmp) / "feature_importance.png").write_bytes(png)
            client.log_artifact(run_id, str(Path(tmp) / "feature_importance.png"))
        version = _register(open_registry, tracking, spec, manifest, logged, actor=actor)
        client.set_model_version_tag(spec.name, version, "model_card", "model_card.md")
    return TrainingOutcome(
        model=model, run_id=run_id, version=version, manifest=manifest, model_card=card, importance_png=png
    )


def _log_inputs(tracking: Tracking, run_id: str, spec: ModelSpec, data: TrainingSet) -> None:
    """The run's params (hyperparameters, label, pinned views) and its dataset input."""
    client = tracking.client()
    params = {
        **{f"hp.{k}": v for k, v in spec.hyperparameters.items()},
        "num_boost_round": spec.num_boost_round,
        "label": spec.label.kind,
        "horizon_bars": spec.label.horizon_bars,
        **{f"view.{k}": v for k, v in spec.feature_views.items()},
        "n_features": len(data.features),
    }
    for key, value in params.items():
        client.log_param(run_id, key, value)
    table = immutable_table(data.dataset_hash)
    tracking.log_dataset(run_id, data.frame, name=f"{spec.name}_dataset", digest=data.dataset_hash, table=table)


def build_manifest(
    spec: ModelSpec,
    data: TrainingSet,
    catalog: FeatureCatalog,
    model: TrainedModel,
    logged: LoggedModel,
    *,
    run_id: str,
    dagster_run_id: str,
) -> dict[str, Any]:
    """``manifest.json``: everything needed to say what this model is and reproduce it."""
    return {
        "model": spec.name,
        "feature_graph_hash": catalog.graph_hash(),
        "training_config_hash": config_hash(spec),
        "dataset_hash": data.dataset_hash,
        "git_commit": git_commit(REPO_ROOT),
        "code_version": package_versions(("mlops_pipelines",))["mlops_pipelines"],
        "dagster_run_id": dagster_run_id,
        "mlflow_run_id": run_id,
        "model_id": logged.model_id,
        "artifact_sha256": logged.artifact_sha256,
        "package_versions": package_versions(),
        "metrics": model.metrics,
        # [feature, gain] pairs, by gain descending: a list, so no JSON writer (sorted keys) can reorder it
        "feature_importance": [[str(k), float(v)] for k, v in model.importance.items()],
        "features": data.features,
        "training_window": {
            "cutoff": data.cutoff.isoformat() if data.cutoff is not None else None,
            "min_history_days": data.window.min_history_days,
            "first_decision": str(data.frame[ENTITY_TIME].min()),
            "last_decision": str(data.frame[ENTITY_TIME].max()),
        },
        "config": spec.model_dump(mode="json"),
        "created_at": datetime.now(UTC).isoformat(),
    }


def _register(
    open_registry: Callable[[], AbstractContextManager[Registry]],
    tracking: Tracking,
    spec: ModelSpec,
    manifest: dict[str, Any],
    logged: LoggedModel,
    *,
    actor: str,
) -> str:
    """Register the logged model (the last step); a half-created version is deleted if registration fails."""
    run_id = manifest["mlflow_run_id"]
    version_tags = {
        "feature_graph_hash": manifest["feature_graph_hash"],
        "dataset_hash": manifest["dataset_hash"],
        "artifact_sha256": logged.artifact_sha256,
        "training_config_hash": manifest["training_config_hash"],
        "trained_by": actor,
        "dagster_run_id": manifest["dagster_run_id"],
        "strategy": spec.strategy,
    }
    if manifest["training_window"]["cutoff"]:
        version_tags["training_cutoff"] = manifest["training_window"]["cutoff"]
    with open_registry() as lifecycle:
        try:
            version = lifecycle.register(
                spec.name,
                source=logged.model_uri,
                run_id=run_id,
                model_id=logged.model_id,
                tags=version_tags,
                actor=actor,
                reason=f"trained by MLflow run {run_id}",
            )
        except Exception:
            client = tracking.client()
            for mv in client.search_model_versions(f"name = '{spec.name}' and run_id = '{run_id}'"):
                client.delete_model_version(spec.name, mv.version)
            raise
    return str(version.version)
