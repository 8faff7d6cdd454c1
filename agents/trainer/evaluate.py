"""TrainedModelEvaluator: closes the loop evolve → train → judge inside one topology.

On `TrainingDone` it loads the fine-tuned model directory and the base model directory with the
``transformers`` LLM backend (CPU or GPU), answers the configured benchmark questions with both,
and publishes `EvalAnswer(answers = fine-tuned, baseline = base)` for each — the judge agents of
the topology (``judge.pairwise`` / ``judge.single``) and ``eval.results`` then judge and report
them exactly as in an ordinary eval run. It runs in the completion phase (the trainer trains
there), so everything it publishes is judged before the run stops.

A LoRA adapter (``TrainingDone.adapter``) is not loadable by the ``transformers`` backend as is:
merge it (the training program writes ``merged/`` when asked) or serve it with vLLM.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
from pydantic import BaseModel, ConfigDict, Field

from agents.base import Agent, AgentProgress, handles
from agents.judge.eval_agents import (
    EvalAnswer,
    EvalSourceParams,
    Question,
    _converse,
    load_questions,
)
from agents.llm.config import BackendConfig
from agents.llm.errors import LLMError
from agents.llm.factory import build_client
from agents.llm.managed import ManagedClient
from agents.llm.types import GenerationParams
from agents.llm.usage import UsageRecorder
from agents.registry import register
from agents.trainer.messages import TrainingDone

__all__ = ["TrainedEvalParams", "TrainedModelEvaluator"]


class TrainedEvalParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    base_model_dir: Path = Field(description="the model the fine-tuned one is compared with")
    questions: EvalSourceParams = Field(description="what to ask (as eval.source's params)")
    device: str | None = Field(default=None, description="cpu, cuda, ... (default: cuda if any)")
    temperature: float = Field(default=0.0, ge=0)
    max_tokens: int = Field(default=256, ge=1)
    timeout_s: float = Field(default=600.0, gt=0)
    concurrency: int = Field(default=4, ge=1, description="questions answered at once")


@register("eval.trained")
class TrainedModelEvaluator(Agent[TrainedEvalParams]):
    """After training: answers benchmark questions with the fine-tuned and the base model."""

    role = "evaluator"
    answered = 0
    total = 0

    @handles
    async def on_training_done(self, done: TrainingDone) -> None:
        if done.adapter:
            self.log.warning("adapter_not_evaluated", output_dir=done.output_dir,
                             reason="the transformers backend loads full models; merge first")
            return
        questions = load_questions(self.params.questions)
        self.total = len(questions)
        usage = UsageRecorder()
        tuned = self._client(f"trained-{done.training}", Path(done.output_dir), usage)
        base = self._client("base", self.params.base_model_dir, usage)
        limiter = anyio.Semaphore(self.params.concurrency)
        try:
            async with anyio.create_task_group() as tg:
                for question in questions:
                    tg.start_soon(self._answer, question, tuned, base, limiter, done)
        finally:
            await tuned.aclose()
            await base.aclose()
        self.log.info("trained_model_evaluated", training=done.training, questions=self.total)

    def _client(self, name: str, model_dir: Path, usage: UsageRecorder) -> ManagedClient:
        options: dict[str, Any] = {"model_path": str(model_dir.resolve())}
        if self.params.device is not None:
            options["device"] = self.params.device
        config = BackendConfig(backend="transformers", model=name, concurrency=2,
                               timeout_s=self.params.timeout_s, max_attempts=1, cache=False,
                               options=options)
        return build_client(name, config, cache=None, usage=usage)

    async def _answer(
        self,
        question: Question,
        tuned: ManagedClient,
        base: ManagedClient,
        limiter: anyio.Semaphore,
        done: TrainingDone,
    ) -> None:
        params = GenerationParams(temperature=self.params.temperature,
                                  max_tokens=self.params.max_tokens)
        async with limiter:
            try:
                answers = await _converse(tuned, question.turns, params, None, self.name)
                baseline = await _converse(base, question.turns, params, None,
                                           f"{self.name}.base")
            except LLMError as exc:
                await self.publish(EvalAnswer.caused_by(done, question=question,
                                                        error=f"{exc.kind}: {exc}"))
                return
        self.answered += 1
        await self.publish(EvalAnswer.caused_by(done, question=question, answers=answers,
                                                baseline=baseline))

    def progress(self) -> AgentProgress:
        return AgentProgress(label="questions (trained vs base)", completed=self.answered,
                             total=self.total or None)
