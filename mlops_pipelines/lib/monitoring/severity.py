"""The verdicts of monitoring, one vocabulary for whoever writes or reads them: the drift policy, concept drift,
the status file, the retraining sensor, the promotion gate's ``max_drift_severity`` and the UI's plots.

Both are ``StrEnum``: a verdict is stored and compared as its text (``"SEVERE"``), so tables, the status file and
YAML policies hold plain strings. ``code`` is the number the UI plots (0 good, 1 watch, 2 act; -1 not judged)."""

from enum import StrEnum


class Severity(StrEnum):
    """How far a distribution moved (a feature, a model's outputs, a model over its features), against the
    reference's own variability and catalog/drift_policy.yaml. Ordered: NORMAL < MODERATE < SEVERE.
    INSUFFICIENT: the window could not be judged (too few rows, too few independent values, no data yet); it is
    no verdict, so it never replaces one in the status file and never passes a deployment or promotion check."""

    NORMAL = "NORMAL"
    MODERATE = "MODERATE"
    SEVERE = "SEVERE"
    INSUFFICIENT = "INSUFFICIENT"

    @property
    def code(self) -> int:
        return -1 if self is Severity.INSUFFICIENT else list(Severity).index(self)

    @classmethod
    def of_code(cls, code: int) -> "Severity":
        return cls.INSUFFICIENT if code < 0 else list(cls)[code]

    @property
    def judged(self) -> bool:
        """A verdict (NORMAL, MODERATE or SEVERE), not INSUFFICIENT."""
        return self is not Severity.INSUFFICIENT

    def within(self, limit: "Severity") -> bool:
        """At most ``limit`` (a check such as the gate's ``max_drift_severity``); INSUFFICIENT never is."""
        return self.judged and self.code <= limit.code


class PerformanceStatus(StrEnum):
    """A version's realized quality against its validation metrics (concept drift): OK < WARNING < CRITICAL;
    INSUFFICIENT when too few labelled decisions were known to judge (reported, never an alarm)."""

    OK = "OK"
    WARNING = "WARNING"
    CRITICAL = "CRITICAL"
    INSUFFICIENT = "INSUFFICIENT"

    @property
    def code(self) -> int:
        return -1 if self is PerformanceStatus.INSUFFICIENT else list(PerformanceStatus).index(self)

    @classmethod
    def of_code(cls, code: int) -> "PerformanceStatus":
        return cls.INSUFFICIENT if code < 0 else list(cls)[code]
