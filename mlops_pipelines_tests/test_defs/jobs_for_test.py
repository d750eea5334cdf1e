"""The jobs of the code location as importable functions, for ``dg.reconstructable`` in a run worker.

The code location is loaded once, at import: a forkserver that preloads this module hands it to every step
process it forks (see run_worker.py).
"""

from functools import cache

import dagster as dg

from mlops_pipelines.definitions import defs

code_location = cache(defs)
code_location()


def ingestion_job() -> dg.JobDefinition:
    return code_location().resolve_job_def("ingestion_job")


def features_job() -> dg.JobDefinition:
    return code_location().resolve_job_def("features_job")


def training_job() -> dg.JobDefinition:
    return code_location().resolve_job_def("training_job")
