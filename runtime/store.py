"""The run store: ``run.sqlite`` (WAL) with every seed, step, verdict and dead letter, and lineage.

It is the single writer of the run's state. It observes the bus (`BusObserver`) and persists what
flows — pipeline messages into the ``steps`` and ``rows`` tables, every message's lineage into
``messages`` — and it implements the pool's `RowStore` protocol.

Durability contract: writes are buffered in memory, in order, and committed in one transaction
when ``flush_every`` operations are pending, by the periodic flusher (``run_flusher``), before any
read, and on ``close()``. A hard kill loses at most the uncommitted tail; that is safe because
resume restarts a row from its last *committed* finished round, and the LLM response cache makes
the repeated calls free. Steps are keyed by ``<seed>:<round>``, so nothing is ever duplicated.
Error texts are stored with the credentials of any URL in them masked (`agents.llm.redact`).
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio

from agents.llm.redact import redact_text
from agents.pipeline.messages import (
    Accepted,
    Answered,
    Evolved,
    EvolveRequest,
    Rejected,
    Screened,
    Step,
    StepFailed,
)
from agents.pipeline.store import RowState, RowStatus, SeedLike
from bus.message import DeadLetter
from bus.protocol import Envelope

__all__ = ["STORE_FILE", "RunStore"]

STORE_FILE = "run.sqlite"
SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS attempts (
    attempt INTEGER PRIMARY KEY, started_at TEXT NOT NULL, ended_at TEXT, status TEXT,
    dead_letters INTEGER, wall_s REAL
);
CREATE TABLE IF NOT EXISTS seeds (
    seed_id TEXT PRIMARY KEY, position INTEGER NOT NULL, instruction TEXT NOT NULL,
    input TEXT NOT NULL, output TEXT, source TEXT, line INTEGER
);
CREATE TABLE IF NOT EXISTS rows (
    seed_id TEXT PRIMARY KEY, status TEXT NOT NULL, rounds_done INTEGER NOT NULL,
    instruction TEXT NOT NULL, input TEXT NOT NULL, current_step_id TEXT, error TEXT,
    updated_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS steps (
    step_id TEXT PRIMARY KEY, seed_id TEXT NOT NULL, round INTEGER NOT NULL,
    parent_step_id TEXT, operation TEXT, method_id TEXT, prompt_version TEXT,
    parent_instruction TEXT, instruction TEXT, input TEXT, raw_text TEXT, response TEXT,
    status TEXT NOT NULL, rule TEXT, reason TEXT, stage TEXT, error_type TEXT, error TEXT,
    updated_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS steps_by_seed ON steps (seed_id, round);
CREATE INDEX IF NOT EXISTS steps_by_status ON steps (status, rule);
CREATE TABLE IF NOT EXISTS messages (
    id TEXT PRIMARY KEY, kind TEXT NOT NULL, correlation_id TEXT NOT NULL, causation_id TEXT,
    topic TEXT, created_at TEXT NOT NULL, payload TEXT
);
CREATE INDEX IF NOT EXISTS messages_by_lineage ON messages (correlation_id);
CREATE TABLE IF NOT EXISTS dead_letters (
    id TEXT PRIMARY KEY, agent TEXT NOT NULL, message_kind TEXT NOT NULL, message_id TEXT NOT NULL,
    correlation_id TEXT NOT NULL, error_type TEXT NOT NULL, error TEXT NOT NULL,
    traceback TEXT NOT NULL, created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS records (
    kind TEXT NOT NULL, key TEXT NOT NULL, payload TEXT NOT NULL, updated_at TEXT NOT NULL,
    PRIMARY KEY (kind, key)
);
"""

_STEP_COLUMNS = (
    "step_id", "seed_id", "round", "parent_step_id", "operation", "method_id", "prompt_version",
    "parent_instruction", "instruction", "input", "raw_text", "response",
)


_OUTCOME_COLUMNS = ("rule", "reason", "stage", "error_type", "error")


def _now() -> str:
    return datetime.now(UTC).isoformat()


class RunStore:
    """See module docstring. Not thread-safe: use it from the event loop's thread only."""

    def __init__(
        self,
        path: Path,
        *,
        message_payloads: bool = False,
        flush_every: int = 512,
        flush_interval_s: float = 0.2,
    ) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        self._db.execute(
            "INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),)
        )
        self._pending: list[tuple[str, Sequence[Any]]] = []
        self._message_payloads = message_payloads
        self._flush_every = flush_every
        self.flush_interval_s = flush_interval_s
        self._last_flush = time.monotonic()
        self.attempt = 0

    # -- writing ---------------------------------------------------------------------------
    def _write(self, sql: str, params: Sequence[Any]) -> None:
        self._pending.append((sql, params))
        if len(self._pending) >= self._flush_every:
            self.flush()

    def flush(self) -> None:
        """Commit every pending write in one transaction."""
        if not self._pending:
            return
        pending, self._pending = self._pending, []
        self._db.execute("BEGIN")
        try:
            for sql, params in pending:
                self._db.execute(sql, params)
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")
        self._last_flush = time.monotonic()

    async def run_flusher(self) -> None:
        """Commit pending writes every ``flush_interval_s`` until cancelled."""
        while True:
            await anyio.sleep(self.flush_interval_s)
            self.flush()

    def close(self) -> None:
        self.flush()
        self._db.close()

    # -- run attempts and metadata ----------------------------------------------------------
    def begin_attempt(self) -> int:
        row = self._db.execute("SELECT COALESCE(MAX(attempt), 0) + 1 FROM attempts").fetchone()
        self.attempt = int(row[0])
        self._db.execute(
            "INSERT INTO attempts (attempt, started_at) VALUES (?, ?)", (self.attempt, _now())
        )
        return self.attempt

    def end_attempt(self, status: str, dead_letters: int, wall_s: float) -> None:
        self.flush()
        self._db.execute(
            "UPDATE attempts SET ended_at = ?, status = ?, dead_letters = ?, wall_s = ? "
            "WHERE attempt = ?",
            (_now(), status, dead_letters, wall_s, self.attempt),
        )

    def put_record(self, kind: str, key: str, payload: Any) -> None:
        """Store a JSON document under (kind, key), replacing it (methods, usage, summaries).

        Records are rare and costly to recompute (an optimization step), so they are committed at
        once, with everything buffered before them.
        """
        self._write(
            "INSERT OR REPLACE INTO records VALUES (?, ?, ?, ?)",
            (kind, key, json.dumps(payload, default=str), _now()),
        )
        self.flush()

    def records(self, kind: str) -> list[tuple[str, Any]]:
        self.flush()
        rows = self._db.execute(
            "SELECT key, payload FROM records WHERE kind = ? ORDER BY rowid", (kind,)
        ).fetchall()
        return [(key, json.loads(payload)) for key, payload in rows]

    # -- RowStore ---------------------------------------------------------------------------
    def row_state(self, seed_id: str) -> RowState | None:
        self.flush()
        row = self._db.execute(
            "SELECT status, rounds_done, instruction, input, current_step_id, error FROM rows "
            "WHERE seed_id = ?",
            (seed_id,),
        ).fetchone()
        if row is None:
            return None
        ancestors = self._db.execute(
            "SELECT parent_instruction FROM steps WHERE seed_id = ? AND status = 'accepted' "
            "AND round >= 1 AND round <= ? ORDER BY round",
            (seed_id, row[1]),
        ).fetchall()
        return RowState(
            seed_id=seed_id,
            status=row[0],
            rounds_done=row[1],
            instruction=row[2],
            input=row[3],
            current_step_id=row[4],
            error=row[5],
            ancestors=tuple(a[0] or "" for a in ancestors),
        )

    def start_row(self, seed: SeedLike, position: int) -> None:
        self._write(
            "INSERT OR REPLACE INTO seeds VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                seed.id,
                position,
                seed.instruction,
                seed.input,
                seed.output,
                getattr(seed, "source", None),
                getattr(seed, "line", None),
            ),
        )
        self._write(
            "INSERT OR REPLACE INTO rows VALUES (?, 'active', -1, ?, ?, NULL, NULL, ?)",
            (seed.id, seed.instruction, seed.input, _now()),
        )

    def finish_row(self, seed_id: str, status: RowStatus, error: str | None = None) -> None:
        self._write(
            "UPDATE rows SET status = ?, error = ?, updated_at = ? WHERE seed_id = ?",
            (status, redact_text(error) if error else error, _now(), seed_id),
        )

    # -- BusObserver ------------------------------------------------------------------------
    async def on_publish(self, envelope: Envelope) -> None:
        message = envelope.message
        payload = message.model_dump_json() if self._message_payloads else None
        self._write(
            "INSERT OR REPLACE INTO messages VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                message.id,
                message.kind,
                message.correlation_id,
                message.causation_id,
                envelope.topic,
                message.created_at.isoformat(),
                payload,
            ),
        )
        if isinstance(message, EvolveRequest):
            self._write(
                "INSERT INTO steps (step_id, seed_id, round, parent_step_id, operation, "
                "method_id, parent_instruction, input, status, updated_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'requested', ?) "
                "ON CONFLICT (step_id) DO UPDATE SET status = 'requested', "
                "updated_at = excluded.updated_at",
                (
                    message.step_id,
                    message.seed_id,
                    message.round,
                    message.parent_step_id,
                    message.operation,
                    message.method_id,
                    message.instruction,
                    message.input,
                    _now(),
                ),
            )
        elif isinstance(message, Evolved):
            self._put_step(message.step, "evolved")
        elif isinstance(message, Screened):
            self._put_step(message.step, "screened")
        elif isinstance(message, Answered):
            self._put_step(message.step, "answered")
        elif isinstance(message, Accepted):
            self._put_step(message.step, "accepted")
            if message.round >= 1:  # the child becomes the row's current instruction
                self._write(
                    "UPDATE rows SET rounds_done = ?, instruction = ?, input = ?, "
                    "current_step_id = ?, updated_at = ? WHERE seed_id = ?",
                    (
                        message.round,
                        message.step.instruction,
                        message.step.input,
                        message.step.step_id,
                        _now(),
                        message.seed_id,
                    ),
                )
            else:
                self._write(
                    "UPDATE rows SET rounds_done = 0, current_step_id = ?, updated_at = ? "
                    "WHERE seed_id = ?",
                    (message.step.step_id, _now(), message.seed_id),
                )
        elif isinstance(message, Rejected):
            self._put_step(message.step, "rejected", rule=message.rule, reason=message.reason)
            self._write(
                "UPDATE rows SET rounds_done = ?, updated_at = ? WHERE seed_id = ?",
                (message.round, _now(), message.seed_id),
            )
        elif isinstance(message, StepFailed) and message.step is not None:
            self._put_step(
                message.step,
                "failed",
                stage=message.stage,
                error_type=message.error_type,
                error=message.error,
            )

    async def on_handled(self, envelope: Envelope, agent: str, error: BaseException | None) -> None:
        return None

    async def on_dead_letter(self, dead_letter: DeadLetter) -> None:
        self._write(
            "INSERT OR REPLACE INTO dead_letters VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                dead_letter.id,
                dead_letter.agent,
                dead_letter.message_kind,
                dead_letter.message_id,
                dead_letter.correlation_id,
                dead_letter.error_type,
                redact_text(dead_letter.error),
                redact_text(dead_letter.traceback),
                dead_letter.created_at.isoformat(),
            ),
        )

    def _put_step(self, step: Step, status: str, **extra: str | None) -> None:
        # every outcome column is written (NULL when not given): a retried step that succeeds
        # must not keep the error of its failed attempt
        outcome = {column: extra.get(column) for column in _OUTCOME_COLUMNS}
        if outcome["error"]:
            outcome["error"] = redact_text(outcome["error"])
        values = [getattr(step, column) for column in _STEP_COLUMNS]
        columns = [*_STEP_COLUMNS, "status", "updated_at", *outcome]
        values += [status, _now(), *outcome.values()]
        updates = ", ".join(f"{c} = excluded.{c}" for c in columns if c != "step_id")
        self._write(
            f"INSERT INTO steps ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))}) "
            f"ON CONFLICT (step_id) DO UPDATE SET {updates}",
            values,
        )

    # -- reading ----------------------------------------------------------------------------
    def query(self, sql: str, params: Sequence[Any] = ()) -> Iterator[sqlite3.Row]:
        """Run a read query after flushing; rows support access by column name."""
        self.flush()
        cursor = self._db.cursor()
        cursor.row_factory = sqlite3.Row
        yield from cursor.execute(sql, params)
