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
    """A name the operator gave (a model, a version, a dataset id...) names nothing; the message says which,
    and what exists."""
