"""The `anthropic-batch` backend: every call goes through Anthropic's Message Batches API — half
the price of the same call made directly, answered within 24 h (usually much sooner).

A batch is ``POST /v1/messages/batches`` with the requests inline; ``GET
/v1/messages/batches/{id}`` until ``processing_status`` is ``ended``; then the JSONL at its
``results_url``: per request ``succeeded`` (the Message), ``errored`` (typed as the HTTP error it
stands for), ``expired`` or ``canceled`` (retried in a later batch). How lines are gathered,
journaled, polled, answered and retried: `agents.llm.backends._batching`.

A Message Batch carries no metadata, so a batch written ahead to the journal but not recorded as
created (the run was killed around the create call, or the call failed without a 4xx answer) is
looked up by what the API does show: ``GET /v1/messages/batches`` (newest first, page by page)
for batches created within the create call's reach of the submission (from its time less
`_WINDOW_MARGIN_S` to its time plus the request timeout and the margin) whose request counts add
up to the submission's line count and that the journal does not hold from a create call's reply.

- None: a submission the API never saw; its lines go out again.
- Exactly one: adopted (by every submission of ours in doubt that it fits). Answers are matched
  by ``custom_id`` (a hash of the request), so a batch adopted by mistake — another client's of
  the same size, created in the same minutes, while ours never reached the API — answers none of
  our lines wrongly: they go out again once it ended (later, but paid once).
- Two or more: ambiguous; the lines go out again and a warning says so, naming the candidates
  (``llm_batch_not_found``): if one of them was ours, its lines are paid twice.

So that our own batches never make this ambiguous, this backend creates one batch at a time and
looks one up only while none is being created (`serial_creates`): a kill leaves at most one
submission in doubt per transport. Other clients on the same workspace (another run, another
``[llm.NAME]`` table with its own journal) are not seen as ours.

Options (``[llm.NAME] options``): ``batch_size`` (default 5,000; Anthropic allows 100,000
requests and 256 MB per batch), ``window_s`` (30), ``poll_s`` (30), ``default_max_tokens`` (1024,
when a call sets none: the API requires it), ``anthropic_version`` ("2023-06-01"), ``journal``
(the runtime sets ``RUN_DIR/llm_batches.<name>.sqlite``). Set ``timeout_s`` to 86,400 and
``concurrency`` to the lines you want in flight; leave ``rpm``/``tpm`` unset.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any, ClassVar

from agents.llm.backends._batching import (
    HTTP_TIMEOUT_S,
    BatchingTransport,
    BatchNotIdentified,
    BatchState,
    Submission,
    error_text,
)
from agents.llm.backends._http import resolve_api_key
from agents.llm.config import BackendConfig
from agents.llm.errors import LLMError, MalformedResponseError
from agents.llm.types import ChatMessage, Completion, GenerationParams

__all__ = ["AnthropicBatchTransport", "create_transport"]

_PATH = "/v1/messages/batches"
#: Clock skew allowed between us and the API when matching a batch's ``created_at``.
_WINDOW_MARGIN_S = 120.0
#: The request counts of a Message Batch; they always add up to its number of requests.
_COUNTS = ("processing", "succeeded", "errored", "canceled", "expired")

_FINISH = {"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length"}
#: Anthropic's error types, as the HTTP status each stands for (so a line's error is typed as the
#: same call made directly would be).
_ERROR_STATUS = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "overloaded_error": 529,
}


class AnthropicBatchTransport(BatchingTransport):
    """Anthropic's Message Batches API."""

    backend: ClassVar[str] = "anthropic-batch"
    max_batch_size: ClassVar[int] = 100_000
    serial_creates: ClassVar[bool] = True

    def __init__(self, config: BackendConfig, endpoint: str) -> None:
        super().__init__(config, endpoint)
        self._default_max_tokens = int(config.options.get("default_max_tokens", 1024))
        self._auth = {
            "x-api-key": resolve_api_key(config),
            "anthropic-version": str(config.options.get("anthropic_version", "2023-06-01")),
        }

    def _headers(self) -> dict[str, str]:
        return self._auth

    def _request_body(
        self, messages: Sequence[ChatMessage], params: GenerationParams
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.model,
            "max_tokens": params.max_tokens or self._default_max_tokens,
            "messages": [
                {"role": m.role, "content": m.content} for m in messages if m.role != "system"
            ],
        }
        system = "\n\n".join(m.content for m in messages if m.role == "system")
        if system:
            body["system"] = system
        if params.temperature is not None:
            body["temperature"] = params.temperature
        if params.top_p is not None:
            body["top_p"] = params.top_p
        if params.stop:
            body["stop_sequences"] = list(params.stop)
        if params.seed is not None:
            # the Messages API takes no seed; kept in the body only so that two sampled calls
            # of one prompt hash to two lines (stripped from the request in `_create`)
            body["_seed"] = params.seed
        return body

    async def _create(self, lines: dict[str, dict[str, Any]], submission: Submission) -> str:
        requests = [
            {"custom_id": cid, "params": {k: v for k, v in body.items() if not k.startswith("_")}}
            for cid, body in lines.items()
        ]
        submission.sent = True
        batch = await self._request("POST", _PATH, json={"requests": requests})
        return str(batch["id"])

    @staticmethod
    def _window(submission: Submission) -> tuple[float, float]:
        """When the API can have created the submission's batch (Unix seconds)."""
        start = submission.created_at
        return start - _WINDOW_MARGIN_S, start + HTTP_TIMEOUT_S + _WINDOW_MARGIN_S

    async def _find(
        self, submission: Submission, claimed: set[str], rivals: list[Submission]
    ) -> str | None:
        """The one unclaimed batch of the submission's size created in its `_window` (see the
        module docstring); None when there is none; `BatchNotIdentified` for more than one."""
        size = len(submission.custom_ids)
        low, high = self._window(submission)
        candidates: list[str] = []
        async with contextlib.aclosing(self._newest_batches(_PATH, "after_id")) as batches:
            async for batch in batches:
                created = datetime.fromisoformat(str(batch["created_at"])).timestamp()
                if created < low:
                    break
                counts = batch["request_counts"]
                if (
                    created <= high
                    and batch["id"] not in claimed
                    and sum(int(counts.get(k) or 0) for k in _COUNTS) == size
                ):
                    candidates.append(str(batch["id"]))
        if len(candidates) > 1:
            rival = sum(len(r.custom_ids) == size for r in rivals)
            raise BatchNotIdentified(
                f"ambiguous: {len(candidates)} batches of {size} requests created around the "
                f"submission and not in the journal ({', '.join(candidates)}) could be its "
                f"batch (other submissions of that size in doubt: {rival})"
            )
        return candidates[0] if candidates else None

    async def _state(self, batch_id: str) -> BatchState:
        batch = await self._request("GET", f"/v1/messages/batches/{batch_id}")
        status = str(batch["processing_status"])
        return BatchState(ended=status == "ended", status=status, raw=batch)

    async def _results(self, state: BatchState) -> tuple[dict[str, str], dict[str, LLMError]]:
        answers: dict[str, str] = {}
        errors: dict[str, LLMError] = {}
        url = state.raw.get("results_url")
        if not url:
            return answers, errors  # e.g. canceled before anything ran: every line goes again
        raw = await self._request("GET", str(url), raw=True)
        for number, line in enumerate(raw.decode("utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                custom_id = str(record["custom_id"])
                result = record["result"]
                kind = str(result["type"])
            except (ValueError, KeyError, TypeError) as exc:
                raise MalformedResponseError(
                    self._where(f"results line {number} unreadable ({exc})")
                ) from None
            if kind == "succeeded" and isinstance(result.get("message"), dict):
                answers[custom_id] = json.dumps(result["message"], ensure_ascii=False)
            elif kind == "errored":
                error = result.get("error") or {}
                inner = error.get("error", error) if isinstance(error, dict) else {}
                status = _ERROR_STATUS.get(str(inner.get("type", "")), 500)
                errors[custom_id] = self.line_error(status, error_text(error) or "errored")
            # expired / canceled: unanswered, retried by the base
        return answers, errors

    def _completion(self, raw: str) -> Completion:
        try:
            data = json.loads(raw)
            text = "".join(
                block.get("text", "") for block in data["content"] if block.get("type") == "text"
            )
            usage = data.get("usage") or {}
            stop = str(data.get("stop_reason") or "end_turn")
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise MalformedResponseError(self._where(f"unreadable answer ({exc})")) from None
        if not text:
            raise MalformedResponseError(self._where("empty completion content"))
        return Completion(
            text=text,
            finish_reason=_FINISH.get(stop, stop),
            prompt_tokens=int(usage.get("input_tokens") or 0),
            completion_tokens=int(usage.get("output_tokens") or 0),
            backend=self.backend,
            model=str(data.get("model") or self.model),
        )


def create_transport(config: BackendConfig, endpoint: str) -> AnthropicBatchTransport:
    return AnthropicBatchTransport(config, endpoint)
