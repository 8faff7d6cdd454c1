"""The benchmark harness (`python -m runtime configs/eval_*.toml`) against the mock server.

The shipped configs run as they are, with `--set` pointing their LLMs at a mock server on
port 0 and limiting the questions: MT-Bench (6 questions, both turns, pairwise + single),
Vicuna-style score pairs, GSM8K (10), HumanEval (3; the mock's prose fails, a scripted backend
returning the canonical solutions passes).
"""

from __future__ import annotations

import json
import re
import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from agents.llm.mock import MockLLMServer
from runtime.report.build import build_report_data
from tests.eval.conftest import data_file, run_cli


def _backend(url: str, model: str = "mock-model") -> str:
    return (
        f'{{backend = "openai-compatible", model = "{model}", endpoints = ["{url}"], '
        "concurrency = 8, backoff = {base_s = 0.01, max_s = 0.05, jitter = 0.0}}"
    )


def _records(run_dir: Path, kind: str) -> dict[str, Any]:
    with closing(sqlite3.connect(run_dir / "run.sqlite")) as db:
        rows = db.execute("SELECT key, payload FROM records WHERE kind = ?", (kind,)).fetchall()
    return {key: json.loads(payload) for key, payload in rows}


async def _eval(config: str, run_dir: Path, *sets: str) -> dict[str, Any]:
    args = [config, "--run-dir", str(run_dir), "--no-progress", "--log-console", "off"]
    for item in sets:
        args += ["--set", item]
    done = await run_cli(*args)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (run_dir / "report.html").is_file()
    return _records(run_dir, "eval")


async def test_mtbench_two_turns_pairwise_and_single(
    tmp_path: Path, mock_server: MockLLMServer, baseline_server: MockLLMServer
) -> None:
    data_file("mt_bench_questions_80.jsonl")
    url = mock_server.openai_url
    # 6 questions: 3 writing (no reference) and 3 math (GPT-4 reference answers)
    ids = "[81, 82, 83, 111, 112, 113]"
    results = await _eval(
        "configs/eval_mtbench.toml",
        tmp_path / "run",
        f"llm.model={_backend(url)}",
        f"llm.baseline={_backend(baseline_server.openai_url, 'baseline-model')}",
        f"llm.judge={_backend(url)}",
        f"agents.source.params.question_ids={ids}",
    )
    assert sorted(results) == [
        "pairwise:mtbench",
        "pairwise:mtbench:turn2",
        "single:mtbench",
        "single:mtbench:turn2",
    ]
    for key, result in results.items():
        assert result["n"] == 6, key
        assert result["errors"] == 0, key
        categories = [row["category"] for row in result["rows"]]
        assert categories == ["math", "writing", "overall"], key
    overall = results["pairwise:mtbench"]["rows"][-1]
    assert overall["wins"] + overall["ties"] + overall["losses"] + overall["unparseable"] == 6
    assert overall["wins"] + overall["losses"] > 0  # the answers differ: not only ties
    single = results["single:mtbench"]["rows"][-1]
    assert single["mean_rating"] is not None
    assert 1 <= single["mean_rating"] <= 10
    # turn 1 of math questions used the reference templates, turn 2 FastChat's multi-turn ones
    items = _records(tmp_path / "run", "eval_item")
    assert len(items) == 6 * 4
    data = build_report_data(tmp_path / "run")
    assert [t.title for t in data.judge] == [
        "MT-Bench pairwise vs baseline",
        "MT-Bench pairwise vs baseline, turn 2",
        "MT-Bench single grading",
        "MT-Bench single grading, turn 2",
    ]
    html = (tmp_path / "run" / "report.html").read_text(encoding="utf-8")
    assert '<section id="judge">' in html
    callers = {u.agent for u in data.agent_usage}
    assert callers == {"answer", "answer.baseline", "pairwise", "single"}


async def test_vicuna_score_pairs_with_swap(
    tmp_path: Path, mock_server: MockLLMServer, baseline_server: MockLLMServer
) -> None:
    data_file("vicuna_bench_questions_80.jsonl")
    url = mock_server.openai_url
    results = await _eval(
        "configs/eval_vicuna.toml",
        tmp_path / "run",
        f"llm.model={_backend(url)}",
        f"llm.baseline={_backend(baseline_server.openai_url, 'baseline-model')}",
        f"llm.judge={_backend(url)}",
        "agents.source.params.limit=5",
    )
    overall = results["pairwise:vicuna"]["rows"][-1]
    assert overall["n"] == 5
    assert overall["unparseable"] == 0  # the mock answers `pair-score` with two numbers
    assert overall["mean_model_score"] is not None


async def test_gsm8k_exact_match_over_the_mock(tmp_path: Path, mock_server: MockLLMServer) -> None:
    data_file("gsm8k_test.jsonl")
    results = await _eval(
        "configs/eval_gsm8k.toml",
        tmp_path / "run",
        f"llm.model={_backend(mock_server.openai_url)}",
        "agents.source.params.limit=10",
    )
    result = results["exact:gsm8k"]
    assert result["n"] == 10
    assert result["errors"] == 0
    items = _records(tmp_path / "run", "eval_item").values()
    correct = sum(bool(i["correct"]) for i in items)
    assert result["accuracy"] == correct / 10
    assert re.match(r"exact match \d+ / 10", result["summary_line"])
    assert all(i["detail"].startswith("predicted ") for i in items)


@pytest.mark.parametrize(
    ("scripted", "passed"),
    [
        pytest.param(False, 0, id="mock-prose-fails"),
        pytest.param(True, 3, id="canonical-solutions-pass"),
    ],
)
async def test_humaneval_pass_at_1(
    tmp_path: Path, mock_server: MockLLMServer, scripted: bool, passed: int
) -> None:
    data_file("HumanEval.jsonl.gz")
    model = (
        '{backend = "scripted", model = "canonical", '
        'options = {handler = "tests.eval.scripts:canonical_humaneval"}}'
        if scripted
        else _backend(mock_server.openai_url)
    )
    results = await _eval(
        "configs/eval_humaneval.toml",
        tmp_path / "run",
        f"llm.model={model}",
        "agents.source.params.limit=3",
        "agents.humaneval.params.timeout_s=20",
    )
    result = results["humaneval:humaneval"]
    assert result["n"] == 3
    assert result["accuracy"] == passed / 3
    items = list(_records(tmp_path / "run", "eval_item").values())
    assert sum(i["status"] == "passed" for i in items) == passed


async def test_resume_skips_questions_already_judged(
    tmp_path: Path, mock_server: MockLLMServer
) -> None:
    data_file("gsm8k_test.jsonl")
    run_dir = tmp_path / "run"
    await _eval(
        "configs/eval_gsm8k.toml",
        run_dir,
        f"llm.model={_backend(mock_server.openai_url)}",
        "agents.source.params.limit=4",
    )
    calls = mock_server.stats().requests
    done = await run_cli(
        "resume",
        str(run_dir),
        "--no-progress",
        "--log-console",
        "off",
        "--set",
        "agents.source.params.limit=6",
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert mock_server.stats().requests == calls + 2  # only the two new questions
    assert _records(run_dir, "eval")["exact:gsm8k"]["n"] == 6


async def test_an_always_a_judge_yields_only_ties_and_unparseable_ratings(
    tmp_path: Path, mock_server: MockLLMServer, baseline_server: MockLLMServer
) -> None:
    """Position swap through the agents: a judge that always answers [[A]] prefers neither
    answer; the same text is no rating, so single grading counts it unparseable."""
    data_file("mt_bench_questions_80.jsonl")
    judge = (
        '{backend = "scripted", model = "always-a", '
        'options = {rules = [{pattern = "(?s).*", reply = "Clearly better. [[A]]"}]}}'
    )
    results = await _eval(
        "configs/eval_mtbench.toml",
        tmp_path / "run",
        f"llm.model={_backend(mock_server.openai_url)}",
        f"llm.baseline={_backend(baseline_server.openai_url, 'baseline-model')}",
        f"llm.judge={judge}",
        "agents.source.params.limit=3",
    )
    for turn in ("pairwise:mtbench", "pairwise:mtbench:turn2"):
        overall = results[turn]["rows"][-1]
        assert (overall["wins"], overall["ties"], overall["losses"]) == (0, 3, 0)
    single = results["single:mtbench"]["rows"][-1]
    assert single["unparseable"] == 3
    assert single["mean_rating"] is None
