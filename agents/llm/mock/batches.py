"""The OpenAI Batch API (a subset) for the mock server: upload JSONL, batch it, poll, download.

Routes (`BatchStore.routes`; `server.build_app` puts them behind the OpenAI API-key check):
`POST /v1/files` (multipart: `purpose=batch`, `file`), `GET /v1/files/{file_id}/content`,
`DELETE /v1/files/{file_id}`, `POST /v1/batches` (`metadata`: an object of strings, kept and
served back), `GET /v1/batches` (`limit` 1-100, default 20; `after` = the `last_id` of the page
before; newest first; `has_more`, `first_id`, `last_id`), `GET /v1/batches/{batch_id}`,
`POST /v1/batches/{batch_id}/cancel`.

Contract:

- Upload checks every non-blank line (a JSON object; `custom_id` a string, unique in the file;
  `method` "POST"; `url` "/v1/chat/completions"; `body` an object with a `messages` list) and
  rejects the file with 400 naming the first bad line (1-based).
- A batch runs under the `MockConfig` in force when it was created (a later `/mock/config`
  changes only later batches). It is `validating` until half of `batch_latency_s` has passed
  since its creation, `in_progress` until all of it has, then ends as `batch_outcome` says.
  Nothing runs in the background: a batch advances when it is looked at (retrieve, list, cancel).
- Its results are computed once, when it is first seen past its latency. Each answered line gets
  what `POST /v1/chat/completions` answers for its body (the `complete` callable: the same reply,
  content fault, usage and stats counting; no transport faults, no latency). A line drawn from
  the store's seeded RNG (`batch_line_failure_rate`, one draw per answered line, in order) goes
  to the error file as a 500 instead; a body the chat route would reject goes there as a 400.
- `expired`: only the first `total // 2` lines are answered; the others are in neither file.
  `failed`: no files, `errors` set. Cancel: `cancelling` in the reply, `cancelled` on the next
  look, no files; cancelling a finished batch answers 409.
- A deleted file is gone: its content and a batch created from it answer 404 (a batch already
  created from it keeps its requests).
- Errors are OpenAI-shaped: `{"error": {"message", "type", "param": null, "code": null}}`.
"""

from __future__ import annotations

import json
import random
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from agents.llm.mock.config import MockConfig

__all__ = ["CHAT_URL", "BatchStore", "Complete", "Handler", "parse_jsonl"]

CHAT_URL = "/v1/chat/completions"
#: The chat.completion object answered for a request body under a config (ValueError/TypeError
#: if the body is bad).
Complete = Callable[[dict[str, Any], MockConfig], dict[str, Any]]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Request = tuple[str, dict[str, Any]]
"""One input line: (custom_id, body)."""

_FINAL = frozenset({"completed", "expired", "failed", "cancelled"})


def _error(status: int, message: str, kind: str = "invalid_request_error") -> web.Response:
    body = {"error": {"message": message, "type": kind, "param": None, "code": None}}
    return web.json_response(body, status=status)


def _id(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex}"


@dataclass
class _File:
    id: str
    filename: str
    purpose: str
    data: bytes
    created_at: int
    requests: list[Request] = field(default_factory=list)

    def obj(self) -> dict[str, Any]:
        return {
            "id": self.id, "object": "file", "bytes": len(self.data),
            "created_at": self.created_at, "filename": self.filename, "purpose": self.purpose,
        }  # fmt: skip


@dataclass
class _Batch:
    config: MockConfig
    """The configuration when it was created: its latency, outcome and replies."""
    requests: list[Request]
    started: float
    """`time.monotonic()` at creation."""
    obj: dict[str, Any]
    """The batch object as served."""


def parse_jsonl(data: bytes) -> list[Request]:
    """The requests of a batch input file; ValueError naming the first bad line (1-based)."""
    out: list[Request] = []
    seen: dict[str, int] = {}
    for n, raw in enumerate(data.split(b"\n"), 1):
        if not raw.strip():
            continue
        try:
            line = json.loads(raw)
        except ValueError as exc:
            raise ValueError(f"line {n}: invalid JSON ({exc})") from None
        if not isinstance(line, dict):
            raise ValueError(f"line {n}: expected a JSON object")
        cid = line.get("custom_id")
        if not isinstance(cid, str):
            raise ValueError(f"line {n}: `custom_id` must be a string")
        if cid in seen:
            raise ValueError(f"line {n}: duplicate custom_id {cid!r} (first on line {seen[cid]})")
        if line.get("method") != "POST":
            raise ValueError(f"line {n}: `method` must be 'POST'")
        if line.get("url") != CHAT_URL:
            raise ValueError(f"line {n}: `url` must be {CHAT_URL!r}")
        body = line.get("body")
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
            raise ValueError(f"line {n}: `body` must be an object with a `messages` list")
        seen[cid] = n
        out.append((cid, body))
    if not out:
        raise ValueError("the file has no requests")
    return out


class BatchStore:
    """Files and batches of one mock server, with their counters."""

    def __init__(self, complete: Complete, config: MockConfig | None = None) -> None:
        self.complete = complete
        self.files: dict[str, _File] = {}
        self.batches: dict[str, _Batch] = {}
        self.reset(config or MockConfig())

    def reset(self, config: MockConfig, *, keep_batches: bool = False) -> None:
        """Take `config` for new batches, zero the counters, reseed the line-failure RNG and
        (unless `keep_batches`) forget every file and batch."""
        self.config = config
        self.rng = random.Random(config.seed + 2)
        if not keep_batches:
            self.files.clear()
            self.batches.clear()
        self.files_uploaded = 0
        self.batches_created = 0
        self.batch_lines = 0

    def routes(self) -> list[tuple[str, str, str, Handler]]:
        """(method, path, route name for the stats, handler) for each Batch API route."""
        return [
            ("POST", "/v1/files", "files.create", self.upload_file),
            ("GET", "/v1/files/{file_id}/content", "files.content", self.file_content),
            ("DELETE", "/v1/files/{file_id}", "files.delete", self.delete_file),
            ("POST", "/v1/batches", "batches.create", self.create_batch),
            ("GET", "/v1/batches", "batches.list", self.list_batches),
            ("GET", "/v1/batches/{batch_id}", "batches.retrieve", self.retrieve_batch),
            ("POST", "/v1/batches/{batch_id}/cancel", "batches.cancel", self.cancel_batch),
        ]

    # --- handlers ---------------------------------------------------------------------------

    async def upload_file(self, request: web.Request) -> web.StreamResponse:
        try:
            form = await request.post()
        except ValueError as exc:
            return _error(400, f"bad multipart body: {exc}")
        upload = form.get("file")
        if form.get("purpose") != "batch":
            return _error(400, "`purpose` must be 'batch'")
        if not isinstance(upload, web.FileField):
            return _error(400, "`file` must be a multipart file field")
        data = upload.file.read()
        try:
            requests = parse_jsonl(data)
        except ValueError as exc:
            return _error(400, f"invalid batch file: {exc}")
        f = self._store(upload.filename, "batch", data, requests)
        self.files_uploaded += 1
        return web.json_response(f.obj())

    async def file_content(self, request: web.Request) -> web.StreamResponse:
        file_id = request.match_info["file_id"]
        f = self.files.get(file_id)
        if f is None:
            return _error(404, f"No such File object: {file_id}")
        return web.Response(body=f.data, content_type="application/octet-stream")

    async def delete_file(self, request: web.Request) -> web.StreamResponse:
        file_id = request.match_info["file_id"]
        if self.files.pop(file_id, None) is None:
            return _error(404, f"No such File object: {file_id}")
        return web.json_response({"id": file_id, "object": "file", "deleted": True})

    async def create_batch(self, request: web.Request) -> web.StreamResponse:
        try:
            req = await request.json()
        except ValueError:
            return _error(400, "the body must be JSON")
        if not isinstance(req, dict):
            return _error(400, "the body must be a JSON object")
        if req.get("endpoint") != CHAT_URL:
            return _error(400, f"`endpoint` must be {CHAT_URL!r}")
        if req.get("completion_window") != "24h":
            return _error(400, "`completion_window` must be '24h'")
        metadata = req.get("metadata")
        if metadata is not None and not (
            isinstance(metadata, dict) and all(isinstance(v, str) for v in metadata.values())
        ):
            return _error(400, "`metadata` must be an object of strings")
        file_id = req.get("input_file_id")
        if not isinstance(file_id, str):
            return _error(400, "`input_file_id` must be a string")
        f = self.files.get(file_id)
        if f is None:
            return _error(404, f"No such File object: {file_id}")
        if f.purpose != "batch":
            return _error(400, f"file {file_id} does not have purpose 'batch'")
        now = int(time.time())
        obj: dict[str, Any] = {
            "id": _id("batch_"), "object": "batch", "endpoint": CHAT_URL, "errors": None,
            "input_file_id": file_id, "completion_window": "24h", "status": "validating",
            "output_file_id": None, "error_file_id": None, "created_at": now,
            "in_progress_at": None, "expires_at": now + 24 * 3600, "finalizing_at": None,
            "completed_at": None, "failed_at": None, "expired_at": None, "cancelling_at": None,
            "cancelled_at": None,
            "request_counts": {"total": len(f.requests), "completed": 0, "failed": 0},
            "metadata": metadata,
        }  # fmt: skip
        self.batches[obj["id"]] = _Batch(self.config, list(f.requests), time.monotonic(), obj)
        self.batches_created += 1
        return web.json_response(obj)

    async def retrieve_batch(self, request: web.Request) -> web.StreamResponse:
        b = self._batch(request)
        if b is None:
            return self._unknown(request)
        self._advance(b)
        return web.json_response(b.obj)

    async def cancel_batch(self, request: web.Request) -> web.StreamResponse:
        b = self._batch(request)
        if b is None:
            return self._unknown(request)
        self._advance(b)
        status = b.obj["status"]
        if status in _FINAL - {"cancelled"}:
            return _error(409, f"Cannot cancel a batch with status '{status}'.")
        if status not in ("cancelling", "cancelled"):
            b.obj.update(status="cancelling", cancelling_at=int(time.time()))
        return web.json_response(b.obj)

    async def list_batches(self, request: web.Request) -> web.StreamResponse:
        try:
            limit = int(request.query.get("limit", "20"))
        except ValueError:
            limit = 0
        if not 1 <= limit <= 100:
            return _error(400, "`limit` must be an integer from 1 to 100")
        order = list(reversed(self.batches))
        after = request.query.get("after")
        if after is not None:
            if after not in self.batches:
                return _error(400, f"unknown `after` cursor: {after}")
            order = order[order.index(after) + 1 :]
        page = [self.batches[i] for i in order[:limit]]
        for b in page:
            self._advance(b)
        return web.json_response(
            {
                "object": "list", "data": [b.obj for b in page],
                "first_id": page[0].obj["id"] if page else None,
                "last_id": page[-1].obj["id"] if page else None,
                "has_more": len(order) > limit,
            }
        )  # fmt: skip

    # --- internals --------------------------------------------------------------------------

    def _batch(self, request: web.Request) -> _Batch | None:
        return self.batches.get(request.match_info["batch_id"])

    def _unknown(self, request: web.Request) -> web.Response:
        return _error(404, f"No batch found with id '{request.match_info['batch_id']}'.")

    def _store(
        self, filename: str, purpose: str, data: bytes, requests: list[Request] | None = None
    ) -> _File:
        f = _File(_id("file-"), filename, purpose, data, int(time.time()), requests or [])
        self.files[f.id] = f
        return f

    def _advance(self, b: _Batch) -> None:
        """Move `b` on by the time passed since its creation (finishing it at most once)."""
        status = b.obj["status"]
        if status in _FINAL:
            return
        now = int(time.time())
        if status == "cancelling":
            b.obj.update(status="cancelled", cancelled_at=now)
            return
        elapsed = time.monotonic() - b.started
        latency = b.config.batch_latency_s
        if elapsed >= latency:
            self._finish(b, now)
        elif elapsed >= latency / 2 and status == "validating":
            b.obj.update(status="in_progress", in_progress_at=now)

    def _finish(self, b: _Batch, now: int) -> None:
        outcome = b.config.batch_outcome
        if outcome == "failed":
            message = "mock batch failure (MockConfig.batch_outcome = 'failed')"
            error = {"code": "mock_failure", "message": message, "param": None, "line": None}
            b.obj.update(status="failed", failed_at=now, errors={"object": "list", "data": [error]})
            return
        todo = b.requests if outcome == "completed" else b.requests[: len(b.requests) // 2]
        done: list[dict[str, Any]] = []
        failed: list[dict[str, Any]] = []
        for custom_id, body in todo:
            line = self._answer(b.config, custom_id, body)
            (done if line["response"]["status_code"] == 200 else failed).append(line)
        self.batch_lines += len(todo)
        b.obj["request_counts"].update(completed=len(done), failed=len(failed))
        b.obj.update(
            status=outcome,
            in_progress_at=b.obj["in_progress_at"] or now,
            finalizing_at=now,
            output_file_id=self._results(b.obj["id"], "output", done),
            error_file_id=self._results(b.obj["id"], "error", failed),
            **{f"{outcome}_at": now},
        )

    def _answer(self, config: MockConfig, custom_id: str, body: dict[str, Any]) -> dict[str, Any]:
        """One output/error file line for one request."""
        status = 200
        if self.rng.random() < config.batch_line_failure_rate:
            status = 500
            answer: dict[str, Any] = {
                "error": {"message": "mock batch line failure", "type": "server_error"}
            }
        else:
            try:
                answer = self.complete(body, config)
            except (ValueError, TypeError) as exc:
                status = 400
                kind = "invalid_request_error"
                answer = {"error": {"message": f"bad request: {exc}", "type": kind}}
        return {
            "id": _id("batch_req_"),
            "custom_id": custom_id,
            "response": {"status_code": status, "request_id": uuid.uuid4().hex, "body": answer},
            "error": None,
        }

    def _results(self, batch_id: str, kind: str, lines: list[dict[str, Any]]) -> str | None:
        if not lines:
            return None
        data = "".join(json.dumps(line) + "\n" for line in lines).encode()
        return self._store(f"{batch_id}_{kind}.jsonl", "batch_output", data).id
