"""The model card stored with every registered version (markdown)."""

from typing import Any

from mlops_pipelines.lib.features.feature_views import FeatureCatalog
from mlops_pipelines.lib.training.model_specs import ModelSpec


def render_model_card(
    spec: ModelSpec, catalog: FeatureCatalog, manifest: dict[str, Any], data_summary: dict[str, Any]
) -> str:
    metrics = manifest["metrics"]
    used = set(spec.features(catalog))
    label = spec.label
    lines = [
        f"# Model card: {spec.name}",
        "",
        f"Owner: {spec.owner}. Strategy: {spec.strategy}. Task: {spec.task}.",
        "",
        "## Intended use",
        "",
        " ".join(spec.description.split()),
        f"Label: `{label.kind}` over the next {label.horizon_bars} bars ({catalog.bar_clock}); decisions are taken "
        f"{spec.decision_delay_minutes} minutes after a bar closes. For research and paper trading until it "
        "reaches PRODUCTION through the governed lifecycle (policy gate + four-eyes approval).",
        "",
        "## Training data",
        "",
        f"- dataset hash: `{manifest['dataset_hash']}`",
        f"- rows: {data_summary['rows']} (train {data_summary['train']}, validation {data_summary['validation']}, "
        f"test {data_summary['test']}; purged at split boundaries so no label overlaps the next split)",
        f"- decision times: {data_summary['first']} .. {data_summary['last']} (UTC)",
        f"- symbols: {data_summary['symbols']}",
        "",
        "## Features",
        "",
        f"Feature-graph hash: `{manifest['feature_graph_hash']}`",
        "",
        "| view | version | features |",
        "|---|---|---|",
        *[
            f"| {view} | {version} | {', '.join(f for f in catalog.views[view].features if f in used)} |"
            for view, version in spec.feature_views.items()
        ],
        "",
        "## Metrics (held out)",
        "",
        "| metric | value |",
        "|---|---|",
        *[f"| {k} | {v:.6g} |" for k, v in sorted(metrics.items())],
        "",
        "## Limitations",
        "",
        "- Trained on hourly bars of the symbols above; behaviour on other instruments or bar sizes is unknown.",
        "- Held-out metrics come from one chronological split; regime changes after the test window are not covered.",
        "- Strategy metrics ignore transaction costs and use equal weights; the backtest report is the reference.",
        "- Serving refuses this version if the live feature graph differs from "
        f"`{manifest['feature_graph_hash'][:12]}`.",
        "",
        f"Code: git commit `{manifest['git_commit']}`, training run `{manifest['mlflow_run_id']}`, "
        f"Dagster run `{manifest['dagster_run_id']}`.",
    ]
    return "\n".join(lines) + "\n"
