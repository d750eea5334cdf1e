"""What every scorer returns: a number for one response and, when it is not clean, why."""

from dataclasses import dataclass


@dataclass(frozen=True)
class Score:
    value: float
    detail: str = ""  # readable: what was found (empty when clean)
