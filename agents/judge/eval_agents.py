"""The benchmark harness as agents on the bus: questions in, answers, judgements, result tables.

::

    eval.source ─▶ EvalQuestion ─▶ eval.answer ─▶ EvalAnswer ─▶ judge.* ─▶ EvalJudged ─▶ results
    (benchmark)                    (model under test,             (pairwise, single,       (records,
                                    optional baseline)             gsm8k, humaneval)        tables)

- `eval.source` (main task) reads a benchmark — MT-Bench (two turns), Vicuna-80, GSM8K, HumanEval
  or any instruction file — and publishes one `EvalQuestion` per item (lineage root
  ``<benchmark>:<question id>``). Reference answers (MT-Bench math/reasoning/coding) and baseline
  answers from a file (FastChat ``model_answer`` format or ``{question_id, answer}``) ride along.
  Items every judge of the topology already judged are skipped, so ``resume`` finishes an
  interrupted eval.
- `eval.answer` answers every turn with the model under test (LLM slot ``default``; turn 2 sees
  turn 1 and its answer) and, when a ``baseline`` slot is bound and no baseline answers came from
  a file, with the baseline model. An LLM error after the retries gives an `EvalAnswer` with
  ``error`` set: the item is counted as failed, never dropped.
- the judges (`agents.judge.agent`) publish `EvalJudged`;
- `eval.results` stores every judgement as a record of kind ``eval_item`` and, when the run
  stops, aggregates them per judge into records of kind ``eval`` (``{title, kind, rows,
  summary_line}``): per-category win/tie/loss (pairwise), mean ratings (single), GSM8K
  exact-match accuracy, HumanEval pass@1. The run report draws those tables.

File paths in params are relative to the working directory (run from the repository root).
"""

from __future__ import annotations

import gzip
import json
from collections import Counter
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from agents.base import Agent, AgentProgress, handles
from agents.judge.aggregate import (
    CategoryStats,
    PairwiseResult,
    SingleResult,
    aggregate_pairwise,
    aggregate_single,
)
from agents.judge.gsm8k import reference_number
from agents.judge.verdicts import PairJudgement, Unparseable
from agents.llm.errors import LLMError
from agents.llm.types import ChatMessage, GenerationParams, LLMClient
from agents.pipeline.common import llm_for
from agents.pipeline.store import RecordStore
from agents.registry import register
from bus.message import Message

__all__ = [
    "ITEM_KIND",
    "RESULT_KIND",
    "EvalAnswer",
    "EvalAnswerAgent",
    "EvalJudged",
    "EvalQuestion",
    "EvalResultsAgent",
    "EvalSourceAgent",
    "Question",
    "Style",
]

ITEM_KIND = "eval_item"
RESULT_KIND = "eval"

Benchmark = Literal["mtbench", "vicuna", "instructions", "gsm8k", "humaneval"]
Style = Literal["pairwise", "single", "gsm8k", "humaneval"]

_DEFAULT_PROMPTS: dict[str, str] = {
    "gsm8k": "{question}\n\nSolve the problem step by step. End with the final answer on its own "
    "line, written as '#### <number>'.",
    "humaneval": "Complete the following Python function. Reply with the whole function in one "
    "```python code block.\n\n```python\n{question}\n```",
}


class Question(BaseModel):
    """One benchmark item. ``references`` and ``baseline`` hold one text per turn (or none);
    ``data`` carries what a checker needs (GSM8K reference number, HumanEval test code)."""

    model_config = ConfigDict(frozen=True)

    benchmark: str
    question_id: str
    category: str = "general"
    turns: tuple[str, ...]
    references: tuple[str, ...] = ()
    baseline: tuple[str, ...] = ()
    data: dict[str, str] = Field(default_factory=dict)


class EvalQuestion(Message):
    """A question to answer."""

    kind: Literal["eval.question"] = "eval.question"
    question: Question


class EvalAnswer(Message):
    """The model's answers (one per turn) and the baseline's, or the error that stopped them."""

    kind: Literal["eval.answer"] = "eval.answer"
    question: Question
    answers: tuple[str, ...] = ()
    baseline: tuple[str, ...] = ()
    error: str | None = None


class EvalJudged(Message):
    """One judgement of one item (and turn) by the judge agent ``judge``.

    Exactly one of ``judgement`` (pairwise), ``rating`` (single), ``correct`` (gsm8k,
    humaneval) is set, unless ``error`` says why the item could not be judged.
    """

    kind: Literal["eval.judged"] = "eval.judged"
    judge: str
    style: Style
    title: str
    benchmark: str
    question_id: str
    category: str = "general"
    turn: int = 1
    judgement: PairJudgement | Unparseable | None = None
    rating: float | Unparseable | None = None
    correct: bool | None = None
    status: str = ""
    detail: str = ""
    error: str | None = None

    @property
    def item_key(self) -> str:
        return f"{self.judge}|{self.benchmark}|{self.question_id}|{self.turn}"


# -- loading benchmark files ------------------------------------------------------------------


def _read_records(path: Path) -> list[dict[str, Any]]:
    raw = path.read_bytes()
    if path.suffix == ".gz":
        raw = gzip.decompress(raw)
    text = raw.decode("utf-8")
    is_list = ".json" in path.suffixes and ".jsonl" not in path.suffixes
    records = (
        json.loads(text) if is_list else [json.loads(x) for x in text.splitlines() if x.strip()]
    )
    return [r for r in records if isinstance(r, dict)]


def _record_id(rec: dict[str, Any], index: int) -> str:
    for key in ("question_id", "task_id", "id"):
        if key in rec:
            return str(rec[key])
    return str(index)


def _answers_by_id(path: Path) -> dict[str, tuple[str, ...]]:
    """Answers per question id: FastChat ``{question_id, choices: [{turns}]}``, or
    ``{question_id|id, answer|output|turns}``."""
    out: dict[str, tuple[str, ...]] = {}
    for index, rec in enumerate(_read_records(path)):
        choices = rec.get("choices")
        if isinstance(choices, list) and choices and isinstance(choices[0], dict):
            turns = choices[0].get("turns", [])
        else:
            turns = rec.get("turns", rec.get("answer", rec.get("output", [])))
        if isinstance(turns, str):
            turns = [turns]
        out[_record_id(rec, index)] = tuple(str(t) for t in turns)
    return out


class EvalSourceParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    benchmark: Benchmark
    path: Path = Field(description="the benchmark's question file (.jsonl, .json, .gz)")
    name: str | None = Field(default=None, description="label in results (default: benchmark)")
    references: Path | None = Field(default=None, description="reference answers (MT-Bench)")
    baseline_answers: Path | None = Field(default=None, description="baseline answers file")
    prompt: str | None = Field(
        default=None, description="turn-1 prompt with {question} (GSM8K/HumanEval have one)"
    )
    limit: int | None = Field(default=None, ge=1, description="first N items (after filters)")
    question_ids: list[str | int] = Field(default_factory=list, description="only these ids")
    categories: list[str] = Field(default_factory=list, description="only these categories")
    turns: Literal["all", "first"] = "all"


def load_questions(params: EvalSourceParams) -> list[Question]:
    """The questions `eval.source` publishes, in file order, filtered and limited."""
    label = params.name or params.benchmark
    refs = _answers_by_id(params.references) if params.references else {}
    baseline = _answers_by_id(params.baseline_answers) if params.baseline_answers else {}
    prompt = params.prompt or _DEFAULT_PROMPTS.get(params.benchmark, "{question}")
    out: list[Question] = []
    for index, rec in enumerate(_read_records(params.path)):
        qid = _record_id(rec, index)
        data: dict[str, str] = {}
        category = str(
            rec.get(
                "category",
                params.benchmark if params.benchmark in ("gsm8k", "humaneval") else "general",
            )
        )
        if params.benchmark == "gsm8k":
            turns = [str(rec["question"])]
            data["reference"] = reference_number(str(rec["answer"]))
        elif params.benchmark == "humaneval":
            turns = [str(rec["prompt"])]
            data.update({k: str(rec[k]) for k in ("prompt", "test", "entry_point")})
            data["canonical_solution"] = str(rec.get("canonical_solution", ""))
        elif isinstance(rec.get("turns"), list):
            turns = [str(t) for t in rec["turns"]]
        else:
            text = next(
                (
                    str(rec[k])
                    for k in ("instruction", "question", "prompt", "text")
                    if isinstance(rec.get(k), str)
                ),
                None,
            )
            if text is None:
                continue
            extra = rec.get("input")
            turns = [f"{text}\n\n{extra}" if isinstance(extra, str) and extra else text]
        turns[0] = prompt.format(question=turns[0])
        if params.turns == "first":
            turns = turns[:1]
        if params.question_ids and qid not in {str(i) for i in params.question_ids}:
            continue
        if params.categories and category not in params.categories:
            continue
        out.append(
            Question(
                benchmark=label,
                question_id=qid,
                category=category,
                turns=tuple(turns),
                references=refs.get(qid, ()),
                baseline=baseline.get(qid, ()),
                data=data,
            )
        )
        if params.limit is not None and len(out) >= params.limit:
            break
    return out


def _store(agent: Agent[Any]) -> RecordStore | None:
    store = agent.context.services.get("store")
    return store if store is not None and hasattr(store, "put_record") else None


@register("eval.source")
class EvalSourceAgent(Agent[EvalSourceParams]):
    """Publishes a benchmark's questions (skipping those every judge already judged: resume)."""

    role = "source"

    async def on_start(self) -> None:
        self.questions = load_questions(self.params)
        self.published = 0
        self.skipped = 0

    def _judges(self) -> set[str]:
        """Names of the enabled judge agents of this topology (empty when unknown)."""
        topology = self.context.settings.get("topology")
        agents = getattr(topology, "agents", {})
        return {
            name
            for name, spec in agents.items()
            if getattr(spec, "enabled", True)
            and str(getattr(spec, "impl", "")).startswith("judge.")
        }

    def _done(self) -> set[tuple[str, str]]:
        """(benchmark, question id) of the items every judge already judged (turn 1)."""
        store = _store(self)
        if store is None:
            return set()
        seen: dict[tuple[str, str], set[str]] = {}
        for _key, payload in store.records(ITEM_KIND):
            if isinstance(payload, dict) and payload.get("turn", 1) == 1:
                item = (str(payload.get("benchmark")), str(payload.get("question_id")))
                seen.setdefault(item, set()).add(str(payload.get("judge")))
        judges = self._judges()
        return {item for item, by in seen.items() if not judges or judges <= by}

    async def run(self) -> None:
        done = self._done()
        for question in self.questions:
            if self.context.stopping.is_set():
                break
            if (question.benchmark, question.question_id) in done:
                self.skipped += 1
                continue
            self.published += 1
            await self.publish(
                EvalQuestion(
                    question=question, correlation_id=f"{question.benchmark}:{question.question_id}"
                )
            )
        self.log.info("eval_questions_published", published=self.published, skipped=self.skipped)

    def progress(self) -> AgentProgress:
        return AgentProgress(
            label="questions", completed=self.published + self.skipped, total=len(self.questions)
        )


# -- answering --------------------------------------------------------------------------------


class EvalAnswerParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    system_prompt: str | None = None
    temperature: float = Field(default=0.0, ge=0)
    max_tokens: int = Field(default=1024, ge=1)


async def _converse(
    client: LLMClient,
    turns: tuple[str, ...],
    params: GenerationParams,
    system: str | None,
    caller: str,
) -> tuple[str, ...]:
    messages: list[ChatMessage] = [ChatMessage(role="system", content=system)] if system else []
    answers: list[str] = []
    for turn in turns:
        messages.append(ChatMessage(role="user", content=turn))
        completion = await client.complete(messages, params, caller=caller)
        answers.append(completion.text.strip())
        messages.append(ChatMessage(role="assistant", content=answers[-1]))
    return tuple(answers)


@register("eval.answer")
class EvalAnswerAgent(Agent[EvalAnswerParams]):
    """Answers each question with the model under test (and the baseline model, if bound)."""

    role = "responder"
    answered = 0
    failed = 0

    @handles
    async def on_question(self, message: EvalQuestion) -> None:
        q = message.question
        params = GenerationParams(
            temperature=self.params.temperature, max_tokens=self.params.max_tokens
        )
        system = self.params.system_prompt
        try:
            answers = await _converse(llm_for(self), q.turns, params, system, self.name)
            baseline = q.baseline
            if not baseline and "baseline" in self.context.llms:
                baseline = await _converse(
                    llm_for(self, "baseline"), q.turns, params, system, f"{self.name}.baseline"
                )
        except LLMError as exc:
            self.failed += 1
            await self.publish(
                EvalAnswer.caused_by(message, question=q, error=f"{exc.kind}: {exc}")
            )
            return
        self.answered += 1
        await self.publish(
            EvalAnswer.caused_by(message, question=q, answers=answers, baseline=baseline)
        )

    def progress(self) -> AgentProgress:
        return AgentProgress(label="answered", completed=self.answered + self.failed)


# -- results ----------------------------------------------------------------------------------


class EvalResultsParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _pct(part: int, whole: int) -> str:
    return f"{part} / {whole} ({100 * part / whole:.1f}%)" if whole else "0 / 0"


def summarize_results(items: list[EvalJudged]) -> dict[str, Any]:
    """The ``eval`` record of one judge's (and turn's) judgements."""
    first = items[0]
    errors = sum(i.error is not None for i in items)
    judged = [i for i in items if i.error is None]
    rows: list[CategoryStats] = []
    kind = "pairwise"
    if first.style == "pairwise":
        rows = aggregate_pairwise(
            PairwiseResult(question_id=i.question_id, category=i.category, judgement=i.judgement)
            for i in judged
            if i.judgement is not None
        )
        overall = rows[-1]
        line = (
            f"{overall.wins} win / {overall.ties} tie / {overall.losses} loss, "
            f"{overall.unparseable} unparseable"
        )
    elif first.style == "single":
        kind = "single"
        rows = aggregate_single(
            SingleResult(question_id=i.question_id, category=i.category, rating=i.rating)
            for i in judged
            if i.rating is not None
        )
        mean = rows[-1].mean_rating
        line = f"mean rating {mean:.2f}" if mean is not None else "no rating parsed"
        line += f", {rows[-1].unparseable} unparseable"
    else:
        correct = sum(bool(i.correct) for i in judged)
        what = "exact match" if first.style == "gsm8k" else "pass@1"
        statuses = Counter(i.status for i in judged if i.status)
        line = f"{what} {_pct(correct, len(items))}"
        if statuses and first.style == "humaneval":
            line += " (" + ", ".join(f"{n} {s}" for s, n in sorted(statuses.items())) + ")"
        if first.style == "gsm8k":
            line += f", {statuses.get('no_number', 0)} without a number"
    if errors:
        line += f", {errors} not judged (errors)"
    payload: dict[str, Any] = {
        "title": first.title,
        "style": first.style,
        "benchmark": first.benchmark,
        "judge": first.judge,
        "turn": first.turn,
        "n": len(items),
        "errors": errors,
        "summary_line": line,
    }
    if rows:
        payload["kind"] = kind
        payload["rows"] = [r.model_dump(mode="json") for r in rows]
    if first.style in ("gsm8k", "humaneval"):
        correct = sum(bool(i.correct) for i in judged)
        payload["accuracy"] = correct / len(items) if items else None
    return payload


@register("eval.results")
class EvalResultsAgent(Agent[EvalResultsParams]):
    """Stores each judgement; when the run stops, writes the per-judge result tables."""

    role = "results"
    received = 0

    async def on_start(self) -> None:
        store = _store(self)
        if store is None:
            raise RuntimeError("eval.results needs the run store (run it via the runtime)")
        self.store: RecordStore = store

    @handles
    async def on_judged(self, message: EvalJudged) -> None:
        self.received += 1
        self.store.put_record(ITEM_KIND, message.item_key, message.model_dump(mode="json"))

    async def on_stop(self) -> None:
        groups: dict[tuple[str, str, int], list[EvalJudged]] = {}
        for _key, payload in self.store.records(ITEM_KIND):
            item = EvalJudged.model_validate(payload)
            groups.setdefault((item.judge, item.benchmark, item.turn), []).append(item)
        for (judge, benchmark, turn), items in sorted(groups.items()):
            key = f"{judge}:{benchmark}" + (f":turn{turn}" if turn > 1 else "")
            summary = summarize_results(items)
            self.store.put_record(RESULT_KIND, key, summary)
            self.log.info("eval_result", key=key, summary=summary["summary_line"])

    def progress(self) -> AgentProgress:
        return AgentProgress(label="judged", completed=self.received)
