"""One run, assembled: run dir, store, seeds, LLM clients (cache + usage), supervisor, exports.

`execute` is what ``python -m runtime CONFIG`` and ``resume`` call. Order of events:
1. the seeds are opened (small inputs are validated completely) — a bad input fails here, before
   anything is written; with ``run.preflight`` each HTTP endpoint gets one cheap request
   (`runtime.preflight`) — a backend fault fails here too;
2. the resolved config is written (endpoint credentials masked), the store opened
   (``run.sqlite``), an attempt recorded;
3. LLM clients are built over one shared response cache and one usage recorder; an open circuit
   breaker on any of them stops the run gracefully (`Supervisor.fail`);
4. the supervisor runs the topology; the store observes the bus and flushes periodically, and
   this session's LLM usage is checkpointed into it (so a killed session's calls still count);
5. whatever the outcome: usage and the summary (usage of all sessions, and of this one) are
   stored, the dataset exported (also after an interrupt: it holds what was finished), the row
   verdict attached to the outcome (`runtime.verdict`), clients and store closed.
"""

from __future__ import annotations

import json
import os
import re
import socket
from collections.abc import Callable, Collection
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import structlog

from agents.llm.cache import CompletionCache, ResponseCache
from agents.llm.factory import build_client
from agents.llm.managed import ManagedClient
from agents.llm.redact import redact_url
from agents.llm.types import LLMClient
from agents.llm.usage import UsageRecorder, UsageSnapshot, combine_snapshots
from runtime.config import TopologyConfig
from runtime.export import export_dataset, export_method_history, summarize
from runtime.seeds import SeedStream
from runtime.store import STORE_FILE, RunStore
from runtime.supervisor import RunBus, RunOutcome, Supervisor
from runtime.verdict import RowVerdict, row_verdict

__all__ = [
    "RESOLVED_CONFIG",
    "SUMMARY_FILE",
    "execute",
    "new_run_dir",
    "resolved_config",
    "run_usage",
    "stop_on_open_circuit",
]

RESOLVED_CONFIG = "config.resolved.json"
SUMMARY_FILE = "summary.json"
#: Seconds between checkpoints of this session's LLM usage in the store.
USAGE_CHECKPOINT_S = 0.5

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
    config_dir: Path | None = None,
    bus_factory: Callable[[], RunBus] | None = None,
    local_agents: Collection[str] | None = None,
) -> RunOutcome:
    """Run ``config`` in ``run_dir`` (created if needed; an existing store is resumed).

    ``bus_factory`` and ``local_agents``: see `Supervisor` (the distributed coordinator passes a
    NATS bus and the agents it runs itself; the store observes that bus as a monitor).
    """
    seeds = SeedStream(config.run.inputs, base_dir=config_dir) if config.run.inputs else None
    if config.run.preflight:
        from runtime.preflight import preflight_backends

        await preflight_backends(config)
    resolved = resolved_config(config)
    if seeds is not None:  # `resume` must read the same files, from whatever directory
        for spec, path in zip(resolved["run"]["inputs"], seeds.resolved_paths(), strict=True):
            spec["path"] = str(path)
    _write_json(run_dir / RESOLVED_CONFIG, resolved)
    store = RunStore(run_dir / STORE_FILE, message_payloads=config.run.message_payloads)
    store.begin_attempt()
    usage = UsageRecorder()
    outcome: RunOutcome | None = None
    setup: RunLLMs | None = None
    try:
        async with AsyncExitStack() as stack:
            setup = await _build_llms(config, run_dir, usage, stack)
            llms = setup.clients
            services: dict[str, Any] = {"store": store}
            if seeds is not None:
                services["seeds"] = seeds
            supervisor = Supervisor(
                config,
                run_dir,
                llms=llms,
                services=services,
                observers=[store],
                handle_signals=handle_signals,
                show_progress=show_progress,
                bus_factory=bus_factory,
                local_agents=local_agents,
            )
            stop_on_open_circuit(llms, supervisor)
            async with anyio.create_task_group() as tg:
                tg.start_soon(store.run_flusher)
                tg.start_soon(_checkpoint_usage, store, usage)
                outcome = await supervisor.run()
                tg.cancel_scope.cancel()
    finally:
        _store_usage(store, usage)
        if outcome is not None:
            store.end_attempt(outcome.status, outcome.dead_letters, outcome.wall_s)
        verdict = _finish(
            config, run_dir, store, usage, setup.cache_statistics() if setup else None
        )
        store.close()
    assert outcome is not None
    outcome.verdict = verdict
    return outcome


def resolved_config(config: TopologyConfig) -> dict[str, Any]:
    """The config as written to disk: JSON types, endpoint credentials masked
    (`agents.llm.redact`) — `resume` then needs them again (it says so)."""
    resolved = config.model_dump(mode="json")
    for backend in resolved.get("llm", {}).values():
        backend["endpoints"] = [redact_url(url) for url in backend.get("endpoints", [])]
    return resolved


def stop_on_open_circuit(llms: dict[str, LLMClient], supervisor: Supervisor) -> None:
    """When a client's circuit breaker opens, stop the run gracefully with its message."""
    for client in llms.values():
        if isinstance(client, ManagedClient):
            client.breaker.add_listener(lambda error: supervisor.fail(str(error)))


def _store_usage(store: RunStore, usage: UsageRecorder) -> None:
    """This session's usage, under ``usage/attempt-N`` (replaced at each checkpoint)."""
    store.put_record("usage", f"attempt-{store.attempt}", usage.snapshot().model_dump(mode="json"))


async def _checkpoint_usage(store: RunStore, usage: UsageRecorder) -> None:
    """Store this session's usage every `USAGE_CHECKPOINT_S` while it changes: a session
    killed outright loses at most that much of its count (cancelled with the run)."""
    stored = usage.revision
    while True:
        await anyio.sleep(USAGE_CHECKPOINT_S)
        if usage.revision != stored:
            stored = usage.revision
            _store_usage(store, usage)


def run_usage(store: RunStore) -> UsageSnapshot:
    """The LLM usage of every session of the run (not of later `quality` passes)."""
    return combine_snapshots(
        UsageSnapshot.model_validate(payload)
        for key, payload in store.records("usage")
        if key.startswith("attempt-")
    )


@dataclass(frozen=True, slots=True)
class RunLLMs:
    """The LLM clients of one process of a run and the response cache they share."""

    clients: dict[str, LLMClient]
    cache: CompletionCache | None

    def cache_statistics(self) -> dict[str, int] | None:
        """The cache's counters (hits, misses, writes; shared_* with the shared bucket)."""
        return self.cache.stats.as_dict() if self.cache is not None else None


async def _build_llms(
    config: TopologyConfig, run_dir: Path, usage: UsageRecorder, stack: AsyncExitStack
) -> RunLLMs:
    """The run's LLM clients over one response cache, closed by ``stack``.

    On the NATS bus with ``run.bus.shared_llm_cache`` the cache is layered over the run's shared
    bucket (`runtime.shared_cache`); raises BusError when that bucket cannot be opened.
    """
    cache: CompletionCache | None = None
    if any(backend.cache for backend in config.llm.values()):
        local = ResponseCache(Path(config.run.llm_cache or run_dir / "llm_cache.sqlite"))
        stack.callback(local.close)
        cache = local
        bus = config.run.bus
        if bus.kind == "nats" and bus.shared_llm_cache:
            from bus.nats import NatsKeyValue  # the `distributed` extra
            from runtime.shared_cache import LayeredCache

            bucket = await stack.enter_async_context(
                NatsKeyValue(
                    bus.url,
                    bucket=bus.cache_bucket_for(config.run.name),
                    replicas=bus.replicas,
                    storage=bus.storage,
                    client_name=f"llm-cache@{socket.gethostname()}:{os.getpid()}",
                )
            )
            cache = LayeredCache(local, bucket)
    llms: dict[str, LLMClient] = {}
    for name, backend in config.llm.items():
        if backend.backend.endswith("-batch") and "journal" not in backend.options:
            # submitted batches are recorded next to the run, so a resume waits for them
            options = {**backend.options, "journal": str(run_dir / f"llm_batches.{name}.sqlite")}
            backend = backend.model_copy(update={"options": options})
        client = build_client(name, backend, cache=cache if backend.cache else None, usage=usage)
        stack.push_async_callback(client.aclose)
        llms[name] = client
    return RunLLMs(llms, cache)


def _finish(
    config: TopologyConfig,
    run_dir: Path,
    store: RunStore,
    usage: UsageRecorder,
    cache_statistics: dict[str, int] | None = None,
) -> RowVerdict:
    summary = summarize(store)
    if summary["seeds"]:
        files = export_dataset(
            store,
            run_dir,
            config.run.export,
            seed=config.run.seed,
            resolved_config=resolved_config(config),
            summary=summary,
        )
        summary["exports"] = {fmt: path.name for fmt, path in files.items()}
    autoevol = export_method_history(store, run_dir)
    if autoevol is not None:
        summary["autoevol"] = autoevol
    summary["sessions"] = next(iter(store.query("SELECT COUNT(*) AS n FROM attempts")))["n"]
    summary["llm_usage"] = run_usage(store).model_dump(mode="json")  # every session's
    summary["llm_usage_session"] = usage.snapshot().model_dump(mode="json")
    if cache_statistics is not None:
        summary["llm_cache"] = cache_statistics  # this session's, like llm_usage_session
    verdict = row_verdict(summary, store, config.run.max_failed_fraction)
    summary["verdict"] = {**verdict.model_dump(mode="json"), "ok": verdict.ok}
    _write_json(run_dir / SUMMARY_FILE, summary)
    _write_report(run_dir, store)
    return verdict


def _write_report(run_dir: Path, store: RunStore) -> None:
    """Write ``report.html``; a failure is logged, never raised (the run's outputs are kept)."""
    try:
        from runtime.report.build import write_run_report

        store.flush()
        write_run_report(run_dir)
    except Exception:
        _log.exception("report_failed", run_dir=str(run_dir))


def _write_json(path: Path, data: object) -> None:
    """Write ``data`` as JSON atomically (temp file + rename): never a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str), encoding="utf-8")
    tmp.replace(path)
