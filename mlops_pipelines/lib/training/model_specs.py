"""The model-spec contract: what a model learns (label), from which pinned feature views, with what settings."""

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from mlops_pipelines.lib.features.feature_views import FeatureCatalog


class LabelSpec(BaseModel):
    """A label computed from raw bars after the decision time (never visible to the features)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["forward_return_sign", "forward_realized_vol"]
    horizon_bars: int = Field(
        ge=1, le=720, description="How many bars after the decision the label looks at (hourly bars: hours)."
    )


class ModelSpec(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    owner: str
    description: str
    strategy: str = Field(description="Groups models for the promotion policy's per-strategy thresholds.")
    task: Literal["classification", "regression"]
    label: LabelSpec
    feature_views: dict[str, int] = Field(description="view name -> pinned version")
    exclude_features: tuple[str, ...] = ()
    hyperparameters: dict[str, Any]
    num_boost_round: int = Field(default=200, ge=1)
    decision_delay_minutes: int = Field(
        default=5, ge=0, description="Decisions are taken this long after the bar closes (features must be visible)."
    )
    split_fractions: tuple[float, float, float] = (0.6, 0.2, 0.2)

    @field_validator("split_fractions")
    @classmethod
    def _fractions(cls, value: tuple[float, float, float]) -> tuple[float, float, float]:
        if abs(sum(value) - 1.0) > 1e-9 or min(value) <= 0:
            raise ValueError(f"split_fractions must be positive and sum to 1, got {value}")
        return value

    def check_against(self, catalog: FeatureCatalog) -> None:
        """Every pinned view exists at the pinned version in the catalog; raises naming model and view."""
        for view, version in self.feature_views.items():
            current = catalog.views.get(view)
            if current is None:
                raise ValueError(f"model {self.name!r} pins feature view {view!r}, which is not in the catalog")
            if current.version != version:
                raise ValueError(
                    f"model {self.name!r} pins {view}@{version} but the catalog has {view}@{current.version}; "
                    "re-pin the model (and retrain) to use the new version"
                )

    def features(self, catalog: FeatureCatalog) -> list[str]:
        names = [f for view in self.feature_views for f in catalog.views[view].features]
        return [f for f in names if f not in self.exclude_features]
