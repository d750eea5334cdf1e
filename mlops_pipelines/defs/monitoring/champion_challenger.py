"""monitoring/champion_challenger: the challenger's realized performance against the champion's on the same
decisions, hourly, in every drift_job run. Logic in lib/monitoring/champion_challenger.py."""

import dagster as dg
from pydantic import Field

from mlops_pipelines.defs.common import CATALOG, SPECS
from mlops_pipelines.lib.governance.monitored_versions import booster_loader, contests
from mlops_pipelines.lib.monitoring.champion_challenger import (
    CHALLENGE_TABLE,
    ChallengePolicy,
    monitor_champion_challenger,
)
from mlops_pipelines.lib.monitoring.hourly_run import HourlyWindow
from mlops_pipelines.partitions import MARKET_HOURS, WAREHOUSE_POOL
from mlops_pipelines.resources import AlertsResource, MlflowResource, WarehouseResource, open_lifecycle

DEFAULT = ChallengePolicy()


class ChampionChallengerConfig(dg.Config):
    window_hours: int = Field(
        default=DEFAULT.window_hours, description="Decisions of this many hours before the partition end."
    )
    alpha: float = Field(default=DEFAULT.alpha, description="Significance level of the Diebold-Mariano test.")
    min_decision_times: int = Field(
        default=DEFAULT.min_decision_times, description="Fewer decision times with known labels: undecided."
    )


@dg.asset(
    key=["monitoring", "champion_challenger"],
    deps=[dg.AssetKey(["raw", "market_bars"]), *(dg.AssetKey(["features", name]) for name in CATALOG.views)],
    partitions_def=MARKET_HOURS,
    kinds={"duckdb", "lightgbm"},
    pool=WAREHOUSE_POOL,
    metadata={"dagster/table_name": CHALLENGE_TABLE},
)
def champion_challenger(
    context: dg.AssetExecutionContext,
    config: ChampionChallengerConfig,
    warehouse: WarehouseResource,
    mlflow: MlflowResource,
    alerts: AlertsResource,
) -> dg.MaterializeResult:
    """Per model with a champion (production) and a challenger: both versions' losses (log-loss or squared error)
    on the same labelled decisions of the last week, replayed point-in-time, and a Diebold-Mariano test of the
    paired differences (clustered by decision time, Newey-West lag = the label horizon): "challenger better /
    worse / undecided" with the evidence, in monitoring.champion_challenger. "Better" raises an alert and does
    nothing else: promotion stays governed. No champion, no challenger or no labelled decision: said so, no
    verdict written."""
    policy = ChallengePolicy(
        window_hours=config.window_hours, alpha=config.alpha, min_decision_times=config.min_decision_times
    )
    window = HourlyWindow(partition_key=context.partition_key, end=context.partition_time_window.end)
    with open_lifecycle(warehouse, mlflow) as lifecycle:
        run = monitor_champion_challenger(
            lifecycle.conn,
            contests(lifecycle, SPECS.values()),
            window,
            catalog=CATALOG,
            load_booster=booster_loader(lifecycle, mlflow.tracking(), CATALOG.graph_hash()),
            alerter=alerts.alerter(),
            policy=policy,
        )
    metadata: dict[str, dg.MetadataValue] = {}
    for comparison in run.comparisons:
        context.log.info(comparison.summary())
        metadata[f"{comparison.model}_verdict"] = dg.MetadataValue.text(str(comparison.verdict or comparison.status))
        if comparison.test is not None:
            metadata[f"{comparison.model}_statistic"] = dg.MetadataValue.float(comparison.test.statistic)
            metadata[f"{comparison.model}_p_value"] = dg.MetadataValue.float(comparison.test.p_value)
            metadata[f"{comparison.model}_n_decisions"] = dg.MetadataValue.int(comparison.test.n_decisions)
    metadata["comparisons"] = dg.MetadataValue.md(
        "\n\n".join(f"- {c.summary()}" for c in run.comparisons) or "no model"
    )
    metadata["alerted"] = dg.MetadataValue.text(", ".join(run.alerted) or "-")
    return dg.MaterializeResult(metadata=metadata)
