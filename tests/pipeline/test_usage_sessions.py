"""`summary.json` counts the LLM usage of every session of a run: one interrupted (SIGINT, exact
count), one SIGKILLed (its last checkpoint in the store), one resumed to the end. The mock
server runs in the test's loop and counts the answers it sent in each session."""

from __future__ import annotations

import asyncio
import json
import signal
import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

from agents.llm.mock import MockConfig, MockLLMServer
from tests.pipeline.conftest import (
    PYTHON,
    REPO,
    RunView,
    http_backend,
    pipeline_config,
    write_config,
    write_seeds,
)

LOG = ["--no-progress", "--log-console", "json", "--set", 'run.log.console_level="info"']
PRICES = {"input_per_mtok": 1.0, "output_per_mtok": 2.0}


def stored_usage(run_dir: Path, attempt: int) -> dict[str, Any] | None:
    """The usage record of session ``attempt`` as committed in run.sqlite (None before one)."""
    uri = f"file:{run_dir / 'run.sqlite'}?mode=ro"
    try:
        with closing(sqlite3.connect(uri, uri=True)) as db:
            row = db.execute(
                "SELECT payload FROM records WHERE kind = 'usage' AND key = ?",
                (f"attempt-{attempt}",),
            ).fetchone()
    except sqlite3.OperationalError:  # the store does not exist yet
        return None
    return None if row is None else dict(json.loads(row[0])["total"])


async def session(args: list[str], run_dir: Path, attempt: int, stop: signal.Signals | None) -> int:
    """Run ``python -m runtime ARGS``; with ``stop``, send it once the store holds a usage
    checkpoint of this session with some calls (checked at each log line: no sleeps)."""
    proc = await asyncio.create_subprocess_exec(
        PYTHON, "-m", "runtime", *args, *LOG, cwd=REPO,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stderr is not None
    sent = False
    async with asyncio.timeout(120):
        while line := await proc.stderr.readline():
            if stop is None or sent or not line.startswith(b"{"):
                continue
            usage = stored_usage(run_dir, attempt)
            if usage is not None and usage["calls"] >= 10:
                proc.send_signal(stop)
                sent = True
        return await proc.wait()


async def test_summary_usage_is_cumulative_over_interrupted_killed_and_resumed_sessions(
    tmp_path: Path,
) -> None:
    seeds = write_seeds(
        tmp_path / "seeds.jsonl", [{"instruction": f"Explain topic number {i}."} for i in range(24)]
    )
    run_dir = tmp_path / "run"
    async with MockLLMServer(
        MockConfig(seed=2, latency={"kind": "fixed", "value_s": 0.02})
    ) as server:
        backend = http_backend(server.openai_url, model="mock-model", concurrency=2, prices=PRICES)
        raw = pipeline_config([{"path": str(seeds)}], backend, rounds=2, concurrency=2,
                              pool={"max_in_flight": 2})  # fmt: skip
        path = write_config(tmp_path / "evol.toml", raw)
        plan = [
            ([str(path), "--run-dir", str(run_dir)], signal.SIGINT, 130),
            (["resume", str(run_dir)], signal.SIGKILL, -signal.SIGKILL),
            (["resume", str(run_dir)], None, 0),
        ]
        answered: list[int] = []
        for attempt, (args, stop, expected) in enumerate(plan, start=1):
            before = server.stats().completed
            assert await session(args, run_dir, attempt, stop) == expected
            answered.append(server.stats().completed - before)

    records = [stored_usage(run_dir, attempt) for attempt in (1, 2, 3)]
    assert all(r is not None for r in records)
    calls = [r["calls"] for r in records if r is not None]
    assert calls[0] == answered[0]  # interrupted: stopped gracefully, counted exactly
    assert 10 <= calls[1] <= answered[1]  # killed outright: its last checkpoint
    assert calls[2] == answered[2]  # ran to the end

    summary = RunView(run_dir).summary()
    assert summary["sessions"] == 3
    total, session_total = summary["llm_usage"]["total"], summary["llm_usage_session"]["total"]
    assert session_total["calls"] == answered[2]
    assert total["calls"] == sum(calls)  # before: only the last session's
    assert total["calls"] > session_total["calls"]
    for field in ("tokens_in", "tokens_out", "attempts", "cost_usd"):
        assert total[field] == sum(r[field] for r in records if r is not None), field
    cost = (total["tokens_in"] * 1.0 + total["tokens_out"] * 2.0) / 1e6
    assert abs(total["cost_usd"] - cost) < 1e-9
    # per caller too: the evolutions of all three sessions
    evol = summary["llm_usage"]["callers"]["evol"]["calls"]
    assert evol > summary["llm_usage_session"]["callers"]["evol"]["calls"]
