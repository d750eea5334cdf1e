"""Contract test of the Evidently adapter: if an upgrade changes Evidently's output, this fails first."""

import numpy as np
import pandas as pd

from mlops_pipelines.lib.monitoring.evidently_report import render_drift_report


def test_report_html_and_summary() -> None:
    rng = np.random.default_rng(0)
    reference = pd.DataFrame(
        {"stable": rng.normal(size=4000), "shifted": rng.normal(size=4000), "sector": rng.choice(["a", "b", "c"], 4000)}
    )
    current = pd.DataFrame(
        {
            "stable": rng.normal(size=800),
            "shifted": rng.normal(2.0, 1.5, 800),
            "sector": rng.choice(["a", "b", "c"], 800),
        }
    )
    html, summary = render_drift_report(reference, current, sample_rows=1000)
    assert html.lstrip().lower().startswith("<!doctype html") or "<html" in html[:2000].lower()
    assert set(summary.column_scores) == {"stable", "shifted", "sector"}
    assert summary.column_drifted == {"stable": False, "shifted": True, "sector": False}
    assert all(summary.column_methods.values())
    assert summary.drifted_columns == 1 and summary.drifted_share == 1 / 3
