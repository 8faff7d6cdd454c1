"""PoolAgent: the round controller. Feeds seeds in, streams rows through M rounds, knows the end.

Rows stream: a row starts round k+1 as soon as its round k ends — no batch barriers. At most
``max_in_flight`` rows are active at once; that bounds memory and, because each active row has
exactly one message in the pipeline, it keeps the cycle pool → evol → responder → eliminator →
pool from filling every mailbox (keep ``max_in_flight`` below the sum of those mailbox sizes).

Per row:
- round 0 (``include_seeds``): a seed with a reference output is accepted as is (``answer_seeds =
  "reference"``); otherwise it is answered and judged by the response rules.
- round k ≥ 1: evolve the current instruction; `Accepted` makes the child current, `Rejected`
  keeps the parent (it is evolved again next round), `StepFailed` ends the row as failed — or,
  when ``resumable`` (the backend was at fault: unreachable, credentials, circuit open), leaves it
  unfinished: it stays active in the store at its last finished round, for `resume`.
- a dead letter carrying a row's lineage ends that row as failed too, so the run never waits on a
  message that a crashed handler swallowed.

Resume: rows the store marks done are skipped; failed ones too unless ``retry_failed``; active ones
continue from their last finished round with their current instruction. Every random choice is
derived from (run seed, row, round), so a resumed run reproduces an uninterrupted one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import anyio
from pydantic import BaseModel, ConfigDict, Field

from agents.autoevol.messages import MethodSelected
from agents.base import Agent, AgentProgress, MessageCycle, handles
from agents.pipeline.messages import (
    Accepted,
    Answered,
    Evolved,
    EvolveRequest,
    PoolFinished,
    Rejected,
    RowOutcome,
    Screened,
    Step,
    StepFailed,
    step_id_for,
)
from agents.pipeline.store import RowStore, SeedLike, SeedSource
from agents.registry import register
from bus.message import DeadLetter

__all__ = ["PoolAgent", "PoolParams"]


class PoolParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    rounds: int = Field(default=4, ge=0, description="evolution rounds M per row")
    max_in_flight: int = Field(default=256, ge=1, description="rows active at once")
    include_seeds: bool = Field(default=True, description="round 0: keep seeds in the dataset")
    answer_seeds: Literal["reference", "generate"] = Field(
        default="reference", description="round 0 response: the seed's own output, or generate"
    )
    retry_failed: bool = Field(default=False, description="on resume, retry rows that failed")
    method_source: Literal["pack", "autoevol"] = Field(
        default="pack",
        description="evolve by the EvolAgent's operation pack, or wait for the Auto Evol-Instruct "
        "optimizer's MethodSelected and evolve with that method (its dev set excluded)",
    )
    methods_expected: int = Field(
        default=1, ge=1, description="autoevol: how many optimizers (domain clusters) to wait for"
    )


@dataclass
class _Row:
    seed_id: str
    instruction: str
    input: str
    current_step_id: str | None
    method: MethodSelected | None = None
    finished: int = -1  # the last round whose outcome was applied
    ancestors: tuple[str, ...] = ()  # generations before the current instruction, seed first


@register("pool.rounds")
class PoolAgent(Agent[PoolParams]):
    """Streams every seed through M evolution rounds with bounded rows in flight."""

    role = "pool"

    @classmethod
    def message_cycle(cls, params: BaseModel) -> MessageCycle | None:
        """Each active row has one message on pool → evol → eliminator → responder → eliminator
        → pool: at most ``max_in_flight``. Its shortest loops: eliminator ⇄ responder (Screened,
        Answered) and pool ⇄ evol (an unparseable evolution is rejected straight back)."""
        assert isinstance(params, PoolParams)
        loops = (
            (Screened, Answered),
            (EvolveRequest, RowOutcome),
            (EvolveRequest, Evolved, Screened, Answered, RowOutcome),
        )
        return MessageCycle(params.max_in_flight, "max_in_flight", loops)

    async def on_start(self) -> None:
        store = self.context.services.get("store")
        seeds = self.context.services.get("seeds")
        if store is None or seeds is None:
            raise RuntimeError("pool.rounds needs the run store and seeds (run it via the runtime)")
        self.store: RowStore = store
        self.seeds: SeedSource = seeds
        self.total: int | None = getattr(seeds, "total", None)
        self.active: dict[str, _Row] = {}
        self.slot_freed = anyio.Event()
        self.fed_all = False
        self.counts = {"done": 0, "failed": 0, "skipped": 0, "started": 0, "unfinished": 0}
        self.methods: list[MethodSelected] = []
        self.method_ready = anyio.Event()

    async def run(self) -> None:
        params = self.params
        excluded: frozenset[str] = frozenset()
        if params.method_source == "autoevol":
            self.log.info("pool_waiting_for_method")
            with anyio.CancelScope() as scope:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(self._cancel_on_stop, scope)
                    await self.method_ready.wait()
                    tg.cancel_scope.cancel()
            if not self.method_ready.is_set():
                return
            excluded = frozenset(i for method in self.methods for i in method.exclude)
        for position, seed in enumerate(self.seeds()):
            if self.context.stopping.is_set():
                self.log.info("pool_stopping", active=len(self.active), **self.counts)
                break
            if seed.id in excluded:
                continue
            method = self._method_for(seed) if params.method_source == "autoevol" else None
            if params.method_source == "autoevol" and method is None:
                self.counts["skipped"] += 1
                self.log.warning("no_method_for_seed", seed_id=seed.id,
                                 source=getattr(seed, "source", None))
                continue
            state = self.store.row_state(seed.id)
            if state is not None and (
                state.status == "done" or (state.status == "failed" and not params.retry_failed)
            ):
                self.counts["skipped"] += 1
                continue
            while len(self.active) >= params.max_in_flight:
                self.slot_freed = anyio.Event()
                await self.slot_freed.wait()
            self.counts["started"] += 1
            if state is None or state.rounds_done < 0:
                await self._start(seed, position, method)
            else:
                row = _Row(seed.id, state.instruction, state.input, state.current_step_id, method,
                           finished=state.rounds_done, ancestors=state.ancestors)
                self.active[seed.id] = row
                await self._next_round(row, state.rounds_done, cause=None)
        self.fed_all = True
        while self.active:
            self.slot_freed = anyio.Event()
            await self.slot_freed.wait()
        self.log.info("pool_finished", **self.counts)
        await self.publish(
            PoolFinished(
                done=self.counts["done"],
                failed=self.counts["failed"],
                skipped=self.counts["skipped"],
                stopped=self.context.stopping.is_set(),
                unfinished=self.counts["unfinished"],
            )
        )

    async def _start(
        self, seed: SeedLike, position: int, method: MethodSelected | None = None
    ) -> None:
        self.store.start_row(seed, position)
        row = _Row(seed.id, seed.instruction, seed.input, None, method)
        self.active[seed.id] = row
        if not self.params.include_seeds:
            await self._next_round(row, 0, cause=None)
            return
        step = Step(
            seed_id=seed.id,
            round=0,
            step_id=step_id_for(seed.id, 0),
            instruction=seed.instruction,
            input=seed.input,
            operation="seed",
            response=seed.output if self.params.answer_seeds == "reference" else None,
            reference_output=seed.output,
        )
        if step.response:
            await self.publish(Accepted(seed_id=seed.id, round=0, step=step,
                                        correlation_id=seed.id))
        else:
            await self.publish(Evolved(step=step, correlation_id=seed.id))

    async def _next_round(self, row: _Row, finished: int, cause: RowOutcome | None) -> None:
        if finished >= self.params.rounds:
            self._finish(row.seed_id, "done")
            return
        request = EvolveRequest(
            seed_id=row.seed_id,
            round=finished + 1,
            parent_step_id=row.current_step_id,
            instruction=row.instruction,
            input=row.input,
            ancestors=row.ancestors,
            method_id=row.method.method_id if row.method else None,
            method_text=row.method.method_text if row.method else None,
            correlation_id=row.seed_id,
            causation_id=cause.id if cause is not None else None,
        )
        await self.publish(request)

    async def _cancel_on_stop(self, scope: anyio.CancelScope) -> None:
        await self.context.stopping.wait()
        scope.cancel()

    @handles
    async def on_method(self, selected: MethodSelected) -> None:
        """Auto Evol-Instruct handed over its final method: start evolving with it."""
        if self.params.method_source != "autoevol":
            self.log.warning("method_ignored", method_id=selected.method_id,
                             reason="method_source is not 'autoevol'")
            return
        self.methods = [m for m in self.methods if m.cluster != selected.cluster] + [selected]
        self.log.info("method_received", method_id=selected.method_id, cluster=selected.cluster)
        if len(self.methods) >= self.params.methods_expected:
            self.method_ready.set()

    def _method_for(self, seed: SeedLike) -> MethodSelected | None:
        """The method of the seed's cluster (by input file), else the one for every seed."""
        source = getattr(seed, "source", None)
        for method in self.methods:
            if method.sources and source in method.sources:
                return method
        return next((m for m in self.methods if not m.sources), None)

    @handles
    async def on_outcome(self, outcome: RowOutcome) -> None:
        row = self.active.get(outcome.seed_id)
        if row is None:
            self.log.warning("outcome_for_inactive_row", seed_id=outcome.seed_id, kind=outcome.kind)
            return
        if outcome.round <= row.finished:
            # A stale duplicate: after a restart over a broker, a round re-issued on resume and
            # its original request can both come back. The first outcome of a round wins.
            self.log.info("stale_outcome_ignored", seed_id=outcome.seed_id, round=outcome.round)
            return
        row.finished = outcome.round
        if isinstance(outcome, StepFailed) and outcome.resumable:
            self._leave_unfinished(row.seed_id, f"{outcome.stage}: {outcome.error_type}")
            return
        if isinstance(outcome, StepFailed):
            self._finish(row.seed_id, "failed", f"{outcome.stage}: {outcome.error_type}: "
                                                f"{outcome.error}")
            return
        if isinstance(outcome, Accepted) and outcome.round >= 1:
            row.ancestors = (*row.ancestors, outcome.step.parent_instruction)
            row.instruction = outcome.step.instruction
            row.input = outcome.step.input
            row.current_step_id = outcome.step.step_id
        elif isinstance(outcome, Accepted):
            row.current_step_id = outcome.step.step_id
        elif not isinstance(outcome, Rejected):
            raise TypeError(f"unexpected row outcome {outcome.kind}")
        await self._next_round(row, outcome.round, cause=outcome)

    @handles
    async def on_dead_letter(self, dead: DeadLetter) -> None:
        seed_id = _seed_id_of(dead.message)
        if seed_id is None or seed_id not in self.active:
            return
        self._finish(seed_id, "failed", f"{dead.agent} raised {dead.error_type}: {dead.error}")

    def _finish(self, seed_id: str, status: Literal["done", "failed"], error: str = "") -> None:
        self.active.pop(seed_id, None)
        self.store.finish_row(seed_id, status, error or None)
        self.counts[status] += 1
        self.log.info("row_finished", seed_id=seed_id, status=status, error=error or None)
        self.slot_freed.set()

    def _leave_unfinished(self, seed_id: str, reason: str) -> None:
        """Stop working on a row without finishing it: the store keeps it active at its last
        finished round (its failed step is overwritten when `resume` redoes it)."""
        self.active.pop(seed_id, None)
        self.counts["unfinished"] += 1
        self.log.warning("row_unfinished", seed_id=seed_id, reason=reason)
        self.slot_freed.set()

    def progress(self) -> AgentProgress:
        counts = self.counts
        finished = counts["done"] + counts["failed"] + counts["skipped"] + counts["unfinished"]
        return AgentProgress(label="rows finished", completed=finished, total=self.total)


def _seed_id_of(payload: dict[str, Any]) -> str | None:
    seed_id = payload.get("seed_id")
    if isinstance(seed_id, str):
        return seed_id
    step = payload.get("step")
    if isinstance(step, dict) and isinstance(step.get("seed_id"), str):
        return str(step["seed_id"])
    return None
