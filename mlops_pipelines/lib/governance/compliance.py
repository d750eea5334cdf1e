"""The compliance report of a model version: one self-contained HTML file (images embedded) and markdown.

The report is what a reviewer signs off, so its content never changes after it is rendered; only its review
status does. That status sits between two markers (``STATUS_BEGIN`` / ``STATUS_END``) and is rewritten from the
audit log by ``refresh_review_status`` after every decision, so the report in MLflow shows who decided what.
"""

import html
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mlops_pipelines.lib.core.errors import MlopsError
from mlops_pipelines.lib.core.metrics import CI_LEVEL
from mlops_pipelines.lib.core.plots import png_data_uri
from mlops_pipelines.lib.core.tracking import Tracking
from mlops_pipelines.lib.governance.lifecycle import Lifecycle, LifecycleError, ReviewStatus
from mlops_pipelines.lib.governance.promotion_policy import PolicyResult

FOLDER = "compliance"  # the reports' folder in the training run's artifacts
REPORT_HTML, REPORT_MD = f"{FOLDER}/report.html", f"{FOLDER}/report.md"
STATUS_BEGIN, STATUS_END = "<!-- review-status -->", "<!-- /review-status -->"


class ReportFormatError(MlopsError, ValueError):
    """A stored report has no review-status block to update (rendered by an older version of the platform)."""


@dataclass(frozen=True)
class ReportInputs:
    model: str
    version: str
    model_card_md: str
    manifest: dict[str, Any]
    feature_views: dict[str, int]
    backtest_md: str
    equity_pngs: dict[str, bytes]  # scenario -> PNG
    shap_md: str
    shap_png: bytes | None
    shap_error: str | None
    drift_status: str
    policy: PolicyResult
    review_status: str


def collect_inputs(
    tracking: Tracking, model: str, version: str, run_id: str, feature_views: dict[str, int], policy: PolicyResult
) -> ReportInputs:
    """Everything the report shows, from the training run's artifacts (model card, manifest, the backtest's
    comparison and equity curves, the SHAP summary when the explanations succeeded) and the policy verdict."""
    equity = {
        Path(path).stem.removeprefix("equity_"): tracking.read_bytes_artifact(run_id, path)
        for path in tracking.artifact_paths(run_id, "backtest")
        if path.endswith(".png")
    }
    shap_ok = "explanations/shap_summary.png" in tracking.artifact_paths(run_id, "explanations")
    return ReportInputs(
        model=model,
        version=version,
        model_card_md=tracking.read_text_artifact(run_id, "model_card.md"),
        manifest=json.loads(tracking.read_text_artifact(run_id, "manifest.json")),
        feature_views=feature_views,
        backtest_md=tracking.read_text_artifact(run_id, "backtest/comparison.md"),
        equity_pngs=equity,
        shap_md=tracking.read_text_artifact(run_id, "explanations/importance.md") if shap_ok else "",
        shap_png=tracking.read_bytes_artifact(run_id, "explanations/shap_summary.png") if shap_ok else None,
        shap_error=None if shap_ok else "no SHAP artifacts for this version (see the explanations asset)",
        drift_status=(
            "drift of the last day after the training cutoff vs the 30 days before it: "
            f"{policy.metrics.get('drift_severity')} (INSUFFICIENT: less than a day of data after the cutoff)"
        ),
        policy=policy,
        review_status=ReviewStatus.PENDING_REVIEW.value,
    )


def policy_markdown(policy: PolicyResult) -> str:
    lines = ["| threshold | limit | observed | result |", "|---|---|---|---|"]
    lines += [
        f"| {c.name} | {c.threshold} | {_fmt(c.observed)} | {'pass' if c.passed else 'FAIL'} |" for c in policy.checks
    ]
    verdict = "PASSED" if policy.passed else "FAILED"
    overrides = f"; request overrides {policy.overrides}" if policy.overrides else ""
    return "\n".join(lines) + f"\n\nOverall: **{verdict}** (policy hash `{policy.policy_hash[:16]}`{overrides})"


def headline_markdown(metrics: Mapping[str, Any]) -> str:
    """Every metric that has a confidence interval (``<name>_ci_low`` / ``_ci_high``), with it: held-out forecasts,
    and the holdout backtest after costs."""
    lines = [f"| metric | value | {CI_LEVEL:.0%} interval |", "|---|---|---|"]
    for name in sorted(k.removesuffix("_ci_low") for k in metrics if k.endswith("_ci_low")):
        if name in metrics:
            interval = f"[{_fmt(metrics[f'{name}_ci_low'])}, {_fmt(metrics.get(f'{name}_ci_high'))}]"
            lines.append(f"| {name} | {_fmt(metrics[name])} | {interval} |")
    return "\n".join(lines)


def _fmt(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def render_markdown(inputs: ReportInputs) -> str:
    m = inputs.manifest
    return (
        "\n".join(
            [
                f"# Compliance report: {inputs.model} v{inputs.version}",
                "",
                status_markdown({"status": inputs.review_status}),
                "",
                "## Lineage",
                "",
                f"- dataset hash: `{m.get('dataset_hash')}`",
                f"- feature-graph hash: `{m.get('feature_graph_hash')}`",
                f"- feature views: {', '.join(f'{k}@{v}' for k, v in inputs.feature_views.items())}",
                f"- git commit: `{m.get('git_commit')}`; MLflow run `{m.get('mlflow_run_id')}`; "
                f"Dagster run `{m.get('dagster_run_id')}`",
                f"- artifact sha256: `{m.get('artifact_sha256')}`",
                "",
                "## Promotion policy",
                "",
                policy_markdown(inputs.policy),
                "",
                "## Headline metrics with their uncertainty",
                "",
                headline_markdown(inputs.policy.metrics),
                "",
                "## Scenario replay vs baselines",
                "",
                inputs.backtest_md,
                "",
                "## Explanations (SHAP)",
                "",
                inputs.shap_md if inputs.shap_error is None else f"Explanations failed: {inputs.shap_error}",
                "",
                "## Drift status at training time",
                "",
                inputs.drift_status,
                "",
                "## Model card",
                "",
                inputs.model_card_md.replace("# Model card", "### Model card", 1),
            ]
        )
        + "\n"
    )


def _md_table_to_html(markdown_table: str) -> str:
    rows = [
        line.strip().strip("|").split("|")
        for line in markdown_table.strip().splitlines()
        if line.strip().startswith("|") and not set(line.strip()) <= {"|", "-", " "}
    ]
    if not rows:
        return f"<p>{html.escape(markdown_table)}</p>"
    head, *body = rows
    out = ["<table><thead><tr>", *(f"<th>{html.escape(c.strip())}</th>" for c in head), "</tr></thead><tbody>"]
    for row in body:
        out += ["<tr>", *(f"<td>{html.escape(c.strip())}</td>" for c in row), "</tr>"]
    return "".join([*out, "</tbody></table>"])


def _overrides_html(policy: PolicyResult) -> str:
    return f"; request overrides <code>{html.escape(str(policy.overrides))}</code>" if policy.overrides else ""


def _img(png: bytes, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="{png_data_uri(png)}"/>'


def render_html(inputs: ReportInputs) -> str:
    m = inputs.manifest
    verdict = "passed" if inputs.policy.passed else "failed"
    sections = [
        f"<h1>Compliance report: {html.escape(inputs.model)} v{html.escape(inputs.version)}</h1>",
        f"<p class='status'>{status_html({'status': inputs.review_status})} &middot; "
        f"promotion policy <b class='{verdict}'>{verdict}</b></p>",
        "<h2>Lineage</h2><ul>",
        *(
            f"<li>{html.escape(k)}: <code>{html.escape(str(v))}</code></li>"
            for k, v in (
                ("dataset hash", m.get("dataset_hash")),
                ("feature-graph hash", m.get("feature_graph_hash")),
                ("feature views", ", ".join(f"{k}@{v}" for k, v in inputs.feature_views.items())),
                ("git commit", m.get("git_commit")),
                ("MLflow run", m.get("mlflow_run_id")),
                ("Dagster run", m.get("dagster_run_id")),
                ("artifact sha256", m.get("artifact_sha256")),
            )
        ),
        "</ul><h2>Promotion policy</h2>",
        _md_table_to_html(policy_markdown(inputs.policy).split("\n\n")[0]),
        f"<p>policy hash <code>{inputs.policy.policy_hash}</code>{_overrides_html(inputs.policy)}</p>",
        "<h2>Headline metrics with their uncertainty</h2>",
        _md_table_to_html(headline_markdown(inputs.policy.metrics)),
        "<h2>Scenario replay vs baselines</h2>",
        _md_table_to_html(inputs.backtest_md),
        *(_img(png, f"equity {name}") for name, png in inputs.equity_pngs.items()),
        "<h2>Explanations (SHAP)</h2>",
        (_md_table_to_html(inputs.shap_md) + (_img(inputs.shap_png, "SHAP summary") if inputs.shap_png else ""))
        if inputs.shap_error is None
        else f"<p class='failed'>Explanations failed: {html.escape(inputs.shap_error)}</p>",
        "<h2>Drift status at training time</h2>",
        f"<p>{html.escape(inputs.drift_status)}</p>",
        "<h2>Model card</h2>",
        f"<pre>{html.escape(inputs.model_card_md)}</pre>",
    ]
    style = (
        "body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}"
        "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px;"
        "font-size:13px}th{background:#f3f3f3}.passed{color:#17703a}.failed{color:#b00020}"
        "img{max-width:100%;display:block;margin:1em 0}pre{background:#f7f7f7;padding:1em;white-space:pre-wrap}"
    )
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(inputs.model)} "
        f"v{html.escape(inputs.version)} compliance report</title><style>{style}</style></head><body>"
        + "\n".join(sections)
        + "</body></html>"
    )


def _decision(review: Mapping[str, Any]) -> str:
    """' by carol on 2026-02-15T09:12:00Z: "report read"' for a decided review, '' for a pending one; HTML-escaped
    (markdown renders the entities too), so no comment can close the status block or inject markup."""
    if not review.get("reviewer"):
        return ""
    at = review.get("decided_at")
    when = at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if isinstance(at, datetime) else str(at or "")
    comment = json.dumps(review.get("comment") or "", ensure_ascii=False)
    return html.escape(f" by {review['reviewer']}" + (f" on {when}" if when else "") + f": {comment}", quote=False)


def status_markdown(review: Mapping[str, Any]) -> str:
    """The review-status line of the markdown report, between its markers."""
    return f"{STATUS_BEGIN}Review status: **{html.escape(str(review['status']))}**{_decision(review)}{STATUS_END}"


def status_html(review: Mapping[str, Any]) -> str:
    """The review status of the HTML report, between its markers."""
    return f"{STATUS_BEGIN}Review status: <b>{html.escape(str(review['status']))}</b>{_decision(review)}{STATUS_END}"


def _with_status(text: str, block: str, where: str) -> str:
    start = text.find(STATUS_BEGIN)
    end = text.find(STATUS_END, start) if start >= 0 else -1
    if end < 0:
        raise ReportFormatError(
            f"{where} has no review-status block (rendered before the status was kept up to date); "
            "materialize the model's compliance report again to get one"
        )
    return text[:start] + block + text[end + len(STATUS_END) :]


def refresh_review_status(lifecycle: Lifecycle, tracking: Tracking, model: str, version: str) -> dict[str, Any]:
    """Write the version's latest review, as the audit log says (``Lifecycle.review``), into the status block of
    the report.html and report.md stored in its training run, and log both again in place; returns the review.
    Everything else in the report stays byte for byte what the reviewer read. Called after ``decide_review`` by
    the CLI and ``review_model_job``; idempotent, so calling it again puts a failed update right."""
    review = lifecycle.review(model, version)
    if review is None:
        raise LifecycleError(f"{model} v{version} has no compliance review")
    run_id = lifecycle.run_id(model, version)
    files = {}
    for path, block in ((REPORT_HTML, status_html(review)), (REPORT_MD, status_markdown(review))):
        files[Path(path).name] = _with_status(
            tracking.read_text_artifact(run_id, path), block, f"{path} of MLflow run {run_id}"
        )
    tracking.log_files(run_id, files, FOLDER)
    return review


def decide_review(
    lifecycle: Lifecycle, tracking: Tracking, model: str, version: str, *, approve: bool, reviewer: str, comment: str
) -> tuple[ReviewStatus, str | None]:
    """Record a compliance decision (``Lifecycle.decide_review``: its four-eyes rules), then show it in the report
    stored in MLflow. The audit log is the record: when the report cannot be updated the decision stands, and the
    second value says why the report lags (None when it was updated). ``mlops reviews approve|reject`` and the
    API's review route both decide through here."""
    from mlflow.exceptions import MlflowException

    status = lifecycle.decide_review(model, version, approve=approve, reviewer=reviewer, comment=comment)
    try:
        refresh_review_status(lifecycle, tracking, model, version)
    except (MlopsError, MlflowException, OSError) as exc:
        return status, f"the decision is recorded, but the report in MLflow still shows the previous status: {exc}"
    return status, None
