"""Run the mock server in its own process (benchmarks, tests that must not share our loop/CPU).

`async with spawn_mock_server(config) as mock:` starts `python -m agents.llm.mock`, waits for its
`MOCK_LLM_URL=…` line (up to `startup_timeout_s`, else `RuntimeError` with its stderr) and yields
a `MockProcess` with `.url`, `.openai_url`, `.anthropic_url`, `await .stats()`, `await .reset()`,
`await .configure(config)`. On exit the process gets SIGTERM, then SIGKILL after 10 s.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import aiohttp

from agents.llm.mock.cli import URL_PREFIX
from agents.llm.mock.config import MockConfig
from agents.llm.mock.server import MockStats

__all__ = ["MockProcess", "spawn_mock_server"]


@dataclass
class MockProcess:
    """A running mock server process."""

    url: str
    process: asyncio.subprocess.Process

    @property
    def openai_url(self) -> str:
        return f"{self.url}/v1"

    @property
    def anthropic_url(self) -> str:
        return self.url

    async def _call(self, method: str, path: str, body: str | None = None) -> object:
        timeout = aiohttp.ClientTimeout(total=30)
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.request(method, self.url + path, data=body) as resp,
        ):
            resp.raise_for_status()
            return await resp.json()

    async def stats(self) -> MockStats:
        return MockStats.model_validate(await self._call("GET", "/mock/stats"))

    async def reset(self) -> None:
        await self._call("POST", "/mock/reset")

    async def configure(self, config: MockConfig) -> None:
        await self._call("POST", "/mock/config", config.model_dump_json())


@asynccontextmanager
async def spawn_mock_server(
    config: MockConfig | None = None,
    *,
    host: str = "127.0.0.1",
    python: str = sys.executable,
    startup_timeout_s: float = 30.0,
) -> AsyncIterator[MockProcess]:
    """Start the mock server as a subprocess on a free port and yield it."""
    cfg = config or MockConfig()
    proc = await asyncio.create_subprocess_exec(
        python, "-m", "agents.llm.mock", "--host", host, "--config-json", cfg.model_dump_json(),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    if proc.stdout is None or proc.stderr is None:  # pragma: no cover - PIPE was requested
        raise RuntimeError("subprocess pipes missing")
    try:
        try:
            async with asyncio.timeout(startup_timeout_s):
                line = (await proc.stdout.readline()).decode().strip()
        except TimeoutError:
            line = ""
        if not line.startswith(URL_PREFIX):
            proc.kill()
            err = (await proc.stderr.read()).decode(errors="replace")[-2000:]
            raise RuntimeError(f"mock LLM server did not start: {line!r} {err}")
        yield MockProcess(line[len(URL_PREFIX) :], proc)
    finally:
        if proc.returncode is None:
            proc.terminate()
            try:
                async with asyncio.timeout(10):
                    await proc.wait()
            except TimeoutError:
                proc.kill()
                await proc.wait()
        with contextlib.suppress(Exception):
            await proc.stderr.read()
