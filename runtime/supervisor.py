"""The supervisor: builds a topology's bus, LLM clients and agents, runs them, shuts down cleanly.

Contract
- Every task (bus workers, agents' main tasks, signal watcher, progress) lives in one task group.
- The run is complete when every agent's overridden ``run()`` has returned and the bus drained.
- First SIGINT/SIGTERM: graceful stop — ``context.stopping`` is set (sources stop admitting new
  work), in-flight work drains, agents stop, exit status ``interrupted`` (130). If the drain takes
  longer than ``run.stop_grace_s``, or on a second signal, the run aborts: every task is cancelled
  (what was persisted stays; `resume` completes the rest).
- A handler error becomes a dead letter; a run that ends with dead letters exits 1, and so does
  one whose rows failed beyond ``run.max_failed_fraction`` or were left unfinished (the
  ``verdict`` the runtime attaches, `runtime.verdict`).
- ``fail(reason)`` (e.g. an LLM backend's circuit breaker opened) stops gracefully like a first
  signal, but the run ends ``failed`` (exit 1) with the reason among its errors.
- ``on_stop`` runs for every agent whose ``on_start`` succeeded, whatever happened.
- The bus is an `InProcessBus` unless a ``bus_factory`` is given (e.g. a NATS bus). With
  ``local_agents`` this process runs only those agents; the others are built (no ``on_start``)
  only to ``declare`` their routes on the bus, which must support that. With ``serve`` (a worker)
  the process does not wait for the bus to drain: it serves until ``serve()`` returns, then closes
  the bus (handlers in flight finish) and stops its agents.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import anyio
import structlog
from anyio import CancelScope

from agents.base import Agent, AgentContext
from agents.llm.types import LLMClient
from agents.registry import resolve
from bus.inprocess import InProcessBus
from bus.message import Notice
from bus.protocol import AgentEndpoint, Bus, BusObserver, BusStatistics, Route
from runtime.config import TopologyConfig
from runtime.progress import ProgressDisplay
from runtime.verdict import RowVerdict

__all__ = ["RunBus", "RunOutcome", "Supervisor"]

_log = structlog.get_logger("runtime")

#: The runtime's own subscriber of `Notice` messages (they always have a listener).
NOTICES_AGENT = "_notices"

Status = Literal["completed", "interrupted", "aborted", "failed"]


class RunBus(Bus, Protocol):
    """A Bus the supervisor can own: an async context manager that counts dead letters."""

    @property
    def dead_letter_count(self) -> int: ...

    async def __aenter__(self) -> Any: ...

    async def __aexit__(self, *exc_info: Any) -> bool | None: ...


@dataclass
class RunOutcome:
    """How a run ended. ``exit_code``: 0 clean; 1 failed, dead letters, or rows lost (failed
    beyond ``run.max_failed_fraction``, or unfinished); 130 interrupted."""

    status: Status
    run_dir: Path
    dead_letters: int
    wall_s: float
    statistics: BusStatistics | None = None
    errors: list[str] = field(default_factory=list)
    verdict: RowVerdict | None = None

    @property
    def exit_code(self) -> int:
        if self.status in ("interrupted", "aborted"):
            return 130
        if self.status == "failed" or self.dead_letters:
            return 1
        if self.verdict is not None and not self.verdict.ok:
            return 1
        return 0


class Supervisor:
    """Runs one topology. ``llms`` are ready clients by backend name (the caller owns them)."""

    def __init__(
        self,
        config: TopologyConfig,
        run_dir: Path,
        *,
        llms: Mapping[str, LLMClient] | None = None,
        services: Mapping[str, Any] | None = None,
        observers: Sequence[BusObserver] = (),
        handle_signals: bool = True,
        show_progress: bool | None = None,
        status_line: Any = None,
        bus_factory: Callable[[], RunBus] | None = None,
        local_agents: Collection[str] | None = None,
        serve: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.config = config
        self.run_dir = run_dir
        self._llms = dict(llms or {})
        self._services = dict(services or {})
        self._observers = list(observers)
        self._handle_signals = handle_signals
        self._show_progress = (
            ProgressDisplay.wanted(config.run.progress) if show_progress is None else show_progress
        )
        self._status_line = status_line
        self._bus_factory: Callable[[], RunBus] = bus_factory or InProcessBus
        self._local_agents = None if local_agents is None else set(local_agents)
        self._serve = serve
        self.stopping = anyio.Event()
        self._signals = 0
        self._aborted = False
        self._errors: list[str] = []
        self.agents: list[Agent[Any]] = []

    def request_stop(self) -> None:
        """Ask for a graceful stop (what the first Ctrl+C does)."""
        if not self.stopping.is_set():
            _log.warning("graceful_stop_requested")
            self.stopping.set()

    def fail(self, reason: str) -> None:
        """Stop gracefully because of ``reason``: the run ends ``failed``, resumable."""
        if reason not in self._errors:
            self._errors.append(reason)
            _log.error("run_stopping", reason=reason)
        self.request_stop()

    async def run(self) -> RunOutcome:
        started_at = time.monotonic()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        statistics: BusStatistics | None = None
        dead_letters = 0
        with CancelScope() as abort_scope:
            self._abort_scope = abort_scope
            async with self._bus_factory() as bus:
                for observer in self._observers:
                    bus.add_observer(observer)
                try:
                    await self._run_on(bus)
                finally:
                    statistics = bus.statistics()
                    dead_letters = bus.dead_letter_count
                    if self._aborted:
                        abort_scope.cancel()
        status: Status
        if self._aborted:
            status = "aborted"
        elif self.stopping.is_set() and self._signals:
            status = "interrupted"
        elif self._errors:
            status = "failed"
        else:
            status = "completed"
        outcome = RunOutcome(
            status=status,
            run_dir=self.run_dir,
            dead_letters=dead_letters,
            wall_s=time.monotonic() - started_at,
            statistics=statistics,
            errors=list(self._errors),
        )
        _log.info(
            "run_finished",
            status=outcome.status,
            dead_letters=outcome.dead_letters,
            wall_s=round(outcome.wall_s, 3),
        )
        return outcome

    async def _run_on(self, bus: RunBus) -> None:
        self.agents = self._build_agents(bus)
        started: list[Agent[Any]] = []
        try:
            for agent in self.agents:
                await agent.on_start()
                started.append(agent)
            async with anyio.create_task_group() as services:
                if self._handle_signals:
                    services.start_soon(self._watch_signals)
                if self._show_progress:
                    display = ProgressDisplay(self.agents, bus, status=self._status_line)
                    services.start_soon(display.run)
                async with anyio.create_task_group() as mains:
                    for agent in self.agents:
                        if agent.has_main_task():
                            mains.start_soon(self._run_main, agent, name=f"{agent.name}.run")
                if self._serve is None:
                    await bus.drain()
                    await self._complete(bus)
                else:
                    await self._serve()
                    await bus.close()
                services.cancel_scope.cancel()
        finally:
            with anyio.CancelScope(shield=True):
                for agent in reversed(started):
                    try:
                        with anyio.fail_after(self.config.run.stop_grace_s):
                            await agent.on_stop()
                    except Exception as exc:
                        self._errors.append(f"{agent.name}.on_stop: {exc!r}")
                        _log.exception("agent_stop_failed", agent=agent.name)

    async def _complete(self, bus: RunBus) -> None:
        """The completion phase: agents' ``on_run_complete`` (training after evolution, ...)
        run concurrently once the main work drained; what they publish is drained too. Skipped
        after a stop request or a failed main task."""
        finishing = [agent for agent in self.agents if agent.has_completion_task()]
        if not finishing or self.stopping.is_set():
            return
        async with anyio.create_task_group() as tg:
            for agent in finishing:
                tg.start_soon(self._run_completion, agent, name=f"{agent.name}.complete")
        await bus.drain()

    async def _run_completion(self, agent: Agent[Any]) -> None:
        try:
            await agent.on_run_complete()
        except Exception as exc:
            self._errors.append(f"{agent.name}.on_run_complete: {type(exc).__name__}: {exc}")
            _log.exception("agent_completion_failed", agent=agent.name)

    async def _on_notice(self, notice: Notice) -> None:
        fields = notice.model_dump(
            mode="json", exclude={"id", "correlation_id", "causation_id", "created_at"}
        )
        _log.info("notice", **fields)

    def _build_agents(self, bus: RunBus) -> list[Agent[Any]]:
        bus.attach(AgentEndpoint(NOTICES_AGENT, [Route(Notice, self._on_notice)]))
        agents: list[Agent[Any]] = []
        for name, spec in self.config.agents.items():
            if not spec.enabled:
                continue
            cls = resolve(spec.impl)
            local = self._local_agents is None or name in self._local_agents
            llms = (
                {slot: self._llms[backend] for slot, backend in spec.llm_bindings().items()}
                if local
                else {}
            )
            context = AgentContext(
                bus=bus,
                run_dir=self.run_dir,
                llms=llms,
                seed=self.config.run.seed,
                stopping=self.stopping,
                services=self._services,
                settings={"run": self.config.run, "topology": self.config},
            )
            agent = cls(name, context, spec.params)
            endpoint = agent.endpoint(concurrency=spec.concurrency, mailbox_size=spec.mailbox)
            if local:
                bus.attach(endpoint)
                agents.append(agent)
                continue
            declare = getattr(bus, "declare", None)
            if declare is None:
                raise TypeError(f"{type(bus).__name__} cannot run a subset of the agents")
            declare(endpoint)  # runs elsewhere: known for routing only
        return agents

    async def _run_main(self, agent: Agent[Any]) -> None:
        try:
            await agent.run()
        except Exception as exc:
            self._errors.append(f"{agent.name}.run: {type(exc).__name__}: {exc}")
            _log.exception("agent_main_failed", agent=agent.name)
            self.stopping.set()

    async def _watch_signals(self) -> None:
        grace = self.config.run.stop_grace_s
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for signum in signals:
                self._signals += 1
                _log.warning(
                    "interrupt_received",
                    signal=signal.Signals(signum).name,
                    action="graceful stop; send again to abort",
                )
                self.request_stop()
                break
            with anyio.move_on_after(grace):
                async for _ in signals:
                    self._signals += 1
                    self._abort("second signal")
                    return
            self._abort(f"graceful stop took longer than {grace:g}s")

    def _abort(self, reason: str) -> None:
        _log.error("run_aborted", reason=reason)
        self._aborted = True
        self._abort_scope.cancel()
