"""The supervisor runs a topology to completion, reports dead letters, and stops on signals."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from runtime.config import validate_config
from runtime.supervisor import Supervisor

REPO = Path(__file__).resolve().parents[2]


def demo_config(count: int, **relay: object) -> dict[str, object]:
    return {
        "run": {"name": "t", "progress": False},
        "agents": {
            "source": {"impl": "demo.source", "params": {"count": count, "topic": "raw"}},
            "relay": {
                "impl": "demo.relay",
                "concurrency": 3,
                "mailbox": 8,
                "params": {"listen": "raw", **relay},
            },
            "sink": {"impl": "demo.sink"},
        },
    }


async def test_demo_topology_runs_to_completion(tmp_path: Path) -> None:
    config = validate_config(demo_config(500))
    outcome = await Supervisor(config, tmp_path, handle_signals=False).run()
    assert outcome.status == "completed"
    assert outcome.exit_code == 0
    lines = (tmp_path / "items.jsonl").read_text().splitlines()
    assert sorted(json.loads(line)["index"] for line in lines) == list(range(500))
    assert outcome.statistics is not None
    assert outcome.statistics.agents["relay"].peak_in_flight <= 3


async def test_dead_letters_make_the_run_exit_non_zero(tmp_path: Path) -> None:
    config = validate_config(demo_config(100))
    raw = config.model_dump()
    raw["agents"]["source"]["params"]["fail_every"] = 10
    outcome = await Supervisor(validate_config(raw), tmp_path, handle_signals=False).run()
    assert outcome.status == "completed"
    assert outcome.dead_letters == 10
    assert outcome.exit_code == 1
    assert len((tmp_path / "items.jsonl").read_text().splitlines()) == 90


def _start(tmp_path: Path, count: int, extra: list[str]) -> subprocess.Popen[str]:
    config = tmp_path / "t.toml"
    config.write_text(
        f"""
[run]
name = "t"
[agents.source]
impl = "demo.source"
params = {{ count = {count}, topic = "raw" }}
[agents.relay]
impl = "demo.relay"
mailbox = 4
params = {{ listen = "raw" }}
[agents.sink]
impl = "demo.sink"
""",
        encoding="utf-8",
    )
    return subprocess.Popen(
        [sys.executable, "-m", "runtime", str(config), "--run-dir", str(tmp_path / "run"),
         "--no-progress", "--log-console", "json",
         "--set", "run.log.console_level=\"info\"", *extra],
        cwd=REPO,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def _wait_for_event(process: subprocess.Popen[str], event: str) -> list[str]:
    """Read stderr lines (blocking reads, no sleeps) until a JSON log line has ``event``."""
    assert process.stderr is not None
    seen: list[str] = []
    for line in process.stderr:
        seen.append(line)
        if line.startswith("{") and json.loads(line).get("event") == event:
            return seen
    raise AssertionError(f"process ended before logging {event!r}: {''.join(seen)[-2000:]}")


@pytest.mark.timeout(60)
def test_first_ctrl_c_drains_gracefully(tmp_path: Path) -> None:
    process = _start(tmp_path, 10**9, [])
    _wait_for_event(process, "source_started")
    process.send_signal(signal.SIGINT)
    stopping = _wait_for_event(process, "source_stopping")
    emitted = json.loads(stopping[-1])["emitted"]
    _, err = process.communicate(timeout=30)
    assert process.returncode == 130, err
    written = len((tmp_path / "run" / "items.jsonl").read_text().splitlines())
    assert written == emitted > 0  # everything admitted before the stop was drained


@pytest.mark.timeout(60)
def test_second_ctrl_c_aborts_a_stuck_drain(tmp_path: Path) -> None:
    process = _start(tmp_path, 10**9, ["--set", "agents.relay.params.stall_after=5"])
    _wait_for_event(process, "relay_stalled")
    process.send_signal(signal.SIGINT)
    _wait_for_event(process, "graceful_stop_requested")
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=30)
    assert process.returncode == 130
    assert "run_aborted" in err
    assert "second signal" in err
