"""Fixtures for the Evol-Instruct pipeline tests: seed files, configs, runs, store readers, mocks.

Runs go through the real entry points: `runtime.run.execute` in process (the test's event loop) or
`python -m runtime` as a subprocess. Mock LLM servers listen on 127.0.0.1, port 0.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, closing
from pathlib import Path
from typing import Any

import anyio
import pytest

from agents.llm.mock import MockConfig
from agents.llm.mock.process import MockProcess, spawn_mock_server
from runtime.config import validate_config
from runtime.run import execute
from runtime.supervisor import RunOutcome

REPO = Path(__file__).resolve().parents[2]
DATA = REPO.parent / "shared" / "data"
ALPACA = DATA / "alpaca_data_subset5000_pr152.json"
PYTHON = sys.executable

#: A step's terminal states; anything else left in a finished run means a lost message.
TERMINAL = {"accepted", "rejected", "failed"}


@pytest.fixture
def alpaca() -> Path:
    """The shared Alpaca subset (5,000 records); the test is skipped when it is absent."""
    if not ALPACA.is_file():
        pytest.skip(f"shared data set not found: {ALPACA} (see /work/shared/data/SOURCES.md)")
    return ALPACA


def write_seeds(path: Path, records: list[dict[str, str]]) -> Path:
    """Write Alpaca-style records as JSON lines."""
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def pipeline_config(
    inputs: list[dict[str, Any]],
    llm: dict[str, Any],
    *,
    rounds: int = 4,
    seed: int = 7,
    concurrency: int = 16,
    pool: dict[str, Any] | None = None,
    evol: dict[str, Any] | None = None,
    eliminator: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A raw topology: pool → evol → responder → eliminator, all on the backend named `main`."""
    stage = {"concurrency": concurrency, "mailbox": 1024, "llm": "main"}
    return {
        "run": {"name": "pipeline", "seed": seed, "progress": False, "inputs": inputs},
        "llm": {"main": llm},
        "agents": {
            "pool": {"impl": "pool.rounds", "params": {"rounds": rounds, **(pool or {})}},
            "evol": {"impl": "evol.wizardlm", **stage, "params": evol or {}},
            "responder": {"impl": "respond.default", **stage},
            "eliminator": {"impl": "eliminate.wizardlm", **stage, "params": eliminator or {}},
        },
    }


def scripted(handler: str | None = None, **options: Any) -> dict[str, Any]:
    """A `scripted` backend: instant, no back-off, a handler from `tests.pipeline.scripts`."""
    if handler is not None:
        options["handler"] = f"tests.pipeline.scripts:{handler}"
    return {
        "backend": "scripted",
        "model": "scripted",
        "concurrency": 8,
        "max_attempts": 2,
        "backoff": {"base_s": 0.0, "max_s": 0.0, "jitter": 0.0},
        "options": options,
    }


def http_backend(url: str, **fields: Any) -> dict[str, Any]:
    """An `openai-compatible` backend on a mock server."""
    return {"backend": "openai-compatible", "model": "mock", "endpoints": [url], **fields}


async def run_pipeline(raw: dict[str, Any], run_dir: Path) -> RunOutcome:
    """Run a raw topology in process (no signal handling, no progress display)."""
    config = validate_config(raw)
    return await execute(config, run_dir, show_progress=False, handle_signals=False)


def write_config(path: Path, raw: dict[str, Any]) -> Path:
    """Write a raw topology as a TOML file (what the CLI reads)."""
    path.write_text(_toml(raw), encoding="utf-8")
    return path


def _toml(raw: dict[str, Any]) -> str:
    lines: list[str] = []

    def table(prefix: str, node: dict[str, Any]) -> None:
        scalars = {k: v for k, v in node.items() if not isinstance(v, dict) or not v}
        tables = {k: v for k, v in node.items() if isinstance(v, dict) and v}
        if prefix:
            lines.append(f"[{prefix}]")
        for key, value in scalars.items():
            lines.append(f"{key} = {_value(value)}")
        for key, value in tables.items():
            table(f"{prefix}.{key}" if prefix else key, value)

    table("", raw)
    return "\n".join(lines) + "\n"


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"cannot write {value!r} as TOML")


# -- reading a finished run ---------------------------------------------------------------------


class RunView:
    """Read-only access to a run directory: its store, summary and exported dataset."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        uri = f"file:{self.run_dir / 'run.sqlite'}?mode=ro"
        with closing(sqlite3.connect(uri, uri=True)) as db:
            db.row_factory = sqlite3.Row
            return list(db.execute(sql, params))

    def steps(self, where: str = "1", params: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        return self.query(f"SELECT * FROM steps WHERE {where} ORDER BY seed_id, round", params)

    def rows(self) -> dict[str, sqlite3.Row]:
        return {r["seed_id"]: r for r in self.query("SELECT * FROM rows")}

    def rules(self) -> dict[str, int]:
        return {
            r["rule"]: r["n"]
            for r in self.query(
                "SELECT rule, COUNT(*) AS n FROM steps WHERE status = 'rejected' GROUP BY rule"
            )
        }

    def summary(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads((self.run_dir / "summary.json").read_text())
        return data

    def dataset(self, fmt: str = "alpaca") -> list[dict[str, Any]]:
        path = self.run_dir / f"dataset.{fmt}.jsonl"
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]

    def dataset_text(self, fmt: str = "alpaca") -> str:
        return (self.run_dir / f"dataset.{fmt}.jsonl").read_text(encoding="utf-8")


def assert_accounted(view: RunView, seeds: int, rounds: int) -> None:
    """Every seed is a row that is done or failed; every step ended; nothing half-way.

    - a done row has one step per round 0..M, each accepted or rejected (with a rule);
    - a failed row carries its error and ends at a failed step (with stage and error) or, when a
      handler crashed, at a dead letter; its earlier steps are accepted or rejected;
    - a rejected step names its rule and reason; a failed step its stage, error type and error.
    """
    rows = view.rows()
    assert len(rows) == seeds, f"{seeds - len(rows)} seeds were never started"
    statuses = {r["status"] for r in rows.values()}
    assert statuses <= {"done", "failed"}, f"unfinished rows: {statuses}"
    dead = {
        d["correlation_id"]: d["error_type"]
        for d in view.query("SELECT correlation_id, error_type FROM dead_letters")
    }
    steps: dict[str, list[sqlite3.Row]] = {}
    for step in view.steps():
        steps.setdefault(step["seed_id"], []).append(step)
    for seed_id, row in rows.items():
        chain = steps.get(seed_id, [])
        assert [s["round"] for s in chain] == list(range(len(chain))), seed_id
        for step in chain[:-1] if seed_id in dead else chain:
            assert step["status"] in TERMINAL, (seed_id, step["round"], step["status"])
            if step["status"] == "rejected":
                assert step["rule"], dict(step)
                assert step["reason"], dict(step)
            if step["status"] == "failed":
                assert step["stage"], dict(step)
                assert step["error_type"], dict(step)
                assert step["error"], dict(step)
        if row["status"] == "done":
            assert len(chain) == rounds + 1, (seed_id, len(chain))
            assert row["error"] is None
            assert all(s["status"] != "failed" for s in chain), seed_id
        else:
            assert row["error"], f"failed row {seed_id} has no error"
            assert chain, seed_id
            assert all(s["status"] != "failed" for s in chain[:-1]), seed_id
            if chain[-1]["status"] != "failed":  # a handler crashed: its dead letter is kept
                assert seed_id in dead, (seed_id, dict(row))
                assert f"raised {dead[seed_id]}" in row["error"], dict(row)


# -- mock servers -------------------------------------------------------------------------------

SpawnMock = Callable[..., Awaitable[MockProcess]]


@pytest.fixture
async def spawn_mock() -> AsyncIterator[SpawnMock]:
    """`await spawn_mock(**MockConfig fields)`: a mock server in its own process (own CPU)."""
    async with AsyncExitStack() as stack:

        async def spawn(**fields: Any) -> MockProcess:
            return await stack.enter_async_context(spawn_mock_server(MockConfig(**fields)))

        yield spawn


async def run_cli(
    *args: str, timeout_s: float = 120.0, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`python -m runtime ARGS` in the repository root, without blocking the event loop
    (``env``: variables added to this process's environment)."""
    full_env = {**os.environ, **env} if env else None
    with anyio.fail_after(timeout_s):
        done = await anyio.run_process(
            [PYTHON, "-m", "runtime", *args], cwd=REPO, check=False, env=full_env
        )
    return subprocess.CompletedProcess(
        done.args, done.returncode, done.stdout.decode(), done.stderr.decode()
    )
