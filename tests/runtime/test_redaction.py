"""Credentials in endpoint URLs are masked everywhere they are written: config.resolved.json,
run.log, run.sqlite, summary and report, error messages; `resume` asks for them again."""

from __future__ import annotations

from pathlib import Path

import pytest

from agents.llm.mock import MockConfig, MockLLMServer
from agents.llm.redact import redact_text, redact_url
from tests.pipeline.conftest import (
    http_backend,
    pipeline_config,
    run_cli,
    write_config,
    write_seeds,
)

QUIET = ["--no-progress", "--log-console", "json", "--set", 'run.log.console_level="info"']


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        pytest.param("https://u:pw@h/v1", "https://u:***@h/v1", id="userinfo"),
        pytest.param("https://tok@h:8443/v1", "https://***@h:8443/v1", id="token-userinfo"),
        pytest.param("https://h/v1?api_key=abc", "https://h/v1?api_key=***", id="api_key"),
        pytest.param(
            "https://h/v1?api-version=2024-06&key=abc&Token=x",
            "https://h/v1?api-version=2024-06&key=***&Token=***",
            id="key-token-kept-others",
        ),
        pytest.param("https://h/v1?access_token=abc", "https://h/v1?access_token=***", id="oauth"),
        pytest.param("http://127.0.0.1:8000/v1", "http://127.0.0.1:8000/v1", id="plain"),
    ],
)
def test_redact_url(url: str, expected: str) -> None:
    assert redact_url(url) == expected


def test_redact_text_masks_every_url_in_a_message() -> None:
    text = "LLM backend at https://a:b@h/v1: 500; retry https://h2/v1?token=t later"
    assert redact_text(text) == (
        "LLM backend at https://a:***@h/v1: 500; retry https://h2/v1?token=*** later"
    )


def files_containing(root: Path, secrets: tuple[str, ...]) -> list[str]:
    return sorted(
        str(path.relative_to(root))
        for path in root.rglob("*")
        if path.is_file() and any(s.encode() in path.read_bytes() for s in secrets)
    )


async def test_endpoint_credentials_never_reach_the_run_directory(tmp_path: Path) -> None:
    secrets = ("SECRETPW", "SECRETQ")
    seeds = write_seeds(tmp_path / "seeds.jsonl",
                        [{"instruction": f"Explain topic {i}."} for i in range(12)])  # fmt: skip
    run_dir = tmp_path / "run"
    async with MockLLMServer(MockConfig(seed=3, faults={"server_error": 0.3})) as server:
        host = server.openai_url.removeprefix("http://")
        url = f"http://alice:SECRETPW@{host}?api_key=SECRETQ&api-version=1"
        backend = http_backend(url, model="mock-model", max_attempts=1)
        path = write_config(tmp_path / "evol.toml",
                            pipeline_config([{"path": str(seeds)}], backend, rounds=1))  # fmt: skip
        first = await run_cli(str(path), "--run-dir", str(run_dir), *QUIET)
        # some rows failed with the server's 500: their errors (which name the endpoint) are in
        # the store, the log, the summary and on stderr
        assert first.returncode == 1, first.stderr
        assert "alice:***@" in first.stderr
        assert "api_key=***" in (run_dir / "run.log").read_text()
        assert server.stats().completed > 0  # the real URL was used for the requests

        refused = await run_cli("resume", str(run_dir), *QUIET)
        assert refused.returncode == 2
        assert "llm.main.endpoints: an endpoint URL held credentials" in refused.stderr
        again = await run_cli("resume", str(run_dir), "--retry-failed", *QUIET,
                              "--set", f'llm.main.endpoints=["{url}"]')  # fmt: skip
    assert again.returncode in (0, 1), again.stderr
    for done in (first, refused, again):
        assert not any(s in done.stderr + done.stdout for s in secrets)
    assert files_containing(run_dir, secrets) == []
    assert (run_dir / "run.sqlite").is_file()
    assert "SECRET" not in (run_dir / "config.resolved.json").read_text()
