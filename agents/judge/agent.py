"""JudgeAgents of the benchmark harness: `EvalAnswer` in, `EvalJudged` out.

- `judge.pairwise`: the model's answer against the baseline's, in both orders (position swap;
  a disagreement is a tie). Needs the judge LLM (slot ``default``) and baseline answers.
- `judge.single`: the model's answer alone, a 1-10 ``[[rating]]``. Needs the judge LLM.
- `judge.gsm8k`: exact match of the final number. No LLM.
- `judge.humaneval`: pass@1 — the code runs against the task's tests in the sandbox (its own
  process, time and memory limits, no network). No LLM.

Templates: ``template`` for questions without a reference, ``ref_template`` for those with one
(MT-Bench math, reasoning, coding: the ``*-ref`` built-ins compare against the reference answer);
``templates`` overrides or adds templates: a directory (``NAME.txt`` files, FastChat
``*.jsonl``) or one FastChat ``judge_prompts.jsonl`` file. Every field a template may use is
filled: ``question``, ``answer``,
``answer_a``/``answer_b``, ``ref_answer_1`` for turn 1, and the multi-turn fields
``question_1``/``question_2``, ``answer_1``/``answer_2``, ``answer_a_1`` … ``ref_answer_2``, so
FastChat's multi-turn templates (e.g. ``pair-v2-multi-turn``, ``pair-math-v1-multi-turn``) work
as ``turn2_template`` / ``ref_turn2_template``: with one set, the second turn of two-turn
questions is judged too (results per turn).

A judge LLM error after the retries, or a missing answer, publishes `EvalJudged` with ``error``:
the item is counted as not judged, never dropped. Unparseable verdicts are counted as such.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import anyio
from pydantic import BaseModel, ConfigDict, Field

from agents.base import Agent, AgentProgress, handles
from agents.judge.eval_agents import EvalAnswer, EvalJudged, Question, Style
from agents.judge.gsm8k import extract_final_number, is_correct
from agents.judge.humaneval import HumanEvalProblem, HumanEvalRunner, extract_code
from agents.judge.sandbox import SandboxLimits
from agents.judge.templates import JudgeTemplate, load_fastchat_jsonl, load_templates
from agents.judge.verdicts import (
    Outcome,
    PairJudgement,
    Unparseable,
    combine_swapped,
    combine_swapped_scores,
    parse_pairwise_verdict,
    parse_rating,
    parse_score_pair,
)
from agents.llm.errors import LLMError
from agents.llm.types import GenerationParams
from agents.pipeline.common import llm_for
from agents.registry import register

__all__ = [
    "ExactMatchJudge",
    "HumanEvalJudge",
    "LLMJudgeParams",
    "PairwiseJudge",
    "SingleJudge",
]


class LLMJudgeParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    template: str | None = Field(default=None, description="template without a reference")
    ref_template: str | None = Field(default=None, description="template with a reference")
    turn2_template: str | None = Field(
        default=None, description="multi-turn template: also judge turn 2 of two-turn questions"
    )
    ref_turn2_template: str | None = Field(
        default=None, description="multi-turn template for turn 2 of questions with a reference"
    )
    templates: Path | None = Field(
        default=None, description="overrides: a directory, or a FastChat judge_prompts.jsonl"
    )
    title: str | None = Field(default=None, description="results title (default: benchmark)")
    temperature: float = Field(default=0.0, ge=0)
    max_tokens: int = Field(default=1024, ge=1)


def _fields(q: Question, answers: tuple[str, ...], baseline: tuple[str, ...]) -> dict[str, str]:
    """Every template field, for single- and multi-turn templates alike."""

    def at(texts: tuple[str, ...], i: int) -> str:
        return texts[i] if i < len(texts) else ""

    values = {
        "question": at(q.turns, 0),
        "answer": at(answers, 0),
        "answer_a": at(answers, 0),
        "answer_b": at(baseline, 0),
    }
    for n in (1, 2):
        values |= {
            f"question_{n}": at(q.turns, n - 1),
            f"answer_{n}": at(answers, n - 1),
            f"answer_a_{n}": at(answers, n - 1),
            f"answer_b_{n}": at(baseline, n - 1),
            f"ref_answer_{n}": at(q.references, n - 1),
        }
    return values


def _swap(values: dict[str, str]) -> dict[str, str]:
    swapped = dict(values)
    for a_key in [k for k in values if k.startswith("answer_a")]:
        b_key = a_key.replace("answer_a", "answer_b")
        swapped[a_key], swapped[b_key] = values[b_key], values[a_key]
    return swapped


class _LLMJudge(Agent[LLMJudgeParams]):
    """Shared by the pairwise and single judges: template choice, calls, publishing."""

    role = "judge"
    style: ClassVar[Style]
    default_template: ClassVar[str]
    default_ref_template: ClassVar[str]
    judged = 0
    failed = 0

    async def on_start(self) -> None:
        source = self.params.templates
        if source is not None and source.is_file():
            self.templates = {**load_templates(), **load_fastchat_jsonl(source)}
        else:
            self.templates = dict(load_templates(source))
        p = self.params
        names = [p.template or self.default_template, p.ref_template or self.default_ref_template]
        names += [n for n in (p.turn2_template, p.ref_turn2_template) if n]
        for name in names:
            if name not in self.templates:
                raise LookupError(
                    f"{self.name}: no judge template {name!r} "
                    f"(known: {', '.join(sorted(self.templates))})"
                )
            self._check(self.templates[name])

    def _check(self, template: JudgeTemplate) -> None:
        raise NotImplementedError

    async def _ask(self, template: JudgeTemplate, values: dict[str, str]) -> str:
        params = GenerationParams(
            temperature=self.params.temperature, max_tokens=self.params.max_tokens
        )
        completion = await llm_for(self).complete(
            template.render(**values), params, caller=self.name
        )
        return completion.text

    def _judged(self, cause: EvalAnswer, turn: int, **fields: Any) -> EvalJudged:
        q = cause.question
        title = self.params.title or f"{q.benchmark} ({self.style})"
        if turn > 1:
            title += f", turn {turn}"
        return EvalJudged.caused_by(
            cause,
            judge=self.name,
            style=self.style,
            title=title,
            benchmark=q.benchmark,
            question_id=q.question_id,
            category=q.category,
            turn=turn,
            **fields,
        )

    @handles
    async def on_answer(self, message: EvalAnswer) -> None:
        q = message.question
        jobs: list[tuple[int, JudgeTemplate]] = []
        first = (
            (self.params.ref_template or self.default_ref_template)
            if q.references
            else (self.params.template or self.default_template)
        )
        jobs.append((1, self.templates[first]))
        second = (self.params.ref_turn2_template if q.references else None) or (
            self.params.turn2_template
        )
        if second and len(q.turns) > 1:
            jobs.append((2, self.templates[second]))
        for turn, template in jobs:
            error = message.error or self._missing(message, turn)
            if error is not None:
                self.failed += 1
                await self.publish(self._judged(message, turn, error=error))
                continue
            values = _fields(q, message.answers, message.baseline)
            try:
                fields = await self._judge(template, values)
            except LLMError as exc:
                self.failed += 1
                fields = {"error": f"judge {exc.kind}: {exc}"}
            else:
                self.judged += 1
            await self.publish(self._judged(message, turn, **fields))

    def _missing(self, message: EvalAnswer, turn: int) -> str | None:
        if len(message.answers) < turn:
            return f"no answer for turn {turn}"
        return None

    async def _judge(self, template: JudgeTemplate, values: dict[str, str]) -> dict[str, Any]:
        raise NotImplementedError

    def progress(self) -> AgentProgress:
        return AgentProgress(label="judged", completed=self.judged + self.failed)


@register("judge.pairwise")
class PairwiseJudge(_LLMJudge):
    """Pairwise judging against the baseline with position swap (verdict or score-pair style)."""

    style = "pairwise"
    default_template = "pair-verdict"
    default_ref_template = "pair-verdict-ref"

    def _check(self, template: JudgeTemplate) -> None:
        if template.kind != "pairwise" or template.output not in ("verdict", "score_pair"):
            raise ValueError(f"{self.name}: template {template.name!r} is not pairwise")

    def _missing(self, message: EvalAnswer, turn: int) -> str | None:
        if len(message.baseline) < turn:
            return f"no baseline answer for turn {turn} (bind a 'baseline' LLM or give a file)"
        return super()._missing(message, turn)

    async def _judge(self, template: JudgeTemplate, values: dict[str, str]) -> dict[str, Any]:
        texts = ["", ""]

        async def ask(slot: int, vals: dict[str, str]) -> None:
            texts[slot] = await self._ask(template, vals)

        async with anyio.create_task_group() as tg:
            tg.start_soon(ask, 0, values)
            tg.start_soon(ask, 1, _swap(values))
        judgement: PairJudgement | Unparseable
        if template.output == "score_pair":
            judgement = combine_swapped_scores(
                parse_score_pair(texts[0]), parse_score_pair(texts[1])
            )
        else:
            outcome = combine_swapped(
                parse_pairwise_verdict(texts[0]), parse_pairwise_verdict(texts[1])
            )
            judgement = PairJudgement(outcome=outcome) if isinstance(outcome, Outcome) else outcome
        return {"judgement": judgement, "detail": texts[0][-300:]}


@register("judge.single")
class SingleJudge(_LLMJudge):
    """Single-answer grading 1-10 (against the reference where the question has one)."""

    style = "single"
    default_template = "single"
    default_ref_template = "single-ref"

    def _check(self, template: JudgeTemplate) -> None:
        if template.output != "rating":
            raise ValueError(f"{self.name}: template {template.name!r} is not a rating template")

    async def _judge(self, template: JudgeTemplate, values: dict[str, str]) -> dict[str, Any]:
        text = await self._ask(template, values)
        return {"rating": parse_rating(text), "detail": text[-300:]}


class _NoParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    title: str | None = None


@register("judge.gsm8k")
class ExactMatchJudge(Agent[_NoParams]):
    """GSM8K: the answer's final number must equal the reference number."""

    role = "judge"
    judged = 0

    @handles
    async def on_answer(self, message: EvalAnswer) -> None:
        q = message.question
        title = self.params.title or f"{q.benchmark} (exact match)"
        base = {
            "judge": self.name,
            "style": "gsm8k",
            "title": title,
            "benchmark": q.benchmark,
            "question_id": q.question_id,
            "category": q.category,
        }
        self.judged += 1
        if message.error is not None or not message.answers:
            await self.publish(
                EvalJudged.caused_by(message, **base, error=message.error or "no answer")
            )
            return
        answer, reference = message.answers[0], q.data.get("reference", "")
        predicted = extract_final_number(answer)
        await self.publish(
            EvalJudged.caused_by(
                message,
                **base,
                correct=is_correct(answer, reference),
                status="no_number" if predicted is None else "answered",
                detail=f"predicted {predicted}, reference {reference}",
            )
        )

    def progress(self) -> AgentProgress:
        return AgentProgress(label="checked", completed=self.judged)


class HumanEvalParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    title: str | None = None
    timeout_s: float = Field(default=10.0, gt=0)
    memory_mb: int = Field(default=1024, ge=64)
    network: str = Field(default="auto", pattern="^(auto|namespace|audit)$")
    concurrency: int = Field(default=2, ge=1, description="sandboxed programs at once")


@register("judge.humaneval")
class HumanEvalJudge(Agent[HumanEvalParams]):
    """HumanEval pass@1: the answer's code runs against the task's tests in the sandbox."""

    role = "judge"
    judged = 0

    async def on_start(self) -> None:
        p = self.params
        limits = SandboxLimits.model_validate(
            {"timeout_s": p.timeout_s, "memory_bytes": p.memory_mb << 20, "network": p.network}
        )
        self.runner = HumanEvalRunner(limits, concurrency=p.concurrency)

    @handles
    async def on_answer(self, message: EvalAnswer) -> None:
        q = message.question
        title = self.params.title or f"{q.benchmark} (pass@1)"
        base = {
            "judge": self.name,
            "style": "humaneval",
            "title": title,
            "benchmark": q.benchmark,
            "question_id": q.question_id,
            "category": q.category,
        }
        self.judged += 1
        if message.error is not None or not message.answers:
            await self.publish(
                EvalJudged.caused_by(message, **base, error=message.error or "no answer")
            )
            return
        problem = HumanEvalProblem(
            task_id=q.question_id,
            prompt=q.data["prompt"],
            canonical_solution=q.data.get("canonical_solution", ""),
            test=q.data["test"],
            entry_point=q.data["entry_point"],
        )
        result = await self.runner.check(problem, _completion(problem, message.answers[0]))
        await self.publish(
            EvalJudged.caused_by(
                message,
                **base,
                correct=result.passed,
                status=result.status.value,
                detail=result.detail[-300:],
            )
        )

    def progress(self) -> AgentProgress:
        return AgentProgress(label="executed", completed=self.judged)


def _completion(problem: HumanEvalProblem, answer: str) -> str:
    """The code to append to the prompt: the answer's code block; a block that restates the
    whole function (``def entry_point``) is appended after the prompt too and redefines it."""
    code = extract_code(answer)
    return code if code.startswith(("\n", " ", "\t")) else "\n" + code
