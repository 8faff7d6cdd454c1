"""Difficulty scores by round (the WizardLM paper's "difficulty rose over rounds" measure).

Each instruction is rated 1-10 by an LLM with the `difficulty` template, parsed with
`agents.judge.verdicts.parse_difficulty`. `aggregate_difficulty` groups the results by evolution
round: count, unparseable count, mean, median, standard deviation and a 1-10 histogram (scores
rounded half up), rounds in ascending order.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from statistics import fmean, median, pstdev

from pydantic import BaseModel, ConfigDict

from agents.judge.verdicts import Unparseable

__all__ = ["DifficultyRecord", "RoundDifficulty", "aggregate_difficulty"]


class DifficultyRecord(BaseModel):
    """The difficulty judgement of one instruction at one round (0 = the seed)."""

    model_config = ConfigDict(frozen=True)

    item_id: str
    round: int
    score: float | Unparseable


class RoundDifficulty(BaseModel):
    """Difficulty statistics of one round. Statistics are `None` when nothing parsed."""

    model_config = ConfigDict(frozen=True)

    round: int
    n: int
    unparseable: int
    mean: float | None
    median: float | None
    stdev: float | None
    histogram: dict[int, int]
    scores: list[float]


def _bucket(score: float) -> int:
    return min(10, max(1, math.floor(score + 0.5)))


def aggregate_difficulty(records: Iterable[DifficultyRecord]) -> list[RoundDifficulty]:
    """Per-round difficulty statistics, rounds ascending."""
    by_round: dict[int, list[DifficultyRecord]] = defaultdict(list)
    for record in records:
        by_round[record.round].append(record)
    out: list[RoundDifficulty] = []
    for rnd in sorted(by_round):
        rows = by_round[rnd]
        scores = [r.score for r in rows if not isinstance(r.score, Unparseable)]
        histogram = dict.fromkeys(range(1, 11), 0)
        for s in scores:
            histogram[_bucket(s)] += 1
        out.append(
            RoundDifficulty(
                round=rnd,
                n=len(rows),
                unparseable=len(rows) - len(scores),
                mean=fmean(scores) if scores else None,
                median=median(scores) if scores else None,
                stdev=pstdev(scores) if scores else None,
                histogram=histogram,
                scores=scores,
            )
        )
    return out
