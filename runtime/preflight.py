"""``run.preflight``: one cheap request per endpoint before any row starts.

Each HTTP backend that an enabled agent uses gets one chat request per endpoint (the backend's
defaults with ``max_tokens = 1``: a few tokens, sent straight to the transport — no cache, no
retry; see `ManagedClient.preflight`). A backend fault (unreachable, 401/403, 404 model or path)
on any endpoint raises `PreflightError` listing every failing endpoint (credentials masked),
before the run's store or resolved config is written. Other answers (429, 5xx, a timeout) show
the endpoint is there and pass, logged as warnings. Batch backends (a line answers within hours)
and in-process ones (scripted, embedded, vllm, transformers: no endpoint) are not preflighted.
"""

from __future__ import annotations

import anyio
import structlog

from agents.llm.config import HTTP_BACKENDS
from agents.llm.factory import build_client
from agents.llm.managed import PreflightResult
from agents.llm.usage import UsageRecorder
from runtime.config import TopologyConfig
from runtime.errors import PreflightError

__all__ = ["preflight_backends"]

_log = structlog.get_logger("runtime")


def _preflighted(config: TopologyConfig) -> list[str]:
    """The backends a preflight checks: HTTP, not batch, used by an enabled agent."""
    used = {
        backend
        for agent in config.agents.values()
        if agent.enabled
        for backend in agent.llm_bindings().values()
    }
    return [
        name
        for name, backend in config.llm.items()
        if name in used and backend.backend in HTTP_BACKENDS
        and not backend.backend.endswith("-batch")
    ]


async def preflight_backends(config: TopologyConfig) -> list[PreflightResult]:
    """Check every endpoint (concurrently); raise `PreflightError` on a backend fault."""
    results: list[PreflightResult] = []

    async def check(name: str) -> None:
        client = build_client(name, config.llm[name], cache=None, usage=UsageRecorder())
        try:
            results.extend(await client.preflight())
        finally:
            await client.aclose()

    async with anyio.create_task_group() as tg:
        for name in _preflighted(config):
            tg.start_soon(check, name)
    for result in results:
        if result.ok and result.error_kind:
            _log.warning("preflight_answered", backend=result.backend, endpoint=result.endpoint,
                         error_kind=result.error_kind, message=result.message)  # fmt: skip
        elif result.ok:
            _log.info("preflight_ok", backend=result.backend, endpoint=result.endpoint)
    failed = [r for r in results if not r.ok]
    if failed:
        lines = "; ".join(f"[llm.{r.backend}] {r.endpoint}: {r.error_kind}: {r.message}"
                          for r in failed)  # fmt: skip
        raise PreflightError(
            f"preflight failed for {len(failed)} of {len(results)} endpoints — nothing was "
            f"written or paid for; fix them and run again (or set run.preflight = false): {lines}"
        )
    return results
