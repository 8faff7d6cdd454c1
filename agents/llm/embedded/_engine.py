"""One llama.cpp server per model file per process, shared by every transport that uses it.

`acquire(settings)` loads the model (blocking: seconds) the first time a file is asked for and
returns the same `Engine` to later callers, counting references; `release(engine)` drops one and
the last release frees the model. The first caller's settings win: a later caller that asks for
the same file with other slots/threads shares the loaded engine and a warning is logged.

`Engine.chat(body, cancel)` is blocking and thread-safe: call it from worker threads, as many at
once as there are slots (llama.cpp queues the rest). It streams, so setting `cancel` stops the
generation at the next token and frees the slot (a timed-out caller does not keep a slot busy).

Before xllamacpp is first imported, `OMP_WAIT_POLICY` defaults to `PASSIVE` (unless already set):
llama.cpp's OpenMP workers then sleep instead of spinning at barriers. On a small shared machine
(our 2 cores, with the agents' own Python work beside) spinning workers collapse throughput by
10-20x whenever another process runs; see docs/embedded.md. No effect if libgomp is already loaded.

The server's HTTP listener binds 127.0.0.1 on a random port and is locked with a random API key
that never leaves the process; we never use it — calls go straight through the binding.
"""

from __future__ import annotations

import logging
import os
import secrets
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agents.llm.errors import BackendNotAvailableError

__all__ = ["ChatResult", "Engine", "EngineSettings", "acquire", "loaded_engines", "release"]

log = logging.getLogger(__name__)

INSTALL_HINT = (
    "the embedded backend needs xllamacpp (a prebuilt llama.cpp): "
    "pip install 'evolagents[embedded]'"
)


@dataclass(frozen=True)
class EngineSettings:
    """How to load one model: slots are llama.cpp's parallel sequences (n_parallel)."""

    model_path: Path
    slots: int = 2
    ctx_per_slot: int = 2048
    threads: int = 2
    batch_threads: int = 2
    verbose: bool = False


@dataclass
class ChatResult:
    """What one streamed chat completion produced. `error` is llama.cpp's error object."""

    text: str = ""
    finish_reason: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cancelled: bool = False
    error: dict[str, Any] | None = None
    malformed: str | None = None
    #: the first token's top alternatives (token → log-prob), when the request asked for them
    first_token_logprobs: dict[str, float] = field(default_factory=dict)


@dataclass
class _Collector:
    """The streaming callback: gathers deltas, stops on `cancel`, never raises into C++."""

    cancel: threading.Event
    result: ChatResult = field(default_factory=ChatResult)
    parts: list[str] = field(default_factory=list)

    def __call__(self, chunk: Any) -> bool:
        try:
            return self._take(chunk)
        except Exception as exc:  # the binding swallows callback exceptions: keep them
            self.result.malformed = f"{type(exc).__name__}: {exc}"
            return True

    def _take(self, chunk: Any) -> bool:
        if self.cancel.is_set():
            self.result.cancelled = True
            return True
        if not isinstance(chunk, dict):
            self.result.malformed = f"unexpected chunk type {type(chunk).__name__}"
            return True
        if "error" in chunk:
            err = chunk["error"]
            self.result.error = err if isinstance(err, dict) else {"message": str(err)}
            return True
        for choice in chunk.get("choices") or ():
            content = (choice.get("delta") or {}).get("content")
            if content:
                self.parts.append(content)
            if not self.result.first_token_logprobs:
                self.result.first_token_logprobs = _first_logprobs(choice.get("logprobs"))
            if choice.get("finish_reason"):
                self.result.finish_reason = choice["finish_reason"]
        usage = chunk.get("usage")
        if usage:
            self.result.prompt_tokens = int(usage.get("prompt_tokens", 0))
            self.result.completion_tokens = int(usage.get("completion_tokens", 0))
        return False


def _first_logprobs(logprobs: Any) -> dict[str, float]:
    if not isinstance(logprobs, dict) or not logprobs.get("content"):
        return {}
    first = logprobs["content"][0]
    return {str(t["token"]): float(t["logprob"]) for t in first.get("top_logprobs") or ()}


class Engine:
    """A loaded model behind llama.cpp's server loop (continuous batching over `slots`)."""

    def __init__(self, settings: EngineSettings) -> None:
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        try:
            import xllamacpp
        except ImportError as exc:
            raise BackendNotAvailableError(INSTALL_HINT) from exc
        p = xllamacpp.CommonParams()
        p.model.path = str(settings.model_path)
        p.n_parallel = settings.slots
        p.n_ctx = settings.slots * settings.ctx_per_slot
        p.cpuparams.n_threads = settings.threads
        p.cpuparams_batch.n_threads = settings.batch_threads
        p.offline = True  # never reach a model hub
        p.ui = False
        p.hostnames = ["127.0.0.1"]
        p.port = 0
        p.api_keys = [secrets.token_urlsafe(32)]  # lock the loopback HTTP listener
        p.verbosity = 3 if settings.verbose else 0
        self.settings = settings
        try:
            self._server: Any = xllamacpp.Server(p)
        except Exception as exc:  # a corrupt or unsupported GGUF: retrying cannot help
            raise BackendNotAvailableError(
                f"llama.cpp could not load {settings.model_path}: {exc}"
            ) from exc
        self._cond = threading.Condition()
        self._active = 0
        self._cancelled = 0
        self._closed = False

    @property
    def active(self) -> int:
        """Chat calls running in llama.cpp right now (in a slot or queued inside it)."""
        return self._active

    @property
    def cancelled(self) -> int:
        """Calls stopped early because their `cancel` event was set (deadline or cancellation)."""
        return self._cancelled

    def wait_idle(self, timeout_s: float) -> bool:
        """Block until no chat call runs (True) or `timeout_s` passes (False)."""
        with self._cond:
            return self._cond.wait_for(lambda: self._active == 0, timeout=timeout_s)

    def chat(self, body: dict[str, Any], cancel: threading.Event) -> ChatResult:
        """Run one streamed chat completion (blocking). `body` is an OpenAI-style request."""
        with self._cond:
            if self._closed:
                raise RuntimeError("engine is closed")
            self._active += 1
        collect = _Collector(cancel)
        try:
            self._server.handle_chat_completions({**body, "stream": True}, collect)
            collect.result.text = "".join(collect.parts)
            return collect.result
        finally:
            with self._cond:
                self._active -= 1
                self._cancelled += collect.result.cancelled
                self._cond.notify_all()

    def close(self) -> None:
        """Wait for running calls to return, then free the model. Idempotent."""
        with self._cond:
            self._closed = True
            self._cond.wait_for(lambda: self._active == 0)
            server, self._server = self._server, None
        del server


@dataclass
class _Entry:
    engine: Engine
    refs: int


_registry: dict[Path, _Entry] = {}
_registry_lock = threading.Lock()


def acquire(settings: EngineSettings) -> Engine:
    """The process-wide engine for `settings.model_path`, loading it if needed (blocking)."""
    key = settings.model_path.resolve()
    with _registry_lock:
        entry = _registry.get(key)
        if entry is None:
            entry = _registry[key] = _Entry(Engine(settings), 0)
        elif entry.engine.settings != settings:
            log.warning(
                "embedded model %s is already loaded with %s; sharing it (asked for %s)",
                key,
                entry.engine.settings,
                settings,
            )
        entry.refs += 1
        return entry.engine


def release(engine: Engine) -> None:
    """Drop one reference; the last one closes the engine (blocking until its calls return)."""
    with _registry_lock:
        key = engine.settings.model_path.resolve()
        entry = _registry.get(key)
        if entry is None or entry.engine is not engine:
            return
        entry.refs -= 1
        if entry.refs > 0:
            return
        del _registry[key]
    engine.close()


def loaded_engines() -> dict[Path, int]:
    """Model files loaded in this process and their reference counts (for tests/reports)."""
    with _registry_lock:
        return {k: e.refs for k, e in _registry.items()}
