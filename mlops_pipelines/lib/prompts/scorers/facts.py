"""Fact check: every number, ticker, date and time a response states must be supported by the context the prompt
was given (its context values and variables, feature names included: ``ret_24h`` supports "24").

A number is supported when a context number equals it within the relative tolerance or the rounding of the
digits it states ("2.1%" stands for 2.05..2.15 %). Percent and fraction are one quantity: "2.1%" (or "210 bp") is
supported by 0.021 and by 2.1; a number stated without a sign is compared with the context value's magnitude
("fell 2.1%" against -0.021), one with a sign must match the sign. List markers ("1.", "2)") are not claims.
Precision = supported claims / claims (1.0 when a response states none).
"""

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from mlops_pipelines.lib.prompts.scorers.base import Score

_MONTHS = {
    m: i
    for i, m in enumerate(["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"], start=1)
}
_MONTH = r"(jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]*\.?"
_ISO = re.compile(
    r"(?<!\d)(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2}|\s?UTC)?)?(?!\d)"
)
_DAY_MONTH = re.compile(r"\b(\d{1,2})(?:st|nd|rd|th)?\s+" + _MONTH + r",?\s+(\d{4})\b", re.IGNORECASE)
_MONTH_DAY = re.compile(r"\b" + _MONTH + r"\s+(\d{1,2})(?:st|nd|rd|th)?,?\s+(\d{4})\b", re.IGNORECASE)
_TIME = re.compile(r"(?<![\d:.])(\d{1,2}):(\d{2})(?::\d{2})?(?![\d:])")
_LIST_MARKER = re.compile(r"^(\s*(?:[#>*\-]+\s*)?)\d+[.)](?=\s)", re.MULTILINE)
_NUMBER = re.compile(
    r"(?<![\w.,])([+\-−]?)(\d{1,3}(?:,\d{3})+|\d+)(?:\.(\d+))?"
    r"(\s*(?:%|percent\b|per cent\b|bps\b|bp\b|basis points\b))?",
    re.IGNORECASE,
)
_TICKER = re.compile(r"(?<![\w\-/$])\$?([A-Z]{1,6}\d{0,6}(?:[\-/.][A-Z]{2,4})?)(?![\w\-])")
_KEY_NUMBER = re.compile(r"\d+(?:\.\d+)?")
# upper-case words that are not tickers (acronyms of the trade, section words)
NOT_TICKERS = frozenset(
    [
        "A",
        "I",
        "AI",
        "API",
        "ATR",
        "AUC",
        "AML",
        "BUY",
        "CEO",
        "CFO",
        "COO",
        "CPI",
        "DRAFT",
        "EOD",
        "EMA",
        "ETF",
        "EU",
        "EUR",
        "FAQ",
        "FCA",
        "FOR",
        "FX",
        "GBP",
        "GDP",
        "HOLD",
        "HTTP",
        "ID",
        "II",
        "III",
        "IMPORTANT",
        "INTERNAL",
        "IV",
        "JSON",
        "KPI",
        "KYC",
        "LLM",
        "LONG",
        "MACD",
        "MIFID",
        "ML",
        "MTD",
        "N",
        "NA",
        "NAV",
        "NB",
        "NO",
        "NOT",
        "NOTE",
        "OK",
        "ONLY",
        "OTC",
        "PDF",
        "PII",
        "PNL",
        "QTD",
        "RISK",
        "RISKS",
        "ROI",
        "RSI",
        "SEC",
        "SELL",
        "SHAP",
        "SHORT",
        "SMA",
        "SUMMARY",
        "TBD",
        "THE",
        "UI",
        "UK",
        "URL",
        "US",
        "USA",
        "USD",
        "UTC",
        "VWAP",
        "YES",
        "YTD",
        "ESMA",
        "FINRA",
        "CFTC",
        "GMT",
        "Q1",
        "Q2",
        "Q3",
        "Q4",
        "H1",
        "H2",
        "IPO",
        "MNPI",
        "RMSE",
        "MAE",
        "MSE",
        "SLA",
        "SLO",
        "OR",
        "AND",
        "TO",
    ]
)


@dataclass(frozen=True)
class Claim:
    """Something a response states that can be checked: a number (with its unit and stated precision), a
    ticker, a date (ISO ``YYYY-MM-DD``) or a time of day (``HH:MM``)."""

    kind: str  # number | ticker | date | time
    text: str
    value: float | str
    unit: str | None = None  # percent | bp | None (numbers)
    signed: bool = False
    decimals: int = 0


@dataclass
class Support:
    """What a context supports."""

    numbers: list[float] = field(default_factory=list)
    tickers: set[str] = field(default_factory=set)
    dates: set[str] = field(default_factory=set)
    times: set[str] = field(default_factory=set)


def _unit(raw: str | None) -> str | None:
    if not raw:
        return None
    raw = raw.strip().lower()
    return "percent" if raw in ("%", "percent", "per cent") else "bp"


def _blank(text: str, span: tuple[int, int]) -> str:
    return text[: span[0]] + " " * (span[1] - span[0]) + text[span[1] :]


def claims(text: str) -> list[Claim]:
    """The checkable statements of ``text``, dates and times first (their digits are then not numbers)."""
    found: list[Claim] = []
    text = _LIST_MARKER.sub(lambda m: m.group(1) + " " * (len(m.group()) - len(m.group(1))), text)
    for match in list(_ISO.finditer(text)):
        found.append(Claim("date", match.group(), f"{match.group(1)}-{match.group(2)}-{match.group(3)}"))
        if match.group(4):
            found.append(Claim("time", match.group(), f"{int(match.group(4)):02d}:{match.group(5)}"))
        text = _blank(text, match.span())
    for pattern, day_group, month_group in ((_DAY_MONTH, 1, 2), (_MONTH_DAY, 2, 1)):
        for match in list(pattern.finditer(text)):
            month = _MONTHS[match.group(month_group).lower()[:3]]
            day = int(match.group(day_group))
            found.append(Claim("date", match.group(), f"{match.group(3)}-{month:02d}-{day:02d}"))
            text = _blank(text, match.span())
    for match in list(_TIME.finditer(text)):
        found.append(Claim("time", match.group(), f"{int(match.group(1)):02d}:{match.group(2)}"))
        text = _blank(text, match.span())
    for match in _TICKER.finditer(text):
        symbol = match.group(1)
        if symbol not in NOT_TICKERS and len(symbol) >= 2:
            found.append(Claim("ticker", match.group(), symbol))
    for match in _NUMBER.finditer(text):
        sign, whole, fraction, unit = match.groups()
        value = float(whole.replace(",", "") + ("." + fraction if fraction else ""))
        signed = bool(sign)
        if sign in ("-", "−"):
            value = -value
        found.append(Claim("number", match.group().strip(), value, _unit(unit), signed, len(fraction or "")))
    return found


def _leaves(value: Any) -> Iterable[Any]:
    if isinstance(value, Mapping):
        for key, item in value.items():
            yield str(key)
            yield from _leaves(item)
    elif isinstance(value, list | tuple | set):
        for item in value:
            yield from _leaves(item)
    else:
        yield value


def support(*sources: Mapping[str, Any]) -> Support:
    """What ``sources`` (a case's context and variables) support: their numbers, the numbers, tickers, dates and
    times stated in their texts, and the numbers in their keys (``vol_24h``)."""
    found = Support()
    for source in sources:
        for leaf in _leaves(source):
            if isinstance(leaf, bool) or leaf is None:
                continue
            if isinstance(leaf, int | float):
                if math.isfinite(leaf):
                    found.numbers.append(float(leaf))
            elif isinstance(leaf, datetime):
                found.dates.add(leaf.date().isoformat())
                found.times.add(leaf.strftime("%H:%M"))
            elif isinstance(leaf, date):
                found.dates.add(leaf.isoformat())
            else:
                text = str(leaf)
                found.numbers.extend(float(n) for n in _KEY_NUMBER.findall(text))
                words = re.findall(r"[A-Za-z0-9]+(?:[\-/.][A-Za-z]{2,4})?", text) + re.findall(r"[A-Za-z0-9]+", text)
                found.tickers.update(w.upper() for w in words)  # "BTC" of "BTC-USD", "rmse" of "rmse_ratio"
                for claim in claims(text):
                    if claim.kind == "number":
                        found.numbers.append(float(claim.value))
                    elif claim.kind == "ticker":
                        found.tickers.add(str(claim.value).upper())
                    elif claim.kind == "date":
                        found.dates.add(str(claim.value))
                    else:
                        found.times.add(str(claim.value))
    return found


def number_matches(claim: Claim, targets: Sequence[float], tolerance: float) -> bool:
    """Whether a stated number equals one of ``targets`` within ``tolerance`` (relative) or its own rounding,
    reading a percent (or bp) claim both as a fraction and as the number of percent."""
    value = float(claim.value)
    half_unit = 0.5 * 10 ** (-claim.decimals)
    readings = [(value, half_unit)]
    if claim.unit == "percent":
        readings.append((value / 100, half_unit / 100))
    elif claim.unit == "bp":
        readings.append((value / 10_000, half_unit / 10_000))
    for target in targets:
        seen = target if claim.signed else abs(target)
        for reading, rounding in readings:
            reading = reading if claim.signed else abs(reading)
            if abs(reading - seen) <= max(tolerance * abs(seen), rounding) + 1e-12:
                return True
    return False


def is_supported(claim: Claim, found: Support, tolerance: float) -> bool:
    if claim.kind == "number":
        return number_matches(claim, found.numbers, tolerance)
    if claim.kind == "ticker":
        return str(claim.value).upper() in found.tickers
    if claim.kind == "date":
        return str(claim.value) in found.dates
    return str(claim.value) in found.times


def fact_precision(text: str, context: Mapping[str, Any], variables: Mapping[str, Any], tolerance: float) -> Score:
    """Supported claims / claims of one response (1.0 when it states none); the detail lists the unsupported."""
    stated = claims(text)
    if not stated:
        return Score(1.0)
    found = support(context, variables)
    unsupported = [c for c in stated if not is_supported(c, found, tolerance)]
    value = (len(stated) - len(unsupported)) / len(stated)
    detail = ", ".join(f"{c.kind} {c.text!r}" for c in unsupported)
    return Score(value, f"unsupported: {detail}" if unsupported else "")


def _fact_found(fact: str, stated: list[Claim], text: str, tolerance: float) -> bool:
    as_claims = claims(fact)
    if len(as_claims) == 1 and as_claims[0].kind == "number" and as_claims[0].text == fact.strip():
        wanted = as_claims[0]
        targets = [float(wanted.value)] + ([float(wanted.value) / 100] if wanted.unit == "percent" else [])
        return any(c.kind == "number" and number_matches(c, targets, tolerance) for c in stated)
    if len(as_claims) == 1 and as_claims[0].kind == "date" and as_claims[0].text == fact.strip():
        return any(c.kind == "date" and c.value == as_claims[0].value for c in stated)
    return " ".join(fact.lower().split()) in " ".join(text.lower().split())


def fact_coverage(text: str, facts: Sequence[str | Sequence[str]], tolerance: float) -> Score:
    """The share of a case's required facts the response contains (a list is a choice: any one of it)."""
    if not facts:
        return Score(1.0)
    stated = claims(text)
    missing = []
    for fact in facts:
        choices = [fact] if isinstance(fact, str) else list(fact)
        if not any(_fact_found(choice, stated, text, tolerance) for choice in choices):
            missing.append(" | ".join(choices))
    value = (len(facts) - len(missing)) / len(facts)
    return Score(value, f"missing: {', '.join(repr(m) for m in missing)}" if missing else "")
