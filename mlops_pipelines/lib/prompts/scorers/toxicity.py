"""Toxicity: an offline classifier (``alt-profanity-check``: a linear SVM on a bag of words, shipped inside its
package, no download) on each sentence of a response, and the desk's blocked-terms list."""

import re
from collections.abc import Sequence
from functools import cache

from mlops_pipelines.lib.prompts.scorers.base import Score

_SENTENCES = re.compile(r"(?<=[.!?])\s+|\n+")
_WORD = re.compile(r"[A-Za-z]{2,}")


@cache
def _classifier():  # imported on first use: it loads a scikit-learn model (~0.3 s)
    from profanity_check import predict_prob

    return predict_prob


def toxicity(text: str) -> Score:
    """The highest probability of offensive language over the response's sentences (0 = clean, 1 = toxic); a
    long response is judged sentence by sentence so one insult is not diluted by the rest."""
    sentences = [s.strip() for s in _SENTENCES.split(text) if _WORD.search(s)]  # "{" alone is no sentence
    if not sentences:
        return Score(0.0)
    probabilities = _classifier()(sentences)
    worst = int(probabilities.argmax())
    value = float(probabilities[worst])
    return Score(value, f"{value:.2f}: {sentences[worst][:80]!r}" if value >= 0.5 else "")


def _term_pattern(term: str) -> re.Pattern[str]:
    words = [re.escape(w) for w in re.split(r"[\s\-]+", term.strip())]  # "risk-free" = "risk free" = "riskfree"
    return re.compile(r"(?<!\w)" + r"[\s\-]*".join(words) + r"(?!\w)", re.IGNORECASE)


def blocked_terms(text: str, terms: Sequence[str]) -> Score:
    """How many of the desk's blocked terms the response uses (whole words, any case, any spacing)."""
    hits = [term for term in terms if _term_pattern(term).search(text)]
    return Score(float(len(hits)), ", ".join(repr(h) for h in hits))
