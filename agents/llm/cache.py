"""A content-addressed response cache in SQLite (WAL), so re-running the same work costs nothing.

Key: `cache_key(...)`, the sha256 of the backend kind, model, the fully merged generation params,
the messages and, for sampled calls (temperature ≠ 0), the sample index — so sample k of a
request is reproduced exactly on a re-run, and greedy calls share one entry.

Threading and durability: one SQLite connection lives on one dedicated worker thread; the event
loop never touches the database. `put` enqueues and awaits a *group commit*: concurrent puts are
written in one transaction, and `put` returns only after its entry is committed, so an entry whose
`put` returned survives a process kill (WAL, synchronous=NORMAL). `get` sees entries still being
written; concurrent gets are coalesced into one query. Neither blocks the loop for more than a
dictionary lookup and a thread hand-off per batch.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import sqlite3
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Protocol

from agents.llm.types import ChatMessage, Completion, GenerationParams

__all__ = ["CacheCounters", "CacheStatistics", "CompletionCache", "ResponseCache", "cache_key"]

_READ_CHUNK = 500  # keys per SELECT (SQLite's default variable limit is 32766)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS responses (
    key TEXT PRIMARY KEY,
    completion TEXT NOT NULL
) WITHOUT ROWID
"""


def _params_payload(params: GenerationParams) -> dict[str, object]:
    """The params as keyed: fields added later are left out at their defaults, so the keys of
    calls that do not use them stay what they were (old caches keep answering)."""
    payload = params.model_dump(mode="json")
    for late in ("choices", "top_logprobs"):
        if not payload.get(late):
            payload.pop(late, None)
    return payload


def cache_key(
    backend: str,
    model: str,
    params: GenerationParams,
    messages: Sequence[ChatMessage],
    sample: int = 0,
) -> str:
    """The cache key of one call. Greedy calls (temperature == 0) ignore `sample`."""
    sampled = params.temperature is None or params.temperature > 0
    payload = {
        "v": 1,
        "backend": backend,
        "model": model,
        "params": _params_payload(params),
        "messages": [[m.role, m.content] for m in messages],
        "sample": sample if sampled else 0,
    }
    blob = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()


class CacheStatistics:
    """Counters of one cache: `hits`, `misses`, `writes`, `batches` (group commits)."""

    __slots__ = ("batches", "hits", "misses", "writes")

    def __init__(self) -> None:
        self.hits = self.misses = self.writes = self.batches = 0

    def as_dict(self) -> dict[str, int]:
        return {k: getattr(self, k) for k in self.__slots__}


class CacheCounters(Protocol):
    """What a cache reports for the client's statistics."""

    def as_dict(self) -> dict[str, int]: ...


class CompletionCache(Protocol):
    """What the managed client needs of a response cache (`ResponseCache`, or a layered one).

    ``get`` returns the completion marked ``cached=True`` or None; ``put`` returns once the entry
    is durable. Both may raise: the client treats a failed read as a miss and a failed write as
    a warning, never as a failed call.
    """

    @property
    def stats(self) -> CacheCounters: ...

    async def get(self, key: str) -> Completion | None: ...

    async def put(self, key: str, completion: Completion) -> None: ...


class ResponseCache:
    """Durable completions by key. Safe to use from many tasks of one event loop."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="llm-cache")
        self._conn = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.execute(_SCHEMA)
        self._pending: dict[str, str] = {}
        self._writing: dict[str, str] = {}
        self._batch_done: asyncio.Future[None] | None = None
        self._writer: asyncio.Task[None] | None = None
        self._reads: dict[str, list[asyncio.Future[str | None]]] = {}
        self._reader: asyncio.Task[None] | None = None
        self._closed = False
        self.stats = CacheStatistics()

    # -- reads ---------------------------------------------------------------------------------

    def _select_many(self, keys: list[str]) -> dict[str, str]:
        found: dict[str, str] = {}
        for i in range(0, len(keys), _READ_CHUNK):
            chunk = keys[i : i + _READ_CHUNK]
            marks = ",".join("?" * len(chunk))
            sql = f"SELECT key, completion FROM responses WHERE key IN ({marks})"
            found.update((str(k), str(v)) for k, v in self._conn.execute(sql, chunk))
        return found

    async def _read_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while self._reads:
            batch, self._reads = self._reads, {}
            try:
                found = await loop.run_in_executor(self._executor, self._select_many, list(batch))
            except BaseException as exc:
                for futs in batch.values():
                    for f in futs:
                        if not f.done():
                            f.set_exception(exc)
                if not isinstance(exc, Exception):
                    raise
                continue
            for key, futs in batch.items():
                for f in futs:
                    if not f.done():
                        f.set_result(found.get(key))

    async def get(self, key: str) -> Completion | None:
        """The cached completion (marked `cached=True`) or None. Counts a hit or a miss.

        Concurrent gets are coalesced into one `SELECT … IN (…)` on the cache thread.
        """
        raw = self._pending.get(key) or self._writing.get(key)
        if raw is None:
            fut: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()
            self._reads.setdefault(key, []).append(fut)
            if self._reader is None or self._reader.done():
                self._reader = asyncio.create_task(self._read_loop())
            raw = await fut
        if raw is None:
            self.stats.misses += 1
            return None
        self.stats.hits += 1
        return Completion.model_validate_json(raw).model_copy(update={"cached": True})

    # -- writes --------------------------------------------------------------------------------

    def _write(self, batch: dict[str, str]) -> None:
        with self._conn:  # one transaction
            self._conn.execute("BEGIN")
            self._conn.executemany(
                "INSERT OR REPLACE INTO responses (key, completion) VALUES (?, ?)",
                batch.items(),
            )

    async def put(self, key: str, completion: Completion) -> None:
        """Store `completion` and return once it is committed (group commit with other puts).

        Raises `RuntimeError` after `close()`; sqlite errors propagate to every put of the batch.
        """
        if self._closed:
            raise RuntimeError("ResponseCache is closed")
        if completion.cached:
            completion = completion.model_copy(update={"cached": False})
        self._pending[key] = completion.model_dump_json()
        if self._batch_done is None:
            self._batch_done = asyncio.get_running_loop().create_future()
        done = self._batch_done
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_loop())
        await asyncio.shield(done)

    async def _write_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while self._pending:
            batch, self._pending = self._pending, {}
            done, self._batch_done = self._batch_done, None
            self._writing = batch
            try:
                await loop.run_in_executor(self._executor, self._write, batch)
            except BaseException as exc:
                if done is not None and not done.done():
                    done.set_exception(exc)
                    done.exception()  # mark retrieved: puts re-raise it themselves
                if not isinstance(exc, Exception):
                    raise
            else:
                self.stats.writes += len(batch)
                self.stats.batches += 1
                if done is not None and not done.done():
                    done.set_result(None)
            finally:
                self._writing = {}

    def count(self) -> int:
        """Committed entries (synchronous; for tests and reports)."""
        return int(self._conn.execute("SELECT COUNT(*) FROM responses").fetchone()[0])

    async def aclose(self) -> None:
        """Wait for pending reads and writes, then close."""
        for task in (self._reader, self._writer):
            if task is not None and not task.done():
                await task
        self.close()

    def close(self) -> None:
        """Close now: pending (not yet awaited) writes are committed synchronously first."""
        if self._closed:
            return
        self._closed = True
        self._executor.shutdown(wait=True)
        if self._pending:
            self._write(self._pending)
            self._pending = {}
        self._conn.close()
