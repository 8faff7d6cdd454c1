"""One owner per run directory, with real processes: a second `resume` (or an `export`) of a
directory that a live run holds exits 2 naming the holder's PID; a SIGKILLed holder's lock is
taken over. No sleeps: the test waits for the holder's first LLM request (an endpoint that never
answers sets an event) and for the holder's exit."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from aiohttp import web

from agents.llm.mock import MockLLMServer
from runtime.errors import RunLockedError
from runtime.lock import LOCK_FILE, RunLock, holder
from tests.pipeline.conftest import (
    PYTHON,
    REPO,
    RunView,
    http_backend,
    pipeline_config,
    run_cli,
    write_config,
    write_seeds,
)

QUIET = ["--no-progress", "--log-console", "off"]


@asynccontextmanager
async def silent_endpoint() -> AsyncIterator[tuple[str, asyncio.Event]]:
    """An OpenAI-style URL that takes requests and never answers; the event is set by the first."""
    reached = asyncio.Event()

    async def hold(request: web.Request) -> web.Response:
        reached.set()
        await asyncio.Event().wait()  # until the server closes
        raise AssertionError("unreachable")

    app = web.Application()
    app.router.add_post("/v1/chat/completions", hold)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}/v1", reached
    finally:
        await runner.cleanup()


def test_a_second_lock_in_another_open_file_is_refused_with_the_holders_pid(
    tmp_path: Path,
) -> None:
    refused = pytest.raises(RunLockedError, match=r"in use by `run` \(PID \d+ on ")
    with RunLock(tmp_path, "run"), refused:
        RunLock(tmp_path, "export").acquire()
    with RunLock(tmp_path, "export"):  # released: free again
        assert holder(tmp_path)["command"] == "export"


async def test_a_second_process_is_refused_and_a_dead_holders_lock_is_taken_over(
    tmp_path: Path,
) -> None:
    seeds = write_seeds(tmp_path / "seeds.jsonl",
                        [{"instruction": f"Explain topic {i}."} for i in range(6)])  # fmt: skip
    run_dir = tmp_path / "run"
    async with silent_endpoint() as (url, reached):
        raw = pipeline_config([{"path": str(seeds)}],
                              http_backend(url, model="mock-model", timeout_s=600), rounds=1)
        path = write_config(tmp_path / "evol.toml", raw)
        first = await asyncio.create_subprocess_exec(
            PYTHON, "-m", "runtime", str(path), "--run-dir", str(run_dir), *QUIET, cwd=REPO,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        try:
            async with asyncio.timeout(60):
                await reached.wait()  # the first run holds the directory and is calling its LLM
            second = await run_cli("resume", str(run_dir), *QUIET)
            export = await run_cli("export", str(run_dir))
            assert holder(run_dir)["pid"] == first.pid
        finally:
            first.send_signal(signal.SIGKILL)
            await first.wait()
    for refused in (second, export):
        assert refused.returncode == 2, refused.stderr
        assert f"(PID {first.pid} on " in refused.stderr
    assert "in use by `run`" in second.stderr
    assert not (run_dir / "summary.json").exists()  # the second process touched nothing

    # the holder died without cleaning up: its record is still there, its lock is not
    assert (run_dir / LOCK_FILE).is_file()
    assert holder(run_dir)["pid"] == first.pid
    async with MockLLMServer() as server:
        resumed = await run_cli("resume", str(run_dir), *QUIET,
                                "--set", f'llm.main.endpoints=["{server.openai_url}"]')  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr
    assert {r["status"] for r in RunView(run_dir).rows().values()} == {"done"}
    assert holder(run_dir)["command"] == "resume"
