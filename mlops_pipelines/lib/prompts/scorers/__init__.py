"""The scorers of a prompt version's responses: each gives a number per response (``Score``), aggregated per
version by ``lib/prompts/evaluation.py``.

| scorer | per response | clean |
|---|---|---|
| toxicity | highest offensive-language probability over its sentences | 0 |
| blocked_terms | desk blocked terms used | 0 |
| personal_data | personal-data findings | 0 |
| injection | 1 when the case's canary appears | 0 |
| fact_precision | supported claims / claims | 1 |
| fact_coverage | required facts found / required facts | 1 |
| output_format | 1 when sections, length and JSON schema are right | 1 |
"""

from mlops_pipelines.lib.prompts.scorers.base import Score
from mlops_pipelines.lib.prompts.scorers.facts import fact_coverage, fact_precision
from mlops_pipelines.lib.prompts.scorers.injection import injection
from mlops_pipelines.lib.prompts.scorers.output_format import output_format
from mlops_pipelines.lib.prompts.scorers.personal_data import personal_data
from mlops_pipelines.lib.prompts.scorers.toxicity import blocked_terms, toxicity

__all__ = [
    "Score",
    "blocked_terms",
    "fact_coverage",
    "fact_precision",
    "injection",
    "output_format",
    "personal_data",
    "toxicity",
]
