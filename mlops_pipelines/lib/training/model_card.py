"""The model card stored with every registered version (markdown)."""

from typing import Any

from mlops_pipelines.lib.core.metrics import CI_LEVEL
from mlops_pipelines.lib.features.feature_views import FeatureCatalog
from mlops_pipelines.lib.training.model_specs import ModelSpec


def render_model_card(
    spec: ModelSpec, catalog: FeatureCatalog, manifest: dict[str, Any], data_summary: dict[str, Any]
) -> str:
    metrics = manifest["metrics"]
    window = manifest.get("training_window") or {}
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
        f"- training cutoff: {window.get('cutoff') or 'not recorded'} (UTC; only labels known by then; later data is "
        f"unseen, and the promotion gate judges drift on it); minimum history {window.get('min_history_days', 0):g} "
        "days",
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
        f"Forecast quality; [low, high] is the {CI_LEVEL:.0%} confidence interval of a block bootstrap over "
        "decision times (blocks at least one label horizon long).",
        "",
        "| metric | value |",
        "|---|---|",
        *metric_rows(metrics),
        "",
        "## Limitations",
        "",
        f"- Trained on {catalog.bar_clock} of the symbols above; behaviour on other instruments or bar sizes is "
        "unknown.",
        "- Held-out metrics come from one chronological split; regime changes after the test window are not covered.",
        "- No strategy metric (Sharpe, drawdown, return) is in this card: they come from the holdout backtest, after "
        "transaction costs (`cost_bps` of catalog/scenarios.yaml) with equal weights, each Sharpe with its "
        "confidence interval, in the compliance report.",
        "- Serving refuses this version if the live feature graph differs from "
        f"`{manifest['feature_graph_hash'][:12]}`.",
        "",
        f"Code: git commit `{manifest['git_commit']}`, training run `{manifest['mlflow_run_id']}`, "
        f"Dagster run `{manifest['dagster_run_id']}`.",
    ]
    return "\n".join(lines) + "\n"


def metric_rows(metrics: dict[str, float]) -> list[str]:
    """One table row per metric; a metric with ``<name>_ci_low`` / ``<name>_ci_high`` shows them beside it."""
    bounds = {k for k in metrics if k.endswith(("_ci_low", "_ci_high"))}
    rows = []
    for name, value in sorted(metrics.items()):
        if name in bounds:
            continue
        low, high = metrics.get(f"{name}_ci_low"), metrics.get(f"{name}_ci_high")
        interval = f" [{low:.4g}, {high:.4g}]" if low is not None and high is not None else ""
        rows.append(f"| {name} | {value:.6g}{interval} |")
    return rows
