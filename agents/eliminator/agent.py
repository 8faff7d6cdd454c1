"""EliminatorAgent: drops failed evolutions by the WizardLM rules, counting each rule.

Order per answered step (each rule on/off in ``rules``):
1. the local rules on the RESPONSE — an apology ("sorry") in fewer than 80 words, only
   punctuation and stop words — and on the evolved INSTRUCTION — it copies evolving-prompt words;
2. for evolved steps (round ≥ 1), the information-gain check: a child identical to its parent
   (case, spacing, punctuation aside) fails without an LLM call; otherwise the judge LLM compares
   parent and child and answers Equal / Not Equal; Equal eliminates (``use_llm`` off skips the
   call). An unparseable answer is counted and handled by ``on_unparseable`` (accept by
   default: no guessing a failure).

Seeds (round 0) only go through the response rules. Publishes `Accepted` or `Rejected(rule)`;
a judge LLM error that survived the retries publishes `StepFailed(stage="eliminate")`.
"""

from __future__ import annotations

from collections import Counter
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from agents.base import Agent, AgentProgress, handles
from agents.eliminator.rules import (
    EqualityAnswer,
    RuleName,
    RuleSet,
    Verdict,
    check_information_gain,
    check_unchanged,
    parse_equality_answer,
    render_equality_prompt,
    run_local_rules,
)
from agents.llm.errors import LLMError
from agents.llm.types import GenerationParams
from agents.pipeline.common import ProfileSetting, llm_for, profile_of
from agents.pipeline.messages import Accepted, Answered, Rejected, StepFailed
from agents.registry import register

__all__ = ["EliminatorAgent", "EliminatorParams"]

RESPONSE_RULES = {RuleName.SORRY_SHORT_RESPONSE, RuleName.STOPWORDS_ONLY_RESPONSE}


class EliminatorParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    rules: RuleSet = Field(default_factory=RuleSet)
    profile: ProfileSetting = "auto"
    on_unparseable: Literal["accept", "reject"] = "accept"
    max_tokens: int = Field(default=16, ge=1, description="the judge answers in a few words")


@register("eliminate.wizardlm")
class EliminatorAgent(Agent[EliminatorParams]):
    """The WizardLM Instruction Eliminator (four rules, each switchable, counted per rule)."""

    role = "eliminator"

    counts: Counter[str]

    async def on_start(self) -> None:
        self.counts = Counter()

    @handles
    async def on_answered(self, message: Answered) -> None:
        step = message.step
        response = step.response or ""
        verdicts = run_local_rules(
            step.instruction, response, self.params.rules, parent=step.parent_instruction
        )
        for verdict in verdicts:
            if step.round == 0 and verdict.rule not in RESPONSE_RULES:
                continue
            if verdict.failed:
                await self._reject(message, verdict)
                return
        gain = self.params.rules.information_gain
        if step.round >= 1 and gain.enabled:
            unchanged = check_unchanged(step.parent_instruction, step.instruction)
            if unchanged.failed:
                await self._reject(message, unchanged)
                return
        if step.round >= 1 and gain.enabled and gain.use_llm:
            verdict_or_none = await self._information_gain(message)
            if verdict_or_none is None:
                return  # StepFailed published
            if verdict_or_none.failed or (
                verdict_or_none.outcome == "unparseable" and self.params.on_unparseable == "reject"
            ):
                await self._reject(message, verdict_or_none)
                return
        self.counts["accepted"] += 1
        await self.publish(
            Accepted.caused_by(message, seed_id=step.seed_id, round=step.round, step=step)
        )

    async def _information_gain(self, message: Answered) -> Verdict | None:
        step = message.step
        llm = llm_for(self)
        profile = profile_of(llm, self.params.profile)
        prompt = render_equality_prompt(
            step.parent_instruction,
            step.instruction,
            profile,
            user_dir=self.params.rules.information_gain.prompt_dir,
        )
        params = GenerationParams(temperature=0.0, max_tokens=self.params.max_tokens)
        try:
            completion = await llm.complete(prompt, params, caller=self.name)
        except LLMError as exc:
            await self.publish(StepFailed.of(message, step, "eliminate", exc))
            return None
        answer = parse_equality_answer(completion.text)
        if answer is EqualityAnswer.UNPARSEABLE:
            self.counts["unparseable_judgement"] += 1
        return check_information_gain(answer)

    async def _reject(self, message: Answered, verdict: Verdict) -> None:
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
            v for k, v in self.counts.items() if k not in ("accepted", "unparseable_judgement")
        )
        return AgentProgress(
            label=f"judged (rejected {rejected})",
            completed=self.counts["accepted"] + rejected,
        )
