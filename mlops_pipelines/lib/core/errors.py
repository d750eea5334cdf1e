"""The project's error root.

Every error an operator can act on (bad input, a bad setting, a damaged or locked file) derives from
``MlopsError`` and carries a message that says what is wrong and where (file, field, row). The ``mlops`` command
maps the whole family, once, to a one-line message and exit code 2 instead of a traceback; anything else is a bug
and keeps its traceback. Each class also keeps the builtin base it had (``ValueError``, ``RuntimeError``...), so
callers that catch those still do.
"""


class MlopsError(Exception):
    """An error whose message is meant for an operator: what is wrong and where."""


class ConfigError(MlopsError, ValueError):
    """An environment variable has a value the project cannot use; the message names the variable."""


class NotFound(MlopsError, LookupError):
    """Something asked for by name does not exist (yet): a model version, a stored training set, an artifact of a
    run, a table that has not been materialized. The message says what is missing and, where it can, how to make it.
    MLflow's own "does not exist" errors reach callers as this class, never as ``MlflowException``."""
