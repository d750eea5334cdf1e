"""LightGBM training and the held-out metrics the promotion policy reads."""

from dataclasses import dataclass

import lightgbm as lgb
import numpy as np
import pandas as pd

from mlops_pipelines.lib.core import metrics as m
from mlops_pipelines.lib.core.bars import BarClock
from mlops_pipelines.lib.features.point_in_time import ENTITY_TIME
from mlops_pipelines.lib.training.datasets import TrainingSet
from mlops_pipelines.lib.training.model_specs import ModelSpec


@dataclass(frozen=True)
class TrainedModel:
    booster: lgb.Booster
    features: list[str]
    metrics: dict[str, float]
    importance: pd.Series  # gain per feature, descending


def train(spec: ModelSpec, data: TrainingSet, clock: BarClock | None = None) -> TrainedModel:
    """Fit the spec's LightGBM model on the train split (early stopping on validation) and report the held-out
    metrics; ``clock``: the bars the set was built on (the catalog's; default hourly around the clock), which
    annualize the Sharpe ratio."""
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
    metrics = evaluate(spec, booster, data, clock)
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


def evaluate(
    spec: ModelSpec, booster: lgb.Booster, data: TrainingSet, clock: BarClock | None = None
) -> dict[str, float]:
    clock = clock or BarClock()
    metrics: dict[str, float] = {}
    for split in ("validation", "test"):
        part = data.split(split)
        prefix = "val" if split == "validation" else "test"
        pred = predict(booster, part, data.features)
        y = part["label"].to_numpy()
        metrics.update({f"{prefix}_{name}": value for name, value in quality_metrics(spec.task, y, pred).items()})
        if spec.task == "regression" and PERSISTENCE_FEATURE in part:
            persistence = part[PERSISTENCE_FEATURE].to_numpy()
            ok = np.isfinite(persistence)
            baseline, model = m.rmse(persistence[ok], y[ok]), m.rmse(pred[ok], y[ok])
            metrics[f"{prefix}_rmse_ratio"] = model / baseline if baseline > 0 else float("nan")
    test = data.split("test")
    metrics["test_rows"] = float(len(test))
    metrics["train_rows"] = float(len(data.split("train")))
    if spec.task == "classification":
        metrics["hit_rate"] = metrics["test_hit_rate"]
        pnl = directional_pnl(test, predict(booster, test, data.features), spec.label.horizon_bars)
        metrics["sharpe"] = m.sharpe(pnl, periods_per_year=clock.periods_per_year / spec.label.horizon_bars)
        metrics["max_drawdown"] = m.max_drawdown(np.exp(pnl.cumsum().to_numpy()))
    elif "test_rmse_ratio" in metrics:
        metrics["rmse_ratio"] = metrics["test_rmse_ratio"]
    return metrics


def quality_metrics(task: str, y: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    """The model-quality metrics of a task: reported on validation and test at training, and on labelled live
    decisions by monitoring (the same definitions, so they compare)."""
    if task == "classification":
        up, predicted_up = np.where(y > 0.5, 1.0, -1.0), np.where(pred > 0.5, 1.0, -1.0)
        return {"auc": m.auc(y, pred), "logloss": m.log_loss(y, pred), "hit_rate": m.hit_rate(predicted_up, up)}
    return {"rmse": m.rmse(pred, y), "mae": m.mae(pred, y), "ic": m.pooled_ic(pred, y)}


def directional_pnl(frame: pd.DataFrame, probability: np.ndarray, horizon: int) -> pd.Series:
    """Equal-weight long/short by the predicted sign, held for the label horizon; one decision every ``horizon``
    bars (counted over the decision times, so a weekend or a night without bars is no gap) so that holding periods
    do not overlap. Log returns per decision time, averaged over symbols."""
    position = np.sign(probability - 0.5)
    bar = pd.Series(pd.factorize(frame[ENTITY_TIME], sort=True)[0], index=frame.index)  # 0, 1, ... per time
    keep = (bar % horizon == 0).to_numpy()
    pnl = pd.Series(position[keep] * frame["forward_return"].to_numpy()[keep], index=frame[ENTITY_TIME][keep])
    return pnl.groupby(level=0).mean()


def signature_frame(frame: pd.DataFrame, features: list[str]) -> pd.DataFrame:
    """A small input example for the model signature (float columns, NaN allowed)."""
    return frame[features].head(5).astype("float64")
