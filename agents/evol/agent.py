"""EvolAgent: evolves one instruction per `EvolveRequest`, by an operation pack or a method text.

For each request it picks an operation (deterministically from the run seed, the row and the
round, with the pack's weights — or the one the request forces), renders the pack's prompt for the
backend's prompt profile, calls the LLM once (the client retries), and extracts the rewritten
instruction. Publishes `Evolved`; an output with no usable instruction is a failed evolution
(`Rejected(rule="unparseable_evolution")`), so is one that repeats a few-shot example of the
prompt, as small models do (`Rejected(rule="copies_prompt_example")`); an LLM error that survived
the retries publishes `StepFailed(stage="evolve")`. Never raises for those: they are row outcomes.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from agents.autoevol.messages import EvolveOnce, EvolveResult
from agents.autoevol.method_parsing import parse_final_instruction
from agents.autoevol.methods import render_method
from agents.base import Agent, AgentProgress, handles
from agents.evol.operations import OperationPack, compose_instruction
from agents.evol.parsing import extract_evolved_instruction
from agents.llm.errors import LLMError
from agents.llm.types import GenerationParams
from agents.pipeline.common import ProfileSetting, derive_int, derive_rng, llm_for, profile_of
from agents.pipeline.messages import Evolved, EvolveRequest, Rejected, Step, StepFailed
from agents.registry import register

__all__ = ["EvolAgent", "EvolParams"]

UNPARSEABLE = "unparseable_evolution"
COPIED_EXAMPLE = "copies_prompt_example"


class EvolParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    pack: str = Field(default="general", description="operation pack: general, code, math, ...")
    prompt_dir: Path | None = Field(default=None, description="directory of prompt overrides")
    weights: dict[str, float] = Field(default_factory=dict, description="operation -> weight")
    profile: ProfileSetting = "auto"
    temperature: float = Field(default=0.7, ge=0)
    top_p: float | None = Field(default=0.95, gt=0, le=1)
    max_tokens: int = Field(default=512, ge=1)
    repeat_penalty: float | None = None


@register("evol.wizardlm")
class EvolAgent(Agent[EvolParams]):
    """Evol-Instruct: in-depth and in-breadth operations from a prompt pack (or a method text)."""

    role = "evol"

    async def on_start(self) -> None:
        params = self.params
        self.pack = OperationPack.load(
            params.pack, user_dir=params.prompt_dir, weights=params.weights or None
        )
        self.evolved = 0
        self.failed = 0

    @handles
    async def on_request(self, request: EvolveRequest) -> None:
        llm = llm_for(self)
        profile = profile_of(llm, self.params.profile)
        text = compose_instruction(request.instruction, request.input)
        if request.method_text is not None:
            operation = "method"
            messages = render_method(request.method_text, text)
            version = f"method:{request.method_id or _digest(request.method_text)}"
        else:
            chosen = (
                request.operation
                or self.pack.choose(
                    derive_rng(self.context.seed, "operation", request.seed_id, request.round)
                ).name
            )
            operation = chosen
            template = self.pack.template(chosen, profile)
            messages = self.pack.render(chosen, text, profile)
            version = f"{self.pack.name}/{chosen}.{profile}@{_digest(template.text)}"
        params = self._params(("evolve", request.seed_id, request.round))
        step = Step(
            seed_id=request.seed_id,
            round=request.round,
            step_id=request.step_id,
            parent_step_id=request.parent_step_id,
            parent_instruction=text,
            ancestors=request.ancestors,
            instruction="",
            operation=operation,
            method_id=request.method_id,
            prompt_version=version,
        )
        try:
            completion = await llm.complete(messages, params, caller=self.name)
        except LLMError as exc:
            self.failed += 1
            await self.publish(StepFailed.of(request, step, "evolve", exc))
            return
        if request.method_text is not None:
            child = parse_final_instruction(completion.text)
        else:
            child = extract_evolved_instruction(completion.text, profile)
        step = step.model_copy(update={"raw_text": completion.text, "instruction": child or ""})
        if child and request.method_text is None and self.pack.copies_prompt(
            operation, profile, child
        ):
            await self.publish(
                Rejected.caused_by(
                    request,
                    seed_id=request.seed_id,
                    round=request.round,
                    step=step,
                    rule=COPIED_EXAMPLE,
                    reason="the output repeats a few-shot example of the prompt",
                )
            )
            return
        if not child:
            await self.publish(
                Rejected.caused_by(
                    request,
                    seed_id=request.seed_id,
                    round=request.round,
                    step=step,
                    rule=UNPARSEABLE,
                    reason="no rewritten instruction could be extracted from the LLM output",
                )
            )
            return
        self.evolved += 1
        await self.publish(Evolved.caused_by(request, step=step))

    @handles
    async def on_evolve_once(self, request: EvolveOnce) -> EvolveResult:
        """Auto Evol-Instruct: evolve with a method text and reply (LLM errors in the reply)."""
        text = compose_instruction(request.instruction, request.input)
        messages = render_method(request.method_text, text)
        params = self._params(("evolve_once", request.key), temperature=request.temperature)
        try:
            completion = await llm_for(self).complete(messages, params, caller=self.name)
        except LLMError as exc:
            self.failed += 1
            return EvolveResult.caused_by(
                request, key=request.key, instruction=None, error=f"{exc.kind}: {exc}"
            )
        child = parse_final_instruction(completion.text)
        self.evolved += 1
        return EvolveResult.caused_by(
            request, key=request.key, instruction=child, raw_text=completion.text
        )

    def _params(
        self, seed_parts: tuple[object, ...], *, temperature: float | None = None
    ) -> GenerationParams:
        return GenerationParams(
            temperature=self.params.temperature if temperature is None else temperature,
            top_p=self.params.top_p,
            max_tokens=self.params.max_tokens,
            seed=derive_int(self.context.seed, *seed_parts),
            repeat_penalty=self.params.repeat_penalty,
        )

    def progress(self) -> AgentProgress:
        return AgentProgress(label="evolved", completed=self.evolved)


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:10]
