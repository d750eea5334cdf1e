"""The governed lifecycle of prompt versions: the models' lifecycle (``lib/governance/lifecycle.py``), its audit log,
hash chain, states, four-eyes approval, rollback and retirement, pointed at MLflow's prompt registry.

What the states mean for a prompt version:

- DRAFT: registered in MLflow's prompt registry (its template, model settings and spec), not evaluated yet.
- TRAINED: evaluated at least once (``prompts.evaluations``); it stays here while its latest evaluation failed.
- VALIDATED: its latest evaluation passed its thresholds (or a failed one was overridden, audited).
- STAGING: alias ``staging``; awaiting an approval for production.
- PRODUCTION: alias ``production``, what the assistant uses; the version it replaced steps back to STAGING.
- RETIRED: no longer used; its versions stay in MLflow.

A version leaves TRAINED only on a passing evaluation, or on an override: a failed evaluation staged anyway
with a reason, recorded in the audit row; whoever asked for the override cannot also approve the version.
PRODUCTION needs an approval (given during this stay in STAGING) by someone other than the version's author
(who registered it) and the requester. There is no compliance review of the model kind for prompts.

The audit rows of a prompt are under ``prompt:<name>`` in ``governance.model_audit_log`` (``:`` is not allowed in
MLflow model names, so models and prompts never share a subject). A registered version is never edited: a new
template or new settings is a new version, and the register row records its content hash, which verification
compares with what MLflow holds.
"""

import json
from typing import Any

from mlflow.entities.model_registry import PromptVersion
from mlflow.exceptions import MlflowException

from mlops_pipelines.lib.core.errors import NotFound
from mlops_pipelines.lib.governance.audit import AUDIT_HEAD_TAG, Entry
from mlops_pipelines.lib.governance.lifecycle import (
    ALIASES,
    STATE_TAG,
    Lifecycle,
    LifecycleError,
    Rules,
    State,
    VersionRecord,
    normalize_actor,
)
from mlops_pipelines.lib.prompts.evaluation_results import PromptEvaluation, latest_evaluation
from mlops_pipelines.lib.prompts.library import Prompt, content_hash

SPEC_TAG = "prompt_spec"  # the whole prompt (metadata included) as JSON, on the MLflow version
CONTENT_TAG = "content_sha256"
AUTHOR_FIELD = "authored_by"
PROMPT_RULES = Rules(
    registered_fields=(CONTENT_TAG, AUTHOR_FIELD),
    checked_tags=(CONTENT_TAG,),
    author_field=AUTHOR_FIELD,
    author_verb="authored",
    needs_review=False,
    override_excludes_approver=True,
)


class PromptVersionConflict(LifecycleError):
    """A version number that is registered with other content, or that is not the next one."""


def prompt_of(pv: PromptVersion) -> Prompt:
    """The prompt a registered version holds: its spec tag, with the template and model settings MLflow keeps."""
    spec = json.loads(pv.tags.get(SPEC_TAG) or "{}")
    config = pv.model_config or {}
    spec["template"] = pv.template
    spec["model"] = {
        "name": config.get("model_name"),
        "temperature": config.get("temperature"),
        "max_tokens": config.get("max_tokens"),
    }
    spec["version"] = int(pv.version)
    return Prompt.model_validate(spec)


class PromptLifecycle(Lifecycle):
    """Lifecycle operations for every prompt (``Lifecycle``'s, plus ``register_version`` and ``stage``)."""

    rules = PROMPT_RULES
    subject_prefix = "prompt:"

    # ---- reading -----------------------------------------------------------------------------------------
    def version(self, model: str, version: str | int) -> PromptVersion:  # type: ignore[override]
        """The registered version (``NotFound`` naming the prompt and version when MLflow has none)."""
        try:
            found = self.client.get_prompt_version(model, str(version))
        except MlflowException:
            found = None
        if found is None:
            raise NotFound(f"prompt {model!r} has no registered version {version!r}")
        return found

    def versions(self, model: str) -> list[PromptVersion]:  # type: ignore[override]
        if self.client.get_prompt(model) is None:
            return []
        found = self.client.search_prompt_versions(model, max_results=1000)
        return sorted(found, key=lambda v: int(v.version))

    def models(self) -> list[str]:
        """Every prompt the audit log or the prompt registry knows."""
        return sorted(set(self.records()) | {p.name for p in self.client.search_prompts(max_results=1000)})

    def prompt(self, name: str, version: str | int) -> Prompt:
        return prompt_of(self.version(name, version))

    def alias_version(self, model: str, alias: str) -> str | None:
        try:
            return str(self.client.get_prompt_version_by_alias(model, alias).version)
        except MlflowException:
            return None

    # ---- the MLflow projection: the prompt registry --------------------------------------------------------
    def _registered(self, model: str) -> tuple[dict[str, str], str | None] | None:
        found = self.client.get_prompt(model)
        if found is None:
            return None
        aliases = {alias: v for alias in ALIASES if (v := self.alias_version(model, alias)) is not None}
        return aliases, found.tags.get(AUDIT_HEAD_TAG)

    def _audit_head(self, model: str) -> str | None:
        found = self.client.get_prompt(model)
        return None if found is None else found.tags.get(AUDIT_HEAD_TAG)

    def _set_audit_head(self, model: str, head: str | None) -> None:
        if head is None:
            self.client.delete_prompt_tag(model, AUDIT_HEAD_TAG)
        else:
            self.client.set_prompt_tag(model, AUDIT_HEAD_TAG, head)

    def _set_state_tag(self, model: str, version: str, state: str) -> None:
        self.client.set_prompt_version_tag(model, version, STATE_TAG, state)

    def _set_version_tag(self, model: str, version: str, tag: str, value: str) -> None:
        self.client.set_prompt_version_tag(model, version, tag, value)

    def _point_alias(self, model: str, alias: str, version: str | None) -> None:
        if version is None:
            if self.alias_version(model, alias) is not None:
                self.client.delete_prompt_alias(model, alias)
        else:
            self.client.set_prompt_alias(model, alias, int(version))

    def _version_problems(self, model: str, mv: Any, logged: VersionRecord) -> list[str]:
        """The content MLflow holds (template, model settings, spec) hashes to what the register row recorded."""
        try:
            actual = prompt_of(mv).content_hash()
        except (ValueError, TypeError) as exc:
            return [f"v{mv.version}: the registered prompt cannot be read back: {exc}"]
        if actual != logged.registered.get(CONTENT_TAG):
            return [f"v{mv.version}: the content in MLflow differs from the content recorded at registration"]
        return []

    # ---- writing -----------------------------------------------------------------------------------------
    def register_version(self, prompt: Prompt, *, actor: str, reason: str) -> tuple[str, bool]:
        """Register ``prompt`` as version ``prompt.version`` (DRAFT), or find it registered with the same content.
        Returns ``(version, created)``. A version number registered with other content, or one that is not the
        next number, is a ``PromptVersionConflict``: a version is never edited, a change is a new version."""
        name, wanted, digest = prompt.name, str(prompt.version), prompt.content_hash()
        actor = normalize_actor(actor)
        record = self.require_consistent(name) if self.record(name).versions else None
        existing = {str(pv.version): pv for pv in self.versions(name)}
        if wanted in existing:
            if existing[wanted].tags.get(CONTENT_TAG) != digest:
                raise PromptVersionConflict(
                    f"prompt {name!r} v{wanted} is registered with other content (author "
                    f"{existing[wanted].tags.get(AUTHOR_FIELD)!r}); a registered version is never edited: give "
                    f"yours the next version, v{len(existing) + 1}"
                )
            if record is None or wanted not in record.versions:
                raise LifecycleError(f"prompt {name!r} v{wanted} is in MLflow but has no audit history")
            return wanted, False
        expected = str(len(existing) + 1)
        if wanted != expected:
            raise PromptVersionConflict(
                f"prompt {name!r}: v{wanted} cannot be registered, the registry holds v1..v{len(existing)}: versions "
                f"are numbered in the order they are registered, so this one is v{expected}"
            )
        tags = {
            CONTENT_TAG: digest,
            AUTHOR_FIELD: actor,
            SPEC_TAG: json.dumps(prompt.model_dump(mode="json"), sort_keys=True),
            "owner": prompt.owner,
            "risk_tier": prompt.risk_tier,
            "evaluation_set": prompt.evaluation_set,
            STATE_TAG: State.DRAFT.value,
            **{f"tag.{k}": v for k, v in prompt.tags.items()},
        }
        pv = self.client.register_prompt(
            name,
            prompt.template,
            commit_message=reason,
            tags=tags,
            response_format=prompt.output.json_schema,
            model_config={
                "model_name": prompt.model.name,
                "temperature": prompt.model.temperature,
                "max_tokens": prompt.model.max_tokens,
            },
        )
        if str(pv.version) != wanted:  # someone registered one meanwhile, outside the lifecycle's lock
            raise PromptVersionConflict(f"prompt {name!r}: MLflow numbered the new version v{pv.version}, not {wanted}")
        details = {CONTENT_TAG: digest, AUTHOR_FIELD: actor, "owner": prompt.owner, "risk_tier": prompt.risk_tier}
        self._write(name, actor, [Entry(wanted, "register", None, State.DRAFT, reason, details=details)], {})
        return wanted, True

    def stage(
        self,
        name: str,
        version: str | int,
        evaluation: PromptEvaluation | None,
        *,
        actor: str,
        override_reason: str = "",
    ) -> str:
        """Judge a version on its latest evaluation: passed -> (TRAINED ->) VALIDATED -> STAGING; failed -> stays
        (or goes back to) TRAINED. Never evaluated: refused, it stays DRAFT. ``override_reason`` stages a failed
        evaluation anyway; the rows carry the override, its reason and the failures, and whoever overrides
        cannot approve. Returns the state afterwards."""
        version, actor = str(version), normalize_actor(actor)
        record = self.require_consistent(name)
        found = record.versions.get(version)
        if found is None:
            raise LifecycleError(f"prompt {name!r} v{version} has no audit history (not registered)")
        if evaluation is None:
            raise LifecycleError(
                f"prompt {name!r} v{version} was never evaluated: it stays {found.state} until an evaluation "
                f"(asset prompts/{name}_evaluation) passes"
            )
        if (evaluation.prompt, evaluation.version) != (name, version):
            raise ValueError(f"evaluation {evaluation.evaluation_id} is of {evaluation.prompt} v{evaluation.version}")
        if found.state not in (State.DRAFT, State.TRAINED, State.VALIDATED, State.STAGING):
            raise LifecycleError(f"prompt {name!r} v{version} is {found.state}; it is not staged again")
        result: dict[str, Any] = {
            "passed": evaluation.passed,
            "evaluation_id": evaluation.evaluation_id,
            "evaluated_at": evaluation.evaluated_at.isoformat(),
            "scores": evaluation.scores,
            "failures": evaluation.failures,
            "source": evaluation.source,
        }
        policy = {"policy_hash": content_hash(evaluation.thresholds), "policy_result": result}
        entries: list[Entry] = []
        state = found.state
        if state == State.DRAFT:
            evaluated = f"evaluated ({evaluation.evaluation_id}): " + ("passed" if evaluation.passed else "failed")
            entries.append(Entry(version, "transition", State.DRAFT, State.TRAINED, evaluated, **policy))
            state = State.TRAINED
        details: dict[str, Any] = {}
        note = ""
        if not evaluation.passed and override_reason.strip():
            details = {
                "overrides": {"evaluation": evaluation.evaluation_id, "failures": evaluation.failures},
                "override_reason": override_reason.strip(),
                "thresholds": evaluation.thresholds,
            }
            policy["policy_result"] = {**result, "passed": True, "evaluation_passed": False, "overridden": True}
            note = f" (failed evaluation overridden: {override_reason.strip()})"
        passed = bool(policy["policy_result"]["passed"])
        aliases: dict[str, str | None] = {}
        if passed and state in (State.TRAINED, State.VALIDATED):
            if state == State.TRAINED:
                entries.append(
                    Entry(version, "transition", State.TRAINED, State.VALIDATED, "evaluation passed" + note, **policy)
                )
            staged = "staged, awaiting approval for production" + note
            entries.append(
                Entry(version, "transition", State.VALIDATED, State.STAGING, staged, details=details, **policy)
            )
            aliases = {"staging": version}
            if record.aliases.get("production") not in (None, version):
                aliases["challenger"] = version
        elif not passed:
            failed = "evaluation failed: " + "; ".join(evaluation.failures or ["thresholds not met"])
            if state == State.STAGING:
                entries.append(Entry(version, "transition", State.STAGING, State.TRAINED, failed, **policy))
                aliases = self._aliases_leaving(record, version)
            else:
                entries.append(Entry(version, "gate_rejected", state, state, failed, **policy))
        if entries:
            self._write(name, actor, entries, aliases)
        return self.state(name, version)


def request_promotion(
    lifecycle: PromptLifecycle,
    name: str,
    version: str,
    *,
    to: str,
    actor: str,
    reason: str,
    via: str,
    override_reason: str = "",
) -> str:
    """The one promotion path of ``mlops prompts promote`` and ``POST /api/v1/prompts/{name}/promote``: to
    ``staging`` judges the version on its latest evaluation (``stage``; ``override_reason`` overrides a failed
    one); to ``production`` applies the four-eyes rule. Returns the state afterwards."""
    if to == "staging":
        evaluation = latest_evaluation(lifecycle.conn, name, str(version))
        return lifecycle.stage(name, version, evaluation, actor=actor, override_reason=override_reason)
    if to != "production":
        raise ValueError(f"a promotion goes to staging or production, not {to!r}")
    if override_reason:
        raise ValueError("an override applies to the evaluation (--to staging), not to production")
    lifecycle.promote_to_production(name, version, actor=actor, reason=reason or f"promoted via {via}")
    return lifecycle.state(name, version)
