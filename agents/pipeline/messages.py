"""Messages of the evolution pipeline (Evol-Instruct and Auto Evol-Instruct).

A *row* is one seed's lineage; it moves through rounds 0..M. Round 0 is the seed itself (answered
if it has no reference output); round k ≥ 1 evolves the row's current instruction once::

    EvolveRequest ─▶ EvolAgent ─▶ Evolved ─▶ Eliminator ─▶ Screened ─▶ Responder ─▶ Answered
                                              └▶ Rejected (instruction rules)            │
                              Accepted ◀─ Eliminator (response rules) ◀──────────────────┘
                              Rejected ◀─┘
    any stage whose LLM call exhausted its retries ──────────────────────────────▶ StepFailed

The eliminator screens the evolved instruction before it is answered (rules 4 and 1 need no
response), so a step it rejects never costs a response.

`Accepted`, `Rejected` and `StepFailed` are `RowOutcome`s: the pool controller handles them all
with one subscription. A step's identity is ``step_id = "<seed_id>:<round>"`` (one step per row
and round), so storing a step twice overwrites instead of duplicating.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict

from agents.llm.errors import LLMError
from bus.message import Message, Notice

__all__ = [
    "Accepted",
    "Answered",
    "EvolveRequest",
    "Evolved",
    "PoolFinished",
    "Rejected",
    "RowOutcome",
    "Screened",
    "Step",
    "StepFailed",
    "step_id_for",
]


def step_id_for(seed_id: str, round_: int) -> str:
    """The identity of a row's step in a round."""
    return f"{seed_id}:{round_}"


class Step(BaseModel):
    """One evolution step of a row, as it accumulates through the stages."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    seed_id: str
    round: int
    step_id: str
    parent_step_id: str | None = None
    parent_instruction: str = ""
    #: the row's generations before the parent (the seed first), as evolved texts (input
    #: included): screening rejects a child that reverts to one of them
    ancestors: tuple[str, ...] = ()
    instruction: str
    input: str = ""
    operation: str = "seed"
    method_id: str | None = None
    prompt_version: str = ""
    raw_text: str = ""
    response: str | None = None
    reference_output: str | None = None


class EvolveRequest(Message):
    """Evolve ``instruction`` (+ ``input``) once for a row's round.

    ``operation`` forces an operation (else the EvolAgent picks one, deterministically from the run
    seed, the row and the round). ``method_text`` asks for an Auto Evol-Instruct method instead of
    an operation pack.
    """

    kind: Literal["evol.request"] = "evol.request"
    seed_id: str
    round: int
    parent_step_id: str | None = None
    instruction: str
    input: str = ""
    #: the row's generations before ``instruction`` (the seed first), input included
    ancestors: tuple[str, ...] = ()
    operation: str | None = None
    method_id: str | None = None
    method_text: str | None = None

    @property
    def step_id(self) -> str:
        return step_id_for(self.seed_id, self.round)


class Evolved(Message):
    """A step whose instruction was evolved (or a seed to be answered, round 0)."""

    kind: Literal["evol.evolved"] = "evol.evolved"
    step: Step


class Screened(Message):
    """A step whose instruction passed the eliminator's instruction rules: answer it.

    Round-0 steps (seeds to be answered) pass through unscreened: a seed was not evolved.
    """

    kind: Literal["evol.screened"] = "evol.screened"
    step: Step


class Answered(Message):
    """A step with its response."""

    kind: Literal["evol.answered"] = "evol.answered"
    step: Step


class RowOutcome(Message):
    """How a row's step ended. Abstract: subscribe to it to see every outcome."""

    abstract: ClassVar[bool] = True
    seed_id: str
    round: int


class Accepted(RowOutcome):
    """The step survived elimination: its instruction and response join the dataset."""

    kind: Literal["evol.accepted"] = "evol.accepted"
    step: Step


class Rejected(RowOutcome):
    """The eliminator dropped the step; the row keeps its parent for the next round."""

    kind: Literal["evol.rejected"] = "evol.rejected"
    step: Step
    rule: str
    reason: str


class StepFailed(RowOutcome):
    """A stage could not finish the step (LLM retries exhausted, fatal LLM error).

    The row stops here, recorded as failed with the error; ``resume --retry-failed`` retries it.
    ``resumable``: the error was the backend's (`LLMError.backend_fault`: unreachable,
    credentials, model, circuit open), not the row's — the row is left unfinished instead, and
    a plain ``resume`` continues it once the backend is fixed.
    """

    kind: Literal["evol.failed"] = "evol.failed"
    stage: str
    error_type: str
    error: str
    step: Step | None = None
    resumable: bool = False

    @classmethod
    def of(cls, cause: Message, step: Step, stage: str, error: LLMError) -> StepFailed:
        """The failure of ``step`` at ``stage``, caused by ``cause``, from a typed LLM error."""
        return cls.caused_by(
            cause,
            seed_id=step.seed_id,
            round=step.round,
            stage=stage,
            error_type=error.kind,
            error=str(error),
            step=step,
            resumable=error.backend_fault,
        )


class PoolFinished(Notice):
    """The pool admitted no more rows and every admitted row ended (or a stop was requested)."""

    kind: Literal["pool.finished"] = "pool.finished"
    done: int
    failed: int
    skipped: int
    stopped: bool = False
    unfinished: int = 0
    """Rows left for `resume` (their backend failed them)."""
