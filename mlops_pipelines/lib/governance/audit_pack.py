"""The audit pack: everything an auditor asks about a period, in one folder that opens without any of our tools.

``build_audit_pack`` collects, for the period ``[since, until)`` (UTC; either end open):

- every model version that entered STAGING, PRODUCTION or RETIRED in the period (a gate pass, a promotion, a
  rollback, a retirement), each with its audit record (state, approvals, compliance review, registration), its
  model card (``model_card.md`` of its training run) and its compliance report (``compliance/report.html`` and
  ``.md``) copied from MLflow; a file that is missing is said to be missing, never left out quietly;
- the policies in force: each policy file as it is now, its git history when the file lives in a git work tree
  (every revision rendered, with its digest), and the promotion-policy hashes the audit log recorded with each
  verdict in the period, matched to the revision they belong to (the digest of a revision's policy equals the
  recorded hash when the verdict applied that revision without request overrides);
- the audit log (every row up to ``until``: the chain can only be verified from its start) with the verification
  result of the whole log as it stands when the pack is built: ``OK`` when every row verifies against the HMAC
  chain, no seq is missing, every transition had its preconditions and MLflow agrees with the log; otherwise
  ``FAILED`` with every problem, and the failing rows flagged in the copied log (a forged row is shown, not
  hidden, and never stops the pack);
- deployments created in the period with their checklists;
- the drift alerts raised in the period: the alerts the ``jsonl`` sink recorded, and the monitoring verdicts that
  were not NORMAL / OK (feature drift, prediction drift, performance);
- the sections that ``sections`` providers add (the prompt library adds its prompt versions and cards there).

Layout: ``index.html`` (inline CSS, no script, no external resource; every link relative), ``index.md``,
``pack.json`` (the summary as data) and ``files.json`` (every file with its sha256). Names from the log (a
model, a version) become folder names only through ``safe_name``, so no name can reach outside the folder.
"""

import hashlib
import html
import json
import re
import shutil
import subprocess
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import duckdb
import pandas as pd
import yaml
from mlflow.exceptions import MlflowException

from mlops_pipelines.lib.core.alerts import read_jsonl
from mlops_pipelines.lib.core.errors import ConfigError, MlopsError
from mlops_pipelines.lib.core.tracking import Tracking
from mlops_pipelines.lib.governance import compliance, deployments
from mlops_pipelines.lib.governance.audit import Row
from mlops_pipelines.lib.governance.lifecycle import Lifecycle, ModelRecord, State, replay
from mlops_pipelines.lib.governance.promotion_policy import PromotionPolicy
from mlops_pipelines.lib.monitoring import feature_drift, model_performance, prediction_drift

RELEASE_STATES = (State.STAGING, State.PRODUCTION, State.RETIRED)  # the moves an auditor asks about
OK, FAILED = "OK", "FAILED"
MAX_POLICY_REVISIONS = 200  # git revisions rendered per policy file
NOT_ALERTING = {"NORMAL", "OK", "INSUFFICIENT"}


@dataclass(frozen=True)
class Period:
    """``[since, until)`` in UTC; None: open at that end."""

    since: datetime | None = None
    until: datetime | None = None

    def __post_init__(self) -> None:
        for value in (self.since, self.until):
            if value is not None and value.tzinfo is None:
                raise ConfigError(f"period bound {value.isoformat()} has no time zone (give it in UTC)")
        if self.since and self.until and self.since >= self.until:
            raise ConfigError(f"period since {self.since.isoformat()} is not before until {self.until.isoformat()}")

    def __contains__(self, moment: object) -> bool:
        when = _utc(moment)
        if when is None:
            return False
        return (self.since is None or when >= self.since) and (self.until is None or when < self.until)

    def describe(self) -> str:
        start = self.since.isoformat() if self.since else "the beginning"
        end = self.until.isoformat() if self.until else "now"
        return f"{start} .. {end} (end excluded)"


def parse_bound(name: str, value: str | None) -> datetime | None:
    """A period bound as given by an operator (``--since`` / config ``since``): an ISO 8601 date (its midnight)
    or time, UTC unless it carries an offset; empty: open. ``ConfigError`` naming ``name`` and the value."""
    if value is None or not value.strip():
        return None
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(f"{name} {value!r} is not an ISO 8601 date or time (e.g. 2026-01-01)") from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


@dataclass(frozen=True)
class PolicySource:
    """A policy file to render; ``digest`` turns a revision's text into the hash verdicts record (None: sha256)."""

    name: str
    path: Path
    digest: Callable[[str], str] | None = None


def promotion_policy_digest(text: str) -> str:
    """The hash a gate verdict records (without request overrides) for a promotion-policy file's text."""
    return PromotionPolicy.model_validate(yaml.safe_load(text)).digest()


@dataclass
class PackSection:
    """A section a provider adds: a title, markdown shown on the index page, a table, and files (path relative to
    the section's folder -> content) linked from the index. ``status`` (``OK``/``FAILED``/free text) is shown."""

    title: str
    slug: str
    summary_md: str = ""
    rows: list[dict[str, Any]] = field(default_factory=list)
    files: dict[str, bytes | str] = field(default_factory=dict)
    status: str = ""


@dataclass(frozen=True)
class PackContext:
    """What a section provider gets: the period, the open lifecycle (same audit log), MLflow, the whole audit log
    as verified for this pack, and ``safe_name`` for any name it makes a path of."""

    period: Period
    lifecycle: Lifecycle
    tracking: Tracking
    rows: list[Row]


SectionProvider = Callable[[PackContext], PackSection]


@dataclass(frozen=True)
class PackResult:
    path: Path
    verification: str  # OK | FAILED
    problems: list[str]
    versions: int
    deployments: int
    alerts: int
    files: int


def safe_name(text: str) -> str:
    """A folder or file name for ``text`` that stays inside its parent whatever ``text`` holds (``..``, ``/``,
    NUL, a drive letter): letters, digits, ``_.-`` kept, the rest ``_``, plus 8 hex of its sha256 (so two
    names that clean up alike never share a folder). A short extension (``.md``, ``.html``) is kept at the end,
    so the file still opens in the right program."""
    stem, dot, extension = text.rpartition(".")
    if not (dot and stem and re.fullmatch(r"[A-Za-z0-9]{1,8}", extension)):
        stem, extension = text, ""
    cleaned = re.sub(r"[^A-Za-z0-9_.-]+", "_", stem).strip("._-")[:60] or "name"
    digest = hashlib.sha256(text.encode()).hexdigest()[:8]
    return f"{cleaned}-{digest}" + (f".{extension}" if extension else "")


# ---- collecting ----------------------------------------------------------------------------------------------
def verify_log(lifecycle: Lifecycle, rows: list[Row]) -> tuple[str, list[str]]:
    """``OK`` or ``FAILED`` with every problem: the chain (each row), gaps, each model's preconditions and its
    MLflow projection (``Lifecycle.verify``), for every model the log or MLflow's registry knows."""
    problems = [f"{row.problem} (model {row.model!r})" for row in rows if not row.verified]
    try:
        known = set(lifecycle.models())  # the log's and MLflow's: a version registered behind the log's back too
    except MlflowException as exc:
        known, problems = set(), [*problems, f"MLflow's registered models could not be listed: {exc}"]
    own = {row.model for row in lifecycle.rows()}  # another kind's subjects are verified by its own lifecycle
    for model in sorted({row.model for row in rows if row.model in own} | known):
        try:
            _, found = lifecycle.verify(model)
        except (MlopsError, MlflowException) as exc:  # a failure to verify is a failed verification
            found = [f"could not be verified: {exc}"]
        problems += [f"{model}: {p}" for p in found if f"{p} (model {model!r})" not in problems]
    return (FAILED if problems else OK), problems


def released_versions(rows: Iterable[Row], period: Period) -> list[dict[str, Any]]:
    """Every move of a version into STAGING, PRODUCTION or RETIRED in the period, oldest first; a move written
    by a row that fails verification is listed too, flagged ``verified: false``."""
    moves = []
    for row in rows:
        if row.to_state in RELEASE_STATES and row.to_state != row.from_state and row.occurred_at in period:
            moves.append(
                {
                    "model": row.model,
                    "version": row.version,
                    "seq": row.seq,
                    "at": _iso(row.occurred_at),
                    "action": row.action,
                    "from_state": row.from_state,
                    "to_state": row.to_state,
                    "actor": row.actor,
                    "reason": row.reason,
                    "verified": row.verified,
                }
            )
    return moves


def _artifact(tracking: Tracking, run_id: str | None, path: str) -> tuple[str | None, str]:
    """(text, note): the artifact's text, or None and why not."""
    if not run_id:
        return None, "no training run on record (no verified register row)"
    try:
        return tracking.read_text_artifact(run_id, path), f"MLflow run {run_id}, artifact {path}"
    except MlopsError as exc:
        return None, f"missing: {exc}"
    except (MlflowException, OSError) as exc:
        return None, f"could not be read: {exc}"


def git_revisions(path: Path, limit: int = MAX_POLICY_REVISIONS) -> tuple[list[dict[str, Any]], str]:
    """Every committed revision of ``path`` (newest first: commit, time, author, subject, text) and where that
    came from; empty with the reason when git or a work tree is not there."""
    try:
        top = subprocess.run(
            ["git", "-C", str(path.parent), "rev-parse", "--show-toplevel"], capture_output=True, text=True, timeout=30
        )
        if top.returncode != 0:
            return [], f"no git history: {path.parent} is not in a git work tree"
        relative = path.resolve().relative_to(Path(top.stdout.strip()).resolve()).as_posix()
        log = subprocess.run(
            ["git", "-C", top.stdout.strip(), "log", f"-{limit}", "--format=%H%x09%aI%x09%an%x09%s", "--", relative],
            capture_output=True,
            text=True,
            timeout=60,
        )
        revisions = []
        for line in log.stdout.splitlines():
            commit, when, author, subject = [*line.split("\t", 3), "", "", ""][:4]
            shown = subprocess.run(
                ["git", "-C", top.stdout.strip(), "show", f"{commit}:{relative}"],
                capture_output=True,
                text=True,
                timeout=60,
            )
            if shown.returncode == 0:
                revisions.append(
                    {"commit": commit, "at": when, "author": author, "subject": subject, "text": shown.stdout}
                )
    except (OSError, ValueError, subprocess.SubprocessError) as exc:
        return [], f"no git history: {exc}"
    return revisions, f"git log of {relative} ({len(revisions)} revisions)"


def _digest(source: PolicySource, text: str) -> str:
    if source.digest is None:
        return hashlib.sha256(text.encode()).hexdigest()
    try:
        return source.digest(text)
    except (ValueError, yaml.YAMLError) as exc:  # an invalid revision has no digest a verdict could record
        return f"invalid: {str(exc).splitlines()[0]}"


def recorded_policy_hashes(rows: Iterable[Row], period: Period) -> list[dict[str, Any]]:
    """The promotion-policy hashes that verdicts in the period applied: first and last use, verdicts, passes,
    and whether request overrides were part of it."""
    found: dict[str, dict[str, Any]] = {}
    for row in rows:
        if not row.policy_hash or row.occurred_at not in period:
            continue
        entry = found.setdefault(
            row.policy_hash,
            {"policy_hash": row.policy_hash, "first_used": _iso(row.occurred_at), "verdict_rows": 0, "passed": 0},
        )
        entry["last_used"] = _iso(row.occurred_at)
        entry["verdict_rows"] += 1
        entry["passed"] += int(bool(row.policy_result and row.policy_result.get("passed")))
        entry["with_overrides"] = entry.get("with_overrides", False) or bool((row.policy_result or {}).get("overrides"))
    return list(found.values())


def drift_alerts(conn: duckdb.DuckDBPyConnection, alerts_file: Path | None, period: Period) -> dict[str, Any]:
    """The alerts recorded by the jsonl sink in the period, and the monitoring verdicts that were not NORMAL/OK."""
    verdicts = []
    for signal, frame, column in (
        ("feature_drift", feature_drift.verdicts(conn), "severity"),
        ("prediction_drift", prediction_drift.verdicts(conn), "severity"),
        ("performance", model_performance.verdicts(conn), "status"),
    ):
        for record in frame.to_dict("records"):
            if str(record[column]) not in NOT_ALERTING and record["window_end"] in period:
                verdicts.append(
                    {
                        "signal": signal,
                        "model": str(record["model"]),
                        "version": str(record["version"]),
                        "partition_key": str(record["partition_key"]),
                        "window_end": _iso(record["window_end"]),
                        "verdict": str(record[column]),
                    }
                )
    verdicts.sort(key=lambda v: (v["window_end"], v["signal"], v["model"]))
    note, raised = "", []
    if alerts_file is None:
        note = "no alert record given"
    elif not alerts_file.exists():
        note = f"no {alerts_file.name}: the jsonl alert sink has not written one (not configured, or nothing raised)"
    else:
        try:
            raised = [a.__dict__ for a in read_jsonl(alerts_file) if a.raised_at in period]
            note = f"from {alerts_file.name}, the jsonl sink's record"
        except ConfigError as exc:  # a damaged record is reported in the pack, not a reason to give no pack
            note = f"{FAILED}: {exc}"
    return {"alerts": raised, "alerts_note": note, "verdicts": verdicts}


# ---- writing -------------------------------------------------------------------------------------------------
class _Folder:
    """Writes files under ``root`` only, remembering each one (for files.json)."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.written: dict[str, str] = {}

    def write(self, relative: str, content: bytes | str) -> str:
        target = (self.root / relative).resolve()
        if not target.is_relative_to(self.root) or target == self.root:
            raise MlopsError(f"audit pack: {relative!r} would be written outside {self.root}")
        target.parent.mkdir(parents=True, exist_ok=True)
        data = content.encode() if isinstance(content, str) else content
        target.write_bytes(data)
        path = target.relative_to(self.root).as_posix()
        self.written[path] = hashlib.sha256(data).hexdigest()
        return path


def _json(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, default=_plain) + "\n"


def _plain(value: Any) -> Any:
    return _iso(value) if isinstance(value, datetime | pd.Timestamp) else str(value)


def _utc(value: object) -> datetime | None:
    if isinstance(value, pd.Timestamp):
        value = value.to_pydatetime()
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return None
    if not isinstance(value, datetime):
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _iso(value: object) -> str:
    when = _utc(value)
    return when.strftime("%Y-%m-%dT%H:%M:%SZ") if when else str(value)


def _md_table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    if not rows:
        return "_none_"

    def cell(value: Any) -> str:
        return str("" if value is None else value).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(row.get(c)) for c in columns) + " |" for row in rows]
    return "\n".join(lines)


def _html_table(rows: Sequence[dict[str, Any]], columns: Sequence[str], links: dict[str, str] | None = None) -> str:
    """``links``: column -> the row key holding a relative path that cell links to."""
    if not rows:
        return "<p><i>none</i></p>"
    links = links or {}
    out = ["<table><tr>", *(f"<th>{html.escape(c)}</th>" for c in columns), "</tr>"]
    for row in rows:
        out.append("<tr>")
        for column in columns:
            text = html.escape(str("" if row.get(column) is None else row.get(column)))
            target = row.get(links[column]) if column in links else None
            out.append(f"<td>{_a(target, text) if target else text}</td>")
        out.append("</tr>")
    return "".join([*out, "</table>"])


def _a(path: str, text: str) -> str:
    return f'<a href="{html.escape(quote(path))}">{text}</a>'


def _md_link(path: str, text: str) -> str:
    return f"[{text.replace(']', ')')}]({quote(path)})"


_STYLE = (
    "body{font-family:sans-serif;max-width:1200px;margin:2em auto;color:#222}"
    "table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px solid #ccc;padding:3px 8px;font-size:13px;"
    "vertical-align:top}th{background:#f3f3f3}.OK{color:#17703a}.FAILED{color:#b00020}"
    "pre{background:#f7f7f7;padding:1em;white-space:pre-wrap}"
)


def _versions(
    folder: _Folder, tracking: Tracking, moves: list[dict[str, Any]], rows: list[Row], records: dict[str, ModelRecord]
) -> list[dict[str, Any]]:
    """One folder per version moved in the period: its record, model card and compliance report."""
    versions: list[dict[str, Any]] = []
    for model, version in dict.fromkeys((m["model"], m["version"]) for m in moves):
        base = f"models/{safe_name(model)}/{safe_name('v' + version)}"
        logged = records.get(model, ModelRecord(model)).versions.get(version)
        run_id = str(logged.registered.get("run_id") or "") if logged else ""
        entry: dict[str, Any] = {
            "model": model,
            "version": version,
            "state": logged.state if logged else "unknown (no verified history)",
            "moves": ", ".join(
                f"{m['to_state']} {m['at']}" for m in moves if (m["model"], m["version"]) == (model, version)
            ),
        }
        record = {
            "model": model,
            "version": version,
            "moves": [m for m in moves if (m["model"], m["version"]) == (model, version)],
            "audit_rows": [r.__dict__ for r in rows if (r.model, r.version) == (model, version)],
            "record": logged.__dict__ if logged else None,
        }
        entry["record_path"] = folder.write(f"{base}/record.json", _json(record))
        for key, artifact, name in (
            ("model_card", "model_card.md", "model_card.md"),
            ("compliance_html", compliance.REPORT_HTML, "compliance_report.html"),
            ("compliance_md", compliance.REPORT_MD, "compliance_report.md"),
        ):
            text, note = _artifact(tracking, run_id, artifact)
            entry[f"{key}_path"] = folder.write(f"{base}/{name}", text) if text is not None else None
            entry[key] = name if text is not None else note
        versions.append(entry)

    return versions


def _policies(
    folder: _Folder, policies: Sequence[PolicySource], rows: list[Row], period: Period
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], str]:
    """Each policy file now and its git revisions; the hashes the period's verdicts recorded, matched to them."""
    policy_entries = []
    hashes = recorded_policy_hashes(rows, period)
    revision_of: dict[str, str] = {}
    for source in policies:
        try:
            current = source.path.read_text()
        except OSError as exc:
            current = None
            note = f"cannot be read: {exc}"
        else:
            note = "in force now"
        base = f"policies/{safe_name(source.name)}"
        revisions, origin = git_revisions(source.path)
        history = []
        for revision in revisions:
            digest = _digest(source, revision["text"])
            stamp = re.sub(r"[^0-9T]", "", revision["at"])[:15]
            path = folder.write(f"{base}/history/{stamp}_{revision['commit'][:12]}.yaml", revision["text"])
            history.append({**{k: v for k, v in revision.items() if k != "text"}, "digest": digest, "path": path})
            revision_of.setdefault(digest, f"{source.name} @ {revision['commit'][:12]} ({revision['at']})")
        current_digest = _digest(source, current) if current is not None else None
        if current_digest:
            revision_of.setdefault(current_digest, f"{source.name} as it is now (not committed)")
        policy_entries.append(
            {
                "name": source.name,
                "file": source.path.name,
                "status": note,
                "digest": current_digest,
                "current_path": folder.write(f"{base}/{safe_name(source.path.name)}", current)
                if current is not None
                else None,
                "history_note": origin,
                "history": history,
                "history_path": folder.write(f"{base}/history.json", _json(history)),
            }
        )
    for entry in hashes:
        entry["revision"] = revision_of.get(
            entry["policy_hash"],
            "a revision with request overrides (see the verdict rows), or one not in this history",
        )
    policy_hashes_path = folder.write("policies/recorded_hashes.json", _json(hashes))

    return policy_entries, hashes, policy_hashes_path


def _deployments(
    folder: _Folder, lifecycle: Lifecycle, period: Period
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], str]:
    """The deployments created in the period, with their checklists (as data, and as table rows)."""
    deployed = [
        {**d, "checklist": json.loads(d["checklist"]) if d.get("checklist") else []}
        for d in deployments.list_deployments(lifecycle.conn)
        if d["created_at"] in period
    ]
    deployments_path = folder.write("deployments/deployments.json", _json(deployed))
    deployment_rows = [
        {
            **{k: d[k] for k in ("deployment_id", "model", "version", "environment", "status", "created_by")},
            "created_at": _iso(d["created_at"]),
            "checklist": "; ".join(
                f"{'ok' if i['passed'] else 'NO'} {i['name']}: {i['detail']}" for i in d["checklist"]
            ),
        }
        for d in deployed
    ]

    return deployed, deployment_rows, deployments_path


def build_audit_pack(
    out: Path,
    *,
    lifecycle: Lifecycle,
    tracking: Tracking,
    period: Period,
    policies: Sequence[PolicySource],
    alerts_file: Path | None,
    sections: Sequence[SectionProvider] = (),
    generated_at: datetime | None = None,
) -> PackResult:
    """Write the pack for ``period`` into ``out`` (which must not exist yet, or be empty); see the module
    docstring. The files go to a temporary sibling first and are renamed into place, so a pack is whole or
    absent."""
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ConfigError(f"audit pack folder {out} exists and is not empty: give a new folder")
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = out.with_name(f".{out.name}.partial")
    if staging.exists():  # left by a pack that failed half-way
        shutil.rmtree(staging)
    staging.mkdir()
    folder = _Folder(staging)
    generated = generated_at or datetime.now(UTC)

    every_row = lifecycle.rows(every_kind=True)  # models and prompts share one chain
    rows = [r for r in every_row if period.until is None or r.occurred_at < period.until]
    status, problems = verify_log(lifecycle, every_row)  # the whole log as it stands: a later forgery is news too
    model_seqs = {r.seq for r in lifecycle.rows()}
    rows_of_models = [r for r in rows if r.seq in model_seqs]
    by_model: dict[str, list[Row]] = {}
    for row in rows_of_models:
        by_model.setdefault(row.model, []).append(row)
    records = {model: replay(model, found) for model, found in by_model.items()}  # as they stood at ``until``

    # audit log
    log_rows = [{**r.__dict__, "in_period": r.occurred_at in period} for r in rows]
    audit_files = {
        "log": folder.write("audit/audit_log.json", _json(log_rows)),
        "verification": folder.write(
            "audit/verification.json",
            _json({"status": status, "problems": problems, "rows_verified": len(rows), "period": period.describe()}),
        ),
    }

    moves = released_versions(rows_of_models, period)  # prompt versions: their section (catalog/governance.py)
    versions = _versions(folder, tracking, moves, rows_of_models, records)
    policy_entries, hashes, policy_hashes_path = _policies(folder, policies, rows, period)
    deployed, deployment_rows, deployments_path = _deployments(folder, lifecycle, period)

    # drift alerts
    monitoring = drift_alerts(lifecycle.conn, alerts_file, period)
    alerts_path = folder.write("monitoring/drift_alerts.json", _json(monitoring))

    # sections the providers add
    context = PackContext(period=period, lifecycle=lifecycle, tracking=tracking, rows=rows)
    extra = []
    for provider in sections:
        try:
            section = provider(context)
        except Exception as exc:  # a provider is a plug-in: its failure is said in the pack, never a missing section
            section = PackSection(title=getattr(provider, "__name__", "section"), slug="failed", status=FAILED)
            section.summary_md = f"{FAILED}: this section could not be built: {exc}"
        base = f"sections/{safe_name(section.slug)}"
        files = {name: folder.write(f"{base}/{safe_name(name)}", content) for name, content in section.files.items()}
        extra.append((section, files))

    summary = {
        "generated_at": _iso(generated),
        "period": {
            "since": _iso(period.since) if period.since else None,
            "until": _iso(period.until) if period.until else None,
        },
        "audit_log": {"status": status, "problems": problems, "rows": len(rows)},
        "versions": versions,
        "policies": [{k: v for k, v in p.items() if k != "history"} for p in policy_entries],
        "recorded_policy_hashes": hashes,
        "deployments": deployment_rows,
        "drift_alerts": {"alerts": len(monitoring["alerts"]), "verdicts": len(monitoring["verdicts"])},
        "sections": [{"title": s.title, "status": s.status, "files": f} for s, f in extra],
    }
    folder.write("pack.json", _json(summary))
    index = _Index(period, generated, status, problems)
    index.audit(rows, audit_files)
    index.versions(versions)
    index.policies(policy_entries, hashes, policy_hashes_path)
    index.deployments(deployment_rows, deployments_path)
    index.alerts(monitoring, alerts_path)
    for section, files in extra:
        index.section(section, files)
    folder.write("index.md", index.markdown())
    folder.write("index.html", index.html())
    folder.write("files.json", _json(dict(sorted(folder.written.items()))))
    if out.exists():
        out.rmdir()
    staging.rename(out)
    return PackResult(
        path=out,
        verification=status,
        problems=problems,
        versions=len(versions),
        deployments=len(deployed),
        alerts=len(monitoring["alerts"]) + len(monitoring["verdicts"]),
        files=len(folder.written) + 1,
    )


class _Index:
    """The index page, built once as HTML and once as markdown."""

    def __init__(self, period: Period, generated: datetime, status: str, problems: list[str]) -> None:
        self.html_parts = [
            "<h1>Audit pack</h1>",
            f"<p>Period: {html.escape(period.describe())}. Generated {html.escape(_iso(generated))}.</p>",
            f"<p>Audit log hash-chain verification: <b class='{status}'>{status}</b></p>",
        ]
        self.md_parts = [
            "# Audit pack",
            "",
            f"Period: {period.describe()}. Generated {_iso(generated)}.",
            "",
            f"Audit log hash-chain verification: **{status}**",
            "",
        ]
        if problems:
            self.html_parts.append("<ul>" + "".join(f"<li>{html.escape(p)}</li>" for p in problems) + "</ul>")
            self.md_parts += [*(f"- {p}" for p in problems), ""]

    def _heading(self, title: str) -> None:
        self.html_parts.append(f"<h2>{html.escape(title)}</h2>")
        self.md_parts += [f"## {title}", ""]

    def _para(self, text_html: str, text_md: str) -> None:
        self.html_parts.append(f"<p>{text_html}</p>")
        self.md_parts += [text_md, ""]

    def _table(self, rows: list[dict[str, Any]], columns: list[str], links: dict[str, str] | None = None) -> None:
        self.html_parts.append(_html_table(rows, columns, links))
        md_rows = [
            {
                c: _md_link(r[links[c]], str(r.get(c))) if links and c in links and r.get(links[c]) else r.get(c)
                for c in columns
            }
            for r in rows
        ]
        self.md_parts += [_md_table(md_rows, columns), ""]

    def audit(self, rows: list[Row], files: dict[str, str]) -> None:
        self._heading("Audit log")
        failing = sum(not r.verified for r in rows)
        text = (
            f"{len(rows)} rows up to the end of the period (the chain is verified from its first row), "
            f"{failing} failing verification."
        )
        log, verification = files["log"], files["verification"]
        self._para(
            f"{html.escape(text)} {_a(log, 'audit_log.json')} &middot; {_a(verification, 'verification.json')}",
            f"{text} {_md_link(log, 'audit_log.json')}, {_md_link(verification, 'verification.json')}",
        )

    def versions(self, versions: list[dict[str, Any]]) -> None:
        self._heading("Model versions promoted or retired")
        if not versions:
            self._para(
                "No model version entered STAGING, PRODUCTION or RETIRED in this period.",
                "No model version entered STAGING, PRODUCTION or RETIRED in this period.",
            )
            return
        links = {
            "version": "record_path",
            "model_card": "model_card_path",
            "compliance_html": "compliance_html_path",
            "compliance_md": "compliance_md_path",
        }
        self._table(
            versions, ["model", "version", "state", "moves", "model_card", "compliance_html", "compliance_md"], links
        )

    def policies(self, entries: list[dict[str, Any]], hashes: list[dict[str, Any]], hashes_path: str) -> None:
        self._heading("Policies in force")
        rows = [
            {**e, "revisions": f"{len(e['history'])} ({e['history_note']})", "history": "history.json"} for e in entries
        ]
        self._table(
            rows,
            ["name", "file", "status", "digest", "revisions", "history"],
            {"file": "current_path", "history": "history_path"},
        )
        for entry in entries:
            if entry["history"]:
                self.html_parts.append(f"<h3>{html.escape(entry['name'])}: git history</h3>")
                self.md_parts += [f"### {entry['name']}: git history", ""]
                self._table(entry["history"], ["at", "commit", "author", "subject", "digest"], {"commit": "path"})
        self.html_parts.append("<h3>Promotion-policy hashes the verdicts of this period applied</h3>")
        self.md_parts += ["### Promotion-policy hashes the verdicts of this period applied", ""]
        self._table(
            hashes, ["policy_hash", "revision", "first_used", "last_used", "verdict_rows", "passed", "with_overrides"]
        )
        self._para(_a(hashes_path, "recorded_hashes.json"), _md_link(hashes_path, "recorded_hashes.json"))

    def deployments(self, rows: list[dict[str, Any]], path: str) -> None:
        self._heading("Deployments and their checklists")
        for row in rows:
            row["path"] = path
        self._table(
            rows,
            ["deployment_id", "model", "version", "environment", "status", "created_by", "created_at", "checklist"],
            {"deployment_id": "path"},
        )
        self._para(_a(path, "deployments.json"), _md_link(path, "deployments.json"))

    def alerts(self, monitoring: dict[str, Any], path: str) -> None:
        self._heading("Drift alerts raised")
        note = monitoring["alerts_note"]
        self._para(f"Alerts ({html.escape(note)}):", f"Alerts ({note}):")
        self._table(monitoring["alerts"], ["raised_at", "kind", "subject", "episode", "summary"])
        self._para("Monitoring verdicts that were not NORMAL / OK:", "Monitoring verdicts that were not NORMAL / OK:")
        self._table(monitoring["verdicts"], ["window_end", "signal", "model", "version", "verdict", "partition_key"])
        self._para(_a(path, "drift_alerts.json"), _md_link(path, "drift_alerts.json"))

    def section(self, section: PackSection, files: dict[str, str]) -> None:
        self._heading(section.title + (f" ({section.status})" if section.status else ""))
        if section.summary_md:
            self.html_parts.append(f"<pre>{html.escape(section.summary_md)}</pre>")
            self.md_parts += [section.summary_md, ""]
        if section.rows:
            columns = list(dict.fromkeys(k for row in section.rows for k in row))
            self._table(section.rows, columns)
        if files:
            self.html_parts.append(
                "<ul>" + "".join(f"<li>{_a(p, html.escape(n))}</li>" for n, p in files.items()) + "</ul>"
            )
            self.md_parts += [*(f"- {_md_link(p, n)}" for n, p in files.items()), ""]

    def html(self) -> str:
        return (
            "<!doctype html><html><head><meta charset='utf-8'><title>Audit pack</title>"
            f"<style>{_STYLE}</style></head><body>" + "\n".join(self.html_parts) + "</body></html>\n"
        )

    def markdown(self) -> str:
        return "\n".join(self.md_parts) + "\n"
