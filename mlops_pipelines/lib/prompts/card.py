"""The prompt card of a version: what an auditor reads about it, in markdown and in self-contained HTML.

Purpose, owner, intended use and risk tier; the template and its diff against the previous version, the model
settings; every evaluation from ``prompts.evaluations`` with its scores against its thresholds and its failures;
the approvals and every lifecycle step with actors and times; the head of the audit chain and whether the
prompt's governance record verifies. Built from the registry and the verified audit log only, so a card can be
rebuilt at any time; stored in MLflow (``store_card``: one run per version in the ``prompt_cards`` experiment).
"""

import difflib
import html
import json
from dataclasses import dataclass, field
from typing import Any

from mlops_pipelines.lib.core.tracking import Tracking
from mlops_pipelines.lib.prompts.evaluation_results import PromptEvaluation, evaluations
from mlops_pipelines.lib.prompts.library import Prompt, changed_fields
from mlops_pipelines.lib.prompts.lifecycle import PromptLifecycle

CARD_EXPERIMENT = "prompt_cards"
CARD_MD, CARD_HTML = "card/prompt_card.md", "card/prompt_card.html"
CARD_RUN_TAG = "card_run_id"  # on the prompt version: the MLflow run holding its card


@dataclass
class PromptCard:
    prompt: Prompt
    state: str
    aliases: list[str]
    author: str
    previous: Prompt | None
    evaluations: list[PromptEvaluation]
    history: list[dict[str, Any]]  # this version's audit rows, oldest first
    approvals: list[dict[str, Any]]
    audit_head: str | None
    problems: list[str] = field(default_factory=list)

    @property
    def title(self) -> str:
        return f"Prompt card: {self.prompt.name} v{self.prompt.version}"

    def template_diff(self) -> str:
        if self.previous is None:
            return ""
        return "".join(
            difflib.unified_diff(
                self.previous.template.splitlines(keepends=True),
                self.prompt.template.splitlines(keepends=True),
                f"v{self.previous.version}",
                f"v{self.prompt.version}",
            )
        )

    def other_changes(self) -> list[str]:
        """What else changed since the previous version (settings, variables, output, metadata)."""
        if self.previous is None:
            return []
        before = {k: v for k, v in self.previous.model_dump(mode="json").items() if k not in ("template", "version")}
        after = {k: v for k, v in self.prompt.model_dump(mode="json").items() if k not in ("template", "version")}
        return changed_fields(before, after)


def build_card(lifecycle: PromptLifecycle, name: str, version: str) -> PromptCard:
    """The card's facts, from the prompt registry, the verified audit log and ``prompts.evaluations``."""
    version = str(version)
    record, problems = lifecycle.verify(name)
    found = record.versions.get(version)
    prompt = lifecycle.prompt(name, version)
    earlier = [v for v in record.versions if int(v) < int(version)]
    previous = lifecycle.prompt(name, max(earlier, key=int)) if earlier else None
    return PromptCard(
        prompt=prompt,
        state=str(found.state) if found else "unknown",
        aliases=sorted(a for a, holder in record.aliases.items() if holder == version),
        author=found.trainer if found else "",
        previous=previous,
        evaluations=evaluations(lifecycle.conn, name, version),
        history=[r for r in lifecycle.history(name) if r["version"] == version],
        approvals=lifecycle.approvals(name, version) if found else [],
        audit_head=record.head,
        problems=problems,
    )


def _cell(value: Any) -> str:
    """A value in a markdown table cell: on one line, its pipes escaped."""
    return " ".join(str(value).split()).replace("|", "\\|")


def _at(value: Any) -> str:
    return value.isoformat() if hasattr(value, "isoformat") else str(value)


def _score_rows(evaluation: PromptEvaluation) -> list[tuple[str, str, str]]:
    """(scorer, score, threshold) per scorer; a threshold is matched by the scorer's name inside its key."""
    rows = []
    for scorer, score in sorted(evaluation.scores.items()):
        limits = [f"{k}={v}" for k, v in sorted(evaluation.thresholds.items()) if scorer in k]
        rows.append((scorer, f"{score:.4g}" if isinstance(score, int | float) else str(score), ", ".join(limits)))
    return rows


def render_markdown(card: PromptCard) -> str:
    p = card.prompt
    lines = [
        f"# {card.title}",
        "",
        f"State **{card.state}**" + (f" (aliases: {', '.join(card.aliases)})" if card.aliases else ""),
        "",
        "| field | value |",
        "|---|---|",
        *(
            f"| {k} | {_cell(v)} |"
            for k, v in (
                ("owner", p.owner),
                ("author (registered by)", card.author),
                ("purpose", " ".join(p.purpose.split())),
                ("intended use", " ".join(p.intended_use.split())),
                ("risk tier", p.risk_tier),
                ("evaluation set", p.evaluation_set),
                ("model", f"{p.model.name}, temperature {p.model.temperature}, max tokens {p.model.max_tokens}"),
                ("content sha256", p.content_hash()),
                ("tags", ", ".join(f"{k}={v}" for k, v in p.tags.items()) or "-"),
            )
        ),
        "",
        "## Variables",
        "",
        *(f"- `{name}`: {meaning}" for name, meaning in p.variables.items()),
        "",
        "## Template",
        "",
        "```text",
        p.template.rstrip(),
        "```",
        "",
        "## Changes against the previous version",
        "",
    ]
    if card.previous is None:
        lines += ["The first version.", ""]
    else:
        diff = card.template_diff()
        lines += ["```diff", diff.rstrip() or "(template unchanged)", "```", ""]
        lines += [*(f"- {c}" for c in card.other_changes()), ""]
    lines += ["## Evaluations", ""]
    if not card.evaluations:
        lines += ["Never evaluated: the version cannot leave TRAINED.", ""]
    for e in card.evaluations:
        verdict = "passed" if e.passed else "FAILED"
        lines += [f"### {_at(e.evaluated_at)}: {verdict} ({e.source}, evaluation {e.evaluation_id})", ""]
        lines += ["| scorer | score | thresholds |", "|---|---|---|"]
        lines += [f"| {s} | {v} | {t} |" for s, v, t in _score_rows(e)]
        lines += ["", *(f"- failed: {f}" for f in e.failures), ""]
        if e.worst:
            lines += ["Worst examples:", "", "| case | scorer | value | found |", "|---|---|---|---|"]
            lines += [
                f"| {_cell(w['case_id'])} | {w['scorer']} | {w['value']:.3g} | {_cell(w['detail'] or '')} |"
                for w in e.worst
            ]
            lines += [""]
    lines += ["## Approvals", ""]
    lines += [f"- {a['approver']} at {a['at']}: {a['comment']}" for a in card.approvals] or ["None yet."]
    lines += ["", "## Lifecycle (audit log)", "", "| seq | at | actor | action | from | to | reason |"]
    lines += ["|---|---|---|---|---|---|---|"]
    for row in card.history:
        reason = _cell(row["reason"])
        lines.append(
            f"| {row['seq']} | {_at(row['occurred_at'])} | {row['actor']} | {row['action']} | "
            f"{row['from_state'] or ''} | {row['to_state'] or ''} | {reason} |"
        )
    lines += ["", "## Audit chain", "", f"Head of the prompt's chain: `{card.audit_head}`", ""]
    lines += ["Verification: " + ("all rows verify, MLflow agrees." if not card.problems else "PROBLEMS:")]
    lines += [f"- {problem}" for problem in card.problems]
    return "\n".join(lines).rstrip() + "\n"


def render_html(card: PromptCard) -> str:
    """The same card as one self-contained HTML page (no scripts, no external resources; every value escaped)."""
    e = html.escape
    p = card.prompt
    aliases = e(f"(aliases: {', '.join(card.aliases)})") if card.aliases else ""
    facts = (
        ("owner", p.owner),
        ("author (registered by)", card.author),
        ("purpose", p.purpose),
        ("intended use", p.intended_use),
        ("risk tier", p.risk_tier),
        ("evaluation set", p.evaluation_set),
        ("model", f"{p.model.name}, temperature {p.model.temperature}, max tokens {p.model.max_tokens}"),
        ("content sha256", p.content_hash()),
        ("tags", ", ".join(f"{k}={v}" for k, v in p.tags.items()) or "-"),
    )
    parts = [
        f"<h1>{e(card.title)}</h1>",
        f"<p>State <b>{e(card.state)}</b> {aliases}</p>",
        "<table>",
        *(f"<tr><th>{e(k)}</th><td>{e(str(v))}</td></tr>" for k, v in facts),
        "</table><h2>Variables</h2><ul>",
        *(f"<li><code>{e(n)}</code>: {e(m)}</li>" for n, m in p.variables.items()),
        f"</ul><h2>Template</h2><pre>{e(p.template)}</pre>",
        "<h2>Changes against the previous version</h2>",
    ]
    if card.previous is None:
        parts.append("<p>The first version.</p>")
    else:
        parts.append(f"<pre>{e(card.template_diff() or '(template unchanged)')}</pre>")
        parts += ["<ul>", *(f"<li>{e(c)}</li>" for c in card.other_changes()), "</ul>"]
    parts.append("<h2>Evaluations</h2>")
    if not card.evaluations:
        parts.append("<p class='failed'>Never evaluated: the version cannot leave TRAINED.</p>")
    for ev in card.evaluations:
        verdict = "passed" if ev.passed else "failed"
        parts += [
            f"<h3>{e(_at(ev.evaluated_at))}: <span class='{verdict}'>{verdict}</span> "
            f"({e(ev.source)}, evaluation {e(ev.evaluation_id)})</h3>",
            "<table><tr><th>scorer</th><th>score</th><th>thresholds</th></tr>",
            *(f"<tr><td>{e(s)}</td><td>{e(v)}</td><td>{e(t)}</td></tr>" for s, v, t in _score_rows(ev)),
            "</table><ul>",
            *(f"<li class='failed'>{e(f)}</li>" for f in ev.failures),
            "</ul>",
        ]
        if ev.worst:
            parts.append(
                "<p>Worst examples:</p><table><tr><th>case</th><th>scorer</th><th>value</th><th>found</th></tr>"
            )
            parts += [
                f"<tr><td>{e(str(w['case_id']))}</td><td>{e(str(w['scorer']))}</td><td>{w['value']:.3g}</td>"
                f"<td>{e(str(w['detail'] or ''))}</td></tr>"
                for w in ev.worst
            ]
            parts.append("</table>")
    parts += ["<h2>Approvals</h2><ul>"]
    parts += [f"<li>{e(a['approver'])} at {e(a['at'])}: {e(a['comment'])}</li>" for a in card.approvals]
    parts += ["</ul>" if card.approvals else "<li>None yet.</li></ul>", "<h2>Lifecycle (audit log)</h2><table>"]
    parts.append("<tr><th>seq</th><th>at</th><th>actor</th><th>action</th><th>from</th><th>to</th><th>reason</th></tr>")
    for row in card.history:
        cells = (row["seq"], _at(row["occurred_at"]), row["actor"], row["action"], row["from_state"] or "")
        cells += (row["to_state"] or "", row["reason"])
        parts.append("<tr>" + "".join(f"<td>{e(str(c))}</td>" for c in cells) + "</tr>")
    parts += [
        "</table><h2>Audit chain</h2>",
        f"<p>Head of the prompt's chain: <code>{e(str(card.audit_head))}</code></p>",
    ]
    if card.problems:
        parts += ["<p class='failed'>Verification PROBLEMS:</p><ul>"]
        parts += [f"<li class='failed'>{e(problem)}</li>" for problem in card.problems] + ["</ul>"]
    else:
        parts.append("<p class='passed'>Verification: all rows verify, MLflow agrees.</p>")
    style = (
        "body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}"
        "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px;font-size:13px;"
        "text-align:left;vertical-align:top}th{background:#f3f3f3}.passed{color:#17703a}.failed{color:#b00020}"
        "pre{background:#f7f7f7;padding:1em;white-space:pre-wrap}"
    )
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{e(card.title)}</title><style>{style}</style>"
        "</head><body>" + "\n".join(parts) + "</body></html>\n"
    )


def store_card(lifecycle: PromptLifecycle, tracking: Tracking, card: PromptCard) -> tuple[str, str]:
    """Write the card (markdown and HTML) into the version's card run in MLflow (created on first use, found by
    the version's ``card_run_id`` tag afterwards; a new card replaces the files). Returns (experiment id, run id)."""
    name, version = card.prompt.name, str(card.prompt.version)
    client = tracking.client()
    run_id = lifecycle.version(name, version).tags.get(CARD_RUN_TAG)
    if not run_id:
        tags = {"prompt": name, "prompt_version": version}
        with tracking.run(CARD_EXPERIMENT, run_name=f"{name}_v{version}", tags=tags) as run:
            run_id = run.info.run_id
        client.set_prompt_version_tag(name, version, CARD_RUN_TAG, run_id)
    client.log_text(run_id, render_markdown(card), CARD_MD)
    client.log_text(run_id, render_html(card), CARD_HTML)
    client.log_text(run_id, json.dumps({"audit_head": card.audit_head, "state": card.state}), "card/head.json")
    return client.get_run(run_id).info.experiment_id, run_id
