"""The platform's governance KPIs: what share of the work follows the process, and how fast the process is.

``compute_kpis`` is pure: it reads the audit log's rows (as verified), facts collected about each version
(``VersionFacts``: which artifacts its training run holds) and about each feature view (``ViewFacts``), and
judges them as of the end of a day. A KPI that has nothing to be computed over (no versions, no approvals) is
``None``, shown as ``n/a``: never a division by zero, never a made-up 0 or 100 %.

The KPIs (``Kpi.name``), each as of the end of the day unless it says "in the day":

- feature-store adoption: ``adoption.<view>.models`` (models whose spec reads the view),
  ``adoption.views_in_use_share`` (views read by at least one model), ``adoption.<view>.days_to_first_materialization``
  (from the view's first commit to its first materialization) and their median;
- lifecycle compliance: ``lifecycle.versions`` (registered), ``lifecycle.manifest_share`` and
  ``lifecycle.card_share`` (of registered versions, whose training run holds ``manifest.json`` /
  ``model_card.md``), ``lifecycle.review_share`` (of released versions, with a decided compliance review),
  ``lifecycle.complete_share`` (released versions with all three), ``lifecycle.cadence_kept_share`` (of models
  with a version and a cadence limit, those whose newest version is at most ``max_days`` old) and
  ``lifecycle.max_days_since_retraining``;
- evaluation coverage: ``evaluation.releases`` (versions that reached STAGING: passed the gate, released for
  review), ``evaluation.explainability_share`` (releases with ``explanations/shap_summary.png``),
  ``evaluation.backtest_share`` (releases with ``backtest/comparison.md``);
- governance quality: ``governance.approval_turnaround_hours_median`` (entry into STAGING to the first approval
  of that stay), ``governance.review_turnaround_hours_median`` (review requested to decided),
  ``governance.policy_violations_day`` / ``_total`` (failed policy verdicts: a gate that refused a version),
  ``governance.overrides_day`` / ``_total`` (verdicts under request overrides, audited overrides such as serving
  despite a feature-graph mismatch), ``governance.audit_rows_failing_verification``.

Rows that fail chain verification are counted by the last KPI and otherwise ignored, as ``replay`` ignores them.
Other parts of the platform add KPIs through ``KpiProvider`` (the prompt library: prompt approval turnaround).
"""

import contextlib
import statistics
import subprocess
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import duckdb
import pandas as pd
from mlflow.exceptions import MlflowException
from pydantic import BaseModel, ConfigDict, Field

from mlops_pipelines.lib.core import warehouse
from mlops_pipelines.lib.core.config_files import load_yaml_model
from mlops_pipelines.lib.core.errors import MlopsError
from mlops_pipelines.lib.core.tracking import Tracking
from mlops_pipelines.lib.governance.audit import Row
from mlops_pipelines.lib.governance.lifecycle import ModelRecord, ReviewStatus, State, replay

KPI_TABLE = "governance.kpis"  # owned here: its DDL and every read and write
_DDL = """
    partition_key VARCHAR, kpi VARCHAR, kpi_group VARCHAR, value DOUBLE, detail VARCHAR,
    as_of TIMESTAMP WITH TIME ZONE
"""
RELEASED = (State.STAGING, State.PRODUCTION, State.RETIRED)
DECIDED = (ReviewStatus.APPROVED, ReviewStatus.REJECTED)
SECONDS_PER_DAY = 86_400.0


MaxDays = Annotated[float, Field(gt=0)]


class CadencePolicy(BaseModel):
    """How often each model must be retrained: its newest version at most ``max_days`` old (null: no limit);
    ``models`` overrides ``default_max_days`` per model."""

    model_config = ConfigDict(extra="forbid")

    default_max_days: MaxDays | None = None
    models: dict[str, MaxDays | None] = Field(default_factory=dict)

    def limit(self, model: str) -> float | None:
        return self.models.get(model, self.default_max_days)


class KpiPolicy(BaseModel):
    """The file ``catalog/governance_kpis.yaml``."""

    model_config = ConfigDict(extra="forbid")

    retraining: CadencePolicy = Field(default_factory=CadencePolicy)


def load_kpi_policy(path: str | Path) -> KpiPolicy:
    """The KPI policy; any problem names the file, key and reason."""
    return load_yaml_model(path, KpiPolicy)


@dataclass(frozen=True)
class VersionFacts:
    """What a version's training run holds (collected from MLflow by ``collect_version_facts``)."""

    model: str
    version: str
    has_manifest: bool
    has_card: bool
    has_explanations: bool
    has_backtest: bool


@dataclass(frozen=True)
class ViewFacts:
    """A feature view: the models whose spec reads it, when it was first committed and first materialized."""

    name: str
    models: tuple[str, ...]
    first_commit: datetime | None
    first_materialized: datetime | None


@dataclass(frozen=True)
class Kpi:
    name: str
    group: str
    value: float | None  # None: n/a (nothing to compute it over)
    detail: str  # how it was computed, e.g. "3 of 4 versions"


@dataclass(frozen=True)
class KpiContext:
    """What a ``KpiProvider`` gets: the verified audit rows up to ``day_end`` (of every governed kind when the
    caller passes ``provider_rows``) and the day."""

    rows: Sequence[Row]
    day_start: datetime
    day_end: datetime


KpiProvider = Callable[[KpiContext], list[Kpi]]


def _share(name: str, group: str, hits: int, total: int, what: str) -> Kpi:
    if total == 0:
        return Kpi(name, group, None, f"n/a: no {what}")
    return Kpi(name, group, hits / total, f"{hits} of {total} {what}")


def _median(name: str, group: str, values: list[float], what: str) -> Kpi:
    if not values:
        return Kpi(name, group, None, f"n/a: no {what}")
    return Kpi(name, group, float(statistics.median(values)), f"median of {len(values)} {what}")


def _hours(later: datetime, earlier: datetime) -> float:
    return (later - earlier).total_seconds() / 3600.0


def compute_kpis(
    *,
    rows: Sequence[Row],
    versions: Mapping[tuple[str, str], VersionFacts],
    views: Sequence[ViewFacts],
    models: Sequence[str],
    policy: KpiPolicy,
    day_start: datetime,
    day_end: datetime,
    providers: Sequence[KpiProvider] = (),
    provider_rows: Sequence[Row] | None = None,
) -> list[Kpi]:
    """Every KPI as of ``day_end`` (rows before it), the "in the day" ones over ``[day_start, day_end)``."""
    failing = [r for r in rows if r.occurred_at < day_end and not r.verified]
    known = [r for r in rows if r.occurred_at < day_end and r.verified]
    by_model: dict[str, list[Row]] = {}
    for row in known:
        by_model.setdefault(row.model, []).append(row)
    records = {model: replay(model, found) for model, found in by_model.items()}
    kpis = [
        *_adoption(views, day_end),
        *_lifecycle(records, known, versions, models, policy, day_end),
        *_evaluation(records, versions),
        *governance_quality(known, day_start, day_end),
        Kpi(
            "governance.audit_rows_failing_verification",
            "governance quality",
            float(len(failing)),
            f"{len(failing)} audit rows fail the hash chain" + (f" (first: seq {failing[0].seq})" if failing else ""),
        ),
    ]
    others = (
        [r for r in provider_rows if r.occurred_at < day_end and r.verified] if provider_rows is not None else known
    )
    context = KpiContext(rows=others, day_start=day_start, day_end=day_end)
    for provider in providers:
        kpis += provider(context)
    return kpis


def _adoption(views: Sequence[ViewFacts], day_end: datetime) -> list[Kpi]:
    group = "feature-store adoption"
    kpis = [
        Kpi(f"adoption.{v.name}.models", group, float(len(v.models)), ", ".join(v.models) or "no model reads it")
        for v in views
    ]
    kpis.append(_share("adoption.views_in_use_share", group, sum(bool(v.models) for v in views), len(views), "views"))
    lead_times = []
    for view in views:
        name = f"adoption.{view.name}.days_to_first_materialization"
        if view.first_commit is None:
            kpis.append(Kpi(name, group, None, "n/a: first commit unknown (no git history of the catalog)"))
        elif view.first_materialized is None or view.first_materialized >= day_end:
            kpis.append(Kpi(name, group, None, "n/a: not materialized yet"))
        else:
            days = max(0.0, (view.first_materialized - view.first_commit).total_seconds() / SECONDS_PER_DAY)
            lead_times.append(days)
            kpis.append(
                Kpi(name, group, days, f"{view.first_commit.isoformat()} -> {view.first_materialized.isoformat()}")
            )
    kpis.append(_median("adoption.median_days_to_first_materialization", group, lead_times, "materialized views"))
    return kpis


def _registered_at(rows: Iterable[Row]) -> dict[tuple[str, str], datetime]:
    return {(r.model, r.version): r.occurred_at for r in rows if r.action == "register"}


def _released(records: Mapping[str, ModelRecord]) -> list[tuple[str, str]]:
    """Versions that reached STAGING (passed the gate) at some point: staging_since or a later state."""
    return [
        (model, version)
        for model, record in records.items()
        for version, found in record.versions.items()
        if found.staging_since or found.was_production or found.state in RELEASED
    ]


def _lifecycle(
    records: Mapping[str, ModelRecord],
    rows: Sequence[Row],
    versions: Mapping[tuple[str, str], VersionFacts],
    models: Sequence[str],
    policy: KpiPolicy,
    day_end: datetime,
) -> list[Kpi]:
    group = "lifecycle compliance"
    registered = [(m, v) for m, record in records.items() for v in record.versions]
    facts = [versions.get(key) for key in registered]
    released = _released(records)
    reviewed = {
        (m, v) for m, v in released if (records[m].versions[v].review or {}).get("status") in {s.value for s in DECIDED}
    }

    def complete(key: tuple[str, str]) -> bool:
        found = versions.get(key)
        return bool(found and found.has_manifest and found.has_card and key in reviewed)

    kpis = [
        Kpi("lifecycle.versions", group, float(len(registered)), f"{len(registered)} versions registered"),
        _share(
            "lifecycle.manifest_share", group, sum(bool(f and f.has_manifest) for f in facts), len(facts), "versions"
        ),
        _share("lifecycle.card_share", group, sum(bool(f and f.has_card) for f in facts), len(facts), "versions"),
        _share("lifecycle.review_share", group, len(reviewed), len(released), "released versions"),
        _share("lifecycle.complete_share", group, sum(map(complete, released)), len(released), "released versions"),
    ]
    newest: dict[str, datetime] = {}
    for (model, _), at in _registered_at(rows).items():
        newest[model] = max(at, newest.get(model, at))
    judged, kept, ages = 0, 0, []
    for model in sorted(set(models) | set(newest)):
        limit = policy.retraining.limit(model)
        if model not in newest:
            continue
        age = (day_end - newest[model]).total_seconds() / SECONDS_PER_DAY
        ages.append(age)
        if limit is not None:
            judged += 1
            kept += age <= limit
    kpis.append(_share("lifecycle.cadence_kept_share", group, kept, judged, "models with a version and a cadence"))
    kpis.append(
        Kpi("lifecycle.max_days_since_retraining", group, max(ages), f"over {len(ages)} models")
        if ages
        else Kpi("lifecycle.max_days_since_retraining", group, None, "n/a: no versions")
    )
    return kpis


def _evaluation(records: Mapping[str, ModelRecord], versions: Mapping[tuple[str, str], VersionFacts]) -> list[Kpi]:
    group = "evaluation coverage"
    released = _released(records)
    facts = [versions.get(key) for key in released]
    return [
        Kpi("evaluation.releases", group, float(len(released)), f"{len(released)} versions reached STAGING"),
        _share(
            "evaluation.explainability_share",
            group,
            sum(bool(f and f.has_explanations) for f in facts),
            len(facts),
            "releases",
        ),
        _share(
            "evaluation.backtest_share", group, sum(bool(f and f.has_backtest) for f in facts), len(facts), "releases"
        ),
    ]


def _is_violation(row: Row) -> bool:
    return row.policy_result is not None and not row.policy_result.get("passed")


def _is_override(row: Row) -> bool:
    return row.action == "override" or bool(row.details.get("overrides"))


def governance_quality(
    rows: Sequence[Row], day_start: datetime, day_end: datetime, *, prefix: str = "governance"
) -> list[Kpi]:
    """Approval and review turnaround, policy violations and overrides over ``rows`` (one governed kind: models,
    or with ``prefix="prompts"`` the prompt library's rows)."""
    group = "governance quality" if prefix == "governance" else f"{prefix} governance quality"
    entered: dict[tuple[str, str], datetime] = {}  # version -> when its current stay in STAGING began
    approved: set[tuple[str, str, datetime]] = set()
    approval_hours, review_hours = [], []
    requested: dict[tuple[str, str], datetime] = {}
    for row in rows:
        key = (row.model, row.version)
        if row.to_state == State.STAGING and row.from_state != State.STAGING:
            entered[key] = row.occurred_at
        elif row.action == "approval" and key in entered and (*key, entered[key]) not in approved:
            approved.add((*key, entered[key]))  # the first approval of this stay
            approval_hours.append(_hours(row.occurred_at, entered[key]))
        elif row.action == "review_requested":
            requested[key] = row.occurred_at
        elif row.action in ("review_approved", "review_rejected") and key in requested:
            review_hours.append(_hours(row.occurred_at, requested.pop(key)))

    def per_verdict(found: Iterable[Row]) -> int:  # one per operation and version (a gate writes two rows)
        return len({(r.operation_id, r.model, r.version) for r in found})

    today = [r for r in rows if r.occurred_at >= day_start]
    violations_total, violations_day = (
        per_verdict(filter(_is_violation, rows)),
        per_verdict(filter(_is_violation, today)),
    )
    overrides_total, overrides_day = per_verdict(filter(_is_override, rows)), per_verdict(filter(_is_override, today))
    return [
        _median(f"{prefix}.approval_turnaround_hours_median", group, approval_hours, "approvals"),
        _median(f"{prefix}.review_turnaround_hours_median", group, review_hours, "decided reviews"),
        Kpi(f"{prefix}.policy_violations_day", group, float(violations_day), "failed policy verdicts in the day"),
        Kpi(f"{prefix}.policy_violations_total", group, float(violations_total), "failed policy verdicts so far"),
        Kpi(f"{prefix}.overrides_day", group, float(overrides_day), "overrides used in the day"),
        Kpi(f"{prefix}.overrides_total", group, float(overrides_total), "overrides used so far"),
    ]


# ---- collecting the facts (MLflow, git) ------------------------------------------------------------------------
def collect_version_facts(
    tracking: Tracking, records: Mapping[str, ModelRecord]
) -> dict[tuple[str, str], VersionFacts]:
    """Which artifacts each version's training run holds; a run that cannot be read holds nothing."""
    facts = {}
    for model, record in records.items():
        for version, found in record.versions.items():
            run_id = str(found.registered.get("run_id") or "")
            paths: set[str] = set()
            for folder in ("", "explanations", "backtest"):
                with contextlib.suppress(MlflowException, MlopsError, OSError):
                    paths |= set(tracking.artifact_paths(run_id, folder)) if run_id else set()
            facts[(model, version)] = VersionFacts(
                model=model,
                version=version,
                has_manifest="manifest.json" in paths,
                has_card="model_card.md" in paths,
                has_explanations="explanations/shap_summary.png" in paths,
                has_backtest="backtest/comparison.md" in paths,
            )
    return facts


def first_commit(path: Path, needle: str) -> datetime | None:
    """When ``needle`` (e.g. ``name="returns"``) first appeared in ``path``'s git history (author time, UTC);
    None when the file is not in a git work tree or the text was never committed."""
    try:
        found = subprocess.run(
            ["git", "-C", str(path.parent), "log", "--reverse", "--format=%aI", "-S", needle, "--", path.name],
            capture_output=True,
            text=True,
            timeout=60,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    lines = found.stdout.split()
    if found.returncode != 0 or not lines:
        return None
    return datetime.fromisoformat(lines[0]).astimezone(UTC)


# ---- the table -----------------------------------------------------------------------------------------------
def write_kpis(conn: duckdb.DuckDBPyConnection, partition_key: str, kpis: Sequence[Kpi], as_of: datetime) -> None:
    """The day's KPIs, replacing a previous run's (NULL value: n/a)."""
    frame = pd.DataFrame(
        [
            {
                "partition_key": partition_key,
                "kpi": k.name,
                "kpi_group": k.group,
                "value": k.value,
                "detail": k.detail,
                "as_of": as_of,
            }
            for k in kpis
        ],
        columns=["partition_key", "kpi", "kpi_group", "value", "detail", "as_of"],
    )
    frame["value"] = frame["value"].astype("float64")
    warehouse.replace_rows(conn, KPI_TABLE, frame, where="partition_key = ?", params=[partition_key], create_sql=_DDL)


def read_kpis(conn: duckdb.DuckDBPyConnection) -> list[dict[str, Any]]:
    """Every stored KPI value, by partition and name."""
    if not warehouse.table_exists(conn, KPI_TABLE):
        return []
    return warehouse.fetch_dicts(conn, f"SELECT * FROM {KPI_TABLE} ORDER BY partition_key, kpi")


def kpi_markdown(kpis: Sequence[Kpi], title: str) -> str:
    """The KPI page: one table per group, ``n/a`` where there was nothing to compute over."""
    lines = [f"# {title}", ""]
    for group in dict.fromkeys(k.group for k in kpis):
        lines += [f"## {group}", "", "| KPI | value | how |", "|---|---|---|"]
        for kpi in (k for k in kpis if k.group == group):
            value = "n/a" if kpi.value is None else f"{kpi.value:.4g}"
            lines.append(f"| {kpi.name} | {value} | {kpi.detail.replace('|', '/')} |")
        lines.append("")
    return "\n".join(lines)
