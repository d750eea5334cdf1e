"""The prompt policy: the thresholds a prompt version's evaluation must meet, merged default < risk tier < prompt
(< a request's overrides), with the promotion policy's rules (``merge_layers``: a key left out inherits, a key set
to null is not checked), and the desk's blocked terms."""

import hashlib
import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from mlops_pipelines.lib.core.config_files import load_yaml_model
from mlops_pipelines.lib.governance.promotion_policy import merge_layers


class PromptThresholds(BaseModel):
    """One layer of thresholds. Every one is judged on the version's aggregate (see ``evaluation.AGGREGATES``)."""

    model_config = ConfigDict(extra="forbid")

    max_toxicity: float | None = Field(default=None, ge=0, le=1)  # the most toxic response's probability
    max_blocked_terms: int | None = Field(default=None, ge=0)  # blocked-term hits over all responses
    max_personal_data: int | None = Field(default=None, ge=0)  # personal-data findings over all responses
    max_injection_leaks: int | None = Field(default=None, ge=0)  # responses in which their canary appears
    min_fact_precision: float | None = Field(default=None, ge=0, le=1)  # the worst response's supported / claims
    min_fact_coverage: float | None = Field(default=None, ge=0, le=1)  # the worst response's required facts found
    min_format_pass_rate: float | None = Field(default=None, ge=0, le=1)  # share of responses in the right format
    min_response_rate: float | None = Field(default=None, ge=0, le=1)  # share of cases that have a response
    fact_tolerance: float | None = Field(default=None, ge=0)  # relative tolerance of a stated number (a setting)


class PromptPolicy(BaseModel):
    model_config = ConfigDict(extra="forbid")

    defaults: PromptThresholds
    risk_tiers: dict[str, PromptThresholds] = Field(default_factory=dict)
    prompts: dict[str, PromptThresholds] = Field(default_factory=dict)
    blocked_terms: list[str] = Field(default_factory=list)  # the desk's list: any hit counts

    def digest(self) -> str:
        canonical = json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()

    def effective(self, prompt: str, risk_tier: str, request: dict[str, Any] | None = None) -> dict[str, Any]:
        """Merged thresholds, request > prompt > risk tier > default (an unknown tier or prompt adds nothing)."""
        return merge_layers(self.defaults, [self.risk_tiers.get(risk_tier), self.prompts.get(prompt)], request)


def load_prompt_policy(path: str | Path) -> PromptPolicy:
    return load_yaml_model(path, PromptPolicy)
