"""Where the prompt evaluation sets, their recorded responses and the prompt policy live; loaded (and validated)
by ``lib/prompts/eval_sets.py`` and ``lib/prompts/prompt_policy.py``."""

from pathlib import Path

from mlops_pipelines.lib.prompts.eval_sets import PromptCases, load_cases
from mlops_pipelines.lib.prompts.prompt_policy import PromptPolicy, load_prompt_policy

PROMPT_EVALS_DIR = Path(__file__).with_name("prompt_evals")
RECORDED_RESPONSES_DIR = PROMPT_EVALS_DIR / "recorded"  # what the demo and CI evaluate: <prompt>.jsonl
LABELLED_DIR = PROMPT_EVALS_DIR / "labelled"  # the scorers' labelled sets (benchmarks/prompt_scorers.py)
PROMPT_POLICY_PATH = Path(__file__).with_name("prompt_policy.yaml")


def load_prompt_cases(prompt: str) -> PromptCases:
    """The evaluation set of ``prompt``: its cases and the shared adversarial ones."""
    return load_cases(PROMPT_EVALS_DIR, prompt)


def load_prompt_policy_file() -> PromptPolicy:
    return load_prompt_policy(PROMPT_POLICY_PATH)
