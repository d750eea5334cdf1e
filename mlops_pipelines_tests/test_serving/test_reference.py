"""docs/serving_api.md is the API as the code defines it."""

from pathlib import Path

from mlops_pipelines.serving.app import create_app
from mlops_pipelines.serving.reference import render
from mlops_pipelines.settings import Settings


def test_the_reference_page_is_current(data_dir: Path) -> None:
    page = render(create_app(Settings.from_env()))
    committed = Path(__file__).resolve().parents[2] / "docs" / "serving_api.md"
    assert committed.read_text() == page, (
        "docs/serving_api.md is stale: run `mlops serve --reference docs/serving_api.md`"
    )
    assert "## `POST /api/v1/models/{model}/predict`" in page and "### `Problem`" in page
