"""Pictures of a drift report, for the materialization's metadata."""

import numpy as np

from mlops_pipelines.lib.core.plots import figure, png_bytes
from mlops_pipelines.lib.monitoring.drift_report import DriftReport


def histograms_png(report: DriftReport, features: list[str]) -> bytes:
    """Reference vs current distributions of the given numeric features, side by side."""
    features = [f for f in features if f in report.reference.numeric]
    fig = figure(4 * max(len(features), 1), 3)
    for i, feature in enumerate(features):
        ax = fig.add_subplot(1, len(features), i + 1)
        ref, cur = report.reference.numeric[feature], report.current[feature].dropna().to_numpy()
        if len(ref) and len(cur):
            # counts computed here (the reference is sorted: one binary search per edge), only bars drawn
            edges = np.linspace(min(ref[0], cur.min()), max(ref[-1], cur.max()), 41)
            ref_counts = np.diff(np.searchsorted(ref, edges, side="right"))
            ref_counts[0] += np.searchsorted(ref, edges[0], side="right")  # values equal to the first edge
            cur_counts, _ = np.histogram(cur, bins=edges)
            width = np.diff(edges)
            for counts, label in ((ref_counts, "reference"), (cur_counts, "current")):
                ax.stairs(counts / counts.sum() / width, edges, fill=True, alpha=0.5, label=label)
        severity = report.stats.set_index("feature").loc[feature, "severity"]
        ax.set_title(f"{feature} ({severity})", fontsize=9)
        ax.legend(fontsize=7)
    fig.suptitle(
        f"{report.model} v{report.version}: {report.window_start:%Y-%m-%d %H:%M} .. "
        f"{report.window_end:%Y-%m-%d %H:%M} UTC",
        fontsize=10,
    )
    fig.tight_layout()
    return png_bytes(fig, dpi=80)
