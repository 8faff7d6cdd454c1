"""The run report of a real Evol-Instruct run against the mock server, and `quality` on it."""

from __future__ import annotations

import json
import re
import sqlite3
import xml.etree.ElementTree as ET
from collections.abc import Callable
from contextlib import closing
from pathlib import Path

from agents.llm.mock import MockLLMServer
from runtime.config import validate_config
from runtime.report.build import build_report_data, write_run_report
from runtime.run import execute
from runtime.store import RunStore
from tests.eval.conftest import REPO, pipeline_topology, run_cli, write_seeds


def _sections(html: str) -> set[str]:
    return set(re.findall(r'<section id="([a-z]+)">', html))


def _svgs(html: str) -> list[str]:
    return re.findall(r"<svg .*?</svg>", html, flags=re.DOTALL)


async def _run(tmp_path: Path, url: str) -> Path:
    seeds = write_seeds(tmp_path / "seeds.jsonl", 20)
    config = validate_config(pipeline_topology(seeds, url, rounds=2))
    run_dir = tmp_path / "run"
    outcome = await execute(config, run_dir, show_progress=False, handle_signals=False)
    assert outcome.status == "completed", outcome.errors
    return run_dir


async def test_every_run_writes_a_report_from_its_store(
    tmp_path: Path, mock_server: MockLLMServer
) -> None:
    run_dir = await _run(tmp_path, mock_server.openai_url)
    html = (run_dir / "report.html").read_text(encoding="utf-8")
    assert {"summary", "rows", "elimination", "usage", "rate", "lineages"} <= _sections(html)
    data = build_report_data(run_dir)
    assert [r.round for r in data.rows_per_round] == [0, 1, 2]
    assert data.rows_per_round[0].produced == 20
    with closing(sqlite3.connect(run_dir / "run.sqlite")) as db:
        rejected = dict(
            db.execute(
                "SELECT rule, COUNT(*) FROM steps WHERE status = 'rejected' GROUP BY rule"
            ).fetchall()
        )
    assert data.elimination_reasons == rejected
    assert rejected
    callers = {u.agent: u for u in data.agent_usage}
    assert {"evol", "responder"} <= set(callers)
    assert callers["responder"].calls >= 20
    assert callers["responder"].completion_tokens > 0
    summary = json.loads((run_dir / "summary.json").read_text())
    total = summary["llm_usage"]["total"]
    total_calls = total["calls"] + total["cache_hits"]  # the curve shows answers, cached or not
    span = data.call_rate[1].t_s - data.call_rate[0].t_s if len(data.call_rate) > 1 else 1.0
    assert abs(sum(p.calls_per_s for p in data.call_rate) * span - total_calls) < 1e-6 * total_calls
    saved = summary["rejected_before_answer"]
    assert saved > 0  # the mock's Equal judgements are rejected before any answer
    assert data.summary.extra["rejected before answering"] == f"{saved} (no response paid for)"
    assert data.lineages
    assert all(lin.steps[0].status == "seed" for lin in data.lineages)
    assert data.lambda_steps == []
    assert data.judge == []
    assert data.quality is None
    for svg in _svgs(html):
        ET.fromstring(svg)


async def test_quality_command_adds_difficulty_tags_diversity_and_contamination(
    tmp_path: Path,
    mock_server: MockLLMServer,
    chromium_screenshot: Callable[[Path, Path], Path],
) -> None:
    run_dir = await _run(tmp_path, mock_server.openai_url)
    with closing(sqlite3.connect(run_dir / "run.sqlite")) as db:
        seed_step, seed_text = db.execute(
            "SELECT step_id, instruction FROM steps WHERE round = 0 AND status = 'accepted'"
        ).fetchone()
    bench = tmp_path / "bench.jsonl"  # one benchmark question copies a seed: a 13-gram hit
    bench.write_text(
        json.dumps({"question_id": 1, "turns": [seed_text]})
        + "\n"
        + json.dumps({"question_id": 2, "turns": ["An unrelated question about tax law."]})
        + "\n",
        encoding="utf-8",
    )
    judge = tmp_path / "judge.toml"
    judge.write_text(
        f'[llm.judge]\nbackend = "openai-compatible"\nmodel = "mock-model"\n'
        f'endpoints = ["{mock_server.openai_url}"]\n',
        encoding="utf-8",
    )
    args = ["quality", str(run_dir), "--llm", str(judge), "--benchmark", str(bench)]
    done = await run_cli(*args, "--embedder", "hashed")
    assert done.returncode == 0, done.stderr
    assert Path(done.stdout.strip()) == run_dir / "report.html"
    assert "difficulty, tags, diversity, contamination" in done.stderr
    calls = mock_server.stats().requests
    again = await run_cli(*args, "--embedder", "hashed")
    assert again.returncode == 0, again.stderr
    assert mock_server.stats().requests == calls  # the run's response cache answered

    data = build_report_data(run_dir)
    rounds = data.difficulty_by_round
    assert [r.round for r in rounds] == [0, 1, 2]
    assert all(r.mean is not None and 1 <= r.mean <= 10 and r.unparseable == 0 for r in rounds)
    assert data.quality is not None
    assert sorted(data.quality.tags_by_round) == [0, 1, 2]
    assert data.quality.diversity is not None
    assert data.quality.diversity.n > 20
    assert data.quality.contamination is not None
    hits = data.quality.contamination.hits
    # the seeds share a template, so partial overlaps are many; the whole item is in that seed
    # (and in its in-depth rewrites, which keep the original text)
    whole = {h.text_id for h in hits if h.item_overlap == 1.0}
    assert seed_step in whole
    assert {t.rsplit(":", 1)[0] for t in whole} == {seed_step.rsplit(":", 1)[0]}
    assert "quality.judge" in {u.agent for u in data.agent_usage}

    html = (run_dir / "report.html").read_text(encoding="utf-8")
    expected = {"rows", "elimination", "difficulty", "usage", "rate", "quality", "lineages"}
    assert expected <= _sections(html)
    # rows, elimination, difficulty, usage, calls/s, tag complexity
    assert len(_svgs(html)) == 6
    png = chromium_screenshot(run_dir / "report.html", tmp_path / "report.png")
    data_png = png.read_bytes()
    assert data_png[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(data_png) > 50_000
    _keep_for_review(data_png)


def _keep_for_review(png: bytes) -> None:
    """Copy the screenshot to .pytest_cache/eval-report.png for a person to look at."""
    keep = REPO / ".pytest_cache" / "eval-report.png"
    keep.parent.mkdir(exist_ok=True)
    keep.write_bytes(png)


def test_lambda_records_of_auto_evol_are_drawn(tmp_path: Path) -> None:
    """The OptimizerAgent's records: initial, steps with candidates (improved or not)."""
    run_dir = tmp_path / "run"
    store = RunStore(run_dir / "run.sqlite")
    store.put_record("autoevol", "split", {"dev": ["a"], "pool": ["b"]})
    store.put_record("autoevol", "initial", {"method_id": "initial", "failure_rate": 0.5})
    store.put_record(
        "autoevol",
        "step-001",
        {
            "step": 1,
            "candidates": [
                {"index": 0, "method_id": "m1.0", "failure_rate": 0.4},
                {"index": 1, "method_id": "m1.1", "failure_rate": 0.3},
            ],
            "previous": {"method_id": "initial", "failure_rate": 0.5},
            "chosen": {"method_id": "m1.1", "failure_rate": 0.3},
            "improved": True,
        },
    )
    store.put_record(
        "autoevol",
        "step-002",
        {
            "step": 2,
            "candidates": [{"index": 0, "method_id": "m2.0", "failure_rate": 0.35}],
            "previous": {"method_id": "m1.1", "failure_rate": 0.3},
            "chosen": {"method_id": "m2.0", "failure_rate": 0.35},
            "improved": False,
        },
    )
    store.put_record("autoevol", "extra", [{"step": 3, "candidate": "x", "lambda": 0.2}])
    store.put_record("autoevol", "final", {"method_id": "m1.1", "method_text": "..."})
    store.close()
    data = build_report_data(run_dir)
    assert [(p.step, p.candidate, p.failure_rate, p.chosen) for p in data.lambda_steps] == [
        (0, "initial", 0.5, True),
        (1, "m1.0", 0.4, False),
        (1, "m1.1", 0.3, True),
        (2, "m2.0", 0.35, False),
        (2, "m1.1 (kept)", 0.3, True),
        (3, "x", 0.2, False),
    ]
    html = write_run_report(run_dir).read_text(encoding="utf-8")
    assert '<section id="lambda">' in html
    assert data.summary.exit_status == "no run recorded"


async def test_report_command_rewrites_the_page(tmp_path: Path) -> None:
    missing = await run_cli("report", str(tmp_path))
    assert missing.returncode == 2
    assert "no run.sqlite" in missing.stderr
    RunStore(tmp_path / "run.sqlite").close()
    done = await run_cli("report", str(tmp_path))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(tmp_path / "report.html")
    assert (tmp_path / "report.html").is_file()


async def test_quality_of_a_dataset_file(tmp_path: Path, mock_server: MockLLMServer) -> None:
    dataset = tmp_path / "data.jsonl"
    rows = [
        {"instruction": "Name three rivers in Africa.", "input": "", "round": 0},
        {"instruction": "Name three rivers in Africa and give each one's length.", "round": 1},
        {
            "messages": [
                {"role": "user", "content": "Write a haiku about rain."},
                {"role": "assistant", "content": "..."},
            ]
        },
    ]
    dataset.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    done = await run_cli(
        "quality",
        str(dataset),
        "--llm",
        mock_server.openai_url,
        "--model",
        "mock-model",
        "--embedder",
        "hashed",
    )
    assert done.returncode == 0, done.stderr
    out = tmp_path / "data.quality"
    assert Path(done.stdout.strip()) == out / "report.html"
    data = build_report_data(out)
    assert [(r.round, r.n) for r in data.difficulty_by_round] == [(0, 2), (1, 1)]
    assert data.quality is not None
    assert data.quality.diversity is not None
    assert data.quality.diversity.n == 3
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "no instruction"}\n', encoding="utf-8")
    refused = await run_cli("quality", str(bad))
    assert refused.returncode == 2
    assert "record 1 has no instruction" in refused.stderr
