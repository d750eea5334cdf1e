"""What the prompt library adds to the platform's governance documents (registered in catalog/governance.py):
its section of the audit pack (the prompt versions promoted or retired in the period, each with its prompt card
and its governance record verified) and its KPIs (approval turnaround, failed evaluations judged, overrides)."""

from mlops_pipelines.lib.governance.audit_pack import FAILED, OK, PackContext, PackSection, safe_name
from mlops_pipelines.lib.governance.kpis import Kpi, KpiContext, governance_quality
from mlops_pipelines.lib.governance.lifecycle import State
from mlops_pipelines.lib.prompts.card import build_card, render_html, render_markdown
from mlops_pipelines.lib.prompts.lifecycle import PromptLifecycle

RELEASE_STATES = (State.STAGING, State.PRODUCTION, State.RETIRED)


def prompt_audit_section(context: PackContext) -> PackSection:
    """The prompt versions that moved into STAGING, PRODUCTION or RETIRED in the period, with their cards (as
    markdown and self-contained HTML), and every prompt's record verified against the shared chain."""
    prompts = context.lifecycle.of_kind(PromptLifecycle)
    problems = [f"{name}: {p}" for name in prompts.models() for p in prompts.consistency_problems(name)]
    prefix = PromptLifecycle.subject_prefix
    moves = [
        (row.model.removeprefix(prefix), row)
        for row in context.rows
        if row.model.startswith(prefix)
        and row.to_state in RELEASE_STATES
        and row.to_state != row.from_state
        and row.occurred_at in context.period
    ]
    section = PackSection(title="Prompt versions", slug="prompts", status=FAILED if problems else OK)
    cards: set[tuple[str, str]] = set()
    for name, row in moves:
        section.rows.append(
            {
                "prompt": name,
                "version": row.version,
                "at": row.occurred_at.isoformat(),
                "from_state": row.from_state,
                "to_state": row.to_state,
                "actor": row.actor,
                "verified": row.verified,
                "card": f"{safe_name(f'{name}_v{row.version}')}.html",
            }
        )
        if (name, row.version) not in cards:
            cards.add((name, row.version))
            card = build_card(prompts, name, row.version)
            base = safe_name(f"{name}_v{row.version}")
            section.files[f"{base}.md"] = render_markdown(card)
            section.files[f"{base}.html"] = render_html(card)
    listed = "\n".join(f"- {p}" for p in problems)
    section.summary_md = (
        f"{len(moves)} prompt version moves in the period, {len(cards)} prompt cards. Governance records of "
        + (f"the prompts: {FAILED}\n{listed}" if problems else f"{len(prompts.models())} prompts verify: {OK}")
    )
    return section


def prompt_kpis(context: KpiContext) -> list[Kpi]:
    """The governance-quality KPIs of the prompt library's rows (``prompts.approval_turnaround_hours_median``,
    ``prompts.policy_violations_*``: failed evaluations judged at staging, ``prompts.overrides_*``)."""
    rows = [r for r in context.rows if r.model.startswith(PromptLifecycle.subject_prefix)]
    return governance_quality(rows, context.day_start, context.day_end, prefix="prompts")
