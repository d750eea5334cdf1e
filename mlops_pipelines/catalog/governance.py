"""What the governance outputs are made of: the policy files the audit pack renders, the KPI policy, and the
extension points other parts of the platform fill.

- ``POLICY_SOURCES``: the policy files in force, rendered into every audit pack with their git history.
- ``AUDIT_PACK_SECTIONS``: extra sections of the audit pack (``lib/governance/audit_pack.py: SectionProvider``,
  a function of the pack's ``PackContext`` returning a ``PackSection``). The prompt library registers here the
  prompt versions promoted or retired in the period with their prompt cards.
- ``KPI_PROVIDERS``: extra KPIs (``lib/governance/kpis.py: KpiProvider``, a function of a ``KpiContext``
  returning ``Kpi`` values). The prompt library registers here its approval turnaround.

The CLI (``mlops governance``) and the assets (``governance/audit_pack``, ``governance/kpis``) read these lists,
so a provider added here appears in both.
"""

from pathlib import Path

from mlops_pipelines.catalog.policies import DRIFT_POLICY_PATH, PROMOTION_POLICY_PATH
from mlops_pipelines.catalog.prompt_evaluation import PROMPT_POLICY_PATH
from mlops_pipelines.lib.governance.audit_pack import PolicySource, SectionProvider, promotion_policy_digest
from mlops_pipelines.lib.governance.kpis import KpiPolicy, KpiProvider, load_kpi_policy
from mlops_pipelines.lib.prompts.governance_sections import prompt_audit_section, prompt_kpis

KPI_POLICY_PATH = Path(__file__).with_name("governance_kpis.yaml")
FEATURE_VIEWS_PATH = Path(__file__).with_name("feature_views.py")  # its git history dates each view's first commit

POLICY_SOURCES = [
    PolicySource("promotion policy", PROMOTION_POLICY_PATH, promotion_policy_digest),
    PolicySource("drift and performance policy", DRIFT_POLICY_PATH),
    PolicySource("governance KPI policy", KPI_POLICY_PATH),
    PolicySource("prompt evaluation policy", PROMPT_POLICY_PATH),
]
AUDIT_PACK_SECTIONS: list[SectionProvider] = [prompt_audit_section]
KPI_PROVIDERS: list[KpiProvider] = [prompt_kpis]


def load_kpi_policy_file() -> KpiPolicy:
    return load_kpi_policy(KPI_POLICY_PATH)
