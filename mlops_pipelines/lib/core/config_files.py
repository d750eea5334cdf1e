"""The files users edit (policies, scenarios): YAML validated by a pydantic model at load, every problem reported
with the file, the key and the reason."""

from pathlib import Path
from typing import TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from mlops_pipelines.lib.core.errors import MlopsError

M = TypeVar("M", bound=BaseModel)


class PolicyError(MlopsError, ValueError):
    """A policy or scenario file is invalid; the message names the file, the key and the reason."""


def first_error(exc: ValidationError) -> str:
    error = exc.errors()[0]
    key = ".".join(str(p) for p in error["loc"])
    return f"key {key!r}: {error['msg']}"


def load_yaml_model(path: str | Path, model: type[M]) -> M:
    """A YAML file validated by a pydantic model; any problem raises PolicyError naming file, key and reason."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise PolicyError(f"{path}: not valid YAML: {exc}") from exc
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise PolicyError(f"{path}: {first_error(exc)}") from exc
