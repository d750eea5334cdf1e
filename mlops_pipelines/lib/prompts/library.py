"""The prompt library: prompts as code (one YAML file per prompt), validated at load, rendered strictly.

A prompt's *content* is what changes the answers it gets: its template, declared variables, model settings and
required output. Its *metadata* (owner, purpose, intended use, risk tier, evaluation set, tags) describes it.
Content may change only with a version bump (``diff_lock``, ``mlops prompts diff``); a version, once registered,
is never edited (``lib/prompts/lifecycle.py``).

Templates use MLflow's placeholder syntax, ``{{ name }}``. Loading refuses a template that uses a variable it does
not declare, declares one it never uses, or holds a placeholder that is not a plain lowercase identifier; every
error names the file, the prompt and the variable. ``render`` refuses missing and extra variables, and a value is
inserted as text once: a value that itself contains ``{{ other }}`` is never expanded.
"""

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mlops_pipelines.lib.core.config_files import first_error
from mlops_pipelines.lib.core.errors import MlopsError

NAME_PATTERN = r"^[a-z][a-z0-9_]{0,63}$"  # also a valid MLflow prompt name (no '/', ':' or spaces)
_PLACEHOLDER = re.compile(r"\{\{(.*?)\}\}", re.DOTALL)
_IDENTIFIER = re.compile(NAME_PATTERN)
CONTENT_FIELDS = ("template", "variables", "model", "output")  # a change needs a version bump


class PromptError(MlopsError, ValueError):
    """A prompt file or a render request is invalid; the message names the file, the prompt and the variable."""


class ModelSettings(BaseModel):
    """The LLM call the template is written for."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, description="Model name as the provider knows it.")
    temperature: float = Field(ge=0, le=2)
    max_tokens: int = Field(gt=0, le=32768)


class OutputSpec(BaseModel):
    """What a correct answer must look like (checked by the evaluation's format scorer)."""

    model_config = ConfigDict(extra="forbid")

    required_sections: list[str] = Field(default_factory=list, description="Headings the answer must contain.")
    json_schema: dict[str, Any] | None = Field(default=None, description="JSON schema of an answer in JSON.")


class Prompt(BaseModel):
    """One prompt of the library (one file under ``catalog/prompts/``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=NAME_PATTERN)
    version: int = Field(ge=1, description="Bumped (by one) whenever the content changes.")
    owner: str = Field(min_length=1)
    purpose: str = Field(min_length=1)
    intended_use: str = Field(min_length=1, description="Who uses its answers, for what, and what not.")
    risk_tier: Literal["low", "medium", "high"]
    variables: dict[str, str] = Field(description="Every variable the template uses: name -> what it holds.")
    template: str = Field(min_length=1)
    model: ModelSettings
    evaluation_set: str = Field(pattern=NAME_PATTERN, description="The set under catalog/prompt_evals/ it must pass.")
    tags: dict[str, str] = Field(default_factory=dict)
    output: OutputSpec = Field(default_factory=OutputSpec)

    def content(self) -> dict[str, Any]:
        """The versioned part: what the model is asked and how (``CONTENT_FIELDS``)."""
        dumped = self.model_dump(mode="json")
        return {name: dumped[name] for name in CONTENT_FIELDS}

    def metadata(self) -> dict[str, Any]:
        dumped = self.model_dump(mode="json")
        return {k: v for k, v in dumped.items() if k not in (*CONTENT_FIELDS, "name", "version")}

    def content_hash(self) -> str:
        """sha256 of the canonical JSON of ``content()``: equal hashes, equal prompts as the model sees them."""
        return content_hash(self.content())

    def render(self, variables: Mapping[str, Any]) -> str:
        return render(self, variables)


def content_hash(content: Mapping[str, Any]) -> str:
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def placeholders(template: str, *, where: str) -> list[str]:
    """The variable names a template uses, in order of first use. A placeholder that is not a plain identifier
    (``{{ a.b }}``, ``{{ }}``, ``{{ x | filter }}``) or a stray ``{{`` / ``}}`` is a ``PromptError``."""
    names: list[str] = []
    for match in _PLACEHOLDER.finditer(template):
        name = match.group(1).strip()
        if not _IDENTIFIER.match(name):
            raise PromptError(
                f"{where}: placeholder {match.group(0)!r} is not a variable name (lowercase letters, digits, _)"
            )
        if name not in names:
            names.append(name)
    rest = _PLACEHOLDER.sub("", template)
    for stray in ("{{", "}}"):
        if stray in rest:
            raise PromptError(f"{where}: unbalanced {stray!r} in the template (placeholders are {{{{ name }}}})")
    return names


def validate(prompt: Prompt, *, where: str) -> Prompt:
    """The template uses exactly the declared variables."""
    used = placeholders(prompt.template, where=f"{where}: prompt {prompt.name!r}")
    for name in prompt.variables:
        if not _IDENTIFIER.match(name):
            raise PromptError(f"{where}: prompt {prompt.name!r} declares variable {name!r}, not a valid name")
    undeclared = [n for n in used if n not in prompt.variables]
    if undeclared:
        raise PromptError(
            f"{where}: prompt {prompt.name!r} uses undeclared variable {undeclared[0]!r} "
            f"(declared: {', '.join(prompt.variables) or 'none'})"
        )
    unused = [n for n in prompt.variables if n not in used]
    if unused:
        raise PromptError(f"{where}: prompt {prompt.name!r} declares variable {unused[0]!r} but never uses it")
    return prompt


def parse_prompt(raw: Any, *, where: str) -> Prompt:
    """A prompt from its parsed YAML (or an API body), validated; errors name ``where``, the field and reason."""
    try:
        prompt = Prompt.model_validate(raw)
    except ValidationError as exc:
        name = raw.get("name") if isinstance(raw, dict) else None
        label = f"prompt {name!r} " if isinstance(name, str) else ""
        raise PromptError(f"{where}: {label}{first_error(exc)}") from exc
    return validate(prompt, where=where)


def load_prompt_file(path: Path) -> Prompt:
    try:
        raw = yaml.safe_load(path.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise PromptError(f"{path}: not valid YAML: {exc}") from exc
    prompt = parse_prompt(raw, where=str(path))
    if path.stem != prompt.name:
        raise PromptError(f"{path}: prompt {prompt.name!r} must live in {prompt.name}.yaml")
    return prompt


def load_library(directory: Path) -> dict[str, Prompt]:
    """Every ``*.yaml`` under ``directory``, by name (sorted)."""
    if not directory.is_dir():
        raise PromptError(f"{directory}: the prompt library folder does not exist")
    prompts = [load_prompt_file(path) for path in sorted(directory.glob("*.yaml"))]
    return {p.name: p for p in sorted(prompts, key=lambda p: p.name)}


def render(prompt: Prompt, variables: Mapping[str, Any]) -> str:
    """The template with every placeholder replaced by its value, as text, in one pass. Refuses a missing or
    extra variable, and a value that is not a string or a number, naming the prompt and the variable."""
    missing = [n for n in prompt.variables if n not in variables]
    if missing:
        raise PromptError(f"prompt {prompt.name!r} v{prompt.version}: missing variable {missing[0]!r}")
    extra = sorted(n for n in variables if n not in prompt.variables)
    if extra:
        raise PromptError(
            f"prompt {prompt.name!r} v{prompt.version}: unknown variable {extra[0]!r} "
            f"(declared: {', '.join(prompt.variables)})"
        )
    values: dict[str, str] = {}
    for name, value in variables.items():
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise PromptError(
                f"prompt {prompt.name!r} v{prompt.version}: variable {name!r} must be text or a number, "
                f"got {type(value).__name__}"
            )
        values[name] = str(value)
    return _PLACEHOLDER.sub(lambda m: values[m.group(1).strip()], prompt.template)


# ---- the lock and the diff gate ----------------------------------------------------------------------------
def lock(prompts: Mapping[str, Prompt]) -> dict[str, Any]:
    """The content of ``catalog/prompt_lock.json``: each prompt's version, content, content hash and metadata."""
    return {
        "prompts": {
            name: {
                "version": p.version,
                "content_sha256": p.content_hash(),
                "content": p.content(),
                "metadata": p.metadata(),
            }
            for name, p in sorted(prompts.items())
        }
    }


@dataclass(frozen=True)
class PromptChange:
    prompt: str
    kind: str  # "breaking" | "version_bump" | "metadata" | "added" | "removed" | "unchanged"
    details: tuple[str, ...] = ()

    @property
    def breaking(self) -> bool:
        return self.kind in ("breaking", "removed")

    def describe(self) -> str:
        what = "; ".join(self.details)
        return {
            "breaking": f"{self.prompt}: content changed without a version bump: {what}",
            "version_bump": f"{self.prompt}: new version: {what}",
            "metadata": f"{self.prompt}: metadata changed (no bump needed): {what}",
            "added": f"{self.prompt}: new prompt ({what})",
            "removed": f"{self.prompt}: removed from the library (registered versions stay in MLflow; retire them)",
            "unchanged": f"{self.prompt}: unchanged",
        }[self.kind]


def diff_lock(locked: Mapping[str, Any], current: Mapping[str, Any]) -> list[PromptChange]:
    """Compare a committed lock with the library's lock, prompt by prompt, naming every changed field."""
    old: Mapping[str, Any] = locked.get("prompts", {})
    new: Mapping[str, Any] = current.get("prompts", {})
    changes: list[PromptChange] = []
    for name in sorted(set(old) | set(new)):
        if name not in new:
            changes.append(PromptChange(name, "removed"))
            continue
        if name not in old:
            changes.append(PromptChange(name, "added", (f"v{new[name]['version']}",)))
            continue
        before, after = old[name], new[name]
        content = changed_fields(before.get("content", {}), after["content"])
        metadata = changed_fields(before.get("metadata", {}), after["metadata"])
        old_version, new_version = int(before["version"]), int(after["version"])
        if new_version < old_version:
            changes.append(
                PromptChange(name, "breaking", (f"version went back from v{old_version} to v{new_version}",))
            )
        elif content and new_version == old_version:
            changes.append(PromptChange(name, "breaking", tuple(content)))
        elif new_version > old_version:
            changes.append(
                PromptChange(name, "version_bump", (f"v{old_version} -> v{new_version}", *(content or ["content"])))
            )
        elif metadata:
            changes.append(PromptChange(name, "metadata", tuple(metadata)))
        else:
            changes.append(PromptChange(name, "unchanged"))
    return changes


def changed_fields(before: Any, after: Any, path: str = "") -> list[str]:
    """Dotted paths of what differs (``template``, ``model.temperature: 0.2 -> 0.7``)."""
    if isinstance(before, dict) and isinstance(after, dict):
        found: list[str] = []
        for key in sorted(set(before) | set(after), key=str):
            where = f"{path}.{key}" if path else str(key)
            if key not in before:
                found.append(f"{where} added")
            elif key not in after:
                found.append(f"{where} removed")
            else:
                found.extend(changed_fields(before[key], after[key], where))
        return found
    if before == after:
        return []
    if isinstance(before, str) and ("\n" in before or len(before) > 60):
        return [f"{path} changed"]
    return [f"{path}: {before!r} -> {after!r}"]
