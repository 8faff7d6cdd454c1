"""Per-category aggregation of judge results.

`aggregate_pairwise` counts wins, ties, losses and unparseable judgements per category and
overall; rates are over the parsed judgements (unparseable ones are reported, never folded into a
result). `aggregate_single` does the same for single-answer ratings. Both return categories in
name order followed by an `OVERALL` row.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from statistics import fmean

from pydantic import BaseModel, ConfigDict

from agents.judge.verdicts import Outcome, PairJudgement, Unparseable

__all__ = [
    "OVERALL",
    "CategoryStats",
    "PairwiseResult",
    "SingleResult",
    "aggregate_pairwise",
    "aggregate_single",
]

OVERALL = "overall"


class PairwiseResult(BaseModel):
    """One position-swapped comparison of the model under test against a baseline."""

    model_config = ConfigDict(frozen=True)

    question_id: str
    category: str = "general"
    judgement: PairJudgement | Unparseable


class SingleResult(BaseModel):
    """One single-answer grade."""

    model_config = ConfigDict(frozen=True)

    question_id: str
    category: str = "general"
    rating: float | Unparseable


class CategoryStats(BaseModel):
    """Counts and rates for one category (or `OVERALL`). Rates are `None` with nothing parsed."""

    model_config = ConfigDict(frozen=True)

    category: str
    n: int
    unparseable: int
    wins: int = 0
    ties: int = 0
    losses: int = 0
    win_rate: float | None = None
    adjusted_win_rate: float | None = None
    mean_model_score: float | None = None
    mean_baseline_score: float | None = None
    mean_rating: float | None = None


def _mean(values: list[float]) -> float | None:
    return fmean(values) if values else None


def _pairwise_stats(category: str, results: list[PairwiseResult]) -> CategoryStats:
    counts = {o: 0 for o in Outcome}
    model_scores: list[float] = []
    baseline_scores: list[float] = []
    unparseable = 0
    for r in results:
        j = r.judgement
        if isinstance(j, Unparseable):
            unparseable += 1
            continue
        counts[j.outcome] += 1
        if j.model_score is not None:
            model_scores.append(j.model_score)
        if j.baseline_score is not None:
            baseline_scores.append(j.baseline_score)
    parsed = sum(counts.values())
    wins, ties = counts[Outcome.WIN], counts[Outcome.TIE]
    return CategoryStats(
        category=category,
        n=len(results),
        unparseable=unparseable,
        wins=wins,
        ties=ties,
        losses=counts[Outcome.LOSS],
        win_rate=wins / parsed if parsed else None,
        adjusted_win_rate=(wins + 0.5 * ties) / parsed if parsed else None,
        mean_model_score=_mean(model_scores),
        mean_baseline_score=_mean(baseline_scores),
    )


def aggregate_pairwise(results: Iterable[PairwiseResult]) -> list[CategoryStats]:
    """Per-category and overall win/tie/loss counts, win rates and mean scores."""
    items = list(results)
    by_cat: dict[str, list[PairwiseResult]] = defaultdict(list)
    for r in items:
        by_cat[r.category].append(r)
    rows = [_pairwise_stats(c, by_cat[c]) for c in sorted(by_cat)]
    rows.append(_pairwise_stats(OVERALL, items))
    return rows


def _single_stats(category: str, results: list[SingleResult]) -> CategoryStats:
    ratings = [r.rating for r in results if not isinstance(r.rating, Unparseable)]
    return CategoryStats(
        category=category,
        n=len(results),
        unparseable=len(results) - len(ratings),
        mean_rating=_mean(ratings),
    )


def aggregate_single(results: Iterable[SingleResult]) -> list[CategoryStats]:
    """Per-category and overall mean ratings and unparseable counts."""
    items = list(results)
    by_cat: dict[str, list[SingleResult]] = defaultdict(list)
    for r in items:
        by_cat[r.category].append(r)
    rows = [_single_stats(c, by_cat[c]) for c in sorted(by_cat)]
    rows.append(_single_stats(OVERALL, items))
    return rows
