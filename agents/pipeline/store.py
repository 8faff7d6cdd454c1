"""What pipeline agents need from the run store, as a protocol (the runtime implements it).

Agents never import the runtime: the supervisor hands an implementation over in
``context.services["store"]`` and the seeds in ``context.services["seeds"]``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict

__all__ = ["RecordStore", "RowState", "RowStatus", "RowStore", "SeedLike", "SeedSource"]

RowStatus = Literal["active", "done", "failed"]


class SeedLike(Protocol):
    """A seed record: what the pool needs of an input row."""

    @property
    def id(self) -> str: ...
    @property
    def instruction(self) -> str: ...
    @property
    def input(self) -> str: ...
    @property
    def output(self) -> str | None: ...


class SeedSource(Protocol):
    """Streams the run's seeds in input order (a fresh iterator per call)."""

    def __call__(self) -> Iterator[SeedLike]: ...


class RowState(BaseModel):
    """A row's progress as stored: the last finished round and its current instruction."""

    model_config = ConfigDict(frozen=True)

    seed_id: str
    status: RowStatus
    rounds_done: int
    instruction: str
    input: str = ""
    current_step_id: str | None = None
    error: str | None = None
    #: the row's generations before its current instruction (seed first), input included
    ancestors: tuple[str, ...] = ()


class RowStore(Protocol):
    """Row bookkeeping. Calls are fast and non-blocking (writes are buffered and ordered)."""

    def row_state(self, seed_id: str) -> RowState | None:
        """The stored state of a row, or None if the seed was never started."""
        ...

    def start_row(self, seed: SeedLike, position: int) -> None:
        """Record a seed and mark its row active at round 0."""
        ...

    def finish_row(self, seed_id: str, status: RowStatus, error: str | None = None) -> None:
        """Mark a row done or failed."""
        ...


class RecordStore(Protocol):
    """Keyed JSON documents by kind (optimization steps, methods, metrics)."""

    def put_record(self, kind: str, key: str, payload: Any) -> None:
        """Store ``payload`` under (kind, key), replacing an earlier one."""
        ...

    def records(self, kind: str) -> list[tuple[str, Any]]:
        """Every (key, payload) of ``kind``, in the order first stored."""
        ...
