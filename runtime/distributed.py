"""Running one topology over NATS: a coordinator process and worker processes.

- The **coordinator** (``python -m runtime coordinator CONFIG``) owns the run: the run directory,
  the run store (the only writer of ``run.sqlite``), the seeds, the exports, and the agents with a
  main task (the pool controller) plus ``run.bus.coordinator_agents``. Its bus is the stream's
  *monitor*: the store observes every message of the run through the monitor's durable consumer
  and acks only after committing, so what is acked is persisted. The run is complete when the
  coordinator's main tasks returned and the whole stream drained; then it broadcasts ``done``.
- A **worker** (``python -m runtime worker CONFIG --roles evol,responder``) runs the other
  agents (all of them by default) with their LLM clients and a local response cache, as one more
  replica of each agent's durable consumer. It serves until SIGINT/SIGTERM (graceful: it stops
  fetching and finishes what it holds) or, with ``--exit-when-done``, until the coordinator's
  ``done``. ``--replicas N`` starts N worker processes.

Every process builds every agent of the topology (``__init__`` only: no I/O) to learn its routes,
so publishes route (and `NoSubscriberError` fires) exactly as in one process.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Collection, Sequence
from contextlib import AsyncExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import anyio.lowlevel
import structlog

from agents.llm.usage import UsageRecorder
from agents.registry import resolve
from bus.protocol import BusStatistics
from runtime.config import BusSettings, TopologyConfig
from runtime.errors import ConfigError
from runtime.supervisor import RunBus, RunOutcome, Supervisor

if TYPE_CHECKING:
    from bus.nats import NatsBus

__all__ = [
    "coordinator_agents",
    "nats_bus_factory",
    "require_nats_bus",
    "run_coordinator",
    "run_worker",
    "spawn_workers",
    "worker_agents",
]

_log = structlog.get_logger("runtime.distributed")
_EMPTY = BusStatistics(published=0, pending=0, dead_letters=0, agents={})


def _nats_bus_class() -> type[NatsBus]:
    try:
        from bus.nats import NatsBus
    except ImportError as exc:  # pragma: no cover - depends on the installed extras
        raise ConfigError(
            f"run.bus.kind = 'nats' needs nats-py: pip install 'evolagents[distributed]' ({exc})"
        ) from None
    return NatsBus


def nats_bus_factory(
    config: TopologyConfig,
    *,
    monitor: bool,
    client_name: str,
    created: list[NatsBus] | None = None,
) -> Callable[[], RunBus]:
    """A factory of NatsBus for ``config.run.bus``; each bus made is appended to ``created``."""
    settings: BusSettings = config.run.bus
    bus_class = _nats_bus_class()

    def make() -> RunBus:
        bus = bus_class(
            settings.url,
            stream=settings.stream_for(config.run.name),
            monitor=monitor,
            ack_wait_s=settings.ack_wait_s,
            max_deliveries=settings.max_deliveries,
            max_ack_pending=settings.max_ack_pending,
            max_messages=settings.max_messages,
            duplicate_window_s=settings.duplicate_window_s,
            replicas=settings.replicas,
            storage=settings.storage,
            publish_timeout_s=settings.publish_timeout_s,
            client_name=client_name,
        )
        if created is not None:
            created.append(bus)
        return bus

    return make


def _role_of(config: TopologyConfig, name: str) -> str:
    spec = config.agents[name]
    return spec.role or resolve(spec.impl).role


def coordinator_agents(config: TopologyConfig) -> set[str]:
    """Enabled agents with a main task, plus those named (or whose role is) in
    ``run.bus.coordinator_agents``."""
    wanted = set(config.run.bus.coordinator_agents)
    chosen: set[str] = set()
    for name, spec in config.agents.items():
        if not spec.enabled:
            continue
        if resolve(spec.impl).has_main_task() or name in wanted or _role_of(config, name) in wanted:
            chosen.add(name)
    return chosen


def require_nats_bus(config: TopologyConfig, command: str) -> None:
    """Raise ConfigError unless ``run.bus.kind`` is ``"nats"`` (coordinator and worker need it)."""
    if config.run.bus.kind != "nats":
        raise ConfigError(
            f"`{command}` runs agents over NATS: set run.bus.kind = \"nats\" and run.bus.url "
            "(e.g. --set run.bus.kind='\"nats\"')"
        )


def worker_agents(config: TopologyConfig, roles: Collection[str] | None) -> set[str]:
    """The agents a worker runs: those named (or whose role is) in ``roles``; by default every
    enabled agent the coordinator does not run. Raises ConfigError for a name that matches none,
    or for a choice that includes an agent with a main task (the coordinator's)."""
    coordinator = coordinator_agents(config)
    enabled = [name for name, spec in config.agents.items() if spec.enabled]
    if not roles:
        chosen = {name for name in enabled if name not in coordinator}
        if not chosen:
            raise ConfigError("no agent left for workers: the coordinator runs them all")
        return chosen
    chosen = set()
    for role in roles:
        matched = {name for name in enabled if role in (name, _role_of(config, name))}
        if not matched:
            known = ", ".join(f"{n} ({_role_of(config, n)})" for n in enabled)
            raise ConfigError(f"--roles {role!r} matches no enabled agent (agents: {known})")
        chosen |= matched
    mains = sorted(chosen & coordinator)
    if mains:
        raise ConfigError(f"agents {', '.join(mains)} run in the coordinator, not in workers")
    return chosen


async def run_coordinator(
    config: TopologyConfig,
    run_dir: Path,
    *,
    show_progress: bool | None = None,
    handle_signals: bool = True,
    config_dir: Path | None = None,
) -> RunOutcome:
    """Run the coordinator's part of ``config`` (see the module docstring); resumes an existing
    run directory. Tells the workers ``done`` when the run completed."""
    from runtime.run import execute
    from runtime.store import STORE_FILE

    if not (run_dir / STORE_FILE).exists():
        await _refuse_a_busy_stream(config)
    created: list[NatsBus] = []
    factory = nats_bus_factory(
        config, monitor=True, client_name=f"coordinator@{socket.gethostname()}", created=created
    )
    outcome = await execute(
        config,
        run_dir,
        show_progress=show_progress,
        handle_signals=handle_signals,
        config_dir=config_dir,
        bus_factory=factory,
        local_agents=coordinator_agents(config),
    )
    if outcome.status == "completed":
        await _announce_done(config)
    return outcome


async def _refuse_a_busy_stream(config: TopologyConfig) -> None:
    """A new run must not inherit the messages an unfinished run left in the same stream."""
    bus = nats_bus_factory(config, monitor=False, client_name="coordinator-check")()
    async with bus:
        left = await getattr(bus, "stored_messages")()  # noqa: B009 - NatsBus only
    if left:
        stream = config.run.bus.stream_for(config.run.name)
        raise ConfigError(
            f"NATS stream {stream!r} still holds {left} messages of an unfinished run: resume "
            "it (`python -m runtime coordinator --resume RUN_DIR`), or start this run on "
            "another stream (--set run.bus.stream=NAME)"
        )


async def _announce_done(config: TopologyConfig) -> None:
    bus = nats_bus_factory(config, monitor=False, client_name="coordinator-done")()
    try:
        async with bus:
            await getattr(bus, "announce_done")()  # noqa: B009 - RunBus does not declare it
    except Exception as exc:  # the run is complete; workers can be stopped by hand
        _log.warning("announce_done_failed", error=f"{type(exc).__name__}: {exc}")


async def run_worker(
    config: TopologyConfig,
    work_dir: Path,
    agents: Collection[str],
    *,
    exit_when_done: bool = False,
    handle_signals: bool = True,
    stop: anyio.Event | None = None,
) -> RunOutcome:
    """Serve ``agents`` of ``config`` on its NATS stream until stopped (signal, ``stop`` or,
    with ``exit_when_done``, the coordinator's ``done``). ``work_dir`` holds the worker's LLM
    response cache (unless ``run.llm_cache`` names a shared one) and logs."""
    from runtime.run import _build_llms, stop_on_open_circuit

    await anyio.Path(work_dir).mkdir(parents=True, exist_ok=True)
    created: list[NatsBus] = []
    factory = nats_bus_factory(
        config,
        monitor=False,
        client_name=f"worker@{socket.gethostname()}:{os.getpid()}",
        created=created,
    )
    usage = UsageRecorder()
    supervisor: Supervisor | None = None

    async def serve() -> None:
        assert supervisor is not None
        stopping = supervisor.stopping
        async with anyio.create_task_group() as waiters:

            async def until_stopping() -> None:
                await stopping.wait()
                waiters.cancel_scope.cancel()

            async def until_stop_event() -> None:
                if stop is not None:
                    await stop.wait()
                    waiters.cancel_scope.cancel()

            async def until_done() -> None:
                if exit_when_done:
                    await created[-1].wait_done()
                    _log.info("coordinator_done")
                    waiters.cancel_scope.cancel()

            waiters.start_soon(until_stopping)
            waiters.start_soon(until_stop_event)
            waiters.start_soon(until_done)
            await anyio.lowlevel.checkpoint()  # the supervisor's signal watcher is installed
            _log.info("worker_serving")

    async with AsyncExitStack() as stack:
        setup = await _build_llms(config, work_dir, usage, stack)
        llms = setup.clients
        supervisor = Supervisor(
            config,
            work_dir,
            llms=llms,
            handle_signals=handle_signals,
            show_progress=False,
            bus_factory=factory,
            local_agents=agents,
            serve=serve,
        )
        stop_on_open_circuit(llms, supervisor)  # stop serving; the stream keeps the work
        _log.info("worker_started", agents=sorted(agents),
                  stream=config.run.bus.stream_for(config.run.name))
        outcome = await supervisor.run()
    _log.info(
        "worker_finished",
        status=outcome.status,
        broker=created[-1].broker_statistics() if created else None,
        delivered={name: a.delivered for name, a in (outcome.statistics or _EMPTY).agents.items()},
        llm_usage=usage.snapshot().model_dump(mode="json").get("total"),
        llm_cache=setup.cache_statistics(),
    )
    return outcome


def spawn_workers(argv: Sequence[str], replicas: int) -> int:
    """Run ``python -m runtime worker ARGV`` in ``replicas`` child processes and wait for them.

    SIGINT/SIGTERM are forwarded to every child (each stops gracefully). Returns the worst exit
    status (0 when every child exited 0)."""
    children = [
        subprocess.Popen([sys.executable, "-m", "runtime", "worker", *argv, "--replicas", "1"])
        for _ in range(replicas)
    ]

    def forward(signum: int, _frame: Any) -> None:
        for child in children:
            if child.poll() is None:
                child.send_signal(signum)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        codes = [child.wait() for child in children]
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for child in children:
            if child.poll() is None:
                child.kill()
                child.wait()
    return max((code if code >= 0 else 128 - code for code in codes), default=0)
