"""LightGBM training and the held-out metrics the promotion policy reads."""

from collections.abc import Callable
from dataclasses import dataclass

import lightgbm as lgb
import numpy as np
import pandas as pd

from mlops_pipelines.lib.core import metrics as m
from mlops_pipelines.lib.features.point_in_time import ENTITY_TIME
from mlops_pipelines.lib.training.datasets import TrainingSet
from mlops_pipelines.lib.training.model_specs import ModelSpec


@dataclass(frozen=True)
class TrainedModel:
    booster: lgb.Booster
    features: list[str]
    metrics: dict[str, float]
    importance: pd.Series  # gain per feature, descending


def train(spec: ModelSpec, data: TrainingSet) -> TrainedModel:
    """Fit the spec's LightGBM model on the train split (early stopping on validation) and report the held-out
    forecast metrics (``evaluate``)."""
    train_df, val_df = data.split("train"), data.split("validation")
    if len(train_df) == 0 or len(val_df) == 0:
        raise ValueError(f"{spec.name}: empty train or validation split ({len(train_df)}, {len(val_df)} rows)")
    train_set = lgb.Dataset(train_df[data.features], label=train_df["label"], free_raw_data=False)
    val_set = lgb.Dataset(val_df[data.features], label=val_df["label"], reference=train_set)
    booster = lgb.train(
        spec.hyperparameters,
        train_set,
        num_boost_round=spec.num_boost_round,
        valid_sets=[val_set],
        callbacks=[lgb.early_stopping(30, verbose=False)],
    )
    metrics = evaluate(spec, booster, data)
    metrics["best_iteration"] = float(booster.best_iteration or booster.current_iteration())
    importance = pd.Series(
        booster.feature_importance(importance_type="gain"), index=booster.feature_name(), name="gain"
    ).sort_values(ascending=False)
    return TrainedModel(booster=booster, features=data.features, metrics=metrics, importance=importance)


def predict(booster: lgb.Booster, frame: pd.DataFrame, features: list[str]) -> np.ndarray:
    return np.asarray(booster.predict(frame[features], num_iteration=booster.best_iteration or None))


# The persistence baseline of a volatility forecast: the realized volatility of the last 24 bars
# (catalog/feature_views.py, view volatility).
PERSISTENCE_FEATURE = "rvol_24b"


def evaluate(spec: ModelSpec, booster: lgb.Booster, data: TrainingSet) -> dict[str, float]:
    """Forecast quality on the validation and test splits, with a block-bootstrap confidence interval on the test
    split's headline (``test_auc_ci_low/high``; ``test_rmse_ratio_ci_low/high`` against persistence), resampling
    blocks of decision times at least one label horizon long. Strategy metrics (Sharpe, drawdown) are not
    computed here: they come from the holdout backtest, after transaction costs (``lib/evaluation/replay.py``)."""
    metrics: dict[str, float] = {}
    for split in ("validation", "test"):
        part = data.split(split)
        prefix = "val" if split == "validation" else "test"
        pred = predict(booster, part, data.features)
        y = part["label"].to_numpy()
        metrics.update({f"{prefix}_{name}": value for name, value in quality_metrics(spec.task, y, pred).items()})
        if spec.task == "regression" and PERSISTENCE_FEATURE in part:
            metrics[f"{prefix}_rmse_ratio"] = rmse_ratio(pred, part[PERSISTENCE_FEATURE].to_numpy(), y)
            if split == "test":
                metrics.update(_interval("test_rmse_ratio", part, spec, pred, y, rmse_ratio_rows))
        elif spec.task == "classification" and split == "test":
            metrics.update(_interval("test_auc", part, spec, pred, y, auc_rows))
    test = data.split("test")
    metrics["test_rows"] = float(len(test))
    metrics["train_rows"] = float(len(data.split("train")))
    if spec.task == "classification":
        metrics["hit_rate"] = metrics["test_hit_rate"]
    elif "test_rmse_ratio" in metrics:
        metrics["rmse_ratio"] = metrics["test_rmse_ratio"]
    return metrics


def rmse_ratio(prediction: np.ndarray, persistence: np.ndarray, outcome: np.ndarray) -> float:
    """Model RMSE / RMSE of the persistence forecast (the last 24 bars' realized volatility), on the rows where
    persistence is known; below 1 is better than persistence. NaN when persistence is perfect or unknown."""
    ok = np.isfinite(persistence)
    baseline = m.rmse(persistence[ok], outcome[ok]) if ok.any() else float("nan")
    return m.rmse(prediction[ok], outcome[ok]) / baseline if baseline > 0 else float("nan")


def auc_rows(part: pd.DataFrame, pred: np.ndarray, y: np.ndarray) -> Callable[[np.ndarray], float]:
    return lambda rows: m.auc(y[rows], pred[rows])


def rmse_ratio_rows(part: pd.DataFrame, pred: np.ndarray, y: np.ndarray) -> Callable[[np.ndarray], float]:
    persistence = part[PERSISTENCE_FEATURE].to_numpy()
    return lambda rows: rmse_ratio(pred[rows], persistence[rows], y[rows])


def _interval(
    name: str,
    part: pd.DataFrame,
    spec: ModelSpec,
    pred: np.ndarray,
    y: np.ndarray,
    statistic: Callable[[pd.DataFrame, np.ndarray, np.ndarray], Callable[[np.ndarray], float]],
) -> dict[str, float]:
    low, high = m.block_bootstrap_interval(
        statistic(part, pred, y), part[ENTITY_TIME].to_numpy(), min_block=spec.label.horizon_bars
    )
    return {f"{name}_ci_low": low, f"{name}_ci_high": high}


def quality_metrics(task: str, y: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    """The model-quality metrics of a task: reported on validation and test at training, and on labelled live
    decisions by monitoring (the same definitions, so they compare)."""
    if task == "classification":
        up, predicted_up = np.where(y > 0.5, 1.0, -1.0), np.where(pred > 0.5, 1.0, -1.0)
        return {"auc": m.auc(y, pred), "logloss": m.log_loss(y, pred), "hit_rate": m.hit_rate(predicted_up, up)}
    return {"rmse": m.rmse(pred, y), "mae": m.mae(pred, y), "ic": m.pooled_ic(pred, y)}


def signature_frame(frame: pd.DataFrame, features: list[str]) -> pd.DataFrame:
    """A small input example for the model signature (float columns, NaN allowed)."""
    return frame[features].head(5).astype("float64")
