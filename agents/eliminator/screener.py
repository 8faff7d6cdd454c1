"""The eliminator's decision for one evolution, with no bus: shared by the EliminatorAgent and the
`python -m runtime screen` command, so both judge a pair exactly alike.

`Screener.judge_instruction` runs the instruction rules in a fixed order — the free ones first
(rule 4, the screening rules, rule 1's identical check), then rule 1's LLM judgement — and returns
the first failure. `Screener.judge_response` runs the response rules. Counters of unparseable
judgements are kept for the caller's statistics.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Literal

from agents.eliminator.comparison import compare_with_parent
from agents.eliminator.rules import (
    EqualityAnswer,
    RuleSet,
    Verdict,
    check_information_gain,
    check_unchanged,
    instruction_rules,
    parse_equality_answer,
    render_equality_prompt,
    response_rules,
)
from agents.llm.types import GenerationParams, LLMClient

__all__ = ["Screener"]


class Screener:
    """Judges evolutions by a `RuleSet`; `llm` is the judge for rule 1 (None: no LLM check).

    `profile` picks the judge prompts ("full" or "compact"). Methods raise `LLMError` when a
    judge call failed for good; nothing else.
    """

    def __init__(
        self,
        rules: RuleSet,
        llm: LLMClient | None,
        *,
        profile: Literal["full", "compact"] = "full",
        on_unparseable: Literal["accept", "reject"] = "accept",
        max_tokens: int = 16,
        caller: str = "",
    ) -> None:
        self.rules = rules
        self.llm = llm
        self.profile: Literal["full", "compact"] = profile
        self.on_unparseable = on_unparseable
        self.max_tokens = max_tokens
        self.caller = caller
        self.counts: Counter[str] = Counter()

    async def judge_instruction(
        self,
        child: str,
        parent: str,
        *,
        ancestors: Sequence[str] = (),
        operation: str = "",
    ) -> Verdict | None:
        """The first failed instruction rule of an evolution; None when it passes them all.

        Order: identical to the parent (rule 1's free part), rule 4, the screening rules, then
        rule 1's LLM judgement (only for evolutions every free rule passed)."""
        gain = self.rules.information_gain
        if gain.enabled:
            unchanged = check_unchanged(parent, child)
            if unchanged.failed:
                return unchanged
        for verdict in instruction_rules(
            child, self.rules, parent=parent, ancestors=ancestors, operation=operation
        ):
            if verdict.failed:
                return verdict
        if not gain.enabled or not gain.use_llm or self.llm is None:
            return None
        judged = await self._information_gain(parent, child)
        if judged.outcome == "unparseable":
            self.counts["unparseable_judgement"] += 1
        if judged.failed or (judged.outcome == "unparseable" and self.on_unparseable == "reject"):
            return judged
        return None

    def judge_response(self, response: str) -> Verdict | None:
        """The first failed response rule; None when the response passes them all."""
        for verdict in response_rules(response, self.rules):
            if verdict.failed:
                return verdict
        return None

    async def _information_gain(self, parent: str, child: str) -> Verdict:
        assert self.llm is not None
        gain = self.rules.information_gain
        if gain.method == "compare":
            return await compare_with_parent(
                self.llm,
                parent,
                child,
                threshold=gain.threshold,
                profile=self.profile,
                user_dir=gain.prompt_dir,
                caller=self.caller,
            )
        prompt = render_equality_prompt(parent, child, self.profile, user_dir=gain.prompt_dir)
        params = GenerationParams(temperature=0.0, max_tokens=self.max_tokens)
        completion = await self.llm.complete(prompt, params, caller=self.caller)
        answer = parse_equality_answer(completion.text)
        if answer is EqualityAnswer.UNPARSEABLE:
            return check_information_gain(completion.text)
        return check_information_gain(answer)
