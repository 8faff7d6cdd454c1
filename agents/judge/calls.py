"""Judge calls over any `LLMClient`: pairwise with position swap, single grading, difficulty, tags.

These are the agent-independent steps a JudgeAgent (or an evaluation harness) runs: render a
template, call the model, parse strictly. They raise only what the client raises (`LLMError`);
a bad judge answer comes back as `Unparseable`.

`judge_pair` sends both orders at once (model's answer as A, then as B) and combines them with
`combine_swapped` (verdict templates) or `combine_swapped_scores` (score-pair templates).
"""

from __future__ import annotations

import anyio

from agents.judge.errors import TemplateError
from agents.judge.metrics.tags import Tag, parse_tags
from agents.judge.templates import JudgeTemplate
from agents.judge.verdicts import (
    Outcome,
    PairJudgement,
    Unparseable,
    combine_swapped,
    combine_swapped_scores,
    parse_difficulty,
    parse_pairwise_verdict,
    parse_rating,
    parse_score_pair,
)
from agents.llm.types import GenerationParams, LLMClient

__all__ = ["grade_single", "judge_pair", "rate_difficulty", "tag_instruction"]

_JUDGE_PARAMS = GenerationParams(temperature=0.0, max_tokens=1024)


def _require(template: JudgeTemplate, output: str) -> None:
    if template.output != output:
        raise TemplateError(
            f"template {template.name!r} produces {template.output!r}, not {output!r}"
        )


async def _ask(
    client: LLMClient, template: JudgeTemplate, params: GenerationParams, caller: str, **values: str
) -> str:
    completion = await client.complete(template.render(**values), params, caller=caller)
    return completion.text


async def judge_pair(
    client: LLMClient,
    template: JudgeTemplate,
    *,
    question: str,
    model_answer: str,
    baseline_answer: str,
    reference: str | None = None,
    params: GenerationParams = _JUDGE_PARAMS,
    caller: str = "judge",
) -> PairJudgement | Unparseable:
    """Judge the model's answer against a baseline in both positions (single-turn templates)."""
    if template.kind != "pairwise" or template.output not in ("verdict", "score_pair"):
        raise TemplateError(f"template {template.name!r} is not a pairwise template")
    extra = {"ref_answer_1": reference} if reference is not None else {}
    texts: list[str] = ["", ""]

    async def run(slot: int, a: str, b: str) -> None:
        texts[slot] = await _ask(
            client, template, params, caller, question=question, answer_a=a, answer_b=b, **extra
        )

    async with anyio.create_task_group() as tg:
        tg.start_soon(run, 0, model_answer, baseline_answer)
        tg.start_soon(run, 1, baseline_answer, model_answer)
    if template.output == "score_pair":
        return combine_swapped_scores(parse_score_pair(texts[0]), parse_score_pair(texts[1]))
    outcome = combine_swapped(parse_pairwise_verdict(texts[0]), parse_pairwise_verdict(texts[1]))
    if isinstance(outcome, Outcome):
        return PairJudgement(outcome=outcome)
    return outcome


async def grade_single(
    client: LLMClient,
    template: JudgeTemplate,
    *,
    question: str,
    answer: str,
    reference: str | None = None,
    params: GenerationParams = _JUDGE_PARAMS,
    caller: str = "judge",
) -> float | Unparseable:
    """A 1-10 `[[rating]]` of one answer (with a reference for `*-ref` templates)."""
    _require(template, "rating")
    extra = {"ref_answer_1": reference} if reference is not None else {}
    text = await _ask(client, template, params, caller, question=question, answer=answer, **extra)
    return parse_rating(text)


async def rate_difficulty(
    client: LLMClient,
    template: JudgeTemplate,
    instruction: str,
    *,
    params: GenerationParams = _JUDGE_PARAMS,
    caller: str = "judge",
) -> float | Unparseable:
    """The 1-10 difficulty of one instruction."""
    _require(template, "difficulty")
    return parse_difficulty(await _ask(client, template, params, caller, instruction=instruction))


async def tag_instruction(
    client: LLMClient,
    template: JudgeTemplate,
    instruction: str,
    *,
    params: GenerationParams = _JUDGE_PARAMS,
    caller: str = "judge",
) -> list[Tag] | Unparseable:
    """InsTag-style intent tags of one instruction."""
    _require(template, "tags")
    return parse_tags(await _ask(client, template, params, caller, instruction=instruction))
