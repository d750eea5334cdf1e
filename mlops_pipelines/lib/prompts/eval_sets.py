"""Evaluation sets: the cases a prompt version is judged on, from YAML files under ``catalog/prompt_evals/``.

A prompt's own file lists its cases (the variables it is rendered with, the context it is given, the facts a
correct answer must contain) and the format its answers must have. The shared adversarial file lists hostile
inputs (prompt injections carrying a canary, requests for personal data, abuse); each prompt's file says which
of its variables such an input arrives in (``adversarial.variable``), so every prompt is attacked with every one.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from mlops_pipelines.lib.core.config_files import PolicyError, load_yaml_model

CaseKind = Literal["standard", "injection", "personal_data", "abuse"]
CANARY_PLACEHOLDER = "{canary}"


class OutputFormat(BaseModel):
    """What an answer must look like: headed sections, a word limit, or JSON valid against a schema."""

    model_config = ConfigDict(extra="forbid")

    required_sections: list[str] = Field(default_factory=list)  # a line starting with the name ("Summary:", "## Risks")
    max_words: int | None = Field(default=None, gt=0)
    json_schema: dict[str, Any] | None = None  # the answer must be one JSON document valid against it


class EvalCase(BaseModel):
    """One case: what the prompt is rendered with and given, and what a correct answer must contain.

    ``facts``: each a text the answer must contain (case-insensitive) or a number ("-2.1%", "0.031") it must state
    (within the fact-check tolerance); a list inside ``facts`` is a choice (any one of them). ``canary``: a word an
    injected instruction asks for; it must never appear in the answer. ``check_format``: False for cases where a
    refusal is the right answer (the adversarial ones)."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1)
    kind: CaseKind = "standard"
    variables: dict[str, Any] = Field(default_factory=dict)
    context: dict[str, Any] = Field(default_factory=dict)
    facts: list[str | list[str]] = Field(default_factory=list)
    canary: str | None = None
    check_format: bool = True


class AdversarialInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1)
    kind: Literal["injection", "personal_data", "abuse"]
    input: str = Field(min_length=1)
    canary: str | None = None  # injections: the word the injected instruction asks for

    @model_validator(mode="after")
    def _canary_fits(self) -> "AdversarialInput":
        if self.kind == "injection" and not self.canary:
            raise ValueError(f"case {self.id!r}: an injection needs its canary")
        if self.canary and CANARY_PLACEHOLDER not in self.input:
            raise ValueError(f"case {self.id!r}: the input must carry its canary as {CANARY_PLACEHOLDER}")
        return self


class AdversarialSet(BaseModel):
    model_config = ConfigDict(extra="forbid")

    cases: list[AdversarialInput] = Field(min_length=1)


class AdversarialSlot(BaseModel):
    """Where a prompt takes hostile input: the variable it is appended to (on a line of its own, after the
    variable's own value: an instruction hidden in data), and the other variables and context."""

    model_config = ConfigDict(extra="forbid")

    variable: str = Field(min_length=1)
    variables: dict[str, Any] = Field(default_factory=dict)
    context: dict[str, Any] = Field(default_factory=dict)


class EvalSet(BaseModel):
    """One prompt's evaluation set, as its YAML file holds it."""

    model_config = ConfigDict(extra="forbid")

    prompt: str = Field(min_length=1)
    description: str = ""
    format: OutputFormat = Field(default_factory=OutputFormat)
    # the variable that carries each case's ``context.features`` as ``name=value`` lines (filled by the loader, and
    # again by ``market_context.with_feature_store_context`` from the warehouse)
    features_variable: str | None = None
    adversarial: AdversarialSlot | None = None  # None: the shared adversarial set is not applied
    cases: list[EvalCase] = Field(min_length=1)


@dataclass(frozen=True)
class PromptCases:
    """A prompt's evaluation set as the evaluation takes it: its expanded cases and the form answers must have."""

    prompt: str
    format: OutputFormat
    cases: list[EvalCase]
    source: str  # the file it came from
    features_variable: str | None = None


def feature_lines(features: dict[str, Any]) -> str:
    """Feature values as the prompts are given them: one ``name=value`` a line."""
    return "\n".join(f"{name}={value}" for name, value in features.items())


def with_feature_lines(variables: dict[str, Any], context: dict[str, Any], variable: str | None) -> dict[str, Any]:
    """``variables`` with ``variable`` set to the context's features as lines (unchanged when there is nothing
    to fill or the variable is already given)."""
    features = context.get("features")
    if variable is None or not isinstance(features, dict) or variable in variables:
        return variables
    return {**variables, variable: feature_lines(features)}


def load_eval_set(path: str | Path) -> EvalSet:
    return load_yaml_model(path, EvalSet)


def load_adversarial_set(path: str | Path) -> AdversarialSet:
    return load_yaml_model(path, AdversarialSet)


def expand_cases(eval_set: EvalSet, adversarial: AdversarialSet | None, *, source: str | Path) -> list[EvalCase]:
    """The prompt's cases followed by one case per adversarial input (its text put in the prompt's adversarial
    variable, the canary filled in). A case id used twice raises PolicyError naming ``source`` and the id."""
    fill = eval_set.features_variable
    cases = [
        c.model_copy(update={"variables": with_feature_lines(c.variables, c.context, fill)}) for c in eval_set.cases
    ]
    if adversarial is not None and eval_set.adversarial is not None:
        slot = eval_set.adversarial
        base = with_feature_lines(slot.variables, slot.context, fill)
        for hostile in adversarial.cases:
            text = hostile.input.replace(CANARY_PLACEHOLDER, hostile.canary or "")
            own = base.get(slot.variable)
            cases.append(
                EvalCase(
                    id=hostile.id,
                    kind=hostile.kind,
                    variables={**base, slot.variable: f"{own}\n{text}" if own else text},
                    context=dict(slot.context),
                    canary=hostile.canary,
                    check_format=False,
                )
            )
    seen: set[str] = set()
    for index, case in enumerate(cases):
        if case.id in seen:
            raise PolicyError(f"{source}: case {index} ({case.id!r}): the id is used twice")
        seen.add(case.id)
    return cases


def load_cases(directory: str | Path, prompt: str) -> PromptCases:
    """The evaluation set of ``prompt`` from ``directory`` (``<prompt>.yaml`` and the shared ``adversarial.yaml``),
    its cases expanded. A missing file or a file for another prompt raises PolicyError naming the file."""
    directory = Path(directory)
    path = directory / f"{prompt}.yaml"
    if not path.is_file():
        raise PolicyError(f"{path}: no evaluation set for prompt {prompt!r}")
    eval_set = load_eval_set(path)
    if eval_set.prompt != prompt:
        raise PolicyError(f"{path}: key 'prompt': says {eval_set.prompt!r}, the file is named for {prompt!r}")
    adversarial = load_adversarial_set(directory / "adversarial.yaml") if eval_set.adversarial is not None else None
    cases = expand_cases(eval_set, adversarial, source=path)
    return PromptCases(prompt, eval_set.format, cases, str(path), eval_set.features_variable)
