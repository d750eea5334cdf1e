"""The prompt library: loading refuses undeclared, unused and hostile variables naming file, prompt and variable;
rendering is strict and single-pass; the lock's diff gate fails a content change without a version bump."""

from pathlib import Path

import pytest
import yaml

from mlops_pipelines.catalog.prompt_library import PROMPT_LOCK_PATH, PROMPTS_DIR, load_prompts
from mlops_pipelines.lib.prompts.library import PromptError, diff_lock, load_library, lock, render

BASE = {
    "name": "toy_prompt",
    "version": 1,
    "owner": "desk",
    "purpose": "a test",
    "intended_use": "tests only",
    "risk_tier": "low",
    "variables": {"symbol": "the instrument", "as_of": "the time"},
    "template": "Summarize {{ symbol }} at {{as_of}}.",
    "model": {"name": "m", "temperature": 0.1, "max_tokens": 100},
    "evaluation_set": "toy_prompt",
}


def write(folder: Path, **changes: object) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    spec = {**BASE, **changes}
    path = folder / f"{spec['name']}.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def test_the_library_holds_the_trading_assistant_prompts() -> None:
    prompts = load_prompts()
    assert {"market_summary", "signal_explanation", "compliance_note_draft"} <= set(prompts)
    assert {"symbol", "as_of", "context"} <= set(prompts["market_summary"].variables)
    assert all(p.risk_tier in ("low", "medium", "high") for p in prompts.values())


def test_the_committed_lock_matches_the_library() -> None:
    import json

    changes = diff_lock(json.loads(PROMPT_LOCK_PATH.read_text()), lock(load_prompts()))
    assert [c.describe() for c in changes if c.kind != "unchanged"] == [], "run `mlops prompts lock`"


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"template": "Summarize {{ symbol }} at {{ as_of }} for {{ desk }}."}, "uses undeclared variable 'desk'"),
        ({"variables": {**BASE["variables"], "unused": "x"}}, "declares variable 'unused' but never uses it"),
        ({"template": "{{ symbol.__class__ }} {{ as_of }}"}, "placeholder '{{ symbol.__class__ }}' is not a variable"),
        ({"template": "{{ symbol }} {{ as_of }} {{ }}"}, "placeholder '{{ }}' is not a variable name"),
        ({"template": "{{ symbol }} {{ as_of }} {{ x | safe }}"}, "is not a variable name"),
        ({"template": "{{ symbol }} {{ as_of }} {{ symbol"}, "unbalanced '{{'"),
        ({"variables": {"Symbol": "x", "symbol": "y", "as_of": "z"}}, "declares variable 'Symbol', not a valid name"),
        ({"risk_tier": "extreme"}, "key 'risk_tier'"),
        ({"model": {"name": "m", "temperature": 9, "max_tokens": 1}}, "key 'model.temperature'"),
        ({"name": "../etc/passwd"}, "key 'name'"),
    ],
)
def test_loading_names_the_file_the_prompt_and_the_variable(tmp_path: Path, changes: dict, message: str) -> None:
    path = write(tmp_path / "lib", **changes) if "name" not in changes else tmp_path / "lib" / "toy_prompt.yaml"
    if "name" in changes:
        path.parent.mkdir(parents=True)
        path.write_text(yaml.safe_dump({**BASE, **changes}))
    with pytest.raises(PromptError) as caught:
        load_library(tmp_path / "lib")
    text = str(caught.value)
    assert message in text and str(path) in text
    if "name" not in changes:
        assert "'toy_prompt'" in text


def test_a_prompt_lives_in_a_file_of_its_name_and_yaml_errors_name_the_file(tmp_path: Path) -> None:
    folder = tmp_path / "lib"
    write(folder)
    (folder / "toy_prompt.yaml").rename(folder / "other.yaml")
    with pytest.raises(PromptError, match="must live in toy_prompt.yaml"):
        load_library(folder)
    (folder / "other.yaml").write_text("name: [unclosed\n")
    with pytest.raises(PromptError, match="other.yaml: not valid YAML"):
        load_library(folder)


def test_render_refuses_missing_extra_and_non_text_values_and_never_expands_a_value(tmp_path: Path) -> None:
    prompt = load_library(write(tmp_path / "lib").parent)["toy_prompt"]
    assert render(prompt, {"symbol": "SYM1", "as_of": "2026-02-14"}) == "Summarize SYM1 at 2026-02-14."
    hostile = render(prompt, {"symbol": "{{ as_of }}", "as_of": "T"})
    assert hostile == "Summarize {{ as_of }} at T."  # inserted as text, once
    with pytest.raises(PromptError, match="toy_prompt' v1: missing variable 'as_of'"):
        render(prompt, {"symbol": "x"})
    with pytest.raises(PromptError, match="unknown variable 'extra'"):
        render(prompt, {"symbol": "x", "as_of": "y", "extra": "z"})
    with pytest.raises(PromptError, match="variable 'symbol' must be text or a number"):
        render(prompt, {"symbol": {"a": 1}, "as_of": "y"})


def test_the_diff_gate_fails_a_content_change_without_a_bump_and_passes_metadata(tmp_path: Path) -> None:
    folder = tmp_path / "lib"
    write(folder)
    locked = lock(load_library(folder))

    write(folder, owner="another-team", purpose="reworded", tags={"desk": "fx"})
    (change,) = diff_lock(locked, lock(load_library(folder)))
    assert (change.kind, change.breaking) == ("metadata", False)
    assert "owner: 'desk' -> 'another-team'" in change.describe()

    write(folder, template="Summarize {{ symbol }} at {{ as_of }}, briefly.")
    (change,) = diff_lock(locked, lock(load_library(folder)))
    assert change.breaking and "content changed without a version bump: template: " in change.describe()

    write(folder, model={"name": "m", "temperature": 0.7, "max_tokens": 100})
    (change,) = diff_lock(locked, lock(load_library(folder)))
    assert change.breaking and "model.temperature: 0.1 -> 0.7" in change.describe()

    write(folder, version=2, model={"name": "m", "temperature": 0.7, "max_tokens": 100})
    (change,) = diff_lock(locked, lock(load_library(folder)))
    assert (change.kind, change.breaking) == ("version_bump", False) and "v1 -> v2" in change.describe()

    write(folder, version=0 + 1, template="changed {{ symbol }} {{ as_of }}")
    newer = lock(load_library(folder))
    write(folder, version=1)
    assert diff_lock(newer, lock(load_library(folder)))[0].breaking  # content back without a bump is a change too
    (folder / "toy_prompt.yaml").unlink()
    assert diff_lock(locked, {"prompts": {}})[0].kind == "removed"


def test_the_catalog_folder_is_the_one_loaded() -> None:
    assert PROMPTS_DIR.name == "prompts" and sorted(PROMPTS_DIR.glob("*.yaml"))
