"""Rule 1 as a question a small model can answer: "which of these two asks for more?".

The paper's rule 1 asks a judge whether the evolved instruction is *equal* to its parent, in free
text. Small models answer the same word for every pair (measured: a 0.5B model said "Equal" to 20
of 20 clearly changed pairs). This redesign asks instead which of two versions asks for more,
twice with the positions swapped (parent as A, then the child as A), with a one-token answer that
backends constrain where they can (`GenerationParams.choices`: a llama.cpp grammar on the
embedded backend, guided decoding on servers that offer it) and with the first token's
log-probabilities where the backend reports them.

The score is the probability that the child asks for more, averaged over both orders (position
bias cancels out): from the log-probabilities of "A" and "B" when present, else from the two
answers (0, 0.5 or 1). The evolution fails when the score is below a threshold calibrated on the
tuning part of the labelled screening set (docs/benchmarks.md, "Screening accuracy").
"""

from __future__ import annotations

import math
import re
from pathlib import Path

from agents.eliminator.rules import render_judge_prompt
from agents.eliminator.verdict import RuleName, Verdict
from agents.llm.types import ChatMessage, Completion, GenerationParams, LLMClient

__all__ = ["ComparisonScore", "compare_with_parent", "render_comparison_prompt", "score_answers"]

LETTERS = ("A", "B")
_LETTER_RE = re.compile(r"^\W*(?:answer\s*[:\-]?\s*)?(?:version\s+)?([AB])\b", re.IGNORECASE)


def render_comparison_prompt(
    first: str, second: str, profile: str = "full", *, user_dir: Path | None = None
) -> list[ChatMessage]:
    """The messages asking which of `first` (A) and `second` (B) asks for more
    (`comparison.<profile>.txt`, overridable in `user_dir`)."""
    return render_judge_prompt("comparison", first, second, profile, user_dir=user_dir)


def _letter(text: str) -> str | None:
    match = _LETTER_RE.match(text.strip())
    return match.group(1).upper() if match else None


def _probability_of_b(completion: Completion) -> float | None:
    """P(B) among {A, B} from the first token's log-probs (None when absent)."""
    mass = {"A": 0.0, "B": 0.0}
    for token, logprob in completion.first_token_logprobs.items():
        letter = token.strip().upper()
        if letter in mass:
            mass[letter] += math.exp(logprob)
    total = mass["A"] + mass["B"]
    return mass["B"] / total if total > 0 else None


class ComparisonScore:
    """The child's probability of asking for more, and how it was obtained."""

    def __init__(self, value: float | None, source: str, answers: tuple[str | None, str | None]):
        self.value = value
        self.source = source  # "logprobs" | "answers" | "unparseable"
        self.answers = answers


def score_answers(parent_first: Completion, child_first: Completion) -> ComparisonScore:
    """The score from the two orders: `parent_first` had the parent as A, `child_first` as B."""
    answers = (_letter(parent_first.text), _letter(child_first.text))
    p1, p2 = _probability_of_b(parent_first), _probability_of_b(child_first)
    if p1 is not None and p2 is not None:
        return ComparisonScore((p1 + (1.0 - p2)) / 2, "logprobs", answers)
    if answers[0] is None or answers[1] is None:
        return ComparisonScore(None, "unparseable", answers)
    votes = (answers[0] == "B") + (answers[1] == "A")
    return ComparisonScore(votes / 2, "answers", answers)


async def compare_with_parent(
    llm: LLMClient,
    parent: str,
    child: str,
    *,
    threshold: float,
    profile: str = "full",
    user_dir: Path | None = None,
    max_tokens: int = 4,
    caller: str = "",
) -> Verdict:
    """Rule 1 by comparison: fails when the child's score is below `threshold`.

    Two greedy calls (cached like any call). Raises `LLMError` when a call failed for good.
    """
    params = GenerationParams(
        temperature=0.0, max_tokens=max_tokens, choices=LETTERS, top_logprobs=5
    )
    first = await llm.complete(
        render_comparison_prompt(parent, child, profile, user_dir=user_dir), params, caller=caller
    )
    second = await llm.complete(
        render_comparison_prompt(child, parent, profile, user_dir=user_dir), params, caller=caller
    )
    score = score_answers(first, second)
    rule = RuleName.NO_INFORMATION_GAIN
    if score.value is None:
        return Verdict(
            rule=rule,
            outcome="unparseable",
            reason=f"unparseable comparison answers: {first.text[:20]!r}, {second.text[:20]!r}",
        )
    detail = f"asks for more than its parent with p={score.value:.2f} ({score.source})"
    if score.value < threshold:
        return Verdict(rule=rule, outcome="fail", reason=f"not harder: {detail} < {threshold:g}")
    return Verdict(rule=rule, outcome="pass", reason=detail)
