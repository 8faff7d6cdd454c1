"""Helpers of the distributed tests: the Evol-Instruct test topology, NATS overrides, log waits."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def require_nats() -> None:
    """Skip the calling test module unless nats-py and a nats-server binary are installed."""
    import pytest

    pytest.importorskip(
        "nats", reason="nats-py not installed: pip install 'evolagents[distributed]'"
    )
    from bus.nats import NatsServerNotFound, find_nats_server

    try:
        find_nats_server()
    except NatsServerNotFound as exc:
        pytest.skip(str(exc), allow_module_level=True)
SEEDS = REPO / "seeds" / "general.jsonl"


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
