"""The compliance report shows the live review status (from the audit log), on a real MLflow store, and its
link opens the MLflow UI's artifact view."""

from pathlib import Path

import pytest

from mlops_pipelines.lib.core.tracking import Tracking, run_ui_url
from mlops_pipelines.lib.governance import compliance
from mlops_pipelines.lib.governance.lifecycle import LifecycleError
from mlops_pipelines_tests.test_lib.governance.test_lifecycle import MODEL, governed, new_version

PENDING = {"status": "PENDING_REVIEW"}
BODY_HTML = "<h2>Lineage</h2><pre>everything the reviewer read</pre>"
BODY_MD = "## Lineage\n\neverything the reviewer read\n"


def reported_version(tracking: Tracking, db: Path, *, with_block: bool = True) -> tuple[str, str]:
    """A registered version whose run holds a report (a status block unless told otherwise), review requested."""
    version = new_version(tracking, db)
    with governed(tracking, db) as lifecycle:
        run_id = lifecycle.run_id(MODEL, version)
        html_status = compliance.status_html(PENDING) if with_block else "Review status: <b>PENDING_REVIEW</b>"
        md_status = compliance.status_markdown(PENDING) if with_block else "Review status: **PENDING_REVIEW**"
        tracking.log_files(
            run_id,
            {"report.html": f"<h1>report</h1><p>{html_status}</p>{BODY_HTML}", "report.md": f"{md_status}\n{BODY_MD}"},
            compliance.FOLDER,
        )
        lifecycle.request_review(MODEL, version, report_uri="file:///report.html", actor="pipeline")
    return version, run_id


def report(tracking: Tracking, run_id: str) -> tuple[str, str]:
    return tracking.read_text_artifact(run_id, compliance.REPORT_HTML), tracking.read_text_artifact(
        run_id, compliance.REPORT_MD
    )


def test_a_decision_shows_in_the_stored_report_and_nothing_else_changes(tracking: Tracking, tmp_path: Path) -> None:
    db = tmp_path / "w.duckdb"
    version, run_id = reported_version(tracking, db)
    with governed(tracking, db) as lifecycle:
        assert compliance.refresh_review_status(lifecycle, tracking, MODEL, version)["status"] == "PENDING_REVIEW"
        assert "PENDING_REVIEW" in report(tracking, run_id)[0]
        lifecycle.decide_review(MODEL, version, approve=True, reviewer="Carol", comment="read <all> of it")
        compliance.refresh_review_status(lifecycle, tracking, MODEL, version)
        page, markdown = report(tracking, run_id)
        assert "Review status: <b>APPROVED</b> by carol on 20" in page and "PENDING_REVIEW" not in page
        assert '"read &lt;all&gt; of it"' in page  # escaped: a comment cannot inject markup
        assert "Review status: **APPROVED** by carol on 20" in markdown and "PENDING_REVIEW" not in markdown
        assert page.endswith(BODY_HTML) and markdown.endswith(BODY_MD)  # what was reviewed stays as it was
        compliance.refresh_review_status(lifecycle, tracking, MODEL, version)  # idempotent
        assert report(tracking, run_id) == (page, markdown)


def test_a_comment_that_closes_the_status_block_does_not_break_the_next_update(
    tracking: Tracking, tmp_path: Path
) -> None:
    db = tmp_path / "w.duckdb"
    version, run_id = reported_version(tracking, db)
    hostile = f"{compliance.STATUS_END} forged APPROVED {compliance.STATUS_BEGIN}"
    with governed(tracking, db) as lifecycle:
        lifecycle.decide_review(MODEL, version, approve=False, reviewer="carol", comment=hostile)
        compliance.refresh_review_status(lifecycle, tracking, MODEL, version)
        lifecycle.request_review(MODEL, version, report_uri="file:///report.html", actor="pipeline")
        compliance.refresh_review_status(lifecycle, tracking, MODEL, version)
    page, markdown = report(tracking, run_id)
    for text in (page, markdown):
        assert text.count(compliance.STATUS_BEGIN) == 1 and text.count(compliance.STATUS_END) == 1
        assert "PENDING_REVIEW" in text and "forged" not in text and "REJECTED" not in text


def test_a_report_without_a_status_block_is_named(tracking: Tracking, tmp_path: Path) -> None:
    db = tmp_path / "w.duckdb"
    version, run_id = reported_version(tracking, db, with_block=False)
    with governed(tracking, db) as lifecycle:
        with pytest.raises(compliance.ReportFormatError, match=f"compliance/report.html of MLflow run {run_id}"):
            compliance.refresh_review_status(lifecycle, tracking, MODEL, version)
        unreviewed = new_version(tracking, db)
        with pytest.raises(LifecycleError, match=f"{MODEL} v{unreviewed} has no compliance review"):
            compliance.refresh_review_status(lifecycle, tracking, MODEL, unreviewed)


def test_the_report_link_is_the_mlflow_ui_artifact_view() -> None:
    """MLflow 3's UI routes a run's artifact as #/experiments/<id>/runs/<run>/artifacts/<path> (its hash
    router's runPageWithTab with the 'artifacts' tab), which renders an HTML artifact in the page."""
    url = run_ui_url("http://mlflow.internal:5000/", "3", "0a1b", compliance.REPORT_HTML)
    assert url == "http://mlflow.internal:5000/#/experiments/3/runs/0a1b/artifacts/compliance/report.html"
    assert run_ui_url("https://ml.example/mlflow", "3", "0a1b") == "https://ml.example/mlflow/#/experiments/3/runs/0a1b"
