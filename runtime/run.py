"""One run, assembled: run directory, logging, LLM clients (with cache and usage), supervisor.

`execute` is what ``python -m runtime CONFIG`` calls. It writes the resolved config into the run
directory before anything else, owns every LLM client it builds, and always closes them.
"""

from __future__ import annotations

import json
import re
from contextlib import AsyncExitStack
from datetime import UTC, datetime
from pathlib import Path

import structlog

from agents.llm.cache import ResponseCache
from agents.llm.factory import build_client
from agents.llm.types import LLMClient
from agents.llm.usage import UsageRecorder
from runtime.config import TopologyConfig
from runtime.supervisor import RunOutcome, Supervisor

__all__ = ["RESOLVED_CONFIG", "execute", "new_run_dir"]

RESOLVED_CONFIG = "config.resolved.json"

_log = structlog.get_logger("runtime")


def new_run_dir(config: TopologyConfig, *, now: datetime | None = None) -> Path:
    """``<output_dir>/<name>-<UTC timestamp>``, made unique with a counter if it exists."""
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%d-%H%M%S")
    safe_name = re.sub(r"[^A-Za-z0-9_.-]", "_", config.run.name)
    base = Path(config.run.output_dir) / f"{safe_name}-{stamp}"
    candidate, counter = base, 1
    while candidate.exists():
        counter += 1
        candidate = base.with_name(f"{base.name}-{counter}")
    return candidate


async def execute(
    config: TopologyConfig,
    run_dir: Path,
    *,
    show_progress: bool | None = None,
    handle_signals: bool = True,
) -> RunOutcome:
    """Run ``config`` in ``run_dir`` (created if needed) and return how it ended."""
    _write_json(run_dir / RESOLVED_CONFIG, config.model_dump(mode="json"))
    usage = UsageRecorder()
    async with AsyncExitStack() as stack:
        cache: ResponseCache | None = None
        if any(backend.cache for backend in config.llm.values()):
            cache_path = Path(config.run.llm_cache or run_dir / "llm_cache.sqlite")
            cache = ResponseCache(cache_path)
            stack.callback(cache.close)
        llms: dict[str, LLMClient] = {}
        for name, backend in config.llm.items():
            client = build_client(
                name, backend, cache=cache if backend.cache else None, usage=usage
            )
            stack.push_async_callback(client.aclose)
            llms[name] = client
        supervisor = Supervisor(
            config,
            run_dir,
            llms=llms,
            handle_signals=handle_signals,
            show_progress=show_progress,
        )
        outcome = await supervisor.run()
    _write_json(run_dir / "usage.json", usage.snapshot().model_dump(mode="json"))
    return outcome


def _write_json(path: Path, data: object) -> None:
    """Write ``data`` as JSON atomically (temp file + rename): never a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2), encoding="utf-8")
    tmp.replace(path)
