"""Usage accounting: calls, retries, errors, tokens, latency and cost, per backend and per caller.

One `UsageRecorder` is shared by every managed client of a run. Recording is synchronous and
cheap (counters and a fixed-size log-scale latency histogram, so memory stays flat over millions
of calls). `snapshot()` returns a pydantic `UsageSnapshot` the run store persists and the report
plots. Backends are keyed by their config name (`[llm.<name>]`), callers by agent name.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable

from pydantic import BaseModel, Field

from agents.llm.types import Completion

__all__ = [
    "LatencyHistogram",
    "UsageRecorder",
    "UsageSnapshot",
    "UsageStats",
    "combine_snapshots",
]

_BASE_S = 1e-4  # first bucket bound: 0.1 ms
_GROWTH = 1.05  # ~5% resolution
_LOG_GROWTH = math.log(_GROWTH)
_BUCKETS = 400  # up to ~0.1 ms * 1.05**400 ≈ 30 h


class LatencyHistogram:
    """Log-bucketed latencies; percentiles accurate to ~5%."""

    __slots__ = ("_counts", "count", "total_s")

    def __init__(self) -> None:
        self._counts = [0] * (_BUCKETS + 1)
        self.count = 0
        self.total_s = 0.0

    def add(self, seconds: float) -> None:
        idx = 0 if seconds <= _BASE_S else int(math.log(seconds / _BASE_S) / _LOG_GROWTH) + 1
        self._counts[min(idx, _BUCKETS)] += 1
        self.count += 1
        self.total_s += seconds

    def percentile(self, q: float) -> float:
        """The latency below which a fraction `q` of samples fall (0 when empty)."""
        if not self.count:
            return 0.0
        rank = max(1, math.ceil(q * self.count))
        seen = 0
        for idx, c in enumerate(self._counts):
            seen += c
            if seen >= rank:
                return _BASE_S * _GROWTH**idx
        return _BASE_S * _GROWTH**_BUCKETS


class UsageStats(BaseModel):
    """Counters for one backend or one caller."""

    calls: int = 0
    """LLM calls that reached a server and succeeded (cache hits excluded)."""
    cache_hits: int = 0
    cache_misses: int = 0
    attempts: int = 0
    retries: int = 0
    failures: int = 0
    """Calls that finally raised (after retries, or a fatal error)."""
    errors: dict[str, int] = Field(default_factory=dict)
    """Failed attempts by error kind (`rate_limited`, `timeout`, ...)."""
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float = 0.0
    latency_mean_s: float = 0.0
    latency_p50_s: float = 0.0
    latency_p95_s: float = 0.0
    latency_p99_s: float = 0.0


class UsageSnapshot(BaseModel):
    """A point-in-time copy of all usage counters."""

    backends: dict[str, UsageStats] = Field(default_factory=dict)
    callers: dict[str, UsageStats] = Field(default_factory=dict)
    by_backend_caller: dict[str, dict[str, UsageStats]] = Field(default_factory=dict)
    """backend name -> caller -> stats."""
    total: UsageStats = Field(default_factory=UsageStats)


class _Acc:
    __slots__ = (
        "attempts", "cache_hits", "cache_misses", "calls", "cost", "errors", "failures",
        "latency", "retries", "tokens_in", "tokens_out",
    )  # fmt: skip

    def __init__(self) -> None:
        self.calls = self.cache_hits = self.cache_misses = 0
        self.attempts = self.retries = self.failures = 0
        self.tokens_in = self.tokens_out = 0
        self.cost = 0.0
        self.errors: Counter[str] = Counter()
        self.latency = LatencyHistogram()

    def stats(self) -> UsageStats:
        lat = self.latency
        return UsageStats(
            calls=self.calls,
            cache_hits=self.cache_hits,
            cache_misses=self.cache_misses,
            attempts=self.attempts,
            retries=self.retries,
            failures=self.failures,
            errors=dict(self.errors),
            tokens_in=self.tokens_in,
            tokens_out=self.tokens_out,
            cost_usd=self.cost,
            latency_mean_s=lat.total_s / lat.count if lat.count else 0.0,
            latency_p50_s=lat.percentile(0.50),
            latency_p95_s=lat.percentile(0.95),
            latency_p99_s=lat.percentile(0.99),
        )


class UsageRecorder:
    """Counts usage per backend name and per caller; never blocks, never raises."""

    def __init__(self) -> None:
        self._backends: dict[str, _Acc] = {}
        self._callers: dict[str, _Acc] = {}
        self._pairs: dict[tuple[str, str], _Acc] = {}
        self._total = _Acc()
        self.revision = 0
        """Grows with every record: a checkpoint writes a snapshot only when it moved."""

    def _accs(self, backend: str, caller: str) -> tuple[_Acc, _Acc, _Acc, _Acc]:
        self.revision += 1
        key = caller or "-"
        pair = self._pairs.get((backend, key))
        if pair is None:
            pair = self._pairs[(backend, key)] = _Acc()
            self._backends.setdefault(backend, _Acc())
            self._callers.setdefault(key, _Acc())
        return self._backends[backend], self._callers[key], pair, self._total

    def record_cache(self, backend: str, caller: str, *, hit: bool) -> None:
        for a in self._accs(backend, caller):
            if hit:
                a.cache_hits += 1
            else:
                a.cache_misses += 1

    def record_attempt(self, backend: str, caller: str, *, retry: bool) -> None:
        for a in self._accs(backend, caller):
            a.attempts += 1
            if retry:
                a.retries += 1

    def record_error(self, backend: str, caller: str, kind: str) -> None:
        for a in self._accs(backend, caller):
            a.errors[kind] += 1

    def record_failure(self, backend: str, caller: str) -> None:
        for a in self._accs(backend, caller):
            a.failures += 1

    def record_success(
        self, backend: str, caller: str, completion: Completion, *, cost_usd: float
    ) -> None:
        for a in self._accs(backend, caller):
            a.calls += 1
            a.tokens_in += completion.prompt_tokens
            a.tokens_out += completion.completion_tokens
            a.cost += cost_usd
            a.latency.add(completion.latency_s)

    def backend_stats(self, backend: str) -> UsageStats:
        acc = self._backends.get(backend)
        return acc.stats() if acc else UsageStats()

    def caller_stats(self, backend: str) -> dict[str, UsageStats]:
        return {c: acc.stats() for (b, c), acc in self._pairs.items() if b == backend}

    def snapshot(self) -> UsageSnapshot:
        nested: dict[str, dict[str, UsageStats]] = {}
        for (b, c), acc in self._pairs.items():
            nested.setdefault(b, {})[c] = acc.stats()
        return UsageSnapshot(
            backends={k: v.stats() for k, v in self._backends.items()},
            callers={k: v.stats() for k, v in self._callers.items()},
            by_backend_caller=nested,
            total=self._total.stats(),
        )


def _add(a: UsageStats, b: UsageStats) -> UsageStats:
    """Counters summed; the mean latency weighted by calls; each percentile the larger of the
    two (an upper bound: sessions' histograms are not kept)."""
    calls = a.calls + b.calls
    mean = (a.latency_mean_s * a.calls + b.latency_mean_s * b.calls) / calls if calls else 0.0
    errors = Counter(a.errors)
    errors.update(b.errors)
    return UsageStats(
        calls=calls,
        cache_hits=a.cache_hits + b.cache_hits,
        cache_misses=a.cache_misses + b.cache_misses,
        attempts=a.attempts + b.attempts,
        retries=a.retries + b.retries,
        failures=a.failures + b.failures,
        errors=dict(errors),
        tokens_in=a.tokens_in + b.tokens_in,
        tokens_out=a.tokens_out + b.tokens_out,
        cost_usd=a.cost_usd + b.cost_usd,
        latency_mean_s=mean,
        latency_p50_s=max(a.latency_p50_s, b.latency_p50_s),
        latency_p95_s=max(a.latency_p95_s, b.latency_p95_s),
        latency_p99_s=max(a.latency_p99_s, b.latency_p99_s),
    )


def _merge(into: dict[str, UsageStats], other: dict[str, UsageStats]) -> None:
    for key, stats in other.items():
        into[key] = _add(into[key], stats) if key in into else stats


def combine_snapshots(snapshots: Iterable[UsageSnapshot]) -> UsageSnapshot:
    """The usage of several sessions (the attempts of one run) as one snapshot: every counter,
    token count and cost summed; latency means weighted by calls, percentiles the worst
    session's."""
    out = UsageSnapshot()
    for snap in snapshots:
        _merge(out.backends, snap.backends)
        _merge(out.callers, snap.callers)
        for backend, callers in snap.by_backend_caller.items():
            _merge(out.by_backend_caller.setdefault(backend, {}), callers)
        out.total = _add(out.total, snap.total)
    return out
