"""The `openai-batch` backend: every call goes through OpenAI's Batch API — half the price of the
same call made directly, answered within the completion window (minutes to 24 h) instead of
seconds. For big paid runs where waiting is cheaper than paying.

A batch is a JSONL file of chat-completion requests uploaded to ``/files`` (purpose ``batch``),
then ``POST /batches`` on it; ``GET /batches/{id}`` until its status leaves validating /
in_progress / finalizing / cancelling; then its output and error files. How lines are gathered,
journaled, polled, answered and retried: `agents.llm.backends._batching`.

A batch written ahead to the journal but not recorded as created (the run was killed around the
create call, or the call failed without a 4xx answer) is looked up before its lines go out again:
each batch carries its submission id in ``metadata`` (key ``evolagents_submission``), and ``GET
/batches`` is read page by page until the batches are older than the submission (less an hour for
clock skew); the batch with that id (or created from the journaled input file) is adopted. This
relies on the list being newest first, as the mock serves it; OpenAI's API reference states no
order (newest first is what its clients expect; not tested here against OpenAI): were it not, the
lookup could stop too early and the lines would go out again. When there is no such batch — or the
create call was rejected with a 4xx — the submission's input file, if it was uploaded, is deleted
(``DELETE /files/{id}``, best effort; files for batches expire after 30 days anyway), so a create
call still on its way finds no file; then the lines go out again.

Options (``[llm.NAME] options``): ``batch_size`` (default 5,000; OpenAI allows 50,000 lines and
200 MB per batch), ``window_s`` (30), ``poll_s`` (30), ``completion_window`` ("24h"), ``journal``
(path; the runtime sets ``RUN_DIR/llm_batches.<name>.sqlite``). Set ``timeout_s`` to the
completion window (86,400 s for 24 h), ``concurrency`` to the number of lines you want in flight
(the batch can only be as big as the calls waiting at once), and leave ``rpm``/``tpm`` unset:
batch lines are not requests.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Sequence
from typing import Any, ClassVar

import aiohttp

from agents.llm.backends._batching import (
    BatchingTransport,
    BatchState,
    Submission,
    batch_custom_id,
    error_text,
)
from agents.llm.backends._http import openai_request_kwargs, resolve_api_key
from agents.llm.config import BackendConfig
from agents.llm.errors import LLMError, MalformedResponseError
from agents.llm.types import ChatMessage, Completion, GenerationParams

__all__ = ["SUBMISSION_KEY", "OpenAIBatchTransport", "batch_custom_id", "create_transport"]

_ENDPOINT = "/v1/chat/completions"
_OPEN = frozenset({"validating", "in_progress", "finalizing", "cancelling"})
#: The batch metadata key holding the journal's submission id (`_find`).
SUBMISSION_KEY = "evolagents_submission"
#: How far before a submission the listing still looks (clock skew between us and the API).
_LIST_MARGIN_S = 3600.0


class OpenAIBatchTransport(BatchingTransport):
    """OpenAI's Batch API (files + batches)."""

    backend: ClassVar[str] = "openai-batch"
    max_batch_size: ClassVar[int] = 50_000

    def __init__(self, config: BackendConfig, endpoint: str) -> None:
        super().__init__(config, endpoint)
        self._completion_window = str(config.options.get("completion_window", "24h"))
        self._auth = {"Authorization": f"Bearer {resolve_api_key(config)}"}

    def _headers(self) -> dict[str, str]:
        return self._auth

    def _request_body(
        self, messages: Sequence[ChatMessage], params: GenerationParams
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.model,
            "messages": [{"role": m.role, "content": m.content} for m in messages],
        }
        body.update(openai_request_kwargs(params))
        return body

    async def _create(self, lines: dict[str, dict[str, Any]], submission: Submission) -> str:
        payload = "".join(
            json.dumps(
                {"custom_id": cid, "method": "POST", "url": _ENDPOINT, "body": body},
                ensure_ascii=False,
            )
            + "\n"
            for cid, body in lines.items()
        ).encode()
        form = aiohttp.FormData()
        form.add_field("purpose", "batch")
        form.add_field(
            "file", payload, filename="evolagents-batch.jsonl", content_type="application/jsonl"
        )
        uploaded = await self._request("POST", "/files", data=form)
        await self._note_file(submission, str(uploaded["id"]))
        submission.sent = True
        batch = await self._request(
            "POST",
            "/batches",
            json={
                "input_file_id": submission.file_id,
                "endpoint": _ENDPOINT,
                "completion_window": self._completion_window,
                "metadata": {"client": "evolagents", SUBMISSION_KEY: submission.id},
            },
        )
        return str(batch["id"])

    async def _find(
        self, submission: Submission, claimed: set[str], rivals: list[Submission]
    ) -> str | None:
        """The batch whose metadata carries the submission's id (or whose input file is the
        submission's), listed newest first down to the submission's time less
        `_LIST_MARGIN_S`; an exact match, so ``claimed`` and ``rivals`` are not needed."""
        cutoff = submission.created_at - _LIST_MARGIN_S
        async with contextlib.aclosing(self._newest_batches("/batches", "after")) as batches:
            async for batch in batches:
                metadata = batch.get("metadata") or {}
                if metadata.get(SUBMISSION_KEY) == submission.id or (
                    submission.file_id is not None
                    and batch.get("input_file_id") == submission.file_id
                ):
                    return str(batch["id"])
                if float(batch["created_at"]) < cutoff:
                    break
        return None

    async def _discard(self, submission: Submission) -> None:
        """Delete the input file of a submission that never became a batch."""
        if submission.file_id is not None:
            await self._request("DELETE", f"/files/{submission.file_id}")

    async def _state(self, batch_id: str) -> BatchState:
        batch = await self._request("GET", f"/batches/{batch_id}")
        status = str(batch["status"])
        return BatchState(ended=status not in _OPEN, status=status, raw=batch)

    async def _results(self, state: BatchState) -> tuple[dict[str, str], dict[str, LLMError]]:
        answers: dict[str, str] = {}
        errors: dict[str, LLMError] = {}
        for key in ("output_file_id", "error_file_id"):
            file_id = state.raw.get(key)
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
                    message = error_text(body) or str(record.get("error") or "no answer")
                    errors[custom_id] = self.line_error(status, message)
        return answers, errors

    def _completion(self, raw: str) -> Completion:
        try:
            data = json.loads(raw)
            choice = data["choices"][0]
            text = choice["message"]["content"]
            usage = data.get("usage") or {}
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise MalformedResponseError(self._where(f"unreadable answer ({exc})")) from None
        if not isinstance(text, str) or not text:
            raise MalformedResponseError(self._where("empty completion content"))
        return Completion(
            text=text,
            finish_reason=str(choice.get("finish_reason") or "stop"),
            prompt_tokens=int(usage.get("prompt_tokens") or 0),
            completion_tokens=int(usage.get("completion_tokens") or 0),
            backend=self.backend,
            model=str(data.get("model") or self.model),
        )


def create_transport(config: BackendConfig, endpoint: str) -> OpenAIBatchTransport:
    return OpenAIBatchTransport(config, endpoint)
