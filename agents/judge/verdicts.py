"""Strict parsers for judge outputs, and position-swap combination.

Every parser takes the judge's raw text and returns a value or an `Unparseable` (with a reason and
the text's tail). Parsers never raise on model output and never guess: an answer with no verdict
token, or with two different ones, is `Unparseable` and is counted as such by the aggregation.

Position swap: each pair is judged twice, once with the model's answer shown as A and once as B.
`combine_swapped` turns the two verdicts into the model's `Outcome`: the same preference in both
orders is a win or a loss, anything else (including a judge that always says "A") is a tie.
"""

from __future__ import annotations

import math
import re
from enum import StrEnum

from pydantic import BaseModel, ConfigDict

__all__ = [
    "Outcome",
    "PairJudgement",
    "ScorePair",
    "Unparseable",
    "Verdict",
    "combine_swapped",
    "combine_swapped_scores",
    "parse_difficulty",
    "parse_pairwise_verdict",
    "parse_rating",
    "parse_score_pair",
]

_EXCERPT = 200
_NUM = r"(\d{1,3}(?:\.\d+)?)"
_VERDICT_RE = re.compile(r"\[\[([ABC])\]\]")
_RATING_RE = re.compile(r"\[\[\s*" + _NUM + r"\s*\]\]")
_PAIR_TOKEN_RE = re.compile(r"\[\[\s*" + _NUM + r"\s*,\s*" + _NUM + r"\s*\]\]")
_PAIR_LINE_RE = re.compile(r"^\s*" + _NUM + r"(?:\s*,\s*|\s+)" + _NUM + r"\s*$")


class Verdict(StrEnum):
    """Which shown answer the judge preferred."""

    A = "A"
    B = "B"
    TIE = "tie"


class Outcome(StrEnum):
    """The result for the model under test after position swapping."""

    WIN = "win"
    TIE = "tie"
    LOSS = "loss"


class Unparseable(BaseModel):
    """A judge output the strict parser rejected. `excerpt` is the text's last 200 characters."""

    model_config = ConfigDict(frozen=True)

    reason: str
    excerpt: str = ""


def _bad(reason: str, text: str) -> Unparseable:
    return Unparseable(reason=reason, excerpt=text[-_EXCERPT:])


class ScorePair(BaseModel):
    """Scores of the answers shown as A (first) and B (second)."""

    model_config = ConfigDict(frozen=True)

    a: float
    b: float

    @property
    def verdict(self) -> Verdict:
        """The preference the scores imply (equal scores are a tie)."""
        if self.a > self.b:
            return Verdict.A
        if self.b > self.a:
            return Verdict.B
        return Verdict.TIE


class PairJudgement(BaseModel):
    """A position-swapped pairwise result from the model's point of view."""

    model_config = ConfigDict(frozen=True)

    outcome: Outcome
    model_score: float | None = None
    baseline_score: float | None = None


def parse_pairwise_verdict(text: str) -> Verdict | Unparseable:
    """`[[A]]`, `[[B]]` or `[[C]]` (tie). Repeating the same token is fine; none, or two
    different tokens, is `Unparseable`."""
    found = set(_VERDICT_RE.findall(text))
    if not found:
        return _bad("no [[A]]/[[B]]/[[C]] verdict", text)
    if len(found) > 1:
        return _bad(f"conflicting verdicts {sorted(found)}", text)
    token = found.pop()
    return Verdict.TIE if token == "C" else Verdict(token)


def _in_range(value: float, low: float, high: float) -> bool:
    return math.isfinite(value) and low <= value <= high


def parse_score_pair(text: str, *, low: float = 1, high: float = 10) -> ScorePair | Unparseable:
    """Two scores: a `[[8, 7]]` token anywhere, else a first non-empty line like `8 7` / `8, 7`.

    Two different `[[x, y]]` tokens, a first line with anything else, or a score outside
    `[low, high]` is `Unparseable`.
    """
    tokens = {(float(x), float(y)) for x, y in _PAIR_TOKEN_RE.findall(text)}
    if len(tokens) > 1:
        return _bad(f"conflicting score pairs {sorted(tokens)}", text)
    if tokens:
        a, b = tokens.pop()
    else:
        first = next((line for line in text.splitlines() if line.strip()), "")
        match = _PAIR_LINE_RE.match(first)
        if match is None:
            return _bad("first line is not two scores", text)
        a, b = float(match.group(1)), float(match.group(2))
    if not (_in_range(a, low, high) and _in_range(b, low, high)):
        return _bad(f"scores {a:g}, {b:g} outside [{low:g}, {high:g}]", text)
    return ScorePair(a=a, b=b)


def _bracketed_number(text: str, what: str, low: float, high: float) -> float | Unparseable:
    values = {float(v) for v in _RATING_RE.findall(text)}
    if not values:
        return _bad(f"no [[N]] {what}", text)
    if len(values) > 1:
        return _bad(f"conflicting {what}s {sorted(values)}", text)
    value = values.pop()
    if not _in_range(value, low, high):
        return _bad(f"{what} {value:g} outside [{low:g}, {high:g}]", text)
    return value


def parse_rating(text: str, *, low: float = 1, high: float = 10) -> float | Unparseable:
    """A single-answer grade `[[N]]` (decimals allowed: `[[8.5]]`) in `[low, high]`."""
    return _bracketed_number(text, "rating", low, high)


def parse_difficulty(text: str, *, low: float = 1, high: float = 10) -> float | Unparseable:
    """A difficulty score `[[N]]` in `[low, high]`; an echoed `[[difficulty]]` is ignored."""
    return _bracketed_number(text, "difficulty", low, high)


_MODEL_AS_A = {Verdict.A: Outcome.WIN, Verdict.B: Outcome.LOSS, Verdict.TIE: Outcome.TIE}
_MODEL_AS_B = {Verdict.A: Outcome.LOSS, Verdict.B: Outcome.WIN, Verdict.TIE: Outcome.TIE}


def combine_swapped(
    model_first: Verdict | Unparseable, model_second: Verdict | Unparseable
) -> Outcome | Unparseable:
    """Combine the verdict with the model's answer shown as A (`model_first`) and the verdict
    with it shown as B (`model_second`). Consistent → win/loss/tie; inconsistent → tie; either
    unparseable → `Unparseable` (counted, not guessed)."""
    if isinstance(model_first, Unparseable):
        return Unparseable(
            reason=f"model-first order: {model_first.reason}", excerpt=model_first.excerpt
        )
    if isinstance(model_second, Unparseable):
        return Unparseable(
            reason=f"model-second order: {model_second.reason}", excerpt=model_second.excerpt
        )
    first, second = _MODEL_AS_A[model_first], _MODEL_AS_B[model_second]
    return first if first == second else Outcome.TIE


def combine_swapped_scores(
    model_first: ScorePair | Unparseable, model_second: ScorePair | Unparseable
) -> PairJudgement | Unparseable:
    """Score pairs from both orders: the outcome as in `combine_swapped` on the implied verdicts,
    and each side's score averaged over the two orders."""
    if isinstance(model_first, Unparseable) or isinstance(model_second, Unparseable):
        first_v = model_first if isinstance(model_first, Unparseable) else model_first.verdict
        second_v = model_second if isinstance(model_second, Unparseable) else model_second.verdict
        result = combine_swapped(first_v, second_v)
        assert isinstance(result, Unparseable)
        return result
    outcome = combine_swapped(model_first.verdict, model_second.verdict)
    assert isinstance(outcome, Outcome)
    return PairJudgement(
        outcome=outcome,
        model_score=(model_first.a + model_second.b) / 2,
        baseline_score=(model_first.b + model_second.a) / 2,
    )
