"""Where the prompt library lives (one YAML file per prompt under ``catalog/prompts/``) and its lock; loaded and
validated by ``lib/prompts/library.py``."""

from pathlib import Path

from mlops_pipelines.lib.prompts.library import Prompt, load_library

PROMPTS_DIR = Path(__file__).with_name("prompts")
PROMPT_LOCK_PATH = Path(__file__).with_name("prompt_lock.json")


def load_prompts(directory: Path = PROMPTS_DIR) -> dict[str, Prompt]:
    """Every prompt of the library by name; a ``PromptError`` names the file, the prompt and the field."""
    return load_library(directory)
