"""The lifecycle's cross-process mutex with MLflow over HTTP: the warehouse's write connection, not anything of
MLflow's, so it holds the same with a tracking server as with a SQLite file."""

from pathlib import Path

import pytest

from mlops_pipelines.lib.core.tracking import Tracking
from mlops_pipelines_tests.services import MlflowServer
from mlops_pipelines_tests.test_lib.governance import test_lifecycle


@pytest.mark.slow
def test_concurrent_promotions_over_http_leave_one_production_and_no_gap(
    mlflow_server: MlflowServer, tmp_path: Path
) -> None:
    """Two processes promote two versions at once through the tracking server: one PRODUCTION, the other moved
    back to STAGING in the same operation, the audit log without gaps and in step with MLflow (the local test's
    assertions, on the server)."""
    tracking = Tracking(mlflow_server.url, mlflow_server.url, "mlflow-artifacts:/")
    test_lifecycle.test_concurrent_promotions_leave_one_production_and_no_gap(tracking, tmp_path)
