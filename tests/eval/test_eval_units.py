"""Harness pieces without a server: question loading, result summaries, failures counted."""

from __future__ import annotations

import json
from pathlib import Path

from agents.judge.eval_agents import EvalJudged, EvalSourceParams, load_questions, summarize_results
from agents.judge.verdicts import Outcome, PairJudgement, Unparseable
from runtime.config import validate_config
from runtime.run import execute
from runtime.store import RunStore


def _jsonl(path: Path, records: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def test_instruction_files_and_baseline_answer_formats(tmp_path: Path) -> None:
    questions = _jsonl(
        tmp_path / "q.jsonl",
        [
            {"id": "a", "instruction": "Summarise this.", "input": "Some text.", "category": "sum"},
            {"question": "What is 2+2?"},
            {"turns": ["Hi", "And then?"], "question_id": 7},
            {"unrelated": True},
        ],
    )
    baseline = _jsonl(
        tmp_path / "b.jsonl",
        [
            {"question_id": "a", "choices": [{"index": 0, "turns": ["A summary."]}]},
            {"id": "1", "answer": "4"},
        ],
    )
    params = EvalSourceParams(benchmark="instructions", path=questions, baseline_answers=baseline)
    loaded = load_questions(params)
    assert [(q.question_id, q.category, q.turns, q.baseline) for q in loaded] == [
        ("a", "sum", ("Summarise this.\n\nSome text.",), ("A summary.",)),
        ("1", "general", ("What is 2+2?",), ("4",)),
        ("7", "general", ("Hi", "And then?"), ()),
    ]
    first = EvalSourceParams(
        benchmark="instructions", path=questions, turns="first", limit=2, categories=["general"]
    )
    assert [q.turns for q in load_questions(first)] == [("What is 2+2?",), ("Hi",)]


def _judged(qid: str, category: str, **fields: object) -> EvalJudged:
    return EvalJudged(
        judge="pairwise",
        style="pairwise",
        title="t",
        benchmark="b",
        question_id=qid,
        category=category,
        **fields,
    )


def test_pairwise_summary_counts_unparseable_and_errors_apart() -> None:
    items = [
        _judged("1", "x", judgement=PairJudgement(outcome=Outcome.WIN)),
        _judged("2", "x", judgement=PairJudgement(outcome=Outcome.TIE)),
        _judged("3", "y", judgement=Unparseable(reason="no verdict")),
        _judged("4", "y", error="judge timeout: deadline"),
    ]
    summary = summarize_results(items)
    assert summary["n"] == 4
    assert summary["errors"] == 1
    assert summary["summary_line"] == (
        "1 win / 1 tie / 0 loss, 1 unparseable, 1 not judged (errors)"
    )
    overall = summary["rows"][-1]
    assert (overall["n"], overall["wins"], overall["ties"], overall["unparseable"]) == (3, 1, 1, 1)
    assert overall["adjusted_win_rate"] == 0.75


async def test_failed_answers_are_counted_not_dropped(tmp_path: Path) -> None:
    questions = _jsonl(
        tmp_path / "gsm.jsonl",
        [
            {"question": f"What is {i} + 1?", "answer": f"It is {i + 1}.\\n#### {i + 1}"}
            for i in range(3)
        ],
    )
    raw = {
        "run": {"name": "eval-fail", "progress": False},
        "llm": {
            "model": {
                "backend": "scripted",
                "model": "broken",
                "max_attempts": 1,
                "options": {"failures": [{"error": "bad_request", "times": 100}]},
            }
        },
        "agents": {
            "source": {
                "impl": "eval.source",
                "params": {"benchmark": "gsm8k", "path": str(questions)},
            },
            "answer": {"impl": "eval.answer", "llm": "model"},
            "exact": {"impl": "judge.gsm8k"},
            "results": {"impl": "eval.results"},
        },
    }
    run_dir = tmp_path / "run"
    outcome = await execute(
        validate_config(raw), run_dir, show_progress=False, handle_signals=False
    )
    assert outcome.exit_code == 0
    store = RunStore(run_dir / "run.sqlite")
    try:
        result = dict(store.records("eval"))["exact:gsm8k"]
    finally:
        store.close()
    assert result["n"] == 3
    assert result["errors"] == 3
    assert result["accuracy"] == 0.0
    assert (
        result["summary_line"]
        == "exact match 0 / 3 (0.0%), 0 without a number, 3 not judged (errors)"
    )
