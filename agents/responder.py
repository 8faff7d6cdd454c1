"""ResponderAgent: answers each screened instruction (and seeds without a reference output).

The instruction itself (with its input appended) is the user message; an optional system prompt
file sets the tone. Publishes `Answered`; an LLM error that survived the retries publishes
`StepFailed(stage="respond")`.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from agents.autoevol.messages import AnswerOnce, AnswerResult
from agents.base import Agent, AgentProgress, handles
from agents.evol.operations import compose_instruction
from agents.llm.errors import LLMError
from agents.llm.types import ChatMessage, GenerationParams
from agents.pipeline.common import derive_int, llm_for
from agents.pipeline.messages import Answered, Screened, StepFailed
from agents.registry import register

__all__ = ["ResponderAgent", "ResponderParams"]


class ResponderParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    system_prompt_file: Path | None = Field(default=None, description="optional system prompt")
    temperature: float = Field(default=1.0, ge=0)
    top_p: float | None = Field(default=0.9, gt=0, le=1)
    max_tokens: int = Field(default=2048, ge=1)
    repeat_penalty: float | None = None


@register("respond.default")
class ResponderAgent(Agent[ResponderParams]):
    """Generates the response to each step's instruction with the responder LLM."""

    role = "responder"
    answered = 0
    failed = 0
    _system: str | None = None

    async def on_start(self) -> None:
        path = self.params.system_prompt_file
        if path is not None:
            self._system = path.read_text(encoding="utf-8").strip()

    @handles
    async def on_screened(self, message: Screened) -> None:
        step = message.step
        try:
            text = await self.answer(
                compose_instruction(step.instruction, step.input),
                ("respond", step.seed_id, step.round),
            )
        except LLMError as exc:
            self.failed += 1
            await self.publish(StepFailed.of(message, step, "respond", exc))
            return
        answered = step.model_copy(update={"response": text})
        await self.publish(Answered.caused_by(message, step=answered))

    @handles
    async def on_answer_once(self, request: AnswerOnce) -> AnswerResult:
        """Auto Evol-Instruct: answer and reply (an LLM error is reported in the reply)."""
        try:
            text = await self.answer(request.instruction, ("answer_once", request.key))
        except LLMError as exc:
            self.failed += 1
            return AnswerResult.caused_by(
                request, key=request.key, response=None, error=f"{exc.kind}: {exc}"
            )
        return AnswerResult.caused_by(request, key=request.key, response=text)

    async def answer(self, instruction: str, seed_parts: tuple[object, ...]) -> str:
        """One response to ``instruction``. Raises LLMError when the call fails for good."""
        messages = []
        if self._system:
            messages.append(ChatMessage(role="system", content=self._system))
        messages.append(ChatMessage(role="user", content=instruction))
        params = GenerationParams(
            temperature=self.params.temperature,
            top_p=self.params.top_p,
            max_tokens=self.params.max_tokens,
            seed=derive_int(self.context.seed, *seed_parts),
            repeat_penalty=self.params.repeat_penalty,
        )
        completion = await llm_for(self).complete(messages, params, caller=self.name)
        self.answered += 1
        return completion.text.strip()

    def progress(self) -> AgentProgress:
        return AgentProgress(label="answered", completed=self.answered)
