"""`ManagedClient`: the one `LLMClient` implementation agents get, whatever the backend.

It wraps one transport per endpoint with, in this order per call:

1. the response cache (a hit returns at once, no slot taken) and single-flight (identical
   concurrent calls share one request);
2. per attempt: the adaptive concurrency cap (callers queue FIFO), a wait while every endpoint is
   paused by a Retry-After, the RPM window and the TPM window (estimated tokens before, corrected
   to the real count after), least-busy endpoint choice;
3. the transport's single attempt, bounded by `timeout_s` (with a small backstop);
4. the ONE retry layer: retryable errors are retried up to `max_attempts` with exponential back-off
   and jitter, never sooner than the server's Retry-After. Load signals: a 429 or 503 with
   Retry-After pauses its endpoint for that long unless it is isolated among successes (a
   success there ends the pause; see `agents.llm.endpoints`); the
   concurrency limit decreases only on sustained overload (429/503/529 answering half of a
   window of attempts); 500/502, timeouts and malformed bodies are retried and move nothing
   (see `agents.llm.limits`). Fatal errors raise at once;
5. the circuit breaker: `breaker_after` consecutive backend faults (unreachable, 401/403, 404)
   open it — every call, queued or backing off, then fails with `CircuitOpenError` and the
   listeners (the runtime) stop the run (`agents.llm.breaker`);
6. usage accounting (per backend name and per caller), and the cache write — still holding the
   concurrency slot, so calls paid for but not yet stored never exceed the cap.

Who blocks: `complete()` waits for a slot, for an endpoint's pause, for rate budget and for
back-off — all on the injected clock except the optional whole-call `deadline_s`, which is real
loop time. What raises: only `LLMError` subclasses (the last retryable error once attempts run
out, a fatal one at once, `LLMTimeoutError` when `deadline_s` passes, `CircuitOpenError` once the
breaker opened). Cancellation propagates and releases everything. Endpoint URLs are shown
(statistics, messages) with their credentials masked.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable, Sequence

from pydantic import BaseModel

from agents.llm.breaker import BreakerStatistics, CircuitBreaker
from agents.llm.cache import CompletionCache, cache_key
from agents.llm.clock import Clock, SystemClock
from agents.llm.config import BackendConfig
from agents.llm.endpoints import Endpoint, EndpointPool, EndpointStatistics
from agents.llm.errors import (
    BadRequestError,
    CircuitOpenError,
    LLMError,
    LLMTimeoutError,
    OverloadedError,
    RateLimitedError,
    RetryableLLMError,
    UnavailableError,
)
from agents.llm.limits import AdaptiveLimiter, Grant, RateWindow
from agents.llm.redact import redact_url
from agents.llm.retry import backoff_delay
from agents.llm.transport import Transport
from agents.llm.types import ChatMessage, Completion, GenerationParams
from agents.llm.usage import UsageRecorder, UsageStats

__all__ = [
    "ClientStatistics",
    "ManagedClient",
    "PreflightResult",
    "estimate_tokens",
    "merge_params",
]

log = logging.getLogger(__name__)

_Commit = Callable[[Completion], Awaitable[None]]

#: Extra seconds past `timeout_s` before the client itself cancels a transport that ignored it.
TIMEOUT_BACKSTOP_S = 1.0
#: Completion tokens assumed for the TPM estimate when `max_tokens` is not set.
DEFAULT_COMPLETION_ESTIMATE = 256
#: The longest a preflight request may take.
PREFLIGHT_TIMEOUT_S = 30.0


_NO_DEFAULTS = GenerationParams()


def merge_params(defaults: GenerationParams, params: GenerationParams) -> GenerationParams:
    """`params` over `defaults`: every field the caller set (or left non-default) wins."""
    if defaults is _NO_DEFAULTS or defaults == _NO_DEFAULTS:
        return params
    explicit = params.model_dump(exclude_unset=True)
    for name, field in GenerationParams.model_fields.items():
        value = getattr(params, name)
        if value != field.default and name not in explicit:
            explicit[name] = value
    return defaults.model_copy(update=explicit)


def estimate_tokens(messages: Sequence[ChatMessage], params: GenerationParams) -> int:
    """A cheap upper-ish estimate (chars/4 + max_tokens) used before the real count is known."""
    chars = sum(len(m.content) for m in messages)
    return chars // 4 + 4 * len(messages) + (params.max_tokens or DEFAULT_COMPLETION_ESTIMATE)


class ClientStatistics(BaseModel):
    """State of one managed client, for progress bars, reports and tests."""

    name: str
    backend: str
    model: str
    in_flight: int
    limit: int
    max_limit: int
    peak_in_flight: int
    waiting: int
    """Callers queued for a slot or for rate budget."""
    shrinks: int
    """Decreases of the limit (sustained overload)."""
    overloads: int
    """Attempts answered 429/503/529."""
    pauses: int
    """Endpoint pauses on a Retry-After."""
    breaker: BreakerStatistics
    usage: UsageStats
    callers: dict[str, UsageStats]
    cache: dict[str, int] | None
    endpoints: list[EndpointStatistics]


class PreflightResult(BaseModel):
    """One endpoint's answer to the preflight request. `ok` is False only for a backend fault
    (unreachable, 401/403, 404): other errors (429, 5xx, timeouts) say the endpoint is there."""

    backend: str
    endpoint: str
    ok: bool
    error_kind: str | None = None
    message: str = ""


class ManagedClient:
    """Implements `agents.llm.types.LLMClient` over one transport per endpoint.

    Build it with `agents.llm.factory.build_client` from a `BackendConfig`; construct it directly
    (with your own `transports`) in tests. It owns the transports and closes them in `aclose()`;
    it does not own the shared `cache` or `usage`.
    """

    def __init__(
        self,
        name: str,
        config: BackendConfig,
        transports: Sequence[tuple[str, Transport]],
        *,
        cache: CompletionCache | None = None,
        usage: UsageRecorder | None = None,
        clock: Clock | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.name = name
        self.config = config
        self._clock: Clock = clock or SystemClock()
        self._rng = rng or random.Random()
        self._cache = cache if config.cache else None
        self.usage = usage or UsageRecorder()
        self._pool: EndpointPool[Transport] = EndpointPool(
            [Endpoint(redact_url(url), t) for url, t in transports],
            config.endpoint_policy,
            self._clock,
        )
        self.breaker = CircuitBreaker(name, config.breaker_after)
        self.breaker.add_listener(lambda _: self._pool.end_pauses())
        self._limiter = AdaptiveLimiter(
            config.concurrency,
            minimum=config.min_concurrency,
            adaptive=config.adaptive,
            clock=self._clock,
        )
        w = config.rate_window_s
        self._rpm = (
            RateWindow(max(1.0, config.rpm * w / 60), window_s=w, clock=self._clock)
            if config.rpm
            else None
        )
        self._tpm = (
            RateWindow(max(1.0, config.tpm * w / 60), window_s=w, clock=self._clock)
            if config.tpm
            else None
        )
        self._inflight: dict[str, asyncio.Future[Completion]] = {}
        self._no_defaults = config.defaults == _NO_DEFAULTS
        self._closed = False

    @property
    def transports(self) -> list[Transport]:
        return [e.transport for e in self._pool.endpoints]

    # -- the call ------------------------------------------------------------------------------

    async def complete(
        self,
        messages: Sequence[ChatMessage],
        params: GenerationParams,
        *,
        caller: str = "",
        sample: int = 0,
    ) -> Completion:
        """One completion; see the module docstring for the blocking and error contract."""
        if params.n != 1:
            raise BadRequestError("complete() returns one completion: use `sample` instead of n>1")
        merged = params if self._no_defaults else merge_params(self.config.defaults, params)
        cache = self._cache
        if cache is None:
            return await self._call_with_deadline(messages, merged, caller)
        # The backend's configured name is part of the key: two backends serving the same model
        # name from different servers (a base and a fine-tuned model, say) never share answers.
        key = cache_key(
            f"{self.config.backend}:{self.name}", self.config.model, merged, messages, sample
        )
        while True:
            shared = self._inflight.get(key)
            if shared is None:
                break
            try:
                done = await asyncio.shield(shared)
            except asyncio.CancelledError:
                if shared.cancelled():
                    continue  # the leading call was cancelled: try again ourselves
                raise
            self.usage.record_cache(self.name, caller, hit=True)
            return done.model_copy(update={"cached": True})
        leader: asyncio.Future[Completion] = asyncio.get_running_loop().create_future()
        self._inflight[key] = leader
        try:
            try:
                hit = await cache.get(key)
            except Exception:  # an unreadable cache must not fail the call: treat as a miss
                log.exception("llm cache read failed for backend %s", self.name)
                hit = None
            self.usage.record_cache(self.name, caller, hit=hit is not None)

            async def commit(completion: Completion) -> None:
                try:
                    await cache.put(key, completion)
                except Exception:  # a cache failure must not fail the call it caches
                    log.exception("llm cache write failed for backend %s", self.name)

            result = hit or await self._call_with_deadline(messages, merged, caller, commit)
            leader.set_result(result)
            return result
        except asyncio.CancelledError:
            leader.cancel()
            raise
        except BaseException as exc:
            leader.set_exception(exc)
            leader.exception()  # retrieved: followers re-raise it
            raise
        finally:
            self._inflight.pop(key, None)

    async def _call_with_deadline(
        self,
        messages: Sequence[ChatMessage],
        params: GenerationParams,
        caller: str,
        commit: _Commit | None = None,
    ) -> Completion:
        deadline_s = self.config.deadline_s
        if deadline_s is None:
            return await self._call(messages, params, caller, None, commit)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + deadline_s
        try:
            async with asyncio.timeout_at(deadline):
                return await self._call(messages, params, caller, deadline, commit)
        except TimeoutError:
            self.usage.record_error(self.name, caller, LLMTimeoutError.kind)
            self.usage.record_failure(self.name, caller)
            raise LLMTimeoutError(
                f"llm backend {self.name!r}: call deadline of {deadline_s:g}s passed"
            ) from None

    async def _call(
        self,
        messages: Sequence[ChatMessage],
        params: GenerationParams,
        caller: str,
        deadline: float | None,
        commit: _Commit | None = None,
    ) -> Completion:
        cfg = self.config
        usage = self.usage
        attempt = 0
        while True:
            attempt += 1
            try:
                completion = await self._attempt(messages, params, deadline, caller, attempt,
                                                 commit)  # fmt: skip
            except RetryableLLMError as exc:
                usage.record_error(self.name, caller, exc.kind)
                if attempt >= cfg.max_attempts:
                    usage.record_failure(self.name, caller)
                    raise
                retry_after = getattr(exc, "retry_after_s", None)
                # a Retry-After paused the endpoint until about now + retry_after (see _failed)
                paused_until = self._clock.now() + retry_after if retry_after else None
                delay = backoff_delay(cfg.backoff, attempt, retry_after, self._rng)
                if deadline is not None and asyncio.get_running_loop().time() + delay > deadline:
                    usage.record_failure(self.name, caller)
                    raise
                log.debug(
                    "llm %s attempt %d failed (%s); retrying in %.2fs",
                    self.name, attempt, exc.kind, delay,
                )  # fmt: skip
                try:
                    await self._backoff(delay)
                except CircuitOpenError as opened:
                    usage.record_error(self.name, caller, opened.kind)
                    usage.record_failure(self.name, caller)
                    raise
                if paused_until is not None:  # this call waited out the pause it caused
                    self._pool.end_pauses(paused_until)
            except LLMError as exc:
                usage.record_error(self.name, caller, exc.kind)
                usage.record_failure(self.name, caller)
                raise
            else:
                cost = cfg.prices.cost(completion.prompt_tokens, completion.completion_tokens)
                usage.record_success(self.name, caller, completion, cost_usd=cost)
                return completion

    async def _backoff(self, delay: float) -> None:
        """Sleep `delay` on the clock; raise `CircuitOpenError` at once if the breaker opens."""
        breaker = self.breaker
        if breaker.threshold <= 0:
            await self._clock.sleep(delay)
            return
        if breaker.is_open:
            raise breaker.error()
        sleeper = asyncio.ensure_future(self._clock.sleep(delay))
        opened = asyncio.ensure_future(breaker.opened.wait())
        try:
            await asyncio.wait((sleeper, opened), return_when=asyncio.FIRST_COMPLETED)
        finally:
            sleeper.cancel()
            opened.cancel()
        if breaker.is_open:
            raise breaker.error()

    async def _attempt(
        self,
        messages: Sequence[ChatMessage],
        params: GenerationParams,
        deadline: float | None,
        caller: str,
        attempt: int,
        commit: _Commit | None = None,
    ) -> Completion:
        """One attempt holding a concurrency slot, counted once it reaches the transport.
        ``commit`` (the cache write) runs before the slot is released, so the calls paid for but
        not yet stored never exceed the cap."""
        limiter = self._limiter
        await limiter.acquire()
        try:
            pool = self._pool
            await pool.wait_ready()
            if self.breaker.is_open:
                raise self.breaker.error()
            grant: Grant | None = None
            if self._rpm is not None:
                await self._rpm.acquire(1)
            if self._tpm is not None:
                grant = await self._tpm.acquire(estimate_tokens(messages, params))
            timeout = self.config.timeout_s
            if deadline is not None:
                timeout = max(0.001, min(timeout, deadline - asyncio.get_running_loop().time()))
            ep = pool.pick()
            self.usage.record_attempt(self.name, caller, retry=attempt > 1)
            pool.start(ep)
            started = self._clock.now()
            t0 = time.perf_counter()
            try:
                async with asyncio.timeout(timeout + TIMEOUT_BACKSTOP_S):
                    completion = await ep.transport.send(messages, params, timeout_s=timeout)
            except TimeoutError:
                pool.finish(ep, ok=False, health_failure=True)
                raise LLMTimeoutError(
                    f"llm backend {self.name!r}: no answer from {ep.url} within {timeout:g}s"
                ) from None
            except LLMError as exc:
                unwell = isinstance(exc, UnavailableError | LLMTimeoutError | OverloadedError)
                pool.finish(ep, ok=False, health_failure=unwell)
                self._failed(ep, exc, started)
                raise
            except asyncio.CancelledError:
                pool.finish(ep, ok=False)
                raise
            except Exception as exc:  # a transport broke its contract: surface, don't retry
                pool.finish(ep, ok=False)
                raise LLMError(
                    f"llm backend {self.name!r}: transport raised {type(exc).__name__}: {exc}"
                ) from exc
            pool.finish(ep, ok=True)
            limiter.on_success(started)
            self.breaker.success()
            if grant is not None and self._tpm is not None:
                self._tpm.correct(grant, completion.prompt_tokens + completion.completion_tokens)
            if not completion.latency_s:
                completion = completion.model_copy(update={"latency_s": time.perf_counter() - t0})
            if commit is not None:
                await commit(completion)
            return completion
        finally:
            limiter.release()

    def _failed(self, ep: Endpoint[Transport], exc: LLMError, started: float) -> None:
        """What a failed attempt tells the limiter, the endpoint pool and the breaker."""
        if isinstance(exc, RateLimitedError | OverloadedError):
            if isinstance(exc, RateLimitedError) or exc.signals_overload:
                self._limiter.on_overload(started)
            if exc.retry_after_s:
                self._pool.rate_limited(ep, exc.retry_after_s)
        self.breaker.failure(exc, ep.url)

    async def preflight(self) -> list[PreflightResult]:
        """One cheap request per endpoint (the config's defaults with ``max_tokens = 1``), sent
        straight to each transport: no cache, no limiter, no retry, no usage counted. Nothing is
        raised: each endpoint's outcome is returned."""
        params = merge_params(self.config.defaults, GenerationParams(max_tokens=1))
        ping = [ChatMessage(role="user", content="Reply with one word: ok")]
        timeout = min(self.config.timeout_s, PREFLIGHT_TIMEOUT_S)

        async def one(ep: Endpoint[Transport]) -> PreflightResult:
            try:
                async with asyncio.timeout(timeout + TIMEOUT_BACKSTOP_S):
                    await ep.transport.send(ping, params, timeout_s=timeout)
            except TimeoutError:
                return PreflightResult(backend=self.name, endpoint=ep.url, ok=True,
                                       error_kind="timeout", message="no answer in time")
            except LLMError as exc:
                return PreflightResult(backend=self.name, endpoint=ep.url,
                                       ok=not exc.backend_fault, error_kind=exc.kind,
                                       message=str(exc))  # fmt: skip
            return PreflightResult(backend=self.name, endpoint=ep.url, ok=True)

        return list(await asyncio.gather(*(one(ep) for ep in self._pool.endpoints)))

    # -- state ---------------------------------------------------------------------------------

    def statistics(self) -> ClientStatistics:
        lim = self._limiter
        waiting = lim.waiting
        for window in (self._rpm, self._tpm):
            if window is not None:
                waiting += window.waiting
        return ClientStatistics(
            name=self.name,
            backend=self.config.backend,
            model=self.config.model,
            in_flight=lim.in_flight,
            limit=lim.limit,
            max_limit=lim.maximum,
            peak_in_flight=lim.peak_in_flight,
            waiting=waiting,
            shrinks=lim.shrinks,
            overloads=lim.overloads,
            pauses=sum(e.pauses for e in self._pool.endpoints),
            breaker=self.breaker.statistics(),
            usage=self.usage.backend_stats(self.name),
            callers=self.usage.caller_stats(self.name),
            cache=self._cache.stats.as_dict() if self._cache is not None else None,
            endpoints=self._pool.statistics(),
        )

    async def aclose(self) -> None:
        """Close every transport (idempotent). Does not close the shared cache."""
        if self._closed:
            return
        self._closed = True
        self._pool.close()
        for t in self.transports:
            with contextlib.suppress(Exception):
                await t.aclose()
