"""Fixtures for the evaluation tests: an in-process mock LLM server (port 0), small seed files,
pipeline and eval topologies, the CLI as a subprocess, and the shared benchmark data."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import anyio
import pytest

from agents.llm.mock import MockConfig, MockLLMServer

REPO = Path(__file__).resolve().parents[2]
SHARED_DATA = REPO.parent / "shared" / "data"

#: Content faults that give the eliminator something to reject.
CONTENT_FAULTS = {"sorry": 0.1, "stopwords": 0.05, "copy_prompt": 0.1}

SEED_TOPICS = (
    "healthy breakfast",
    "solar panels",
    "the French revolution",
    "binary search",
    "sourdough bread",
    "photosynthesis",
    "remote work",
    "compound interest",
    "volcanoes",
    "the water cycle",
    "job interviews",
    "electric cars",
    "prime numbers",
    "coral reefs",
    "public speaking",
    "time management",
    "black holes",
    "recycling plastic",
    "learning a language",
    "saving energy at home",
)


def data_file(name: str) -> Path:
    """A file in `<repo parent>/shared/data`; the test is skipped when it is absent."""
    path = SHARED_DATA / name
    if not path.is_file():
        pytest.skip(f"shared data file {path} is absent (benchmark data is not in the repo)")
    return path


def write_seeds(path: Path, count: int = 20) -> Path:
    """`count` Alpaca-style seeds (no reference output: round 0 is answered by the LLM)."""
    lines = [
        json.dumps(
            {
                "instruction": f"Explain {SEED_TOPICS[i % len(SEED_TOPICS)]} to a "
                f"beginner in a short paragraph, with one everyday example and one common "
                f"mistake to avoid (case {i}).",
                "input": "",
            }
        )
        for i in range(count)
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def mock_backend(url: str, **fields: Any) -> dict[str, Any]:
    """An `openai-compatible` backend on the mock server: quick retries, no jitter."""
    return {
        "backend": "openai-compatible",
        "model": "mock-model",
        "endpoints": [url],
        "concurrency": 8,
        "backoff": {"base_s": 0.01, "max_s": 0.05, "jitter": 0.0},
        **fields,
    }


def pipeline_topology(seeds: Path, url: str, *, rounds: int = 2) -> dict[str, Any]:
    """pool → evol → responder → eliminator over the mock, seeds answered at round 0."""
    stage = {"concurrency": 8, "llm": "main"}
    return {
        "run": {
            "name": "report-e2e",
            "seed": 11,
            "progress": False,
            "inputs": [{"path": str(seeds)}],
        },
        "llm": {"main": mock_backend(url)},
        "agents": {
            "pool": {
                "impl": "pool.rounds",
                "params": {"rounds": rounds, "answer_seeds": "generate"},
            },
            "evol": {"impl": "evol.wizardlm", **stage},
            "responder": {"impl": "respond.default", **stage},
            "eliminator": {"impl": "eliminate.wizardlm", **stage},
        },
    }


@pytest.fixture
async def mock_server() -> AsyncIterator[MockLLMServer]:
    """A mock LLM server on 127.0.0.1, port 0, with a little latency and content faults."""
    config = MockConfig(
        seed=5,
        latency={"kind": "uniform", "low_s": 0.001, "high_s": 0.01},
        content_faults=CONTENT_FAULTS,
    )
    async with MockLLMServer(config) as server:
        yield server


@pytest.fixture
async def baseline_server() -> AsyncIterator[MockLLMServer]:
    """A second mock with another seed and model name: a baseline whose answers differ from the
    model's (the mock's reply depends only on its seed and the messages; the response cache key
    on the model name, not the endpoint)."""
    async with MockLLMServer(MockConfig(seed=99, models=["baseline-model"])) as server:
        yield server


async def run_cli(*args: str, timeout_s: float = 120.0) -> subprocess.CompletedProcess[str]:
    """`python -m runtime ARGS` in the repository root, without blocking the event loop (the
    in-process mock server keeps serving)."""
    with anyio.fail_after(timeout_s):
        done = await anyio.run_process(
            [sys.executable, "-m", "runtime", *args], cwd=REPO, check=False
        )
    return subprocess.CompletedProcess(
        done.args, done.returncode, done.stdout.decode(), done.stderr.decode()
    )


@pytest.fixture
def chromium_screenshot() -> Callable[[Path, Path], Path]:
    """`shoot(html, png)`: a headless Chromium screenshot (skips when Chromium is absent)."""
    import shutil

    def shoot(page: Path, png: Path, height: int = 4000) -> Path:
        browser = shutil.which("chromium") or shutil.which("chromium-browser")
        if browser is None:
            pytest.skip("chromium is not installed (apt-get install chromium)")
        cmd = [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            f"--user-data-dir={png.parent / 'profile'}",
            f"--screenshot={png}",
            f"--window-size=1280,{height}",
            page.as_uri(),
        ]
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=90, check=False)
        assert result.returncode == 0, result.stderr[-2000:]
        return png

    return shoot
