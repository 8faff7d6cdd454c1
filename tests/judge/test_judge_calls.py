from __future__ import annotations

from collections.abc import Callable, Sequence

import pytest

from agents.judge.calls import grade_single, judge_pair, rate_difficulty, tag_instruction
from agents.judge.errors import TemplateError
from agents.judge.templates import builtin_templates
from agents.judge.verdicts import Outcome, PairJudgement, Unparseable
from agents.llm.types import ChatMessage, Completion, GenerationParams, LLMClient


class FakeJudge:
    """An LLMClient answering with `reply(user_text)`; records every prompt."""

    name = "fake"

    def __init__(self, reply: Callable[[str], str]) -> None:
        self.reply = reply
        self.prompts: list[str] = []

    async def complete(
        self,
        messages: Sequence[ChatMessage],
        params: GenerationParams,
        *,
        caller: str = "",
        sample: int = 0,
    ) -> Completion:
        text = messages[-1].content
        self.prompts.append(text)
        return Completion(text=self.reply(text))

    async def aclose(self) -> None:
        return None


def _prefers_good(prompt: str) -> str:
    a = prompt.split("[Assistant A's answer begins]")[1].split("[Assistant A's answer ends]")[0]
    return "[[A]]" if "GOOD" in a else "[[B]]"


def test_fake_is_an_llm_client() -> None:
    assert isinstance(FakeJudge(str), LLMClient)


async def test_always_a_judge_gives_a_tie_through_the_client() -> None:
    client = FakeJudge(lambda _: "Both fine. [[A]]")
    result = await judge_pair(
        client,
        builtin_templates()["pair-verdict"],
        question="q",
        model_answer="m",
        baseline_answer="b",
    )
    assert result == PairJudgement(outcome=Outcome.TIE)
    assert len(client.prompts) == 2
    assert "[Assistant A's answer begins]\nm" in client.prompts[0]
    assert "[Assistant A's answer begins]\nb" in client.prompts[1]


@pytest.mark.parametrize(
    ("model", "baseline", "expected"),
    [
        pytest.param("GOOD answer", "meh", Outcome.WIN, id="win"),
        pytest.param("meh", "GOOD answer", Outcome.LOSS, id="loss"),
    ],
)
async def test_consistent_judge_decides(model: str, baseline: str, expected: Outcome) -> None:
    result = await judge_pair(
        FakeJudge(_prefers_good),
        builtin_templates()["pair-verdict-ref"],
        question="q",
        model_answer=model,
        baseline_answer=baseline,
        reference="ref",
    )
    assert isinstance(result, PairJudgement)
    assert result.outcome is expected


async def test_score_pair_template_averages_scores() -> None:
    client = FakeJudge(
        lambda p: "9 4\nA is better" if "Assistant 1's answer begins]\nX" in p else "3 8"
    )
    result = await judge_pair(
        client,
        builtin_templates()["pair-score"],
        question="q",
        model_answer="X",
        baseline_answer="Y",
    )
    assert result == PairJudgement(outcome=Outcome.WIN, model_score=8.5, baseline_score=3.5)


async def test_garbage_judge_is_unparseable_not_an_error() -> None:
    result = await judge_pair(
        FakeJudge(lambda _: "I cannot decide."),
        builtin_templates()["pair-verdict"],
        question="q",
        model_answer="m",
        baseline_answer="b",
    )
    assert isinstance(result, Unparseable)


async def test_single_difficulty_and_tags() -> None:
    t = builtin_templates()
    assert (
        await grade_single(
            FakeJudge(lambda _: "Rating: [[7.5]]"), t["single"], question="q", answer="a"
        )
        == 7.5
    )
    ref_client = FakeJudge(lambda _: "[[2]]")
    await grade_single(ref_client, t["single-ref"], question="q", answer="a", reference="42")
    assert "42" in ref_client.prompts[0]
    assert (
        await rate_difficulty(FakeJudge(lambda _: "Difficulty: [[6]]"), t["difficulty"], "x") == 6
    )
    tags = await tag_instruction(
        FakeJudge(lambda _: '<tags>[{"tag": "Math", "explanation": "sums"}]</tags>'), t["tags"], "x"
    )
    assert not isinstance(tags, Unparseable)
    assert tags[0].tag == "math"


async def test_wrong_template_kind_is_rejected() -> None:
    t = builtin_templates()
    with pytest.raises(TemplateError, match="not 'rating'"):
        await grade_single(FakeJudge(str), t["difficulty"], question="q", answer="a")
    with pytest.raises(TemplateError, match="not a pairwise"):
        await judge_pair(
            FakeJudge(str), t["single"], question="q", model_answer="m", baseline_answer="b"
        )
