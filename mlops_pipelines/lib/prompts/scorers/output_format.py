"""Length and format: the sections a response must have, its word limit, and the JSON schema it must satisfy
when the prompt asks for JSON."""

import json
import re

import jsonschema
from jsonschema.exceptions import best_match

from mlops_pipelines.lib.prompts.eval_sets import OutputFormat
from mlops_pipelines.lib.prompts.scorers.base import Score

_FENCE = re.compile(r"^\s*```(?:json)?\s*\n(.*)\n\s*```\s*$", re.DOTALL)


def _has_section(text: str, name: str) -> bool:
    """A line that starts with the section's name (after markdown marks), then ':' or the line's end."""
    pattern = re.compile(r"^[\s#*_>\-]*" + re.escape(name) + r"[\s*_]*(?::|$)", re.IGNORECASE | re.MULTILINE)
    return pattern.search(text) is not None


def format_problems(text: str, spec: OutputFormat) -> list[str]:
    """What is wrong with a response's form (empty when nothing is)."""
    problems = []
    if not text.strip():
        return ["empty response"]
    words = len(text.split())
    if spec.max_words is not None and words > spec.max_words:
        problems.append(f"{words} words > {spec.max_words}")
    if spec.json_schema is not None:
        fenced = _FENCE.match(text)
        try:
            document = json.loads(fenced.group(1) if fenced else text)
        except json.JSONDecodeError as exc:
            problems.append(f"not JSON ({exc.msg} at line {exc.lineno} column {exc.colno})")
        else:
            error = best_match(jsonschema.Draft202012Validator(spec.json_schema).iter_errors(document))
            if error is not None:
                where = "/".join(str(p) for p in error.absolute_path) or "(root)"
                problems.append(f"JSON at {where}: {error.message}")
    missing = [name for name in spec.required_sections if not _has_section(text, name)]
    if missing:
        problems.append(f"missing sections: {', '.join(missing)}")
    return problems


def output_format(text: str, spec: OutputFormat) -> Score:
    """1.0 when the response has the required form, else 0.0 with the problems."""
    problems = format_problems(text, spec)
    return Score(0.0 if problems else 1.0, "; ".join(problems))
