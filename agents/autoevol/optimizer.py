"""OptimizerAgent: Auto Evol-Instruct's loop — improve the evolving method, then hand it over.

Main task (`run`):
1. Split the input deterministically (by a hash of the run seed and the seed id) into a held-out
   **dev set** (``dev_size``) and a disjoint **optimization pool** (``pool_size``).
2. λ of the initial method e₀ on the dev set (a `EvaluateMethod` request to the JudgeAgent).
3. For step t = 1..T: sample a mini-batch (``batch_size``) from the pool; evolve each case ``l``
   times in a chain with the current method (`EvolveOnce`, evol LLM at ``evol_temperature``) →
   trajectories; ask the AnalystAgent for feedback; sample ``m`` candidate methods from the
   optimizer LLM (temperature 0.6, top_p 0.95; sample i is cached per i); evaluate all candidates
   concurrently; the lowest λ wins (ties: the lowest candidate index). The winner replaces the
   current method only if it lowers λ; after ``patience`` steps without a lower λ the loop stops.
4. Publish `MethodSelected(e*)`: the pool agent evolves every seed outside the dev set with it.

Per domain cluster: give each cluster its own optimizer agent (``cluster`` name, ``sources`` = its
input files, its own ``initial_method``) and set the pool's ``methods_expected`` to their number;
each seed is then evolved with its cluster's method.

Everything lands in the run store as records of kind ``"autoevol"`` (``"autoevol:<cluster>"``):
``split`` (dev and pool ids), ``initial``, ``step-NNN`` (batch, trajectories, feedback, every
candidate with λ and per-case failures, the choice) and ``final``. Resume continues after the
last stored step; redone LLM calls come from the cache, so a resumed run chooses the same methods.
"""

from __future__ import annotations

import heapq
from pathlib import Path
from typing import Any

import anyio
from pydantic import BaseModel, ConfigDict, Field

from agents.autoevol.messages import (
    AnalyzeTrajectories,
    DevCase,
    EvaluateMethod,
    EvolveOnce,
    EvolveResult,
    Feedback,
    MethodScore,
    MethodSelected,
    Trajectory,
)
from agents.autoevol.method_parsing import parse_optimized_method
from agents.autoevol.methods import DOMAINS, load_method, render_optimize
from agents.base import Agent, AgentProgress
from agents.evol.operations import compose_instruction
from agents.llm.errors import LLMError
from agents.llm.types import GenerationParams
from agents.pipeline.common import derive_int, derive_rng, llm_for
from agents.pipeline.store import RecordStore, SeedSource
from agents.registry import register

__all__ = ["OptimizerAgent", "OptimizerParams"]

RECORD_KIND = "autoevol"


class OptimizerParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    steps: int = Field(default=10, ge=0, description="optimization steps T")
    candidates: int = Field(default=5, ge=1, description="candidate methods m per step")
    evolutions: int = Field(default=3, ge=1, description="chain length l of each trajectory")
    batch_size: int = Field(default=10, ge=1)
    dev_size: int = Field(default=50, ge=1)
    pool_size: int = Field(default=2000, ge=1)
    patience: int = Field(default=2, ge=1, description="stop after this many steps without gain")
    initial_method: str = Field(
        default="general", description="general | code | math | a path to a method file"
    )
    prompt_dir: Path | None = Field(
        default=None,
        description="a directory whose optimize.txt / <domain>.txt override the built-in ones",
    )
    optimizer_temperature: float = Field(default=0.6, ge=0)
    optimizer_top_p: float = Field(default=0.95, gt=0, le=1)
    optimizer_max_tokens: int = Field(default=2048, ge=1)
    evol_temperature: float = Field(default=0.0, ge=0)
    request_timeout_s: float = Field(default=3600.0, gt=0)
    cluster: str | None = Field(
        default=None,
        description="optimize per domain cluster: this optimizer's cluster name (one optimizer "
        "agent per cluster; the pool's methods_expected counts them)",
    )
    sources: tuple[str, ...] = Field(
        default=(), description="the cluster's input files (seed source names); empty: all seeds"
    )


class _Case(BaseModel):
    id: str
    instruction: str
    input: str = ""


@register("autoevol.optimizer")
class OptimizerAgent(Agent[OptimizerParams]):
    """Auto Evol-Instruct's optimizer: trajectories → feedback → m candidates → lowest λ wins."""

    role = "optimizer"

    async def on_start(self) -> None:
        store = self.context.services.get("store")
        seeds = self.context.services.get("seeds")
        if store is None or seeds is None:
            raise RuntimeError("autoevol.optimizer needs the run store and seeds (use the runtime)")
        self.store: RecordStore = store
        self.seeds: SeedSource = seeds
        render_optimize("method", "feedback", user_dir=self.params.prompt_dir)  # fail early
        self.step = 0
        self.history: list[dict[str, Any]] = []
        cluster = self.params.cluster
        self.record_kind = RECORD_KIND if cluster is None else f"{RECORD_KIND}:{cluster}"

    # -- the loop -------------------------------------------------------------------------
    async def run(self) -> None:
        params = self.params
        records = dict(self.store.records(self.record_kind))
        dev, pool = self._split(records)
        method_id = self._mid("initial")
        method_text = _initial_method(params.initial_method, params.prompt_dir)
        if "initial" in records:
            best_rate = float(records["initial"]["failure_rate"])
        else:
            score = await self._evaluate(method_id, method_text, dev)
            best_rate = score.failure_rate
            self._record("initial", {"method_id": method_id, "method_text": method_text,
                                     "failure_rate": best_rate, "failures": _failures(score)})
        stale = 0
        for t in range(1, params.steps + 1):
            self.step = t
            stored = records.get(f"step-{t:03d}")
            if stored is not None:  # finished before a restart: replay its decision
                step_record = stored
            else:
                if self.context.stopping.is_set():
                    self.log.info("optimizer_stopping", step=t)
                    return
                step_record = await self._optimize_step(t, method_id, method_text, best_rate,
                                                        pool, dev)
                self._record(f"step-{t:03d}", step_record)
            self.history.append(step_record)
            if step_record["improved"]:
                method_id = step_record["chosen"]["method_id"]
                method_text = step_record["chosen"]["method_text"]
                best_rate = step_record["chosen"]["failure_rate"]
                stale = 0
            else:
                stale += 1
            if stale >= params.patience:
                self.log.info("optimizer_patience_exhausted", step=t, failure_rate=best_rate)
                break
        self._record("final", {"method_id": method_id, "method_text": method_text,
                               "failure_rate": best_rate, "steps_run": len(self.history)})
        self.log.info("method_selected", method_id=method_id, failure_rate=best_rate)
        await self.publish(MethodSelected(method_id=method_id, method_text=method_text,
                                          exclude=tuple(case.id for case in dev),
                                          cluster=params.cluster, sources=params.sources))

    async def _optimize_step(
        self,
        t: int,
        method_id: str,
        method_text: str,
        current_rate: float,
        pool: list[_Case],
        dev: list[_Case],
    ) -> dict[str, Any]:
        params = self.params
        rng = derive_rng(self.context.seed, "batch", t)
        batch = rng.sample(pool, min(params.batch_size, len(pool)))
        trajectories = await self._trajectories(t, method_id, method_text, batch)
        feedback = await self.request(
            AnalyzeTrajectories(step=t, trajectories=tuple(trajectories)),
            timeout=params.request_timeout_s,
        )
        assert isinstance(feedback, Feedback)
        candidates = await self._candidates(t, method_text, feedback)
        scores: dict[int, MethodScore] = {}

        async def score(index: int, text: str) -> None:
            scores[index] = await self._evaluate(self._mid(f"m{t}.{index}"), text, dev)

        async with anyio.create_task_group() as tg:
            for index, text in candidates.items():
                tg.start_soon(score, index, text)
        ranked = sorted(scores, key=lambda i: (scores[i].failure_rate, i))
        chosen = ranked[0] if ranked else None
        improved = chosen is not None and scores[chosen].failure_rate < current_rate
        return {
            "step": t,
            "batch": [case.id for case in batch],
            "trajectories": [traj.model_dump() for traj in trajectories],
            "feedback": {"text": feedback.text, "parseable": feedback.parseable,
                         "failures": [f.model_dump() for f in feedback.failures]},
            "candidates": [
                {"index": i, "method_id": self._mid(f"m{t}.{i}"), "method_text": candidates[i],
                 "failure_rate": scores[i].failure_rate, "failures": _failures(scores[i]),
                 "errors": scores[i].errors}
                for i in sorted(candidates)
            ],
            "invalid_candidates": params.candidates - len(candidates),
            "previous": {"method_id": method_id, "failure_rate": current_rate},
            "chosen": None if chosen is None else {
                "method_id": self._mid(f"m{t}.{chosen}"), "method_text": candidates[chosen],
                "failure_rate": scores[chosen].failure_rate},
            "improved": improved,
        }

    async def _trajectories(
        self, t: int, method_id: str, method_text: str, batch: list[_Case]
    ) -> list[Trajectory]:
        results: dict[str, Trajectory] = {}

        async def chain(label: str, case: _Case) -> None:
            steps = [compose_instruction(case.instruction, case.input)]
            stopped = None
            for k in range(1, self.params.evolutions + 1):
                reply = await self.request(
                    EvolveOnce(key=f"traj:{t}:{case.id}:{k}", instruction=steps[-1],
                               method_id=method_id, method_text=method_text,
                               temperature=self.params.evol_temperature),
                    timeout=self.params.request_timeout_s,
                )
                assert isinstance(reply, EvolveResult)
                if not reply.instruction:
                    stopped = reply.error or "the method's output held no final instruction"
                    break
                steps.append(reply.instruction)
            results[label] = Trajectory(id=label, steps=tuple(steps), stopped=stopped)

        # Short labels (case1, case2, ...) are what the analyst LLM reads and names back: long
        # seed ids with dashes are easy for a model to mangle and hard to parse.
        labels = {f"case{index + 1}": case for index, case in enumerate(batch)}
        async with anyio.create_task_group() as tg:
            for label, case in labels.items():
                tg.start_soon(chain, label, case)
        return [results[label] for label in labels]

    async def _candidates(self, t: int, method_text: str, feedback: Feedback) -> dict[int, str]:
        prompt = render_optimize(method_text, feedback.text, user_dir=self.params.prompt_dir)
        llm = llm_for(self, "optimizer")
        found: dict[int, str] = {}

        async def sample(index: int) -> None:
            params = GenerationParams(
                temperature=self.params.optimizer_temperature,
                top_p=self.params.optimizer_top_p,
                max_tokens=self.params.optimizer_max_tokens,
                seed=derive_int(self.context.seed, "optimize", t, index),
            )
            try:
                completion = await llm.complete(prompt, params, caller=self.name, sample=index)
            except LLMError as exc:
                self.log.warning("candidate_failed", step=t, index=index, error=str(exc))
                return
            text = parse_optimized_method(completion.text)
            if text:
                found[index] = text
            else:
                self.log.warning("candidate_unparseable", step=t, index=index)

        async with anyio.create_task_group() as tg:
            for index in range(self.params.candidates):
                tg.start_soon(sample, index)
        return found

    async def _evaluate(self, method_id: str, method_text: str, dev: list[_Case]) -> MethodScore:
        reply = await self.request(
            EvaluateMethod(
                method_id=method_id,
                method_text=method_text,
                dev=tuple(DevCase(id=c.id, instruction=c.instruction, input=c.input) for c in dev),
                evol_temperature=self.params.evol_temperature,
            ),
            timeout=self.params.request_timeout_s,
        )
        assert isinstance(reply, MethodScore)
        return reply

    # -- data -----------------------------------------------------------------------------
    def _split(self, records: dict[str, Any]) -> tuple[list[_Case], list[_Case]]:
        """Dev set and pool, disjoint, by ascending hash rank (streaming, O(dev + pool) memory)."""
        params = self.params
        keep = params.dev_size + params.pool_size
        ranked: list[tuple[int, int, _Case]] = []
        for position, seed in enumerate(self.seeds()):
            if params.sources and getattr(seed, "source", None) not in params.sources:
                continue
            rank = derive_int(self.context.seed, "split", seed.id)
            item = (-rank, -position, _Case(id=seed.id, instruction=seed.instruction,
                                            input=seed.input))
            if len(ranked) < keep:
                heapq.heappush(ranked, item)
            elif item > ranked[0]:
                heapq.heapreplace(ranked, item)
        ordered = [case for _, _, case in sorted(ranked, reverse=True)]
        if len(ordered) <= params.dev_size:
            raise ValueError(
                f"autoevol needs more than dev_size={params.dev_size} seeds; got {len(ordered)}"
            )
        dev, pool = ordered[: params.dev_size], ordered[params.dev_size :]
        stored = records.get("split")
        if stored is not None and stored["dev"] != [c.id for c in dev]:
            raise RuntimeError("the stored dev set differs from this input: resume with the same "
                               "inputs and seed")
        if stored is None:
            self._record("split", {"dev": [c.id for c in dev], "pool": [c.id for c in pool]})
        return dev, pool

    def _mid(self, local: str) -> str:
        """A method id, prefixed with the cluster name when optimizing per cluster."""
        return local if self.params.cluster is None else f"{self.params.cluster}/{local}"

    def _record(self, key: str, payload: dict[str, Any]) -> None:
        self.store.put_record(self.record_kind, key, payload)
        self.log.info("autoevol_recorded", key=key)

    def progress(self) -> AgentProgress:
        return AgentProgress(label="optimization steps", completed=self.step,
                             total=self.params.steps)


def _failures(score: MethodScore) -> list[dict[str, Any]]:
    return [f.model_dump() for f in score.failures]


def _initial_method(name: str, prompt_dir: Path | None) -> str:
    """A built-in domain method (general, code, math; overridable in ``prompt_dir``) or a file."""
    if name in DOMAINS or (prompt_dir is not None and (prompt_dir / f"{name}.txt").is_file()):
        return load_method(name, user_dir=prompt_dir)
    path = Path(name)
    if not path.is_file():
        raise FileNotFoundError(
            f"initial_method {name!r}: not a built-in domain {DOMAINS} nor a method file"
        )
    return path.read_text(encoding="utf-8").strip()
