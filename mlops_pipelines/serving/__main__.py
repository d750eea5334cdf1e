"""``python -m mlops_pipelines.serving``: the API on MLOPS_SERVE_HOST:MLOPS_SERVE_PORT (same as ``mlops serve``)."""

from mlops_pipelines.serving.app import run
from mlops_pipelines.settings import Settings

if __name__ == "__main__":
    run(Settings.from_env())
