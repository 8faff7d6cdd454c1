"""What the batch backends share: calls become lines of batches, journaled, polled, answered.

A subclass speaks one provider's batch API (`openai_batch`, `anthropic_batch`): the request body
of a call, how a batch is created, how its state is read, how its results are read back. This
base does the rest, the same for both:

- `send` makes its request one line of the batch being filled (``custom_id`` = a hash of the
  request body; equal requests share a line) and waits. A batch is submitted when
  ``batch_size`` lines wait or ``window_s`` after its first line.
- A poller per open batch asks for its state every ``poll_s``; once it ended, the results answer
  every waiting call: an answer; the line's own error, typed by its HTTP status — except that a
  line's 5xx becomes a plain `RetryableLLMError` (one line failing says nothing about the
  endpoint's load, so it shrinks no concurrency limit and cools no endpoint); or, for a line
  the batch ended without answering (expired, canceled), `RetryableLLMError`, and the retry
  submits it again.
- The journal (``options.journal``; the runtime sets ``RUN_DIR/llm_batches.<name>.sqlite``)
  records each batch and its lines once the API accepted it, and keeps the answers: a resumed run
  polls the batches still open and attaches each call to the line it already submitted, and an
  answered line is returned from the journal with no request. An attempt that times out leaves
  its line in its batch; the retry waits on the same line. The one gap: a kill in the
  milliseconds between the API accepting a batch and the journal write — that batch's lines go
  out again.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import aiohttp
import structlog

from agents.llm.backends._http import error_from_status, scrub
from agents.llm.backends.batch_journal import BatchJournal
from agents.llm.config import BackendConfig
from agents.llm.errors import (
    LLMError,
    LLMTimeoutError,
    MalformedResponseError,
    RetryableLLMError,
    UnavailableError,
)
from agents.llm.types import ChatMessage, Completion, GenerationParams

__all__ = ["BatchState", "BatchingTransport", "batch_custom_id"]

_log = structlog.get_logger("agents.llm.batching")

_HTTP_TIMEOUT_S = 300.0  # one API request (an upload of a large batch included)


def batch_custom_id(body: dict[str, Any]) -> str:
    """The line's id: a hash of the canonical request body (equal requests share a line)."""
    blob = json.dumps(body, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:40]


class BatchState:
    """A batch as its poller sees it: ``ended``, a status label for the log, the raw object."""

    __slots__ = ("ended", "raw", "status")

    def __init__(self, *, ended: bool, status: str, raw: dict[str, Any]) -> None:
        self.ended = ended
        self.status = status
        self.raw = raw


class BatchingTransport(ABC):
    """Lines in, batches out; one poller task per open batch. See the module docstring."""

    backend: ClassVar[str]
    max_batch_size: ClassVar[int]

    def __init__(self, config: BackendConfig, endpoint: str) -> None:
        self.model = config.model
        self.endpoint = endpoint.rstrip("/")
        self._config = config
        self._batch_size = int(self._option("batch_size", 5000))
        if self._batch_size > self.max_batch_size:
            raise ValueError(
                f"LLM backend {self.backend!r}: options.batch_size is at most "
                f"{self.max_batch_size} (the API's limit per batch)"
            )
        self._window_s = self._option("window_s", 30.0)
        self._poll_s = self._option("poll_s", 30.0)
        journal = config.options.get("journal")
        self._journal_path = Path(str(journal)) if journal else None
        self._session: aiohttp.ClientSession | None = None
        self._journal: BatchJournal | None = None
        self._started: asyncio.Task[None] | None = None
        self._waiting: dict[str, asyncio.Future[Completion]] = {}
        self._pending: dict[str, dict[str, Any]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._timer: asyncio.TimerHandle | None = None
        self._polled: set[str] = set()
        self._closed = False
        self.submitted = 0
        """Batches this transport submitted (for monitoring; see `wait_submitted`)."""
        self._submitted_changed: asyncio.Condition | None = None

    def _option(self, key: str, default: float) -> float:
        value = self._config.options.get(key, default)
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ValueError(
                f"LLM backend {self.backend!r}: options.{key} must be a number"
            ) from None
        if number <= 0:
            raise ValueError(f"LLM backend {self.backend!r}: options.{key} must be positive")
        return number

    # -- what a provider's batch API defines ------------------------------------------------------

    @abstractmethod
    def _headers(self) -> dict[str, str]:
        """The HTTP headers of every API request (authentication, version)."""

    @abstractmethod
    def _request_body(
        self, messages: Sequence[ChatMessage], params: GenerationParams
    ) -> dict[str, Any]:
        """The provider's request body for one call (its hash is the line's ``custom_id``)."""

    @abstractmethod
    async def _create(self, lines: dict[str, dict[str, Any]]) -> str:
        """Create a batch of ``lines`` (custom_id -> body); returns its id. Raises LLMError."""

    @abstractmethod
    async def _state(self, batch_id: str) -> BatchState:
        """The batch's state. Raises LLMError (the poller retries)."""

    @abstractmethod
    async def _results(self, state: BatchState) -> tuple[dict[str, str], dict[str, LLMError]]:
        """An ended batch's answers (custom_id -> the answer as JSON text) and failed lines.
        Raises LLMError (the poller retries)."""

    @abstractmethod
    def _completion(self, raw: str) -> Completion:
        """A stored answer as a Completion. Raises MalformedResponseError."""

    # -- the call --------------------------------------------------------------------------------

    async def send(
        self, messages: Sequence[ChatMessage], params: GenerationParams, *, timeout_s: float
    ) -> Completion:
        if self._closed:
            raise UnavailableError(self._where("the transport is closed"))
        body = self._request_body(messages, params)
        custom_id = batch_custom_id(body)
        try:
            return await asyncio.wait_for(self._answer(custom_id, body), timeout_s)
        except TimeoutError:
            raise LLMTimeoutError(
                self._where(f"no batch answer within {timeout_s:g}s (the line stays submitted)")
            ) from None

    async def _answer(self, custom_id: str, body: dict[str, Any]) -> Completion:
        await self._start()
        waiter = self._waiting.get(custom_id)
        if waiter is None:
            # the awaits come first: a caller cancelled (its timeout) leaves nothing half set up
            known = await self._journal.lookup(custom_id) if self._journal else None
            waiter = self._waiting.get(custom_id)
            if waiter is None:
                waiter = asyncio.get_running_loop().create_future()
                self._waiting[custom_id] = waiter
                if known is not None and known.result is not None:
                    self._resolve(custom_id, self._parse(known.result))
                elif known is not None:
                    self._poll(known.batch_id)  # submitted before a restart: wait on that line
                else:
                    self._enqueue(custom_id, body)
        started = time.perf_counter()
        completion = await asyncio.shield(waiter)
        return completion.model_copy(update={"latency_s": time.perf_counter() - started})

    def _parse(self, raw: str) -> Completion | LLMError:
        try:
            return self._completion(raw)
        except LLMError as exc:
            return exc

    def _resolve(self, custom_id: str, outcome: Completion | LLMError) -> None:
        waiter = self._waiting.pop(custom_id, None)
        if waiter is None or waiter.done():
            return
        if isinstance(outcome, LLMError):
            waiter.set_exception(outcome)
            waiter.exception()  # retrieved: the callers re-raise it
        else:
            waiter.set_result(outcome)

    # -- filling and submitting batches ----------------------------------------------------------

    def _enqueue(self, custom_id: str, body: dict[str, Any]) -> None:
        self._pending[custom_id] = body
        if len(self._pending) >= self._batch_size:
            self._submit_now()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self._window_s, self._submit_now)

    def _submit_now(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        while self._pending:
            lines = dict(list(self._pending.items())[: self._batch_size])
            for custom_id in lines:
                del self._pending[custom_id]
            self._spawn(self._submit(lines))

    async def _submit(self, lines: dict[str, dict[str, Any]]) -> None:
        try:
            batch_id = await self._create(lines)
        except (LLMError, KeyError, TypeError, ValueError) as exc:
            error = (
                exc
                if isinstance(exc, LLMError)
                else MalformedResponseError(
                    self._where(f"unreadable batch creation reply ({type(exc).__name__}: {exc})")
                )
            )
            for custom_id in lines:
                self._resolve(custom_id, error)
            return
        if self._journal is not None:
            await self._journal.submitted(batch_id, lines)
        _log.info("llm_batch_submitted", backend=self.backend, batch_id=batch_id, lines=len(lines))
        self._poll(batch_id, lines=list(lines))
        self.submitted += 1
        changed = self._condition()
        async with changed:
            changed.notify_all()

    def _condition(self) -> asyncio.Condition:
        if self._submitted_changed is None:
            self._submitted_changed = asyncio.Condition()
        return self._submitted_changed

    async def wait_submitted(self, count: int) -> None:
        """Return once this transport has submitted ``count`` batches (monitoring, tests)."""
        changed = self._condition()
        async with changed:
            await changed.wait_for(lambda: self.submitted >= count)

    # -- polling and reading back ---------------------------------------------------------------

    def _poll(self, batch_id: str, lines: list[str] | None = None) -> None:
        if batch_id not in self._polled:
            self._polled.add(batch_id)
            self._spawn(self._poll_guarded(batch_id, lines))

    async def _poll_guarded(self, batch_id: str, lines: list[str] | None) -> None:
        try:
            await self._poll_until_done(batch_id, lines)
        except Exception:
            # (the journal failed, say): forget the poller, so a retried call starts a new one
            self._polled.discard(batch_id)
            raise

    async def _poll_until_done(self, batch_id: str, lines: list[str] | None) -> None:
        while True:
            try:
                state = await self._state(batch_id)
            except (LLMError, KeyError, TypeError, ValueError) as exc:
                # the waiters' own deadlines bound this; a transient error must not drop a batch
                _log.warning(
                    "llm_batch_poll_failed", batch_id=batch_id, error=f"{type(exc).__name__}: {exc}"
                )
                await asyncio.sleep(self._poll_s)
                continue
            if state.ended:
                break
            await asyncio.sleep(self._poll_s)
        try:
            answers, errors = await self._results(state)
        except LLMError as exc:
            _log.warning("llm_batch_read_failed", batch_id=batch_id, error=str(exc))
            await asyncio.sleep(self._poll_s)
            self._polled.discard(batch_id)
            self._poll(batch_id, lines)
            return
        if lines is None:
            lines = await self._journal.lines_of(batch_id) if self._journal else []
        if self._journal is not None:
            await self._journal.finished(batch_id, answers)
        _log.info(
            "llm_batch_finished",
            backend=self.backend,
            batch_id=batch_id,
            status=state.status,
            answered=len(answers),
            failed=len(errors),
            unanswered=len(set(lines) - answers.keys() - errors.keys()),
        )
        for custom_id in lines:
            if custom_id in answers:
                self._resolve(custom_id, self._parse(answers[custom_id]))
            elif custom_id in errors:
                self._resolve(custom_id, errors[custom_id])
            else:
                unanswered = f"batch {batch_id} ended {state.status!r} without answering this line"
                self._resolve(custom_id, RetryableLLMError(self._where(unanswered)))

    # -- plumbing ---------------------------------------------------------------------------------

    async def _start(self) -> None:
        """Open the journal and resume polling the batches it lists as open (once; a task of
        its own, so a caller's timeout cannot leave it half done)."""
        if self._started is None:
            self._started = asyncio.get_running_loop().create_task(self._open())
        await asyncio.shield(self._started)

    async def _open(self) -> None:
        if self._journal_path is None:
            return
        self._journal = BatchJournal(self._journal_path)
        for batch_id in await self._journal.unfinished():
            _log.info("llm_batch_resumed", backend=self.backend, batch_id=batch_id)
            self._poll(batch_id)

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            _log.error("llm_batch_task_failed", error=repr(task.exception()))

    async def _request(
        self, method: str, path_or_url: str, *, raw: bool = False, **kwargs: Any
    ) -> Any:
        """One API request (``path_or_url`` relative to the endpoint, or absolute). Raises the
        typed LLMError of a failure; returns the JSON reply, or the bytes with ``raw``."""
        session = self._session
        if session is None or session.closed:
            session = self._session = aiohttp.ClientSession(headers=self._headers())
        url = path_or_url if "://" in path_or_url else f"{self.endpoint}{path_or_url}"
        try:
            async with session.request(
                method, url, timeout=aiohttp.ClientTimeout(total=_HTTP_TIMEOUT_S), **kwargs
            ) as resp:
                content = await resp.read()
                if resp.status != 200:
                    raise error_from_status(
                        resp.status,
                        error_text_raw(content),
                        resp.headers,
                        config=self._config,
                        url=self.endpoint,
                    )
        except TimeoutError:
            raise LLMTimeoutError(self._where(f"{method} {path_or_url}: no answer")) from None
        except (aiohttp.ClientError, OSError) as exc:
            what = f"{method} {path_or_url}: {type(exc).__name__}: {exc}"
            raise UnavailableError(self._where(what)) from None
        if raw:
            return content
        try:
            return json.loads(content)
        except ValueError:
            raise MalformedResponseError(self._where(f"{method} {path_or_url}: not JSON")) from None

    def _where(self, what: str) -> str:
        return scrub(f"LLM backend {self.backend!r} at {self.endpoint}: {what}", self._config)

    def line_error(self, status: int, message: str) -> LLMError:
        """The error of a line the API failed with HTTP ``status``: final ones (400, auth) typed
        as usual, retryable ones as a plain `RetryableLLMError` — one line failing is no sign of
        an overloaded endpoint, so it shrinks no concurrency limit and cools no endpoint."""
        error = error_from_status(
            status or 500, message, None, config=self._config, url=self.endpoint
        )
        if isinstance(error, RetryableLLMError):
            return RetryableLLMError(f"batch line failed: {error}")
        return error

    async def aclose(self) -> None:
        """Stop polling and close. Submitted batches go on at the API; the journal keeps them."""
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(BaseException):
                await task
        for custom_id in list(self._waiting):
            self._resolve(custom_id, UnavailableError(self._where("the transport closed")))
        if self._session is not None and not self._session.closed:
            await self._session.close()
        if self._journal is not None:
            self._journal.close()
            self._journal = None


def error_text(body: Any) -> str:
    """The message of an OpenAI- or Anthropic-style error body ('' when there is none)."""
    if isinstance(body, dict):
        err = body.get("error", body)
        if isinstance(err, dict):
            inner = err.get("error")  # Anthropic: {"type": "error", "error": {...}}
            if isinstance(inner, dict) and isinstance(inner.get("message"), str):
                return str(inner["message"])
            if isinstance(err.get("message"), str):
                return str(err["message"])
        if isinstance(err, str):
            return err
    return ""


def error_text_raw(raw: bytes) -> str:
    try:
        return error_text(json.loads(raw)) or raw[:300].decode("utf-8", "replace")
    except ValueError:
        return raw[:300].decode("utf-8", "replace")
