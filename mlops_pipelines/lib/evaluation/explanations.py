"""SHAP explanations of LightGBM models: LightGBM's native contributions (TreeSHAP in C++) are the fast path;
``shap`` is used through ``shap_reference`` (a cross-check in tests) and for the beeswarm plot only."""

import json
from dataclasses import dataclass
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd

from mlops_pipelines.lib.core.plots import png_bytes, pyplot
from mlops_pipelines.lib.core.tracking import Tracking

SHAP_SAMPLE = 2000  # rows of the test split explained: enough for the summary, seconds to compute


@dataclass(frozen=True)
class Explanation:
    sample: pd.DataFrame  # the explained rows (features only)
    contributions: pd.DataFrame  # SHAP value per row and feature (raw score units: log-odds for classifiers)
    base_value: float
    prediction: pd.Series  # raw score per row = base_value + contributions.sum(axis=1)

    @property
    def global_importance(self) -> pd.Series:
        """Mean |SHAP| per feature, largest first."""
        return self.contributions.abs().mean().sort_values(ascending=False)

    def local(self, top_rows: int = 5, top_features: int = 5) -> list[dict[str, Any]]:
        """The rows with the largest predictions and the features that pushed them most."""
        rows = []
        for idx in self.prediction.nlargest(top_rows).index:
            contrib = self.contributions.loc[idx]
            top = contrib.reindex(contrib.abs().sort_values(ascending=False).index[:top_features])
            rows.append(
                {
                    "row": int(idx) if isinstance(idx, (int, np.integer)) else str(idx),
                    "raw_prediction": float(self.prediction.loc[idx]),
                    "contributions": {k: float(v) for k, v in top.items()},
                    "values": {
                        k: float(v)
                        for k, v in zip(
                            top.index, self.sample.loc[idx, list(top.index)].to_numpy(dtype=float), strict=True
                        )
                    },
                }
            )
        return rows


def deterministic_sample(frame: pd.DataFrame, size: int, seed: int = 0) -> pd.DataFrame:
    """The same rows for the same frame, whatever the process: a seeded sample kept in original order."""
    if len(frame) <= size:
        return frame
    return frame.sample(n=size, random_state=seed).sort_index()


def explain(booster: lgb.Booster, frame: pd.DataFrame, features: list[str]) -> Explanation:
    x = frame[features].astype("float64")
    contrib = np.asarray(booster.predict(x, pred_contrib=True, num_iteration=booster.best_iteration or None))
    values = pd.DataFrame(contrib[:, :-1], index=x.index, columns=features)
    base = float(contrib[0, -1]) if len(contrib) else 0.0
    return Explanation(sample=x, contributions=values, base_value=base, prediction=values.sum(axis=1) + base)


def shap_reference(booster: lgb.Booster, frame: pd.DataFrame, features: list[str]) -> np.ndarray:
    """The same values from ``shap.TreeExplainer``'s own TreeSHAP, an independent implementation.

    For a LightGBM booster, ``shap`` would call LightGBM's ``pred_contrib`` itself (the fast path we already
    use); marking the parsed tree ensemble as ``internal`` makes it run its own C++ algorithm over the trees
    it parsed from the model dump, so the comparison checks one implementation against another.
    """
    import shap

    explainer = shap.TreeExplainer(booster)
    explainer.model.model_type = "internal"
    values = explainer.shap_values(frame[features].astype("float64"), check_additivity=False)
    return np.asarray(values[1] if isinstance(values, list) else values)


def summary_plot_png(explanation: Explanation, title: str, max_display: int = 15) -> bytes:
    """A beeswarm summary: each dot one row, x its SHAP value, colour its feature value."""
    plt = pyplot()  # shap draws through pyplot only
    import shap

    shap.summary_plot(
        explanation.contributions.to_numpy(),
        explanation.sample,
        max_display=max_display,
        show=False,
        plot_size=(8, 0.35 * min(max_display, explanation.sample.shape[1]) + 1.5),
        rng=np.random.default_rng(0),
    )
    fig = plt.gcf()
    fig.suptitle(title)
    return png_bytes(fig, dpi=90, tight=True)


def importance_markdown(explanation: Explanation, top: int = 15) -> str:
    rows = explanation.global_importance.head(top)
    return "| feature | mean abs SHAP |\n|---|---|\n" + "\n".join(f"| {k} | {v:.5f} |" for k, v in rows.items())


@dataclass(frozen=True)
class ExplanationReport:
    explanation: Explanation
    summary_png: bytes
    importance_md: str


def explain_and_log(
    tracking: Tracking,
    run_id: str,
    booster: lgb.Booster,
    test_split: pd.DataFrame,
    features: list[str],
    *,
    title: str,
    sample_size: int = SHAP_SAMPLE,
) -> ExplanationReport:
    """Explain a deterministic sample of a version's test split and log it into the version's training run, under
    ``explanations/``: the beeswarm summary, global importance (csv, markdown) and the largest predictions."""
    result = explain(booster, deterministic_sample(test_split, sample_size), features)
    png = summary_plot_png(result, f"{title}: SHAP summary")
    importance = importance_markdown(result)
    tracking.log_files(
        run_id,
        {
            "shap_summary.png": png,
            "global_importance.csv": result.global_importance.rename("mean_abs_shap").to_csv(),
            "local_explanations.json": json.dumps(result.local(), indent=2),
            "importance.md": importance,
        },
        "explanations",
    )
    return ExplanationReport(explanation=result, summary_png=png, importance_md=importance)
