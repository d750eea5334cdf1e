"""Replay scenarios (catalog/scenarios.yaml), validated at load."""

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, model_validator

from mlops_pipelines.lib.core.config_files import load_yaml_model

HOLDOUT = "holdout"


class Scenario(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    description: str
    start: date | None = None
    end: date | None = None
    last_days: int | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _one_kind(self) -> "Scenario":
        fixed = self.start is not None and self.end is not None
        if fixed == (self.last_days is not None) or (self.start is None) != (self.end is None):
            raise ValueError("give either start and end, or last_days")
        if fixed and self.start is not None and self.end is not None and self.start >= self.end:
            raise ValueError(f"start {self.start} is not before end {self.end}")
        return self

    def window(self, last_bar: datetime) -> tuple[datetime, datetime]:
        if self.last_days is not None:
            end = last_bar + timedelta(hours=1)
            return end - timedelta(days=self.last_days), end
        assert self.start is not None and self.end is not None
        return (
            datetime.combine(self.start, datetime.min.time(), UTC),
            datetime.combine(self.end, datetime.min.time(), UTC),
        )


class ScenarioCatalog(BaseModel):
    model_config = ConfigDict(extra="forbid")

    cost_bps: float = Field(ge=0)
    scenarios: dict[str, Scenario]

    @model_validator(mode="after")
    def _reserved(self) -> "ScenarioCatalog":
        if HOLDOUT in self.scenarios:
            raise ValueError(f"scenario name {HOLDOUT!r} is reserved for each version's held-out window")
        return self


def load_scenarios(path: str | Path) -> ScenarioCatalog:
    """Raises PolicyError naming the file, the key and the reason."""
    return load_yaml_model(path, ScenarioCatalog)
