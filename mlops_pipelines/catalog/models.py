"""Model specs, as code, beside the feature views they pin."""

from mlops_pipelines.catalog.feature_views import load_catalog
from mlops_pipelines.lib.training.model_specs import LabelSpec, ModelSpec

DIRECTION_CLASSIFIER = ModelSpec(
    name="direction_classifier",
    owner="team:signals",
    description="Probability that a symbol's log return over the next 4 bars is positive.",
    strategy="directional",
    task="classification",
    label=LabelSpec(kind="forward_return_sign", horizon_bars=4),
    feature_views={"returns": 3, "volatility": 3, "oscillators": 3, "cross_sectional": 4},
    exclude_features=("sector",),
    hyperparameters={
        "objective": "binary",
        "learning_rate": 0.05,
        "num_leaves": 15,
        "min_data_in_leaf": 50,
        "feature_fraction": 0.8,
        "bagging_fraction": 0.8,
        "bagging_freq": 1,
        "lambda_l2": 1.0,
        "seed": 7,
        "deterministic": True,
        "num_threads": 2,
        "verbosity": -1,
    },
    num_boost_round=150,
)

VOLATILITY_FORECASTER = ModelSpec(
    name="volatility_forecaster",
    owner="team:risk",
    description="Realized volatility of a symbol's returns over the next 24 bars, annualized like rvol_24b.",
    strategy="risk",
    task="regression",
    label=LabelSpec(kind="forward_realized_vol", horizon_bars=24),
    feature_views={"returns": 3, "volatility": 3, "oscillators": 3},
    hyperparameters={
        "objective": "regression",
        "learning_rate": 0.05,
        "num_leaves": 15,
        "min_data_in_leaf": 50,
        "feature_fraction": 0.9,
        "lambda_l2": 1.0,
        "seed": 7,
        "deterministic": True,
        "num_threads": 2,
        "verbosity": -1,
    },
    num_boost_round=200,
)

MODEL_SPECS = {spec.name: spec for spec in (DIRECTION_CLASSIFIER, VOLATILITY_FORECASTER)}


def load_model_specs() -> dict[str, ModelSpec]:
    """Specs validated against the feature catalog (pinned versions must exist)."""
    catalog = load_catalog()
    for spec in MODEL_SPECS.values():
        spec.check_against(catalog)
    return MODEL_SPECS
