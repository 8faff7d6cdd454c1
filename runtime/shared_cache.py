"""The LLM response cache of a distributed run: each process's SQLite cache over one shared bucket.

On the NATS bus (``run.bus.kind = "nats"``, ``run.bus.shared_llm_cache = true``, the default) every
process of the run — the coordinator and each worker — layers a JetStream key-value bucket,
``<stream>-llm-cache``, under its local `ResponseCache`:

- ``get``: the local cache first; on a miss, the bucket; a bucket hit is copied into the local
  cache (so the next hit is local) and returned. A step that a crash or a resumed coordinator
  sends to *another* worker is answered there without a new paid call.
- ``put``: the local cache (durable before it returns, as always), then the bucket (acknowledged
  by the broker before it returns). The managed client holds the call's concurrency slot until
  ``put`` returned, so once a handler publishes its result, every worker can see the answer.

The bucket is an optimisation, never a point of failure: a bucket that does not answer within
``timeout_s`` or refuses (broker down, value too large) counts as a miss / a skipped write, is
logged (the first time and every 1000th), and the call goes on. What it costs: one broker round
trip per local miss and one per new answer (a few hundred microseconds on a LAN, next to an LLM
call of seconds).
"""

from __future__ import annotations

from typing import Protocol

import structlog

from agents.llm.cache import ResponseCache
from agents.llm.types import Completion

__all__ = ["LayeredCache", "LayeredCacheStatistics", "SharedBucket"]

_log = structlog.get_logger("runtime.shared_cache")


class SharedBucket(Protocol):
    """A key-value store shared by the processes of a run (`bus.nats.NatsKeyValue`).

    ``get`` returns None for an absent key; both raise on an unavailable store.
    """

    async def get(self, key: str) -> bytes | None: ...

    async def put(self, key: str, value: bytes) -> None: ...


class LayeredCacheStatistics:
    """Counters: ``hits`` (local + shared), ``shared_hits``, ``misses`` (neither had it),
    ``writes`` (local), ``shared_writes``, ``shared_errors`` (the bucket failed; the call went
    on)."""

    __slots__ = ("_local", "misses", "shared_errors", "shared_hits", "shared_writes")

    def __init__(self, local: ResponseCache) -> None:
        self._local = local
        self.shared_hits = self.misses = self.shared_writes = self.shared_errors = 0

    def as_dict(self) -> dict[str, int]:
        local = self._local.stats
        return {
            "hits": local.hits + self.shared_hits,
            "local_hits": local.hits,
            "shared_hits": self.shared_hits,
            "misses": self.misses,
            "writes": local.writes,
            "batches": local.batches,
            "shared_writes": self.shared_writes,
            "shared_errors": self.shared_errors,
        }


class LayeredCache:
    """`ResponseCache` first, `SharedBucket` second. Implements `CompletionCache`.

    Never raises for the bucket's failures; the local cache's errors propagate as they would
    without the bucket (the client treats them as a miss / a warning).
    """

    def __init__(self, local: ResponseCache, shared: SharedBucket) -> None:
        self.local = local
        self.shared = shared
        self._stats = LayeredCacheStatistics(local)

    @property
    def stats(self) -> LayeredCacheStatistics:
        return self._stats

    async def get(self, key: str) -> Completion | None:
        """The local entry, else the shared one (copied locally), else None."""
        found = await self.local.get(key)
        if found is not None:
            return found
        try:
            raw = await self.shared.get(key)
        except Exception as exc:
            self._failed("get", exc)
            raw = None
        if raw is None:
            self._stats.misses += 1
            return None
        try:
            completion = Completion.model_validate_json(raw)
        except ValueError as exc:  # not ours, or from an incompatible version: a miss
            self._failed("decode", exc)
            self._stats.misses += 1
            return None
        self._stats.shared_hits += 1
        await self.local.put(key, completion)
        return completion.model_copy(update={"cached": True})

    async def put(self, key: str, completion: Completion) -> None:
        """Commit locally, then to the bucket; returns once both are done (or the bucket failed)."""
        await self.local.put(key, completion)
        stored = (
            completion.model_copy(update={"cached": False}) if completion.cached else completion
        )
        try:
            await self.shared.put(key, stored.model_dump_json().encode())
        except Exception as exc:
            self._failed("put", exc)
            return
        self._stats.shared_writes += 1

    def _failed(self, operation: str, exc: Exception) -> None:
        self._stats.shared_errors += 1
        count = self._stats.shared_errors
        if count == 1 or count % 1000 == 0:
            _log.warning(
                "shared_llm_cache_failed",
                operation=operation,
                error=f"{type(exc).__name__}: {exc}",
                failures=count,
            )
