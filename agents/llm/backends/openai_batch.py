"""The `openai-batch` backend: every call goes through OpenAI's Batch API — half the price of the
same call made directly, answered within the completion window (minutes to 24 h) instead of
seconds. For big paid runs where waiting is cheaper than paying.

How one call goes: `send` makes its request one line of the batch being filled (``custom_id`` =
a hash of the request body) and waits. A batch is submitted — the lines uploaded as a JSONL file,
then a batch created on it — when ``batch_size`` lines are waiting or ``window_s`` after its first
line. A poller asks for the batch's status every ``poll_s`` and, once it ended, reads the output
and error files and answers every waiting call: an answer, the line's own HTTP error (typed as
usual, except that a line's 5xx becomes a plain `RetryableLLMError`: one line failing says nothing
about the endpoint's load, so it shrinks no concurrency limit), or — for a batch that expired,
failed or was cancelled without answering a line — `RetryableLLMError`, and the retry submits that
line again. Leave ``rpm``/``tpm`` unset: batch lines are not requests.

No paid work is lost or paid twice (``journal``, set by the runtime to ``RUN_DIR/
llm_batches.sqlite``): a submitted batch and its lines are recorded before `send` waits on them,
finished answers are kept. After a kill, the resumed run polls the batches still open and attaches
each call to the line it already submitted; an answered line is returned from the journal without
any request. An attempt that times out leaves its line in its batch, and the retry waits on it.
The one gap: a kill between the API accepting a batch and the journal write (a few ms) leaves a
batch the journal does not know; its lines are then submitted again.

Options (``[llm.NAME] options``): ``batch_size`` (default 5,000; OpenAI allows 50,000 lines and
200 MB per batch), ``window_s`` (30), ``poll_s`` (30), ``completion_window`` ("24h"), ``journal``
(path). Set ``timeout_s`` to the completion window (86,400 s for 24 h) and ``concurrency`` to the
number of lines you want in flight — the batch can only be as big as the calls waiting at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import aiohttp
import structlog

from agents.llm.backends._http import (
    error_from_status,
    openai_request_kwargs,
    resolve_api_key,
    scrub,
)
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

__all__ = ["OpenAIBatchTransport", "batch_custom_id", "create_transport"]

_log = structlog.get_logger("agents.llm.openai_batch")

_ENDPOINT = "/v1/chat/completions"
_OPEN = frozenset({"validating", "in_progress", "finalizing", "cancelling"})
_HTTP_TIMEOUT_S = 300.0  # one API request (an upload of a large file included)


def batch_custom_id(body: dict[str, Any]) -> str:
    """The line's id: a hash of the canonical request body (equal requests share a line)."""
    blob = json.dumps(body, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:40]


def _option(config: BackendConfig, key: str, default: float) -> float:
    value = config.options.get(key, default)
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"LLM backend 'openai-batch': options.{key} must be a number") from None
    if number <= 0:
        raise ValueError(f"LLM backend 'openai-batch': options.{key} must be positive")
    return number


class OpenAIBatchTransport:
    """Lines in, batches out; one poller task per open batch. See the module docstring."""

    backend = "openai-batch"

    def __init__(self, config: BackendConfig, endpoint: str) -> None:
        self.model = config.model
        self.endpoint = endpoint.rstrip("/")
        self._config = config
        self._batch_size = int(_option(config, "batch_size", 5000))
        if self._batch_size > 50_000:
            raise ValueError(
                "LLM backend 'openai-batch': options.batch_size is at most 50000 "
                "(the Batch API's limit per batch)"
            )
        self._window_s = _option(config, "window_s", 30.0)
        self._poll_s = _option(config, "poll_s", 30.0)
        self._completion_window = str(config.options.get("completion_window", "24h"))
        journal = config.options.get("journal")
        self._journal_path = Path(str(journal)) if journal else None
        self._headers = {"Authorization": f"Bearer {resolve_api_key(config)}"}
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

    # -- the call --------------------------------------------------------------------------------

    async def send(
        self, messages: Sequence[ChatMessage], params: GenerationParams, *, timeout_s: float
    ) -> Completion:
        if self._closed:
            raise UnavailableError(self._where("the transport is closed"))
        body: dict[str, Any] = {
            "model": self.model,
            "messages": [{"role": m.role, "content": m.content} for m in messages],
        }
        body.update(openai_request_kwargs(params))
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
            return _completion(raw, self.model)
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
        payload = "".join(
            json.dumps(
                {"custom_id": cid, "method": "POST", "url": _ENDPOINT, "body": body},
                ensure_ascii=False,
            )
            + "\n"
            for cid, body in lines.items()
        ).encode()
        try:
            form = aiohttp.FormData()
            form.add_field("purpose", "batch")
            form.add_field(
                "file", payload, filename="evolagents-batch.jsonl", content_type="application/jsonl"
            )
            uploaded = await self._request("POST", "/files", data=form)
            batch = await self._request(
                "POST",
                "/batches",
                json={
                    "input_file_id": uploaded["id"],
                    "endpoint": _ENDPOINT,
                    "completion_window": self._completion_window,
                    "metadata": {"client": "evolagents"},
                },
            )
            batch_id = str(batch["id"])
        except (LLMError, KeyError, TypeError) as exc:
            error = (
                exc
                if isinstance(exc, LLMError)
                else MalformedResponseError(
                    self._where(f"unreadable batch submission reply ({type(exc).__name__}: {exc})")
                )
            )
            for custom_id in lines:
                self._resolve(custom_id, error)
            return
        if self._journal is not None:
            await self._journal.submitted(batch_id, lines)
        _log.info("llm_batch_submitted", batch_id=batch_id, lines=len(lines))
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
                batch = await self._request("GET", f"/batches/{batch_id}")
                status = str(batch["status"])
            except (LLMError, KeyError, TypeError) as exc:
                # the waiters' own deadlines bound this; a transient error must not drop a batch
                _log.warning(
                    "llm_batch_poll_failed", batch_id=batch_id, error=f"{type(exc).__name__}: {exc}"
                )
                await asyncio.sleep(self._poll_s)
                continue
            if status in _OPEN:
                await asyncio.sleep(self._poll_s)
                continue
            break
        try:
            answers, errors = await self._read_results(batch)
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
            batch_id=batch_id,
            status=status,
            answered=len(answers),
            failed=len(errors),
            unanswered=len(lines) - len(answers) - len(errors),
        )
        for custom_id in lines:
            if custom_id in answers:
                self._resolve(custom_id, self._parse(answers[custom_id]))
            elif custom_id in errors:
                self._resolve(custom_id, errors[custom_id])
            else:
                self._resolve(
                    custom_id,
                    UnavailableError(
                        self._where(
                            f"batch {batch_id} ended {status!r} without answering this line"
                        )
                    ),
                )

    async def _read_results(
        self, batch: dict[str, Any]
    ) -> tuple[dict[str, str], dict[str, LLMError]]:
        answers: dict[str, str] = {}
        errors: dict[str, LLMError] = {}
        for key in ("output_file_id", "error_file_id"):
            file_id = batch.get(key)
            if not file_id:
                continue
            raw = await self._request("GET", f"/files/{file_id}/content", raw=True)
            for number, line in enumerate(raw.decode("utf-8").splitlines(), start=1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                    custom_id = str(record["custom_id"])
                    response = record.get("response") or {}
                    status = int(response.get("status_code") or 0)
                    body = response.get("body")
                except (ValueError, KeyError, TypeError) as exc:
                    raise MalformedResponseError(
                        self._where(f"{key} line {number} unreadable ({exc})")
                    ) from None
                if status == 200 and isinstance(body, dict):
                    answers[custom_id] = json.dumps(body, ensure_ascii=False)
                else:
                    message = _error_text(body) or str(record.get("error") or "no answer")
                    error = error_from_status(
                        status or 500, message, None, config=self._config, url=self.endpoint
                    )
                    if isinstance(error, RetryableLLMError):
                        # one line's 5xx is no sign of an overloaded endpoint: retry it without
                        # shrinking the concurrency limit or cooling the endpoint
                        error = RetryableLLMError(f"batch line failed: {error}")
                    errors[custom_id] = error
        return answers, errors

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
            _log.info("llm_batch_resumed", batch_id=batch_id)
            self._poll(batch_id)

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            _log.error("llm_batch_task_failed", error=repr(task.exception()))

    async def _request(self, method: str, path: str, *, raw: bool = False, **kwargs: Any) -> Any:
        session = self._session
        if session is None or session.closed:
            session = self._session = aiohttp.ClientSession(headers=self._headers)
        url = f"{self.endpoint}{path}"
        try:
            async with session.request(
                method, url, timeout=aiohttp.ClientTimeout(total=_HTTP_TIMEOUT_S), **kwargs
            ) as resp:
                content = await resp.read()
                if resp.status != 200:
                    raise error_from_status(
                        resp.status,
                        _error_text_raw(content),
                        resp.headers,
                        config=self._config,
                        url=self.endpoint,
                    )
        except TimeoutError:
            raise LLMTimeoutError(self._where(f"{method} {path}: no answer")) from None
        except (aiohttp.ClientError, OSError) as exc:
            what = f"{method} {path}: {type(exc).__name__}: {exc}"
            raise UnavailableError(self._where(what)) from None
        if raw:
            return content
        try:
            return json.loads(content)
        except ValueError:
            raise MalformedResponseError(self._where(f"{method} {path}: not JSON")) from None

    def _where(self, what: str) -> str:
        return scrub(f"LLM backend 'openai-batch' at {self.endpoint}: {what}", self._config)

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


def _completion(raw: str, model: str) -> Completion:
    try:
        data = json.loads(raw)
        choice = data["choices"][0]
        text = choice["message"]["content"]
        usage = data.get("usage") or {}
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        raise MalformedResponseError(
            f"LLM backend 'openai-batch': unreadable answer ({exc})"
        ) from None
    if not isinstance(text, str) or not text:
        raise MalformedResponseError("LLM backend 'openai-batch': empty completion content")
    return Completion(
        text=text,
        finish_reason=str(choice.get("finish_reason") or "stop"),
        prompt_tokens=int(usage.get("prompt_tokens") or 0),
        completion_tokens=int(usage.get("completion_tokens") or 0),
        backend="openai-batch",
        model=str(data.get("model") or model),
    )


def _error_text(body: Any) -> str:
    if isinstance(body, dict):
        err = body.get("error", body)
        if isinstance(err, dict) and isinstance(err.get("message"), str):
            return str(err["message"])
        if isinstance(err, str):
            return err
    return ""


def _error_text_raw(raw: bytes) -> str:
    try:
        return _error_text(json.loads(raw)) or raw[:300].decode("utf-8", "replace")
    except ValueError:
        return raw[:300].decode("utf-8", "replace")


def create_transport(config: BackendConfig, endpoint: str) -> OpenAIBatchTransport:
    return OpenAIBatchTransport(config, endpoint)
