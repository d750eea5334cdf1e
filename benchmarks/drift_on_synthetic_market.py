"""False alarms and detection delay of feature drift on the synthetic market (the demo's: regime shift 2026-02-20).

- the placebo: ``--windows`` one-day windows at random hourly offsets inside the 30 calm days before the shift
  (seeded), each judged against those 30 days, for both models: how often SEVERE, how often MODERATE-or-worse;
- the detection: one-day windows ending each day after the shift, against the 30 days before it: the first day
  that is SEVERE.

Targets (issue #12): SEVERE in at most 1% and MODERATE-or-worse in at most 5% of the placebo windows; the shift
SEVERE within a day. The real-market figures are ``benchmarks/drift_on_real_markets.py``'s.

    .venv/bin/python -m benchmarks.drift_on_synthetic_market [--symbols 24] [--windows 400]
"""

import argparse
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import numpy as np

from mlops_pipelines.catalog.feature_views import load_catalog
from mlops_pipelines.catalog.models import MODEL_SPECS
from mlops_pipelines.catalog.policies import load_drift_policy_file
from mlops_pipelines.lib.core import warehouse
from mlops_pipelines.lib.features import feature_store
from mlops_pipelines.lib.ingestion import market_bars
from mlops_pipelines.lib.ingestion.synthetic_market import SyntheticMarketConfig, generate_bars
from mlops_pipelines.lib.ingestion.validation import validate_bars
from mlops_pipelines.lib.monitoring.drift_report import build_report
from mlops_pipelines.lib.training.model_specs import ModelSpec

SHIFT = datetime(2026, 2, 20, tzinfo=UTC)
REFERENCE, WINDOW = timedelta(days=30), timedelta(days=1)
SEVERE_MAX, MODERATE_OR_WORSE_MAX, DETECTION_DAYS = 0.01, 0.05, 1


def severity(conn: duckdb.DuckDBPyConnection, spec: ModelSpec, end: datetime, memo: dict) -> str:
    """The model's feature-drift verdict on the day ending at ``end`` against the 30 days before the shift."""
    report = build_report(
        conn, spec, "1", load_catalog(), load_drift_policy_file(), [], window_end=end, current=WINDOW,
        reference=REFERENCE, reference_end=SHIFT, memo=memo,
    )  # fmt: skip
    return str(report.severity)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--symbols", type=int, default=24)
    parser.add_argument("--windows", type=int, default=400, help="placebo windows per model")
    args = parser.parse_args()
    catalog = load_catalog()
    config = SyntheticMarketConfig(n_symbols=args.symbols, regime_shift_at=SHIFT)
    bars = validate_bars(generate_bars(config, SHIFT - REFERENCE - timedelta(days=10), SHIFT + timedelta(days=8)))
    offsets = np.random.default_rng(12).integers(0, int((REFERENCE - WINDOW) / timedelta(hours=1)), args.windows)
    print(f"synthetic market, {args.symbols} symbols, regime shift {SHIFT:%Y-%m-%d}; 1-day windows vs 30 days")
    with tempfile.TemporaryDirectory() as directory, warehouse.connect(Path(directory) / "w.duckdb") as conn:
        market_bars.replace_all(conn, bars.accepted)
        for name in catalog.topological_order():
            feature_store.materialize_view(conn, catalog, name)
        for spec in MODEL_SPECS.values():
            memo: dict = {}
            placebo = [severity(conn, spec, SHIFT - timedelta(hours=int(h)), memo) for h in offsets]
            severe = placebo.count("SEVERE") / len(placebo)
            moderate_or_worse = severe + placebo.count("MODERATE") / len(placebo)
            after = [severity(conn, spec, SHIFT + timedelta(days=d), memo) for d in range(1, 8)]
            first = next((d + 1 for d, s in enumerate(after) if s == "SEVERE"), None)
            passed = severe <= SEVERE_MAX and moderate_or_worse <= MODERATE_OR_WORSE_MAX
            passed &= first is not None and first <= DETECTION_DAYS
            print(
                f"  {spec.name}: placebo SEVERE {severe:.2%}, MODERATE-or-worse {moderate_or_worse:.2%} "
                f"({len(placebo)} windows, {placebo.count('INSUFFICIENT')} INSUFFICIENT); after the shift "
                f"{', '.join(after)}: first SEVERE on day {first}  {'PASS' if passed else 'FAIL'} "
                f"(targets: <= {SEVERE_MAX:.0%}, <= {MODERATE_OR_WORSE_MAX:.0%}, within {DETECTION_DAYS} day)",
                flush=True,
            )


if __name__ == "__main__":
    main()
