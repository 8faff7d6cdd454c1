"""Failures are loud: `python -m runtime` against the mock server (port 0) with a dead endpoint,
a rejected key or an unknown model — the circuit breaker stops the run at once (exit 1, the
endpoint and error named, the store resumable), `resume` finishes it once the backend is fixed;
`run.preflight` refuses to start (exit 2, nothing written); lost rows exit 1."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from agents.llm.mock import MockConfig, MockLLMServer
from tests.pipeline.conftest import (
    RunView,
    http_backend,
    pipeline_config,
    run_cli,
    write_config,
    write_seeds,
)

SEEDS = 40
QUIET = ["--no-progress", "--log-console", "off"]
KEY = "right-key-0123"


def seed_file(tmp_path: Path) -> Path:
    records = [{"instruction": f"Explain topic number {i} to a student."} for i in range(SEEDS)]
    return write_seeds(tmp_path / "seeds.jsonl", records)


def config(tmp_path: Path, url: str, **backend: Any) -> Path:
    backend.setdefault("model", "mock-model")
    backend.setdefault("concurrency", 8)
    backend.setdefault("backoff", {"base_s": 0.05, "max_s": 0.2})
    raw = pipeline_config([{"path": str(seed_file(tmp_path))}], http_backend(url, **backend),
                          rounds=2, concurrency=8)  # fmt: skip
    return write_config(tmp_path / "evol.toml", raw)


async def dead_url() -> str:
    async with MockLLMServer() as gone:
        return gone.openai_url  # refuses connections once closed


@dataclass(frozen=True)
class Broken:
    """How a backend is broken, and what `resume` is given once it is fixed."""

    kind: str
    backend: dict[str, Any] = field(default_factory=dict)
    mock: dict[str, Any] = field(default_factory=dict)
    fix: tuple[str, ...] = ()
    env: dict[str, str] | None = None
    wrong_env: dict[str, str] | None = None


BROKEN = [
    pytest.param(Broken("unreachable"), id="connection-refused"),
    pytest.param(
        Broken("auth", {"api_key_env": "EVOL_TEST_KEY"}, {"api_key": KEY},
               env={"EVOL_TEST_KEY": KEY}, wrong_env={"EVOL_TEST_KEY": "wrong-key-9876"}),
        id="401",
    ),
    pytest.param(
        Broken("not_found", {"model": "no-such-model"}, {"strict_models": True},
               fix=('llm.main.model="mock-model"',)),
        id="404-model",
    ),
]  # fmt: skip


@dataclass(frozen=True)
class Setup:
    server: MockLLMServer
    url: str  # what the config points at
    config: Path
    run_dir: Path


@asynccontextmanager
async def broken_backend(tmp_path: Path, case: Broken) -> AsyncIterator[Setup]:
    """A mock server and a config whose backend is broken as `case` says."""
    async with MockLLMServer(MockConfig(**case.mock)) as server:
        url = await dead_url() if case.kind == "unreachable" else server.openai_url
        yield Setup(server, url, config(tmp_path, url, **case.backend), tmp_path / "run")


@pytest.mark.parametrize("case", BROKEN)
async def test_a_broken_backend_trips_the_breaker_then_resume_finishes_the_run(
    tmp_path: Path, case: Broken
) -> None:
    async with broken_backend(tmp_path, case) as setup:
        run_dir = setup.run_dir
        started = time.monotonic()
        first = await run_cli(str(setup.config), "--run-dir", str(run_dir), *QUIET,
                              env=case.wrong_env)  # fmt: skip
        elapsed = time.monotonic() - started

        assert first.returncode == 1, first.stderr
        lines = first.stderr.splitlines()
        (stopped,) = [line for line in lines if line.startswith("error: LLM backend 'main'")]
        assert "stopped: 10 consecutive attempts failed with a backend fault" in stopped
        assert setup.url in stopped
        assert f"{case.kind}:" in stopped
        assert "wrong-key" not in first.stderr
        assert lines[-2].startswith("UNFINISHED: ")
        assert lines[-2].endswith(f"continue with `python -m runtime resume {run_dir}`")
        assert elapsed < 30  # before: every call retried 6 times (240 attempts over 23 s)
        view = RunView(run_dir)
        rows = view.rows()
        assert len(rows) >= 8
        assert {r["status"] for r in rows.values()} == {"active"}  # nothing "failed"
        usage = view.summary()["llm_usage"]["total"]
        assert usage["attempts"] <= 10 + 8  # the breaker's 10, and what was already in flight

        fix = list(case.fix)
        if case.kind == "unreachable":  # the server is back, at another address
            fix = [f'llm.main.endpoints=["{setup.server.openai_url}"]']
        sets = [a for f in fix for a in ("--set", f)]
        resumed = await run_cli("resume", str(run_dir), *QUIET, *sets, env=case.env)
    assert resumed.returncode == 0, resumed.stderr
    assert {r["status"] for r in view.rows().values()} == {"done"}
    assert len(view.rows()) == SEEDS


@pytest.mark.parametrize("case", BROKEN)
async def test_preflight_refuses_to_start_and_writes_nothing(
    tmp_path: Path, case: Broken
) -> None:
    async with broken_backend(tmp_path, case) as setup:
        run_dir, url = setup.run_dir, setup.url
        done = await run_cli(str(setup.config), "--run-dir", str(run_dir), "--set",
                             "run.preflight=true", *QUIET, env=case.wrong_env)  # fmt: skip
        requests = setup.server.stats().requests
        kind = case.kind
    assert done.returncode == 2, done.stderr
    assert "preflight failed for 1 of 1 endpoints — nothing was written or paid for" in done.stderr
    assert f"[llm.main] {url}: {kind}:" in done.stderr
    assert not (run_dir / "run.sqlite").exists()
    assert not (run_dir / "config.resolved.json").exists()
    assert requests == (0 if kind == "unreachable" else 1)  # one request per endpoint


async def test_preflight_passes_a_healthy_endpoint_with_one_request(tmp_path: Path) -> None:
    async with MockLLMServer() as server:
        path = config(tmp_path, server.openai_url)
        done = await run_cli(str(path), "--run-dir", str(tmp_path / "run"), "--set",
                             "run.preflight=true", *QUIET)  # fmt: skip
        with_preflight = server.stats().requests
        server.reset()
        plain = await run_cli(str(path), "--run-dir", str(tmp_path / "plain"), *QUIET)
        without = server.stats().requests
    assert (done.returncode, plain.returncode) == (0, 0), done.stderr + plain.stderr
    assert with_preflight == without + 1


async def test_rows_lost_to_exhausted_retries_exit_1_with_the_reasons_last(
    tmp_path: Path,
) -> None:
    async with MockLLMServer(MockConfig(faults={"server_error": 1.0})) as server:
        path = config(tmp_path, server.openai_url, max_attempts=2)
        done = await run_cli(str(path), "--run-dir", str(tmp_path / "run"), *QUIET)
    assert done.returncode == 1  # before: "40 failed", exit 0
    lines = done.stderr.splitlines()
    assert lines[-3:-1] == [
        f"FAILED: {SEEDS} of {SEEDS} rows failed (100.0% > run.max_failed_fraction = 0)",
        f"  failed steps by stage:error: respond:overloaded {SEEDS}",
    ]
    assert lines[-1].startswith(f"  {SEEDS} rows: respond: overloaded: LLM backend")
    assert "server error 500" in lines[-1]
    verdict = json.loads((tmp_path / "run" / "summary.json").read_text())["verdict"]
    assert (verdict["failed"], verdict["ok"]) == (SEEDS, False)
