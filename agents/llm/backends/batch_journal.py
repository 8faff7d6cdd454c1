"""The journal of the batch backends (`openai-batch`, `anthropic-batch`): which request lines went
into which batch, and the answers of finished batches — so a killed run that is resumed waits for
the batches it already paid for instead of submitting them again.

One SQLite file (WAL), usually ``RUN_DIR/llm_batches.<name>.sqlite``. A line is keyed by its
``custom_id`` (a hash of the request body): ``batch_id`` says where it was submitted, ``result``
holds the answer once the batch finished (failed lines are deleted, so that a retry submits them
again). Every method runs its statement on a worker thread; the event loop never blocks on disk.

Write-ahead: before a batch's create call the backend records a *submission* (a random id, the
endpoint, the time, its lines; `submitting`), and the input file once uploaded (`uploaded`,
OpenAI). `submitted` records the batch the API returned and deletes the submission in the same
transaction; `abandoned` deletes a submission that never became a batch. A submission still here
when a run starts (`in_doubt`) was cut off between the two: the API may or may not have created
its batch, which the backend looks up before any of its lines goes out again.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import anyio.to_thread

__all__ = ["BatchJournal", "JournalLine", "SubmissionRecord"]

_CHUNK = 500  # keys per SELECT

_SCHEMA = """
CREATE TABLE IF NOT EXISTS batches (
    batch_id TEXT PRIMARY KEY,
    status TEXT NOT NULL,            -- 'submitted' until its results were read, then 'done'
    lines INTEGER NOT NULL,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS lines (
    custom_id TEXT PRIMARY KEY,
    batch_id TEXT NOT NULL,
    result TEXT                      -- the chat.completion JSON once answered
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS lines_by_batch ON lines (batch_id);
CREATE TABLE IF NOT EXISTS submissions (
    submission_id TEXT PRIMARY KEY,  -- sent to the API where it takes one (OpenAI's metadata)
    endpoint TEXT NOT NULL,
    created_at REAL NOT NULL,        -- time.time() just before the create call
    custom_ids TEXT NOT NULL,        -- JSON list of the lines
    file_id TEXT                     -- OpenAI: the uploaded input file, once uploaded
);
"""


@dataclass(frozen=True, slots=True)
class JournalLine:
    """Where a request line stands: in ``batch_id``, answered when ``result`` is set."""

    batch_id: str
    result: str | None


@dataclass(frozen=True, slots=True)
class SubmissionRecord:
    """A batch about to be created (written before the create call): see the module docstring."""

    submission_id: str
    endpoint: str
    created_at: float
    custom_ids: tuple[str, ...]
    file_id: str | None = None


class BatchJournal:
    """Durable line → batch → answer records. Safe for many tasks of one event loop (statements
    run on worker threads under one lock)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        self._lock = threading.Lock()
        self._lookups: dict[str, list[asyncio.Future[JournalLine | None]]] = {}
        self._reader: asyncio.Task[None] | None = None

    async def lookup(self, custom_id: str) -> JournalLine | None:
        """The line's batch and answer, or None when it was never submitted (or failed).

        Concurrent lookups are coalesced into one ``SELECT … IN (…)`` on a worker thread (tens of
        thousands of calls wait at once on a batch backend)."""
        future: asyncio.Future[JournalLine | None] = asyncio.get_running_loop().create_future()
        self._lookups.setdefault(custom_id, []).append(future)
        if self._reader is None or self._reader.done():
            self._reader = asyncio.get_running_loop().create_task(self._read_lookups())
        return await future

    async def _read_lookups(self) -> None:
        while self._lookups:
            batch, self._lookups = self._lookups, {}
            try:
                found = await anyio.to_thread.run_sync(self._select, list(batch))
            except Exception as exc:
                for futures in batch.values():
                    for future in futures:
                        if not future.done():
                            future.set_exception(exc)
                continue
            for custom_id, futures in batch.items():
                for future in futures:
                    if not future.done():
                        future.set_result(found.get(custom_id))

    def _select(self, custom_ids: list[str]) -> dict[str, JournalLine]:
        found: dict[str, JournalLine] = {}
        with self._lock:
            for start in range(0, len(custom_ids), _CHUNK):
                chunk = custom_ids[start : start + _CHUNK]
                marks = ",".join("?" * len(chunk))
                for row in self._db.execute(
                    f"SELECT custom_id, batch_id, result FROM lines WHERE custom_id IN ({marks})",
                    chunk,
                ):
                    found[str(row[0])] = JournalLine(str(row[1]), row[2])
        return found

    async def submitting(self, record: SubmissionRecord) -> None:
        """Write ahead: record a submission before its create call (durable once this returns)."""

        def run() -> None:
            with self._lock, self._db:
                self._db.execute("BEGIN")
                self._db.execute(
                    "INSERT OR REPLACE INTO submissions VALUES (?, ?, ?, ?, ?)",
                    (
                        record.submission_id,
                        record.endpoint,
                        record.created_at,
                        json.dumps(list(record.custom_ids)),
                        record.file_id,
                    ),
                )

        await anyio.to_thread.run_sync(run)

    async def uploaded(self, submission_id: str, file_id: str) -> None:
        """Record the input file uploaded for a submission (before the create call that uses it)."""

        def run() -> None:
            with self._lock, self._db:
                self._db.execute("BEGIN")
                self._db.execute(
                    "UPDATE submissions SET file_id = ? WHERE submission_id = ?",
                    (file_id, submission_id),
                )

        await anyio.to_thread.run_sync(run)

    async def abandoned(self, submission_id: str) -> None:
        """Forget a submission that never became a batch (its lines may go out again)."""

        def run() -> None:
            with self._lock, self._db:
                self._db.execute("BEGIN")
                self._db.execute(
                    "DELETE FROM submissions WHERE submission_id = ?", (submission_id,)
                )

        await anyio.to_thread.run_sync(run)

    async def in_doubt(self, endpoint: str) -> list[SubmissionRecord]:
        """The submissions at ``endpoint`` written ahead and never settled, oldest first."""

        def run() -> list[SubmissionRecord]:
            with self._lock:
                rows = self._db.execute(
                    "SELECT submission_id, endpoint, created_at, custom_ids, file_id "
                    "FROM submissions WHERE endpoint = ? ORDER BY created_at",
                    (endpoint,),
                ).fetchall()
            return [
                SubmissionRecord(
                    submission_id=str(r[0]),
                    endpoint=str(r[1]),
                    created_at=float(r[2]),
                    custom_ids=tuple(json.loads(r[3])),
                    file_id=None if r[4] is None else str(r[4]),
                )
                for r in rows
            ]

        return await anyio.to_thread.run_sync(run)

    async def batch_ids(self) -> set[str]:
        """Every batch this journal has recorded, open or done (batches it claims)."""

        def run() -> set[str]:
            with self._lock:
                rows = self._db.execute("SELECT batch_id FROM batches").fetchall()
            return {str(r[0]) for r in rows}

        return await anyio.to_thread.run_sync(run)

    async def submitted(
        self, batch_id: str, custom_ids: Iterable[str], submission_id: str | None = None
    ) -> None:
        """Record a batch the API accepted, with its lines, and settle its ``submission_id``
        (one transaction)."""
        ids = list(custom_ids)

        def run() -> None:
            with self._lock, self._db:
                self._db.execute("BEGIN")
                if submission_id is not None:
                    self._db.execute(
                        "DELETE FROM submissions WHERE submission_id = ?", (submission_id,)
                    )
                self._db.execute(
                    "INSERT OR REPLACE INTO batches VALUES (?, 'submitted', ?, ?)",
                    (batch_id, len(ids), time.time()),
                )
                self._db.executemany(
                    "INSERT OR REPLACE INTO lines (custom_id, batch_id, result) "
                    "VALUES (?, ?, NULL)",
                    [(cid, batch_id) for cid in ids],
                )

        await anyio.to_thread.run_sync(run)

    async def unfinished(self) -> list[str]:
        """Batches submitted and not yet read back (to poll again after a restart)."""

        def run() -> list[str]:
            with self._lock:
                rows = self._db.execute(
                    "SELECT batch_id FROM batches WHERE status = 'submitted' ORDER BY created_at"
                ).fetchall()
            return [str(r[0]) for r in rows]

        return await anyio.to_thread.run_sync(run)

    async def lines_of(self, batch_id: str) -> list[str]:
        def run() -> list[str]:
            with self._lock:
                rows = self._db.execute(
                    "SELECT custom_id FROM lines WHERE batch_id = ?", (batch_id,)
                ).fetchall()
            return [str(r[0]) for r in rows]

        return await anyio.to_thread.run_sync(run)

    async def finished(self, batch_id: str, answers: dict[str, str]) -> None:
        """Store the batch's answers; its lines without one are deleted (a retry resubmits)."""

        def run() -> None:
            with self._lock, self._db:
                self._db.execute("BEGIN")
                self._db.executemany(
                    "UPDATE lines SET result = ? WHERE custom_id = ? AND batch_id = ?",
                    [(text, cid, batch_id) for cid, text in answers.items()],
                )
                self._db.execute(
                    "DELETE FROM lines WHERE batch_id = ? AND result IS NULL", (batch_id,)
                )
                self._db.execute(
                    "UPDATE batches SET status = 'done' WHERE batch_id = ?", (batch_id,)
                )

        await anyio.to_thread.run_sync(run)

    def close(self) -> None:
        with self._lock:
            self._db.close()
