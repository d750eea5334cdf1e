"""The audit pack on a real MLflow registry and a real DuckDB audit log: self-contained, honest about failures."""

import hashlib
import json
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote

import pytest

from mlops_pipelines.catalog.policies import DRIFT_POLICY_PATH, PROMOTION_POLICY_PATH, load_promotion_policy
from mlops_pipelines.lib.core.alerts import Alert, JsonLinesSink
from mlops_pipelines.lib.core.errors import ConfigError
from mlops_pipelines.lib.core.tracking import Tracking
from mlops_pipelines.lib.governance import audit, deployments
from mlops_pipelines.lib.governance.audit import AUDIT_TABLE, Entry
from mlops_pipelines.lib.governance.audit_pack import (
    FAILED,
    OK,
    PackContext,
    PackSection,
    Period,
    PolicySource,
    build_audit_pack,
    promotion_policy_digest,
    safe_name,
)
from mlops_pipelines.lib.governance.lifecycle import Lifecycle
from mlops_pipelines.lib.governance.promotion_policy import evaluate
from mlops_pipelines.lib.monitoring import feature_drift, model_performance, prediction_drift
from mlops_pipelines.lib.monitoring.drift_report import PREDICTION
from mlops_pipelines.lib.monitoring.severity import PerformanceStatus, Severity
from mlops_pipelines_tests.test_lib.governance.test_lifecycle import (
    MODEL,
    PASSING,
    champion_and_challenger,
    governed,
    new_version,
)
from mlops_pipelines_tests.test_lib.monitoring.test_health import END, drift_report, partition, performance_report

POLICIES = [
    PolicySource("promotion policy", PROMOTION_POLICY_PATH, promotion_policy_digest),
    PolicySource("drift policy", DRIFT_POLICY_PATH),
]
CARD = "# Model card: toy_model\n\nOwner: desk.\n"


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.hrefs: list[str] = []
        self.tags: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        self.hrefs += [value or "" for name, value in attrs if name in ("href", "src")]


def assert_self_contained(pack: Path) -> list[str]:
    """Every link of index.html and index.md resolves to a file inside the pack; nothing is fetched from
    elsewhere; files.json lists every file with its sha256. Returns the index.html links."""
    parser = _Links()
    parser.feed((pack / "index.html").read_text())
    assert not parser.tags & {"script", "link", "iframe", "img"}, parser.tags
    md_links = [m.split(")")[0] for m in (pack / "index.md").read_text().split("](")[1:]]
    root = pack.resolve()
    for href in [*parser.hrefs, *md_links]:
        assert "://" not in href and not href.startswith(("/", "#")), href
        target = (pack / unquote(href)).resolve()
        assert target.is_relative_to(root) and target.is_file(), href
    listed = json.loads((pack / "files.json").read_text())
    for name, digest in listed.items():
        assert hashlib.sha256((pack / name).read_bytes()).hexdigest() == digest, name
    on_disk = {p.relative_to(pack).as_posix() for p in pack.rglob("*") if p.is_file()}
    assert on_disk == {*listed, "files.json"}
    return parser.hrefs


EVER = Period()


def pack_of(lifecycle: Lifecycle, tracking: Tracking, out: Path, period: Period = EVER, **kwargs) -> dict:
    result = build_audit_pack(out, lifecycle=lifecycle, tracking=tracking, period=period, policies=POLICIES, **kwargs)
    summary = json.loads((out / "pack.json").read_text())
    assert summary["audit_log"]["status"] == result.verification
    return summary


def test_the_pack_of_a_real_promotion_is_self_contained_and_verified(tracking: Tracking, tmp_path: Path) -> None:
    db = tmp_path / "w.duckdb"
    first, second = champion_and_challenger(tracking, db)
    refused = new_version(tracking, db)  # judged by the catalog's promotion policy: refused, its hash recorded
    with governed(tracking, db) as lifecycle:
        verdict = evaluate(load_promotion_policy(), model=MODEL, strategy="directional", metrics={})
        lifecycle.gate(MODEL, refused, verdict, actor="pipeline")
    alerts_file = tmp_path / "alerts" / "alerts.jsonl"
    JsonLinesSink(alerts_file).send(Alert("severe_drift", MODEL, "2026-02-21T00:00:00+00:00", "SEVERE drift"))
    with governed(tracking, db) as lifecycle:
        run_id = lifecycle.run_id(MODEL, first)
        tracking.log_files(run_id, {"model_card.md": CARD}, "")
        tracking.log_files(run_id, {"report.html": "<h1>report</h1>", "report.md": "# report\n"}, "compliance")
        deployments.create_deployment(lifecycle, MODEL, first, "production", actor="ops")

        def prompts(context: PackContext) -> PackSection:  # the hook the prompt library fills
            return PackSection("Prompt versions", "prompts", "two prompts", [{"prompt": "p"}], {"card.md": "# p\n"})

        summary = pack_of(lifecycle, tracking, tmp_path / "pack", alerts_file=alerts_file, sections=[prompts])
    pack = tmp_path / "pack"
    hrefs = assert_self_contained(pack)
    assert summary["audit_log"] == {"status": OK, "problems": [], "rows": summary["audit_log"]["rows"]}
    assert "verification: <b class='OK'>OK</b>" in (pack / "index.html").read_text()
    by_version = {v["version"]: v for v in summary["versions"]}
    assert set(by_version) == {first, second}  # v1 staged then promoted, v2 staged
    assert "PRODUCTION" in by_version[first]["moves"] and by_version[first]["state"] == "PRODUCTION"
    assert (pack / by_version[first]["model_card_path"]).read_text() == CARD
    assert (pack / by_version[first]["compliance_html_path"]).read_text() == "<h1>report</h1>"
    assert by_version[second]["model_card_path"] is None and "missing" in by_version[second]["model_card"]
    assert {by_version[first]["model_card_path"], by_version[first]["record_path"]} <= set(hrefs)
    [deployment] = summary["deployments"]
    assert deployment["version"] == first and "governance_consistent" in deployment["checklist"]
    assert summary["drift_alerts"]["alerts"] == 1
    # the policies in force, rendered, with the git history of the file and the verdicts' hashes
    promotion = summary["policies"][0]
    assert (pack / promotion["current_path"]).read_text() == PROMOTION_POLICY_PATH.read_text()
    assert "git log" in promotion["history_note"]
    by_hash = {h["policy_hash"]: h for h in summary["recorded_policy_hashes"]}
    assert by_hash[verdict.policy_hash]["revision"].startswith("promotion policy ")  # matched to the file
    assert by_hash[verdict.policy_hash]["passed"] == 0
    assert (
        "not in this history"
        in by_hash[evaluate(PASSING, model=MODEL, strategy="s", metrics={}).policy_hash]["revision"]
    )  # the tests' own policy: no revision of the file
    assert summary["sections"][0]["title"] == "Prompt versions"
    assert "two prompts" in (pack / "index.md").read_text()


def test_a_forged_audit_row_makes_the_pack_say_failed(tracking: Tracking, tmp_path: Path) -> None:
    db = tmp_path / "w.duckdb"
    champion_and_challenger(tracking, db)
    alerts_file = tmp_path / "alerts.jsonl"
    alerts_file.write_text('{"kind": "severe_drift"}\n')  # a damaged alert record: said in the pack, not a crash
    with governed(tracking, db) as lifecycle:
        lifecycle.conn.execute(f"UPDATE {AUDIT_TABLE} SET actor = 'mallory' WHERE seq = 5")

        def broken_section(context: PackContext) -> PackSection:
            raise RuntimeError("prompt registry unreachable")

        summary = pack_of(lifecycle, tracking, tmp_path / "pack", alerts_file=alerts_file, sections=[broken_section])
    pack = tmp_path / "pack"
    assert_self_contained(pack)
    assert summary["sections"] == [{"title": "broken_section", "status": FAILED, "files": {}}]
    assert "could not be built: prompt registry unreachable" in (pack / "index.md").read_text()
    assert summary["audit_log"]["status"] == FAILED
    assert any("audit row 5 was changed" in p for p in summary["audit_log"]["problems"])
    index = (pack / "index.html").read_text()
    assert "<b class='FAILED'>FAILED</b>" in index and "audit row 5 was changed" in index
    forged = [r for r in json.loads((pack / "audit" / "audit_log.json").read_text()) if r["seq"] == 5]
    assert forged[0]["verified"] is False and forged[0]["actor"] == "mallory"  # shown, not hidden
    note = json.loads((pack / "monitoring" / "drift_alerts.json").read_text())["alerts_note"]
    assert note.startswith("FAILED") and "alerts.jsonl line 1: not an alert record" in note


def test_an_empty_period_gives_an_honest_empty_pack(tracking: Tracking, tmp_path: Path) -> None:
    db = tmp_path / "w.duckdb"
    with governed(tracking, db) as lifecycle:  # nothing yet, in the log nor in MLflow: an empty, verified pack
        empty = pack_of(lifecycle, tracking, tmp_path / "empty_pack", alerts_file=tmp_path / "none.jsonl")
    assert empty["audit_log"] == {"status": OK, "problems": [], "rows": 0}
    champion_and_challenger(tracking, db)
    future = datetime.now(UTC) + timedelta(days=1)
    with governed(tracking, db) as lifecycle:
        summary = pack_of(lifecycle, tracking, tmp_path / "pack", Period(since=future), alerts_file=None)
    assert summary["versions"] == [] and summary["deployments"] == []
    assert summary["recorded_policy_hashes"] == []
    assert summary["audit_log"]["status"] == OK  # the whole chain up to now was still verified
    for pack in (tmp_path / "pack", tmp_path / "empty_pack"):
        assert_self_contained(pack)
        assert (
            "No model version entered STAGING, PRODUCTION or RETIRED in this period." in (pack / "index.md").read_text()
        )


def test_a_version_registered_behind_the_logs_back_fails_verification(tracking: Tracking, tmp_path: Path) -> None:
    client = tracking.client()
    client.create_registered_model("shadow_model")
    with tracking.run("shadow_model", run_name="shadow", tags={}) as run:
        pass
    client.create_model_version("shadow_model", source=f"runs:/{run.info.run_id}/model", run_id=run.info.run_id)
    with governed(tracking, tmp_path / "w.duckdb") as lifecycle:
        summary = pack_of(lifecycle, tracking, tmp_path / "pack", alerts_file=None)
    assert summary["audit_log"]["status"] == FAILED and summary["audit_log"]["rows"] == 0
    assert summary["audit_log"]["problems"] == [
        "shadow_model: v1 is in MLflow but has no audit history (registered outside the lifecycle)"
    ]


def test_hostile_model_names_do_not_escape_the_folder(tracking: Tracking, tmp_path: Path) -> None:
    hostile = ["../../escaped", "/etc/passwd", "a/../../b", "<script>alert(1)</script>", "..", "x\x00y", "C:\\w"]
    db = tmp_path / "inner" / "w.duckdb"
    db.parent.mkdir()
    with governed(tracking, db) as lifecycle:
        key = audit.load_key(db.parent / "audit.key", lifecycle.conn)
        for name in hostile:
            details = {"run_id": "none", "trained_by": "t", "artifact_sha256": "x", "feature_graph_hash": "g"}
            entries = [
                Entry("../1", "register", None, "DRAFT", "made up", details=details),
                Entry("../1", "transition", "DRAFT", "TRAINED", "made up"),
                Entry("../1", "transition", "TRAINED", "VALIDATED", "x", policy_result={"passed": True}),
                Entry("../1", "transition", "VALIDATED", "STAGING", "x", policy_result={"passed": True}),
            ]
            audit.append(lifecycle.conn, key, model=name, actor="t", entries=entries, operation=name)
        before = {p for p in tmp_path.rglob("*")}
        summary = pack_of(lifecycle, tracking, tmp_path / "inner" / "pack", alerts_file=None)
    pack = tmp_path / "inner" / "pack"
    created = {p for p in tmp_path.rglob("*")} - before
    assert created and all(p.resolve().is_relative_to(pack.resolve()) for p in created)
    # a ':' names another governed kind (prompts are "prompt:<name>"; no MLflow model name holds one): such rows
    # are in the pack's copy of the log and its chain verification, never listed as a model's versions
    models = {name for name in hostile if ":" not in name}
    assert {v["model"] for v in summary["versions"]} == models
    assert len({v["record_path"] for v in summary["versions"]}) == len(models)
    assert "C:\\w" in {row["model"] for row in json.loads((pack / "audit" / "audit_log.json").read_text())}
    assert_self_contained(pack)
    assert "<script>alert" not in (pack / "index.html").read_text()
    assert summary["audit_log"]["status"] == FAILED  # rows behind MLflow's back: no registry versions for them
    assert all("/" not in safe_name(n) and not safe_name(n).startswith(".") for n in hostile)


def test_the_pack_needs_a_new_folder_and_a_sound_period(tracking: Tracking, tmp_path: Path) -> None:
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "x").write_text("keep me")
    with governed(tracking, tmp_path / "w.duckdb") as lifecycle, pytest.raises(ConfigError, match="not empty"):
        pack_of(lifecycle, tracking, tmp_path / "used", alerts_file=None)
    assert (tmp_path / "used" / "x").read_text() == "keep me"
    now = datetime.now(UTC)
    with pytest.raises(ConfigError, match="not before"):
        Period(since=now, until=now)
    with pytest.raises(ConfigError, match="time zone"):
        Period(since=datetime(2026, 1, 1))


def test_the_drift_alerts_of_the_period_are_the_verdicts_that_were_not_normal(
    tracking: Tracking, tmp_path: Path
) -> None:
    with governed(tracking, tmp_path / "w.duckdb") as lifecycle:
        conn = lifecycle.conn
        feature_drift.write_report(
            conn, drift_report("m", Severity.NORMAL, END - timedelta(days=1)), partition(END - timedelta(days=1))
        )
        feature_drift.write_report(conn, drift_report("m", Severity.SEVERE, END), partition(END))
        feature_drift.write_report(conn, drift_report("m", Severity.SEVERE, END + timedelta(days=9)), "later")
        prediction_drift.write_report(conn, drift_report("m", Severity.MODERATE, END, PREDICTION), partition(END))
        model_performance.write_report(
            conn, performance_report("m", PerformanceStatus.CRITICAL, END, 0.4), partition(END)
        )
        period = Period(since=END - timedelta(days=2), until=END + timedelta(days=1))
        summary = pack_of(lifecycle, tracking, tmp_path / "pack", period, alerts_file=None)
    found = json.loads((tmp_path / "pack" / "monitoring" / "drift_alerts.json").read_text())["verdicts"]
    assert [(v["signal"], v["verdict"]) for v in found] == [
        ("feature_drift", "SEVERE"),
        ("performance", "CRITICAL"),
        ("prediction_drift", "MODERATE"),
    ]
    assert summary["drift_alerts"] == {"alerts": 0, "verdicts": 3}
    assert "SEVERE" in (tmp_path / "pack" / "index.html").read_text()
