"""Request and response bodies of the serving API (pydantic; listed in the OpenAPI document at ``/docs``)."""

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator


class PredictRequest(BaseModel):
    """Either ``symbols`` (features read from the online store) or ``rows`` (every feature of the model given by
    the caller), and optionally which ``version`` or ``alias`` answers (default: alias ``production``)."""

    model_config = ConfigDict(extra="forbid")

    symbols: list[str] | None = Field(default=None, description="Symbols whose online feature vectors are scored.")
    rows: list[dict[str, Any]] | None = Field(
        default=None, description="Feature vectors supplied by the caller: {feature: number or null}, every feature."
    )
    version: str | None = Field(default=None, pattern=r"^[0-9]+$", description="A version number.")
    alias: str | None = Field(default=None, description="production (default), staging or challenger.")
    override_reason: str | None = Field(
        default=None,
        min_length=1,
        description="Serve a version trained on another feature graph anyway, and why: needs an operator's bearer "
        "token; the override is written to the audit log.",
    )

    @model_validator(mode="after")
    def _one_source(self) -> "PredictRequest":
        if (self.symbols is None) == (self.rows is None):
            raise ValueError("give exactly one of 'symbols' and 'rows'")
        if self.version is not None and self.alias is not None:
            raise ValueError("give 'version' or 'alias', not both")
        return self


class Prediction(BaseModel):
    symbol: str | None = Field(description="The symbol scored (null for a caller-supplied row).")
    row: int | None = Field(description="Position of the row in the request (null for a symbol).")
    prediction: float
    features_as_of: str | None = Field(
        description="Event time of the oldest feature view in the vector used (UTC); null for a supplied row."
    )
    view_times: dict[str, str | None] | None = Field(default=None, description="Event time per feature view.")
    version: str | None = Field(default=None, description="The version that answered this item.")
    role: str | None = Field(
        default=None,
        description="serve (the version holding the alias asked for) or canary (the challenger, for a symbol in "
        "the production deployment's canary share).",
    )


class PredictResponse(BaseModel):
    request_id: str
    model: str
    version: str
    alias: str | None = Field(description="The alias that answered; null when a version was asked for by number.")
    feature_graph_hash: str
    predictions: list[Prediction]


class Problem(BaseModel):
    """An error, as an RFC 9457 problem document, plus the field or check that failed."""

    type: str
    title: str
    status: int
    detail: str
    field: str | None = None
    check: str | None = None
    extra: dict[str, Any] | None = None


class AliasStatus(BaseModel):
    alias: str
    version: str
    state: str | None
    loaded: bool
    refused: str | None = Field(description="Why this process does not serve it (e.g. a feature-graph mismatch).")
    feature_graph_hash: str | None
    graph_matches_catalog: bool | None
    monitoring: dict[str, Any] | None = Field(description="Latest feature drift, prediction drift and performance.")


class StatusResponse(BaseModel):
    model: str
    aliases: list[AliasStatus]
    loaded_versions: list[str]
    live_feature_graph_hash: str
    following_error: str | None = Field(description="The last failure to follow the registry (retried), if any.")
    traffic: dict[str, Any] | None = Field(
        default=None,
        description="The active production deployment's traffic as this process follows it: deployment_id, "
        "shadow, canary_share, the challenger version, and this process's shadow jobs of every model (submitted, "
        "scored, failed, dropped).",
    )


class VersionInfo(BaseModel):
    version: str
    state: str
    aliases: list[str]
    metrics: dict[str, float]
    feature_graph_hash: str | None
    dataset_hash: str | None
    artifact_sha256: str | None
    trained_by: str | None
    created_at: str | None


class VersionsResponse(BaseModel):
    model: str
    versions: list[VersionInfo]


class PromoteRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: str = Field(pattern=r"^[0-9]+$")
    to: str = Field(default="production", pattern=r"^(staging|production)$")
    overrides: dict[str, Any] = Field(
        default_factory=dict, description="Policy thresholds for this request only (to staging), as in the CLI."
    )
    reason: str = ""


class PromoteResponse(BaseModel):
    model: str
    version: str
    state: str
    actor: str
    passed: bool | None = Field(description="The gate's verdict (to staging); null for a promotion to production.")
    checks: list[dict[str, Any]] = Field(default_factory=list)
    previous_production: str | None = None
