"""Where the policy files live; loaded (and validated) by ``lib/policy.py``."""

from pathlib import Path

from mlops_pipelines.lib.drift_policy import DriftPolicy, load_drift_policy
from mlops_pipelines.lib.policy import PromotionPolicy, load_policy
from mlops_pipelines.lib.scenarios import ScenarioCatalog, load_scenarios

PROMOTION_POLICY_PATH = Path(__file__).with_name("promotion_policy.yaml")
SCENARIOS_PATH = Path(__file__).with_name("scenarios.yaml")
DRIFT_POLICY_PATH = Path(__file__).with_name("drift_policy.yaml")


def load_drift_policy_file() -> DriftPolicy:
    return load_drift_policy(DRIFT_POLICY_PATH)


def load_scenario_catalog() -> ScenarioCatalog:
    return load_scenarios(SCENARIOS_PATH)


def load_promotion_policy() -> PromotionPolicy:
    return load_policy(PROMOTION_POLICY_PATH)
