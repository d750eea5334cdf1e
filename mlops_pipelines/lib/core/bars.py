"""The bar clock of the market data: how long one bar is and the calendar the market trades on.

Both are declared properties of the source (``MLOPS_BAR_INTERVAL``, ``MLOPS_MARKET_CALENDAR``), never guessed from
the data: ingestion checks every file against the declared interval, feature windows and label horizons count
bars, and everything annualized takes its periods per year from the clock (``periods_per_year``).

A bar's timestamp is its open time; bars open on a grid of multiples of the interval from midnight UTC, so an
interval must divide a day (1min, 5min, 15min, 30min, 1h, 2h, 4h, 1d...). Partitions stay daily: a day holds
24 hourly bars, or one daily bar.
"""

import re
from dataclasses import dataclass
from datetime import timedelta

DAY = timedelta(days=1)
# Trading days per year and trading time per day of each calendar a source may declare (MLOPS_MARKET_CALENDAR).
CALENDARS: dict[str, tuple[float, timedelta]] = {
    "24x7": (365, timedelta(hours=24)),  # trades around the clock, every day (crypto-like; the synthetic market)
    "equities": (252, timedelta(hours=6, minutes=30)),  # exchange sessions: 252 days a year of 6.5 hours
}

_INTERVAL = re.compile(r"^\s*([0-9]+)\s*(min|h|d)\s*$")
_UNITS = {"min": timedelta(minutes=1), "h": timedelta(hours=1), "d": DAY}


def periods_per_year(bar_interval: timedelta, calendar: str) -> float:
    """Bars in a year: the annualization factor of per-bar returns (mean x it, std x its square root).

    ``24x7``: 365 days of 24 hours (hourly bars: 8,760; daily: 365). ``equities``: 252 trading days; a daily bar
    is one session (252), an intraday bar a part of the 6.5-hour session (hourly: 252 x 6.5 = 1,638).
    """
    if calendar not in CALENDARS:
        raise ValueError(f"unknown market calendar {calendar!r}; known: {', '.join(CALENDARS)}")
    if bar_interval <= timedelta(0) or bar_interval > timedelta(days=1):
        raise ValueError(f"a bar interval must be longer than 0 and at most a day, got {bar_interval}")
    days, session = CALENDARS[calendar]
    return days if bar_interval == timedelta(days=1) else days * (session / bar_interval)


def parse_interval(text: str) -> timedelta:
    """``15min``, ``1h``, ``1d``... as a timedelta; raises ValueError (saying what is accepted) for anything else,
    including an interval that does not divide a day into whole bars."""
    match = _INTERVAL.match(text.lower())
    if not match or int(match.group(1)) == 0:
        raise ValueError(f"a bar interval is a whole number and a unit (min, h or d), like 15min, 1h or 1d: {text!r}")
    interval = int(match.group(1)) * _UNITS[match.group(2)]
    if interval > DAY:
        raise ValueError(
            f"bars of {text!r} are longer than a day, which the daily partitions cannot hold: use 1d or less"
        )
    if DAY % interval:
        raise ValueError(
            f"bars of {text!r} do not divide a day into whole bars (partitions are daily): use an interval that "
            "does, like 1min, 5min, 15min, 30min, 1h, 2h, 4h or 1d"
        )
    return interval


def format_interval(interval: timedelta) -> str:
    """The shortest spelling ``parse_interval`` reads back: ``1d``, ``4h``, ``15min`` (seconds when not whole
    minutes, for reporting a spacing found in data)."""
    seconds = interval.total_seconds()
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60), ("s", 1)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


@dataclass(frozen=True)
class BarClock:
    """How long a bar is and the calendar its market trades on (see ``CALENDARS``)."""

    interval: timedelta = timedelta(hours=1)
    calendar: str = "24x7"

    def __post_init__(self) -> None:
        periods_per_year(self.interval, self.calendar)  # raises for an unknown calendar or interval

    @classmethod
    def parse(cls, interval: str, calendar: str) -> "BarClock":
        return cls(parse_interval(interval), calendar.strip().lower())

    @property
    def label(self) -> str:
        """The interval as declared, e.g. ``1h``."""
        return format_interval(self.interval)

    @property
    def periods_per_year(self) -> float:
        """Bars in a year of this calendar: what annualizes a per-bar mean or standard deviation."""
        return periods_per_year(self.interval, self.calendar)

    @property
    def sql_interval(self) -> str:
        """The interval as a DuckDB literal in whole minutes or hours (never days, whose length follows the
        session's time zone)."""
        minutes = int(self.interval.total_seconds() // 60)
        return f"INTERVAL {minutes // 60} HOUR" if minutes % 60 == 0 else f"INTERVAL {minutes} MINUTE"

    def describe(self) -> dict[str, object]:
        """What the lock file and the feature-graph hash record of the clock."""
        return {"interval": self.label, "calendar": self.calendar, "periods_per_year": self.periods_per_year}

    def __str__(self) -> str:
        return f"{self.label} bars, {self.calendar} calendar"


DEFAULT_BAR_CLOCK = BarClock()  # hourly bars around the clock: the synthetic market, and the default of settings
