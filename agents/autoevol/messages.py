"""Messages of the Auto Evol-Instruct optimization loop (request/reply).

The loop is an orchestration with natural barriers (evaluate m candidates, pick one), so its steps
are requests with deadlines rather than a stream:

    OptimizerAgent ─EvolveOnce──▶ EvolAgent          (trajectories; dev-set evolutions)
                   ─AnalyzeTrajectories─▶ AnalystAgent ─▶ Feedback
                   ─EvaluateMethod─▶ JudgeAgent ─EvolveOnce/AnswerOnce─▶ … ─▶ MethodScore
                   ─MethodSelected (publish)─▶ PoolAgent   (evolves the remaining data)
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

from bus.message import Message

__all__ = [
    "AnalyzeTrajectories",
    "AnswerOnce",
    "AnswerResult",
    "CaseFailure",
    "DevCase",
    "EvaluateMethod",
    "EvolveOnce",
    "EvolveResult",
    "Feedback",
    "MethodScore",
    "MethodSelected",
    "Trajectory",
]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class EvolveOnce(Message):
    """Evolve one instruction with a method text; the reply is an `EvolveResult`.

    ``key`` names the call (e.g. ``"traj:3:case-17:2"``): the sampling seed derives from it, so the
    same call is the same cached LLM request on resume.
    """

    kind: Literal["autoevol.evolve_once"] = "autoevol.evolve_once"
    key: str
    instruction: str
    input: str = ""
    method_id: str
    method_text: str
    temperature: float | None = None


class EvolveResult(Message):
    """``instruction`` is None when no rewritten instruction could be extracted."""

    kind: Literal["autoevol.evolve_result"] = "autoevol.evolve_result"
    key: str
    instruction: str | None
    raw_text: str = ""
    error: str | None = None


class AnswerOnce(Message):
    """Answer one instruction; the reply is an `AnswerResult`."""

    kind: Literal["autoevol.answer_once"] = "autoevol.answer_once"
    key: str
    instruction: str


class AnswerResult(Message):
    kind: Literal["autoevol.answer_result"] = "autoevol.answer_result"
    key: str
    response: str | None
    error: str | None = None


class Trajectory(_Frozen):
    """An instruction and its successive evolutions (step 0 is the original)."""

    id: str
    steps: tuple[str, ...]
    stopped: str | None = None  # why the chain ended early, if it did


class AnalyzeTrajectories(Message):
    kind: Literal["autoevol.analyze"] = "autoevol.analyze"
    step: int
    trajectories: tuple[Trajectory, ...]


class CaseFailure(_Frozen):
    id: str
    step: int | None = None
    reason: str = ""


class Feedback(Message):
    """The analyst's verdict on a mini-batch; ``text`` is what the optimizer reads."""

    kind: Literal["autoevol.feedback"] = "autoevol.feedback"
    step: int
    failures: tuple[CaseFailure, ...]
    parseable: bool
    text: str
    raw_text: str = ""


class DevCase(_Frozen):
    id: str
    instruction: str
    input: str = ""


class EvaluateMethod(Message):
    """Evolve every dev case with the method, answer it, and judge failures: reply `MethodScore`."""

    kind: Literal["autoevol.evaluate"] = "autoevol.evaluate"
    method_id: str
    method_text: str
    dev: tuple[DevCase, ...]
    evol_temperature: float | None = 0.0


class MethodScore(Message):
    """λ = failures / |dev|; per-case failures with the reason."""

    kind: Literal["autoevol.score"] = "autoevol.score"
    method_id: str
    failure_rate: float
    evaluated: int
    failures: tuple[CaseFailure, ...]
    errors: int = 0


class MethodSelected(Message):
    """The optimization's final method e*; the pool evolves every seed not in ``exclude``."""

    kind: Literal["autoevol.selected"] = "autoevol.selected"
    method_id: str
    method_text: str
    exclude: tuple[str, ...] = ()
    cluster: str | None = None
    sources: tuple[str, ...] = ()  # input files this method applies to; empty: every seed
