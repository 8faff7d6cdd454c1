"""Live progress for long runs: one bar per agent that reports progress, plus bus and LLM totals.

Reads only `statistics()`/`progress()` snapshots, so it never slows the pipeline. Rendering goes
to stderr through rich; when stderr is not a terminal the display is off unless forced.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import Any

import anyio
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

from agents.base import Agent
from bus.protocol import Bus

__all__ = ["ProgressDisplay", "StageBars"]


class ProgressDisplay:
    """Polls agents and the bus every ``interval`` seconds until cancelled."""

    def __init__(
        self,
        agents: Sequence[Agent[Any]],
        bus: Bus,
        *,
        status: Callable[[], str] | None = None,
        interval: float = 0.25,
        console: Console | None = None,
    ) -> None:
        self._agents = agents
        self._bus = bus
        self._status = status
        self._interval = interval
        self._console = console or Console(stderr=True)
        self._tasks: dict[str, TaskID] = {}

    @staticmethod
    def wanted(setting: bool) -> bool:
        """Show the display when asked for and stderr is a terminal."""
        return setting and sys.stderr.isatty()

    async def run(self) -> None:
        columns = (
            TextColumn("{task.description:<28}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[extra]}"),
        )
        with Progress(*columns, console=self._console, transient=False) as progress:
            try:
                while True:
                    self._refresh(progress)
                    await anyio.sleep(self._interval)
            finally:
                self._refresh(progress)

    def _refresh(self, progress: Progress) -> None:
        stats = self._bus.statistics()
        for agent in self._agents:
            info = agent.progress()
            if info is None:
                continue
            agent_stats = stats.agents.get(agent.name)
            extra = ""
            if agent_stats is not None:
                extra = f"queued {agent_stats.queued} · running {agent_stats.in_flight}"
            description = f"{agent.name} {info.label}"
            task = self._tasks.get(agent.name)
            if task is None:
                task = progress.add_task(description, total=info.total, extra=extra)
                self._tasks[agent.name] = task
            progress.update(
                task,
                completed=info.completed,
                total=info.total,
                description=description,
                extra=extra,
            )
        if self._status is not None:
            task = self._tasks.get("__status__")
            line = self._status()
            if task is None:
                self._tasks["__status__"] = progress.add_task("totals", total=None, extra=line)
            else:
                progress.update(task, extra=line)


class StageBars:
    """One rich bar per stage of a one-off command (`quality`): a bar appears on a stage's first
    report. Use as a context manager; calling it is cheap and never blocks (rich redraws from its
    own thread). Draws nothing when `enabled` is false."""

    def __init__(self, *, enabled: bool, console: Console | None = None) -> None:
        self._progress: Progress | None = None
        if enabled:
            self._progress = Progress(
                TextColumn("{task.description:<16}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=console or Console(stderr=True),
            )
        self._tasks: dict[str, TaskID] = {}

    def __enter__(self) -> StageBars:
        if self._progress is not None:
            self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()

    def __call__(self, stage: str, done: int, total: int) -> None:
        if self._progress is None:
            return
        task = self._tasks.get(stage)
        if task is None:
            task = self._tasks[stage] = self._progress.add_task(stage, total=total)
        self._progress.update(task, completed=done, total=total)
