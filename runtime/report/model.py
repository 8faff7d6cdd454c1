"""`ReportData`: everything the run report shows, as one pydantic model.

The run store (or an evaluation) fills it; `render_report` turns it into HTML. Every section is
optional: an empty list / `None` means "not recorded in this run", and the page says so in one
line instead of drawing an empty chart. All numbers are plain counts, seconds, tokens or USD.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable
from datetime import UTC, datetime

from pydantic import BaseModel, ConfigDict, Field

from agents.judge.aggregate import CategoryStats
from agents.judge.metrics.contamination import ContaminationReport
from agents.judge.metrics.difficulty import RoundDifficulty
from agents.judge.metrics.embeddings import DiversityReport
from agents.judge.metrics.tags import TagMetrics

__all__ = [
    "AgentUsage",
    "JudgeTable",
    "LambdaPoint",
    "Lineage",
    "LineageStep",
    "QualitySummary",
    "RatePoint",
    "ReportData",
    "RoundRows",
    "RunSummary",
    "call_rate_series",
]

_FROZEN = ConfigDict(frozen=True)


class RunSummary(BaseModel):
    """The headline of a run."""

    model_config = _FROZEN

    config_name: str
    run_id: str = ""
    method: str = ""
    started_at: datetime | None = None
    wall_time_s: float | None = None
    rows_in: int | None = None
    rows_out: int | None = None
    exit_status: str = "unknown"
    dead_letters: int = 0
    extra: dict[str, str] = Field(default_factory=dict)


class RoundRows(BaseModel):
    """Rows produced in one evolution round, and how many survived elimination."""

    model_config = _FROZEN

    round: int
    produced: int
    accepted: int | None = None
    rejected: int | None = None


class LambdaPoint(BaseModel):
    """Auto Evol: the failure rate λ of one candidate method at one optimization step."""

    model_config = _FROZEN

    step: int
    candidate: str
    failure_rate: float = Field(ge=0.0, le=1.0)
    chosen: bool = False


class AgentUsage(BaseModel):
    """LLM usage of one agent."""

    model_config = _FROZEN

    agent: str
    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float | None = None
    errors: int = 0


class RatePoint(BaseModel):
    """LLM calls per second in the time bin starting `t_s` seconds after the run started."""

    model_config = _FROZEN

    t_s: float
    calls_per_s: float


class LineageStep(BaseModel):
    """One instruction in a lineage; round 0 is the seed."""

    model_config = _FROZEN

    round: int
    instruction: str
    operation: str = ""
    status: str = "accepted"
    reason: str = ""
    response: str = ""


class Lineage(BaseModel):
    """A seed and what each round made of it."""

    model_config = _FROZEN

    seed_id: str
    steps: list[LineageStep]


class JudgeTable(BaseModel):
    """Per-category judge results (`pairwise` win/tie/loss or `single` ratings)."""

    model_config = _FROZEN

    title: str
    kind: str = "pairwise"
    rows: list[CategoryStats]


class QualitySummary(BaseModel):
    """Data-quality metrics of the run's output; each part optional."""

    model_config = _FROZEN

    tags_by_round: dict[int, TagMetrics] = Field(default_factory=dict)
    diversity: DiversityReport | None = None
    near_duplicate_pairs: int | None = None
    near_duplicate_threshold: float | None = None
    contamination: ContaminationReport | None = None


class ReportData(BaseModel):
    """Everything `render_report` draws."""

    model_config = _FROZEN

    title: str = "evolagents run report"
    generated_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    summary: RunSummary
    rows_per_round: list[RoundRows] = Field(default_factory=list)
    elimination_reasons: dict[str, int] = Field(default_factory=dict)
    difficulty_by_round: list[RoundDifficulty] = Field(default_factory=list)
    lambda_steps: list[LambdaPoint] = Field(default_factory=list)
    agent_usage: list[AgentUsage] = Field(default_factory=list)
    call_rate: list[RatePoint] = Field(default_factory=list)
    judge: list[JudgeTable] = Field(default_factory=list)
    quality: QualitySummary | None = None
    lineages: list[Lineage] = Field(default_factory=list)


def call_rate_series(
    timestamps: Iterable[float], *, bin_s: float = 1.0, start: float | None = None
) -> list[RatePoint]:
    """Bin call start times (seconds, any epoch) into calls/s points, empty bins included."""
    if bin_s <= 0:
        raise ValueError("bin_s must be positive")
    ts = sorted(t for t in timestamps if math.isfinite(t))
    if not ts:
        return []
    origin = ts[0] if start is None else start
    counts = Counter(int((t - origin) // bin_s) for t in ts if t >= origin)
    if not counts:
        return []
    return [
        RatePoint(t_s=b * bin_s, calls_per_s=counts.get(b, 0) / bin_s)
        for b in range(max(counts) + 1)
    ]
