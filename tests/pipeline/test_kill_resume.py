"""SIGKILL the run process at several points, resume, and get exactly the uninterrupted dataset.

The run (`python -m runtime CONFIG`) is a subprocess logging JSON to stderr; the test counts its
`row_finished` events and kills it (SIGKILL: no cleanup at all) after the N-th, then resumes
(`python -m runtime resume RUN_DIR`), kills again, and finally lets a resume finish. The mock runs
in the test's own event loop; the requests its handlers hold at the kill are reported (requests
still unread in socket buffers are not among them, so that figure is a lower bound).

Cost: the LLM response cache commits an entry before the call returns, so a resumed run gets every
stored result from the cache. Only calls whose result was not yet committed are paid again: those
in flight at the kill — at most the backend's concurrency cap C per kill — and, in a narrow window,
a completed one whose group commit had not finished (the client frees its slot before the commit).
The test counts the mock's requests across kills and resumes, compares with an uninterrupted run,
checks that both runs cached the same set of calls (so every extra request repeats a call), that
the repeats are exactly the calls left uncommitted at the kills, and bounds those per kill.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from agents.llm.mock import MockConfig, MockLLMServer
from tests.pipeline.conftest import (
    PYTHON,
    REPO,
    RunView,
    assert_accounted,
    http_backend,
    pipeline_config,
    write_config,
)

SEEDS = 150
ROUNDS = 3
CAP = 16  # the backend's concurrency cap: at most CAP calls in flight
KILL_AFTER = (1, 40, 60)  # row_finished events seen in each attempt before its SIGKILL
LOG = ["--no-progress", "--log-console", "json", "--set", 'run.log.console_level="info"']


async def run_until(args: list[str], kill_after: int | None, server: MockLLMServer) -> int:
    """Run `python -m runtime ARGS`; SIGKILL it after `kill_after` row_finished events.

    Returns the number of requests the mock's handlers held at the kill (0 when it ran to the end).
    """
    proc = await asyncio.create_subprocess_exec(
        PYTHON, "-m", "runtime", *args, *LOG, cwd=REPO,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stderr is not None
    finished = 0
    in_flight = 0
    tail: list[str] = []
    async with asyncio.timeout(90):
        while line := (await proc.stderr.readline()).decode(errors="replace"):
            tail = [*tail[-20:], line]
            if not line.startswith("{"):
                continue
            event: dict[str, Any] = json.loads(line)
            if event.get("event") == "row_finished":
                finished += 1
                if kill_after is not None and finished == kill_after:
                    in_flight = server.stats().in_flight
                    proc.send_signal(signal.SIGKILL)
                    break
        code = await proc.wait()
    if kill_after is None:
        assert code == 0, "".join(tail)
    else:
        assert code == -signal.SIGKILL, (code, "".join(tail))
    return in_flight


def count_cache(path: Path) -> int:
    """Committed entries of a response cache (0 before the run created it)."""
    if not path.exists():
        return 0
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
        return int(db.execute("SELECT COUNT(*) FROM responses").fetchone()[0])


@pytest.mark.slow
@pytest.mark.timeout(240)
async def test_sigkill_at_several_points_then_resume_gives_the_uninterrupted_dataset(
    alpaca: Path, tmp_path: Path
) -> None:
    config = MockConfig(
        seed=11,
        latency={"kind": "fixed", "value_s": 0.005},
        content_faults={"sorry": 0.05, "copy_prompt": 0.1, "equal": 0.1},
    )
    async with MockLLMServer(config) as server:
        raw = pipeline_config(
            [{"path": str(alpaca), "limit": SEEDS}],
            http_backend(server.openai_url, concurrency=CAP, timeout_s=30.0),
            rounds=ROUNDS,
            concurrency=CAP,
        )
        path = write_config(tmp_path / "evol.toml", raw)

        # the reference: one uninterrupted run
        await run_until([str(path), "--run-dir", str(tmp_path / "whole")], None, server)
        whole_requests = server.stats().requests
        server.reset()

        # the same run, killed three times and resumed; after each kill, the calls it paid for
        # but did not commit to the cache are its requests minus the entries it added
        run_dir = tmp_path / "killed"
        cache = run_dir / "llm_cache.sqlite"
        commands = [[str(path), "--run-dir", str(run_dir)]] + [["resume", str(run_dir)]] * 3
        uncommitted: list[int] = []
        at_kill: list[int] = []
        for args, kill_after in zip(commands, [*KILL_AFTER, None], strict=True):
            requests, entries = server.stats().requests, count_cache(cache)
            at_kill.append(await run_until(args, kill_after, server))
            if kill_after is not None:
                paid = server.stats().requests - requests
                uncommitted.append(paid - (count_cache(cache) - entries))
        killed_requests = server.stats().requests

    whole, killed = RunView(tmp_path / "whole"), RunView(run_dir)
    assert_accounted(killed, seeds=SEEDS, rounds=ROUNDS)
    assert {r["status"] for r in killed.rows().values()} == {"done"}
    assert killed.dataset_text() == whole.dataset_text()
    assert killed.dataset_text("chat") == whole.dataset_text("chat")
    assert killed.summary()["rounds"] == whole.summary()["rounds"]
    assert killed.summary()["rejected_by_rule"] == whole.summary()["rejected_by_rule"]
    attempts = killed.query("SELECT attempt, status FROM attempts ORDER BY attempt")
    assert [(a["attempt"], a["status"]) for a in attempts][-1] == (4, "completed")
    assert [a["status"] for a in attempts[:3]] == [None, None, None]  # killed: never ended

    # both runs made the same set of distinct calls: every extra request repeats one of them
    cached = [count_cache(view.run_dir / "llm_cache.sqlite") for view in (whole, killed)]
    assert cached == [whole_requests, whole_requests]
    repeats = killed_requests - whole_requests
    print(
        f"requests: uninterrupted={whole_requests} killed+resumed={killed_requests} "
        f"repeats={repeats} uncommitted at each kill={uncommitted} "
        f"(mock handlers busy at each kill: {at_kill[:-1]}) bound={CAP * len(KILL_AFTER)}"
    )
    # no call whose result was committed is made again: the repeats are exactly the calls that
    # were paid for but not yet committed when the process died ...
    assert repeats == sum(uncommitted)
    # ... which are bounded by the calls in flight at each kill: the client holds a call's
    # concurrency slot until its answer is committed to the cache, so at most CAP calls can be
    # paid for and not yet stored when the process dies.
    assert all(n <= CAP for n in uncommitted), uncommitted
    assert repeats <= CAP * len(KILL_AFTER)
