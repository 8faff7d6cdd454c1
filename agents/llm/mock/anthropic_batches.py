"""Anthropic's Message Batches API for the mock server: create, poll, read results, cancel, list.

Routes (`MessageBatchStore.routes`; `server.build_app` puts them behind the Anthropic route's
API-key check): `POST /v1/messages/batches`, `GET /v1/messages/batches` (`limit` 1-1000,
default 20; newest first; `after_id` = the `last_id` of the page before for older batches,
`before_id` = its `first_id` for newer ones; `has_more` in that direction),
`GET /v1/messages/batches/{id}`, `GET /v1/messages/batches/{id}/results` (JSONL),
`POST /v1/messages/batches/{id}/cancel`.

Contract (the OpenAI store's in `batches`, in Anthropic's words):

- Create checks every request (`custom_id` matching `^[a-zA-Z0-9_-]{1,64}$`, unique; `params` an
  object with a `messages` list) and rejects the batch with 400 naming the first bad index
  (`requests.3: …`).
- A batch runs under the `MockConfig` in force when it was created. It is `in_progress` until
  `batch_latency_s` has passed since its creation, then `ended`. Nothing runs in the background:
  a batch advances when it is looked at (retrieve, results, list, cancel).
- Its results are computed once, when it is first seen past its latency. An answered line gets
  `succeeded` with what `POST /v1/messages` answers for its params (the `complete` callable: the
  same reply, content fault, usage and stats counting; no transport faults, no latency). A line
  drawn from the store's seeded RNG (`batch_line_failure_rate`, one draw per answered line, in
  order, seeded as the OpenAI store's) is `errored` with an `api_error`; params the messages
  route would reject are `errored` with an `invalid_request_error`. `batch_lines` counts these
  lines (answered or errored by a line failure).
- `expired`: only the first `total // 2` lines are answered, the others `expired`. `failed`
  (Anthropic has no batch-level failure): every line `errored`, none answered or counted.
  Cancel: `canceling` in the reply, `ended` on the next look with every line `canceled`;
  cancelling a batch that ended otherwise answers 400.
- `results_url` is absolute, built from the host of the request that reads the batch.
- Errors are Anthropic-shaped: `{"type": "error", "error": {"type", "message"}}`.
"""

from __future__ import annotations

import json
import random
import re
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web

from agents.llm.mock.batches import Complete, Handler, Request
from agents.llm.mock.config import MockConfig

__all__ = ["MAX_REQUESTS", "MessageBatchStore", "parse_requests"]

PATH = "/v1/messages/batches"
MAX_REQUESTS = 100_000
_CUSTOM_ID = re.compile(r"[a-zA-Z0-9_-]{1,64}")
_COUNTS = ("processing", "succeeded", "errored", "canceled", "expired")


def _error(status: int, message: str, kind: str = "invalid_request_error") -> web.Response:
    return web.json_response(
        {"type": "error", "error": {"type": kind, "message": message}}, status=status
    )


def _line_error(kind: str, message: str) -> dict[str, Any]:
    error = {"type": kind, "message": message}
    return {"type": "errored", "error": {"type": "error", "error": error}}


def _stamp(t: datetime) -> str:
    """RFC 3339, as the API writes it: `2024-08-20T18:37:24.100435Z`."""
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class _Batch:
    config: MockConfig
    """The configuration when it was created: its latency, outcome and replies."""
    requests: list[Request]
    started: float
    """`time.monotonic()` at creation."""
    obj: dict[str, Any]
    """The Message Batch object as served, less `results_url` (set per request)."""
    results: list[dict[str, Any]] = field(default_factory=list)
    """The result lines, once ended."""

    @property
    def ended(self) -> bool:
        return bool(self.obj["processing_status"] == "ended")


def parse_requests(body: Any) -> list[Request]:
    """The requests of a create body; ValueError naming the first bad one (`requests.3: …`)."""
    if not isinstance(body, dict):
        raise ValueError("the body must be a JSON object")
    requests = body.get("requests")
    if not isinstance(requests, list) or not requests:
        raise ValueError("requests: must be a non-empty list")
    if len(requests) > MAX_REQUESTS:
        raise ValueError(f"requests: at most {MAX_REQUESTS} requests per batch")
    out: list[Request] = []
    seen: dict[str, int] = {}
    for n, req in enumerate(requests):
        if not isinstance(req, dict):
            raise ValueError(f"requests.{n}: expected an object")
        cid = req.get("custom_id")
        if not isinstance(cid, str) or not _CUSTOM_ID.fullmatch(cid):
            raise ValueError(f"requests.{n}.custom_id: must match ^[a-zA-Z0-9_-]{{1,64}}$")
        if cid in seen:
            raise ValueError(
                f"requests.{n}.custom_id: duplicate {cid!r} (first at requests.{seen[cid]})"
            )
        params = req.get("params")
        if not isinstance(params, dict) or not isinstance(params.get("messages"), list):
            raise ValueError(f"requests.{n}.params: must be an object with a `messages` list")
        seen[cid] = n
        out.append((cid, params))
    return out


class MessageBatchStore:
    """The Message Batches of one mock server, with their counters."""

    def __init__(self, complete: Complete, config: MockConfig | None = None) -> None:
        self.complete = complete
        self.batches: dict[str, _Batch] = {}
        self.reset(config or MockConfig())

    def reset(self, config: MockConfig, *, keep_batches: bool = False) -> None:
        """Take `config` for new batches, zero the counters, reseed the line-failure RNG and
        (unless `keep_batches`) forget every batch."""
        self.config = config
        self.rng = random.Random(config.seed + 2)
        if not keep_batches:
            self.batches.clear()
        self.batches_created = 0
        self.batch_lines = 0

    def routes(self) -> list[tuple[str, str, str, Handler]]:
        """(method, path, route name for the stats, handler) for each Message Batches route."""
        one = PATH + "/{message_batch_id}"
        return [
            ("POST", PATH, "messages.batches.create", self.create),
            ("GET", PATH, "messages.batches.list", self.list_batches),
            ("GET", one, "messages.batches.retrieve", self.retrieve),
            ("GET", one + "/results", "messages.batches.results", self.results),
            ("POST", one + "/cancel", "messages.batches.cancel", self.cancel),
        ]

    # --- handlers ---------------------------------------------------------------------------

    async def create(self, request: web.Request) -> web.StreamResponse:
        try:
            requests = parse_requests(json.loads(await request.read()))
        except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
            return _error(400, str(exc))
        now = _now()
        obj: dict[str, Any] = {
            "id": f"msgbatch_{uuid.uuid4().hex}", "type": "message_batch",
            "processing_status": "in_progress",
            "request_counts": {k: len(requests) if k == "processing" else 0 for k in _COUNTS},
            "ended_at": None, "created_at": _stamp(now),
            "expires_at": _stamp(now + timedelta(hours=24)), "archived_at": None,
            "cancel_initiated_at": None,
        }  # fmt: skip
        self.batches[obj["id"]] = _Batch(self.config, requests, time.monotonic(), obj)
        self.batches_created += 1
        return web.json_response(self._view(self.batches[obj["id"]], request))

    async def retrieve(self, request: web.Request) -> web.StreamResponse:
        b = self._batch(request)
        if b is None:
            return self._unknown(request)
        self._advance(b)
        return web.json_response(self._view(b, request))

    async def results(self, request: web.Request) -> web.StreamResponse:
        b = self._batch(request)
        if b is None:
            return self._unknown(request)
        self._advance(b)
        if not b.ended:
            return _error(400, f"batch has not ended: {b.obj['id']}")
        data = "".join(json.dumps(line) + "\n" for line in b.results).encode()
        return web.Response(body=data, content_type="application/binary")

    async def cancel(self, request: web.Request) -> web.StreamResponse:
        b = self._batch(request)
        if b is None:
            return self._unknown(request)
        self._advance(b)
        if b.ended and b.obj["cancel_initiated_at"] is None:
            return _error(400, f"batch {b.obj['id']} has already ended and cannot be canceled")
        if not b.ended:
            b.obj.update(processing_status="canceling", cancel_initiated_at=_stamp(_now()))
        return web.json_response(self._view(b, request))

    async def list_batches(self, request: web.Request) -> web.StreamResponse:
        try:
            limit = int(request.query.get("limit", "20"))
        except ValueError:
            limit = 0
        if not 1 <= limit <= 1000:
            return _error(400, "limit: must be an integer from 1 to 1000")
        order = list(reversed(self.batches))
        after, before = request.query.get("after_id"), request.query.get("before_id")
        for cursor in (after, before):
            if cursor is not None and cursor not in self.batches:
                return _error(400, f"unknown cursor: {cursor}")
        if before is not None:  # the page just before `before` (newer batches)
            rest = order[: order.index(before)]
            ids, has_more = rest[-limit:], len(rest) > limit
        else:
            rest = order[order.index(after) + 1 :] if after is not None else order
            ids, has_more = rest[:limit], len(rest) > limit
        page = [self.batches[i] for i in ids]
        for b in page:
            self._advance(b)
        return web.json_response(
            {
                "data": [self._view(b, request) for b in page], "has_more": has_more,
                "first_id": ids[0] if ids else None, "last_id": ids[-1] if ids else None,
            }
        )  # fmt: skip

    # --- internals --------------------------------------------------------------------------

    def _batch(self, request: web.Request) -> _Batch | None:
        return self.batches.get(request.match_info["message_batch_id"])

    def _unknown(self, request: web.Request) -> web.Response:
        bid = request.match_info["message_batch_id"]
        return _error(404, f"No message batch found with id '{bid}'.", "not_found_error")

    def _view(self, b: _Batch, request: web.Request) -> dict[str, Any]:
        url = f"{request.url.origin()}{PATH}/{b.obj['id']}/results" if b.ended else None
        return {**b.obj, "results_url": url}

    def _advance(self, b: _Batch) -> None:
        """Move `b` on by the time passed since its creation (ending it at most once)."""
        if b.ended:
            return
        if b.obj["processing_status"] == "canceling":
            canceled = {"type": "canceled"}
            b.results = [{"custom_id": cid, "result": canceled} for cid, _ in b.requests]
        elif time.monotonic() - b.started >= b.config.batch_latency_s:
            b.results = self._run(b)
        else:
            return
        counts = {k: 0 for k in _COUNTS}
        for line in b.results:
            counts[line["result"]["type"]] += 1
        b.obj.update(processing_status="ended", ended_at=_stamp(_now()), request_counts=counts)

    def _run(self, b: _Batch) -> list[dict[str, Any]]:
        outcome = b.config.batch_outcome
        if outcome == "failed":
            message = "mock batch failure (MockConfig.batch_outcome = 'failed')"
            failed = _line_error("api_error", message)
            return [{"custom_id": cid, "result": failed} for cid, _ in b.requests]
        todo = len(b.requests) if outcome == "completed" else len(b.requests) // 2
        out = [
            {"custom_id": cid, "result": self._answer(b.config, params)}
            for cid, params in b.requests[:todo]
        ]
        out += [{"custom_id": cid, "result": {"type": "expired"}} for cid, _ in b.requests[todo:]]
        self.batch_lines += todo
        return out

    def _answer(self, config: MockConfig, params: dict[str, Any]) -> dict[str, Any]:
        """The `result` of one answered line."""
        if self.rng.random() < config.batch_line_failure_rate:
            return _line_error("api_error", "mock batch line failure")
        try:
            return {"type": "succeeded", "message": self.complete(params, config)}
        except (ValueError, TypeError) as exc:
            return _line_error("invalid_request_error", f"bad request: {exc}")


def _now() -> datetime:
    return datetime.now(UTC)
