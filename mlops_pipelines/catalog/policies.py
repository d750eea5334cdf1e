"""Where the policy files live; loaded (and validated) by ``lib/governance/promotion_policy.py``."""

from pathlib import Path

from mlops_pipelines.lib.evaluation.scenarios import ScenarioCatalog, load_scenarios
from mlops_pipelines.lib.governance.promotion_policy import PromotionPolicy, load_policy
from mlops_pipelines.lib.monitoring.drift_policy import DriftPolicy, load_drift_policy

PROMOTION_POLICY_PATH = Path(__file__).with_name("promotion_policy.yaml")
SCENARIOS_PATH = Path(__file__).with_name("scenarios.yaml")
DRIFT_POLICY_PATH = Path(__file__).with_name("drift_policy.yaml")


def load_drift_policy_file() -> DriftPolicy:
    return load_drift_policy(DRIFT_POLICY_PATH)


def load_scenario_catalog() -> ScenarioCatalog:
    return load_scenarios(SCENARIOS_PATH)


def load_promotion_policy() -> PromotionPolicy:
    return load_policy(PROMOTION_POLICY_PATH)


def policy_status(name: str) -> str:
    """ "valid" or the error (file, key, reason) of one policy file: "promotion", "drift" or "scenarios".

    Checked when the code location loads and shown in the metadata of the assets that read the file: a broken
    file does not stop the location from loading; the runs that need it fail with the same error.
    """
    load = {"promotion": load_promotion_policy, "drift": load_drift_policy_file, "scenarios": load_scenario_catalog}
    try:
        load[name]()
    except Exception as exc:  # any load problem is the status to show
        return f"INVALID: {exc}"
    return "valid"
