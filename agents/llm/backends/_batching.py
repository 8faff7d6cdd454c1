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
  its line in its batch; the retry waits on the same line.
- Write-ahead, so that no batch is paid twice: before the create call the journal records a
  `Submission` (a random id, the time, its lines). A submission whose create call may have
  reached the API without its batch being journaled — the run was killed in between (found in
  the journal at start), or the create call failed without an HTTP 4xx answer (a timeout, a
  dropped connection, a 5xx, an unreadable reply) — is *in doubt*: its lines wait while the
  subclass looks its batch up at the API (`_find`: OpenAI by the id sent in the batch's
  metadata, Anthropic by size and creation time). A batch found is adopted (journaled, polled,
  its answers served); a submission the API never saw is dropped and its waiting lines are
  submitted again. A lookup runs within ``_LOOKUP_DEADLINE_S``: for a submission found in the
  journal at start, at once; for a create call that failed, when the first of its calls retries
  (after the retry layer's back-off, `ManagedClient`). If it fails with a retryable error the
  calls waiting on it get that error and their retries look again (one retry layer): the lines
  never go out while their batch may exist. A lookup the API refuses (4xx: the listing is
  unsupported or forbidden) gives up and resubmits, with a warning.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import secrets
import time
from abc import ABC, abstractmethod
from collections.abc import AsyncGenerator, Sequence
from pathlib import Path
from typing import Any, ClassVar

import aiohttp
import structlog

from agents.llm.backends._http import connection_error, error_from_status, scrub
from agents.llm.backends.batch_journal import BatchJournal, SubmissionRecord
from agents.llm.config import BackendConfig
from agents.llm.errors import (
    FatalLLMError,
    LLMError,
    LLMTimeoutError,
    MalformedResponseError,
    RateLimitedError,
    RetryableLLMError,
    UnavailableError,
)
from agents.llm.redact import redact_url
from agents.llm.types import ChatMessage, Completion, GenerationParams

__all__ = [
    "HTTP_TIMEOUT_S",
    "BatchNotIdentified",
    "BatchState",
    "BatchingTransport",
    "Submission",
    "batch_custom_id",
]

_log = structlog.get_logger("agents.llm.batching")

HTTP_TIMEOUT_S = 300.0  # one API request (an upload of a large batch included)
_LOOKUP_DEADLINE_S = 600.0  # one lookup of an in-doubt submission (all its list pages)
_DISCARD_DEADLINE_S = 30.0  # the best-effort cleanup of a submission that never became a batch


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


class BatchNotIdentified(Exception):
    """Raised by `BatchingTransport._find` when batches at the API could be the submission's but
    none can be told to be: the lines go out again, with a warning giving this reason."""


class Submission:
    """One batch about to be created, as written ahead to the journal (see the module docstring).

    ``id`` is random (the subclass sends it to the API where the API keeps one, OpenAI's
    ``metadata``); ``created_at`` is ``time.time()`` just before the journal write and the create
    call; ``custom_ids`` are its lines. ``file_id`` (OpenAI) is the input file once uploaded.
    ``sent`` is set by the subclass just before the request that creates the batch: a failure
    before it cannot have created one. ``waiting`` (in memory) holds the bodies of the lines
    whose callers wait on the submission while it is in doubt."""

    __slots__ = ("created_at", "custom_ids", "file_id", "id", "sent", "waiting")

    def __init__(
        self,
        custom_ids: Sequence[str],
        *,
        id: str | None = None,
        created_at: float | None = None,
        file_id: str | None = None,
        sent: bool = False,
    ) -> None:
        self.id = id or secrets.token_hex(16)
        self.created_at = time.time() if created_at is None else created_at
        self.custom_ids = list(custom_ids)
        self.file_id = file_id
        self.sent = sent
        self.waiting: dict[str, dict[str, Any]] = {}

    def record(self, endpoint: str) -> SubmissionRecord:
        return SubmissionRecord(
            self.id, endpoint, self.created_at, tuple(self.custom_ids), self.file_id
        )


class BatchingTransport(ABC):
    """Lines in, batches out; one poller task per open batch. See the module docstring."""

    backend: ClassVar[str]
    max_batch_size: ClassVar[int]
    serial_creates: ClassVar[bool] = False
    """Create one batch at a time, and look one up only while none is being created (a subclass
    that tells its batches apart by size and time needs it; see `AnthropicBatchTransport`)."""
    list_page_size: ClassVar[int] = 100
    """Batches per page when listing them (`_newest_batches`)."""

    def __init__(self, config: BackendConfig, endpoint: str) -> None:
        self.model = config.model
        self.endpoint = endpoint.rstrip("/")
        #: the endpoint as journaled and shown: credentials in the URL are never written
        self._endpoint_key = redact_url(self.endpoint)
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
        self._poll_lines: dict[str, set[str]] = {}  # batch -> lines known in memory
        self._journal_lines: set[str] = set()  # batches whose lines are read from the journal
        self._in_doubt: dict[str, Submission] = {}  # custom_id -> its in-doubt submission
        self._doubts: dict[str, Submission] = {}  # submission id -> in-doubt submission
        self._settling: dict[str, asyncio.Task[None]] = {}  # submission id -> its lookup
        self._created: set[str] = set()  # batches a create call of this transport returned
        self._adopted: set[str] = set()  # batches adopted by a lookup (not proof of ownership)
        self._serial_lock: asyncio.Lock | None = None
        self._lookup_deadline_s = _LOOKUP_DEADLINE_S
        self._closed = False
        self.submitted = 0
        """Batches this transport submitted (for monitoring; see `wait_submitted`)."""
        self.adopted = 0
        """In-doubt submissions whose batch a lookup found and adopted (for monitoring)."""
        self._submitted_changed: asyncio.Condition | None = None

    def _option(self, key: str, default: float) -> float:
        """A numeric option (validated by `agents.llm.options` with the config)."""
        return float(self._config.options.get(key, default))

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
    async def _create(self, lines: dict[str, dict[str, Any]], submission: Submission) -> str:
        """Create a batch of ``lines`` (custom_id -> body) for ``submission`` (already written
        ahead); returns its id. Sets ``submission.sent`` just before the request that creates
        the batch. Raises LLMError (or KeyError/TypeError/ValueError for an unreadable reply)."""

    @abstractmethod
    async def _find(
        self, submission: Submission, claimed: set[str], rivals: list[Submission]
    ) -> str | None:
        """The id of the batch the API created for the in-doubt ``submission``, or None when it
        has none. ``claimed``: batches known to hold other lines (journaled from a create
        call's reply; never the answer); ``rivals``: the other submissions in doubt. Raises
        `BatchNotIdentified` when it cannot tell which batch is the submission's, LLMError when
        the lookup failed; the caller bounds it with a deadline."""

    async def _discard(self, submission: Submission) -> None:  # noqa: B027 (optional hook)
        """Clean up what a submission that never became a batch left at the API (best effort,
        bounded by a deadline, errors logged; the default has nothing to clean)."""

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
            known = None
            if custom_id not in self._in_doubt and self._journal is not None:
                known = await self._journal.lookup(custom_id)
            waiter = self._waiting.get(custom_id)
            if waiter is None:
                waiter = asyncio.get_running_loop().create_future()
                self._waiting[custom_id] = waiter
                doubt = self._in_doubt.get(custom_id)  # (again: it may be new since the await)
                if doubt is not None:
                    doubt.waiting[custom_id] = body  # the lookup answers, resubmits or fails it
                    self._settle(doubt)
                elif known is not None and known.result is not None:
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

    def _serial(self) -> contextlib.AbstractAsyncContextManager[Any]:
        """Held around a create (write-ahead to journal) and a lookup where `serial_creates`."""
        if not self.serial_creates:
            return contextlib.nullcontext()
        if self._serial_lock is None:
            self._serial_lock = asyncio.Lock()
        return self._serial_lock

    async def _submit(self, lines: dict[str, dict[str, Any]]) -> None:
        async with self._serial():
            submission = Submission(list(lines))
            if self._journal is not None:
                try:
                    await self._journal.submitting(submission.record(self._endpoint_key))
                except Exception as exc:  # nothing was sent: the calls may retry
                    _log.error("llm_batch_journal_failed", error=f"{type(exc).__name__}: {exc}")
                    failed = RetryableLLMError(self._where(f"batch journal write failed: {exc}"))
                    for custom_id in lines:
                        self._resolve(custom_id, failed)
                    return
            try:
                batch_id = await self._create(lines, submission)
            except (LLMError, KeyError, TypeError, ValueError) as exc:
                error = (
                    exc
                    if isinstance(exc, LLMError)
                    else MalformedResponseError(
                        self._where(
                            f"unreadable batch creation reply ({type(exc).__name__}: {exc})"
                        )
                    )
                )
                if submission.sent and not isinstance(error, FatalLLMError | RateLimitedError):
                    # no 4xx answer: the API may have created the batch; its lines wait for a
                    # lookup (run by their retries) instead of going out again
                    self._doubt(submission)
                    _log.warning(
                        "llm_batch_in_doubt",
                        backend=self.backend,
                        submission=submission.id,
                        lines=len(lines),
                        error=str(error),
                    )
                else:
                    await self._abandon(submission)
                for custom_id in lines:
                    self._resolve(custom_id, error)
                return
            self._created.add(batch_id)
            await self._journal_batch(batch_id, submission)
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

    async def _journal_batch(self, batch_id: str, submission: Submission) -> None:
        """Record ``batch_id`` as the batch of ``submission``. If the journal fails the batch is
        still polled (from memory) and the submission stays written ahead: a resumed run looks
        it up, as after a kill."""
        if self._journal is None:
            return
        try:
            await self._journal.submitted(batch_id, submission.custom_ids, submission.id)
        except Exception as exc:  # logged; the answers still come from memory
            _log.error(
                "llm_batch_journal_failed",
                batch_id=batch_id,
                submission=submission.id,
                error=f"{type(exc).__name__}: {exc}",
            )

    async def _note_file(self, submission: Submission, file_id: str) -> None:
        """Record the input file uploaded for ``submission`` (for `_discard`; best effort)."""
        submission.file_id = file_id
        if self._journal is not None:
            try:
                await self._journal.uploaded(submission.id, file_id)
            except Exception as exc:  # only the cleanup of an orphan file needs it
                _log.error("llm_batch_journal_failed", error=f"{type(exc).__name__}: {exc}")

    async def _abandon(self, submission: Submission) -> None:
        """Forget a submission that never became a batch (journal, then `_discard`)."""
        if self._journal is not None:
            try:
                await self._journal.abandoned(submission.id)
            except Exception as exc:  # left in doubt: a restart looks it up
                _log.error("llm_batch_journal_failed", error=f"{type(exc).__name__}: {exc}")
        try:
            async with asyncio.timeout(_DISCARD_DEADLINE_S):
                await self._discard(submission)
        except (LLMError, TimeoutError, KeyError, TypeError, ValueError) as exc:
            _log.warning(
                "llm_batch_discard_failed",
                backend=self.backend,
                submission=submission.id,
                error=f"{type(exc).__name__}: {exc}",
            )

    # -- submissions in doubt --------------------------------------------------------------------

    def _doubt(self, submission: Submission) -> None:
        self._doubts[submission.id] = submission
        for custom_id in submission.custom_ids:
            self._in_doubt.setdefault(custom_id, submission)

    def _undoubt(self, submission: Submission) -> None:
        self._doubts.pop(submission.id, None)
        for custom_id in submission.custom_ids:
            if self._in_doubt.get(custom_id) is submission:
                del self._in_doubt[custom_id]

    def _settle(self, submission: Submission) -> None:
        """Start the lookup of an in-doubt submission unless one is running (its waiting lines
        await its outcome)."""
        running = self._settling.get(submission.id)
        if running is None or running.done():
            task = asyncio.get_running_loop().create_task(self._recover(submission))
            self._settling[submission.id] = task
            self._tasks.add(task)
            task.add_done_callback(self._task_done)
            task.add_done_callback(self._settled)

    def _settled(self, task: asyncio.Task[None]) -> None:
        for key, running in list(self._settling.items()):
            if running is task:
                del self._settling[key]

    async def _recover(self, submission: Submission) -> None:
        """One lookup of an in-doubt submission: adopt its batch, resubmit its waiting lines, or
        fail them with the lookup's error (their retries look again)."""
        reason = ""
        try:
            async with self._serial():
                claimed = set(self._created)
                if self._journal is not None:
                    claimed |= await self._journal.batch_ids()
                claimed -= self._adopted  # another in-doubt submission's guess may be ours
                rivals = [s for s in self._doubts.values() if s is not submission]
                try:
                    async with asyncio.timeout(self._lookup_deadline_s):
                        batch_id = await self._find(submission, claimed, rivals)
                except TimeoutError:
                    raise LLMTimeoutError(
                        self._where(f"batch lookup: no answer within {self._lookup_deadline_s:g}s")
                    ) from None
                except (KeyError, TypeError, ValueError) as exc:
                    raise MalformedResponseError(
                        self._where(f"batch lookup: unreadable list ({type(exc).__name__}: {exc})")
                    ) from None
        except BatchNotIdentified as exc:
            batch_id, reason = None, str(exc)
        except FatalLLMError as exc:
            batch_id, reason = None, f"the lookup was refused ({exc})"
        except LLMError as exc:
            self._fail_waiting(submission, exc, "llm_batch_lookup_failed")
            return
        except Exception as exc:  # the journal, say: the lines stay in doubt
            error = RetryableLLMError(self._where(f"batch lookup failed: {exc}"))
            self._fail_waiting(submission, error, "llm_batch_lookup_failed")
            raise
        if batch_id is not None:
            await self._journal_batch(batch_id, submission)
            self._undoubt(submission)
            self._adopted.add(batch_id)
            self.adopted += 1
            _log.info(
                "llm_batch_adopted",
                backend=self.backend,
                batch_id=batch_id,
                submission=submission.id,
                lines=len(submission.custom_ids),
            )
            self._poll(batch_id, lines=submission.custom_ids)
            submission.waiting.clear()
            return
        (_log.warning if reason else _log.info)(
            "llm_batch_not_found",
            backend=self.backend,
            submission=submission.id,
            lines=len(submission.custom_ids),
            waiting=len(submission.waiting),
            reason=f"{reason or 'the API has no batch of it'}: its lines go out again",
        )
        await self._abandon(submission)
        self._undoubt(submission)
        waiting, submission.waiting = submission.waiting, {}
        for custom_id, body in waiting.items():
            if custom_id in self._waiting:
                self._enqueue(custom_id, body)

    def _fail_waiting(self, submission: Submission, error: LLMError, event: str) -> None:
        _log.warning(event, backend=self.backend, submission=submission.id, error=str(error))
        waiting, submission.waiting = submission.waiting, {}
        for custom_id in waiting:
            self._resolve(custom_id, error)

    async def _newest_batches(self, path: str, cursor: str) -> AsyncGenerator[dict[str, Any], None]:
        """The batches at ``path``, newest first, page after page (``limit`` =
        `list_page_size`; the next page from ``cursor`` = the page's ``last_id``, while
        ``has_more``). Raises LLMError (or KeyError/TypeError for an unreadable page)."""
        params = {"limit": str(self.list_page_size)}
        while True:
            page = await self._request("GET", path, params=params)
            data = page["data"]
            for batch in data:
                yield batch
            if not page.get("has_more") or not data:
                return
            params = {**params, cursor: str(page.get("last_id") or data[-1]["id"])}

    # -- polling and reading back ---------------------------------------------------------------

    def _poll(self, batch_id: str, lines: list[str] | None = None) -> None:
        """Poll ``batch_id`` until it ended, then answer its ``lines`` (None: the journal's;
        lines given by several calls add up)."""
        if lines is None:
            self._journal_lines.add(batch_id)
        else:
            self._poll_lines.setdefault(batch_id, set()).update(lines)
        if batch_id not in self._polled:
            self._polled.add(batch_id)
            self._spawn(self._poll_guarded(batch_id))

    async def _poll_guarded(self, batch_id: str) -> None:
        try:
            await self._poll_until_done(batch_id)
        except Exception:
            # (the journal failed, say): forget the poller, so a retried call starts a new one
            self._polled.discard(batch_id)
            raise

    async def _poll_until_done(self, batch_id: str) -> None:
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
            self._poll(batch_id, [])
            return
        journaled: list[str] = []
        if self._journal is not None:
            if batch_id in self._journal_lines:
                journaled = await self._journal.lines_of(batch_id)
            await self._journal.finished(batch_id, answers)
        # no await from here on: every line attached to this poller until now is answered, and
        # a line attached later (`_poll` again) starts a new poller
        self._polled.discard(batch_id)
        self._journal_lines.discard(batch_id)
        lines = self._poll_lines.pop(batch_id, set()).union(journaled)
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
        for record in await self._journal.in_doubt(self._endpoint_key):
            # written ahead, never settled: the run stopped around a create call. Looked up at
            # once (its calls, as they come, wait on that lookup); if it fails, their retries
            # look again
            _log.warning(
                "llm_batch_in_doubt",
                backend=self.backend,
                submission=record.submission_id,
                lines=len(record.custom_ids),
                error="found in the journal at start: looked up before its lines go out again",
            )
            submission = Submission(
                record.custom_ids,
                id=record.submission_id,
                created_at=record.created_at,
                file_id=record.file_id,
                sent=True,
            )
            self._doubt(submission)
            self._settle(submission)

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
                method, url, timeout=aiohttp.ClientTimeout(total=HTTP_TIMEOUT_S), **kwargs
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
            request = f"{method} {path_or_url}"
            raise connection_error(exc, lambda what: self._where(f"{request}: {what}")) from None
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
        for submission in self._doubts.values():
            submission.waiting.clear()
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
