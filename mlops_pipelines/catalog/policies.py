"""Where the policy files live; loaded (and validated) by ``lib/policy.py``."""

from pathlib import Path

from mlops_pipelines.lib.policy import PromotionPolicy, load_policy

PROMOTION_POLICY_PATH = Path(__file__).with_name("promotion_policy.yaml")


def load_promotion_policy() -> PromotionPolicy:
    return load_policy(PROMOTION_POLICY_PATH)
