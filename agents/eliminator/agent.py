"""EliminatorAgent: drops failed evolutions by the WizardLM rules, counting each rule.

It sees every step twice (``screen_before_answer``, the default):

1. **Screening** (`Evolved` → `Screened` or `Rejected`), for evolved steps (round ≥ 1), the rules
   that judge the INSTRUCTION alone: it copies evolving-prompt words (rule 4); it is identical to
   its parent (case, spacing, punctuation aside — rule 1 without an LLM call); the judge LLM
   compares parent and child and answers Equal / Not Equal (rule 1; ``use_llm`` off skips the
   call). A step rejected here is never answered: no response is paid for. Seeds (round 0) pass
   through.
2. **Judging** (`Answered` → `Accepted` or `Rejected`), the rules that judge the RESPONSE: an
   apology ("sorry") in fewer than 80 words (rule 2), only punctuation and stop words (rule 3).

With ``screen_before_answer = false`` screening passes every step through and all rules run on the
answered step (response rules first, the judge LLM last): fewer judge calls — only for steps whose
answer was clean — at the price of answering steps that rule 1 or 4 then rejects. Worth it only
when the judge model costs much more than the responder.

Each rule can be switched off. An unparseable equality answer is counted and handled by
``on_unparseable`` (accept by default: no guessing a failure). A judge LLM error that survived
the retries publishes `StepFailed(stage="eliminate")`.
"""

from __future__ import annotations

from collections import Counter
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from agents.base import Agent, AgentProgress, handles
from agents.eliminator.rules import RuleSet, Verdict
from agents.eliminator.screener import Screener
from agents.llm.errors import LLMError
from agents.pipeline.common import ProfileSetting, llm_for, profile_of
from agents.pipeline.messages import (
    Accepted,
    Answered,
    Evolved,
    Rejected,
    Screened,
    Step,
    StepFailed,
)
from agents.registry import register

__all__ = ["EliminatorAgent", "EliminatorParams"]


class EliminatorParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    rules: RuleSet = Field(default_factory=RuleSet)
    profile: ProfileSetting = "auto"
    on_unparseable: Literal["accept", "reject"] = "accept"
    screen_before_answer: bool = Field(
        default=True,
        description="judge the instruction (rules 4 and 1) before it is answered, so that a "
        "rejected step costs no response",
    )
    max_tokens: int = Field(default=16, ge=1, description="the judge answers in a few words")


@register("eliminate.wizardlm")
class EliminatorAgent(Agent[EliminatorParams]):
    """The WizardLM Instruction Eliminator (four rules, each switchable, counted per rule)."""

    role = "eliminator"

    counts: Counter[str]

    async def on_start(self) -> None:
        self.counts = Counter()
        self.screener: Screener | None = None

    @handles
    async def on_evolved(self, message: Evolved) -> None:
        """Screening: the instruction rules, then `Screened` for the responder."""
        step = message.step
        if step.round >= 1 and self.params.screen_before_answer:
            try:
                verdict = await self._judge_instruction(step)
            except LLMError as exc:
                await self.publish(StepFailed.of(message, step, "eliminate", exc))
                return
            if verdict is not None:
                await self._reject(message, verdict)
                return
        self.counts["screened"] += 1
        await self.publish(Screened.caused_by(message, step=step))

    @handles
    async def on_answered(self, message: Answered) -> None:
        """Judging: the response rules (and the instruction rules when not screened)."""
        step = message.step
        verdict = self._screener().judge_response(step.response or "")
        if verdict is not None:
            await self._reject(message, verdict)
            return
        if step.round >= 1 and not self.params.screen_before_answer:
            try:
                instruction_verdict = await self._judge_instruction(step)
            except LLMError as exc:
                await self.publish(StepFailed.of(message, step, "eliminate", exc))
                return
            if instruction_verdict is not None:
                await self._reject(message, instruction_verdict)
                return
        self.counts["accepted"] += 1
        await self.publish(
            Accepted.caused_by(message, seed_id=step.seed_id, round=step.round, step=step)
        )

    async def _judge_instruction(self, step: Step) -> Verdict | None:
        """The first failed instruction rule of an evolved step; None when it passes all.

        Raises LLMError when the judge LLM call failed for good.
        """
        screener = self._screener()
        verdict = await screener.judge_instruction(
            step.instruction,
            step.parent_instruction,
            ancestors=step.ancestors,
            operation=step.operation,
        )
        self.counts["unparseable_judgement"] = screener.counts["unparseable_judgement"]
        return verdict

    def _screener(self) -> Screener:
        """The rules with their judge LLM, built on first use (an eliminator whose rule 1 needs
        no LLM may have none bound)."""
        if self.screener is None:
            gain = self.params.rules.information_gain
            needs_llm = gain.enabled and gain.use_llm
            llm = llm_for(self) if needs_llm else None
            self.screener = Screener(
                self.params.rules,
                llm,
                profile=profile_of(llm, self.params.profile) if llm is not None else "full",
                on_unparseable=self.params.on_unparseable,
                max_tokens=self.params.max_tokens,
                caller=self.name,
            )
        return self.screener

    async def _reject(self, message: Evolved | Answered, verdict: Verdict) -> None:
        step = message.step
        self.counts[str(verdict.rule)] += 1
        await self.publish(
            Rejected.caused_by(
                message,
                seed_id=step.seed_id,
                round=step.round,
                step=step,
                rule=str(verdict.rule),
                reason=verdict.reason,
            )
        )

    def progress(self) -> AgentProgress:
        rejected = sum(
            v
            for k, v in self.counts.items()
            if k not in ("accepted", "screened", "unparseable_judgement")
        )
        return AgentProgress(
            label=f"judged (rejected {rejected})",
            completed=self.counts["accepted"] + rejected,
        )
