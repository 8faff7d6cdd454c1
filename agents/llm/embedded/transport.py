"""The embedded backend's `Transport`: a local GGUF model run in-process by llama.cpp.

`create_transport(config)` validates `config.options` (keys below), checks that xllamacpp and the
model's packages are installed (cheap: no file is read), and returns an `EmbeddedTransport`. The
heavy work — assembling/verifying the model file once into the cache, loading it once per process
— happens in a worker thread on `start()` or on the first `send()`.

`send()` makes one attempt: it waits for a free slot (at most `slots` calls run in llama.cpp at
once; the rest wait here, cheaply and cancellably), streams the answer in a worker thread and
returns a `Completion` with token usage and latency. Past `timeout_s` (model loading included) it
raises `LLMTimeoutError` and tells llama.cpp to stop, freeing the slot at the next token; the event
loop never blocks. It raises only `agents.llm.errors` types. Nothing here touches the network.

Options (`config.options`), all optional:

    preset         qwen2.5-coder-0.5b (default) | qwen2.5-coder-1.5b | smollm2-135m;
                   prefer naming it in `config.model` (the response cache keys on `model`);
                   if both are set they must agree
    model_path     a local .gguf file to use as-is instead of a preset (also: `model = "x.gguf"`)
    cache_dir      where split models are assembled (default $EVOLAGENTS_CACHE/models, else
                   ~/.cache/evolagents/models)
    slots          llama.cpp parallel sequences (default: min(config.concurrency, DEFAULT_SLOTS))
    ctx_per_slot   context tokens per slot (default 2048); prompt + max_tokens must fit
    threads        generation threads (default: the CPUs this process may use)
    batch_threads  prompt-processing threads (default: threads)
    max_tokens     cap used when a request leaves max_tokens unset (default 512)
    verbose        let llama.cpp log to stderr (default false)
"""

from __future__ import annotations

import importlib.util
import os
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import anyio
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from agents.llm.embedded._assemble import default_cache_dir, ensure_model_file
from agents.llm.embedded._catalogue import DEFAULT_PRESET, PRESETS, ModelPreset
from agents.llm.embedded._engine import INSTALL_HINT, Engine, EngineSettings, acquire, release
from agents.llm.embedded._locate import locate_sources
from agents.llm.embedded._request import build_body, to_completion
from agents.llm.errors import (
    BackendNotAvailableError,
    FatalLLMError,
    LLMError,
    LLMTimeoutError,
    UnavailableError,
)
from agents.llm.types import ChatMessage, Completion, GenerationParams

__all__ = [
    "DEFAULT_SLOTS",
    "EmbeddedConfigError",
    "EmbeddedOptions",
    "EmbeddedStatistics",
    "EmbeddedTransport",
    "create_transport",
]

#: Parallel slots when the options do not say (see docs/embedded.md for the measurements).
DEFAULT_SLOTS = 2


class EmbeddedConfigError(FatalLLMError, ValueError):
    """The embedded backend's options are invalid: fix `[llm.<name>.options]` in the config.

    Also a `ValueError`, the factory's convention for bad `options`."""

    kind = "config"


class BackendConfigLike(Protocol):
    """The attributes of `agents.llm.config.BackendConfig` this backend reads."""

    @property
    def model(self) -> str: ...
    @property
    def concurrency(self) -> int: ...
    @property
    def options(self) -> Mapping[str, Any]: ...


class EmbeddedOptions(BaseModel):
    """`config.options` for the embedded backend (unknown keys are an error)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    preset: str | None = None
    model_path: str | None = None
    cache_dir: str | None = None
    slots: int | None = Field(default=None, ge=1, le=64)
    ctx_per_slot: int | None = Field(default=None, ge=256)
    threads: int | None = Field(default=None, ge=1)
    batch_threads: int | None = Field(default=None, ge=1)
    max_tokens: int = Field(default=512, ge=1)
    verbose: bool = False


@dataclass(frozen=True)
class EmbeddedStatistics:
    """A snapshot: `in_flight` calls hold a slot, `waiting` wait for one; `loaded` once ready."""

    model: str
    loaded: bool
    slots: int
    in_flight: int
    waiting: int


def _usable_cpus() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on every platform
        return max(1, os.cpu_count() or 1)


class EmbeddedTransport:
    """One attempt per `send`; see the module docstring for the contract."""

    backend = "embedded"

    def __init__(
        self,
        *,
        model: str,
        preset: ModelPreset | None,
        model_path: Path | None,
        cache_dir: Path,
        slots: int,
        ctx_per_slot: int,
        threads: int,
        batch_threads: int,
        max_tokens: int,
        verbose: bool = False,
    ) -> None:
        if (preset is None) == (model_path is None):
            raise ValueError("give exactly one of preset and model_path")
        self.model = model
        self._preset = preset
        self._model_path = model_path
        self._cache_dir = cache_dir
        self._slots = slots
        self._ctx_per_slot = ctx_per_slot
        self._threads = threads
        self._batch_threads = batch_threads
        self._max_tokens = max_tokens
        self._verbose = verbose
        self._engine: Engine | None = None
        self._closed = False
        self._prepare_lock = threading.Lock()
        self._limiter: anyio.CapacityLimiter | None = None

    # -- lifecycle -------------------------------------------------------------------------

    def _prepare(self) -> Engine:
        """Blocking and idempotent: verify/assemble the file, then load (or share) the engine."""
        with self._prepare_lock:
            if self._closed:
                raise UnavailableError(f"embedded {self.model}: the transport is closed")
            if self._engine is None:
                if self._preset is not None:
                    path = ensure_model_file(self._preset, self._cache_dir)
                else:
                    assert self._model_path is not None
                    path = self._model_path
                settings = EngineSettings(
                    model_path=path,
                    slots=self._slots,
                    ctx_per_slot=self._ctx_per_slot,
                    threads=self._threads,
                    batch_threads=self._batch_threads,
                    verbose=self._verbose,
                )
                self._engine = acquire(settings)
            return self._engine

    async def start(self) -> None:
        """Assemble/verify and load the model now rather than on the first `send`."""
        await self._ready()

    async def _ready(self) -> Engine:
        engine = self._engine
        if engine is None:
            # abandon_on_cancel: a deadline may fire while loading; the load goes on in its
            # thread and the next call finds the engine ready (or waits on the same lock).
            engine = await anyio.to_thread.run_sync(self._prepare, abandon_on_cancel=True)
        if self._limiter is None:
            self._limiter = anyio.CapacityLimiter(engine.settings.slots)
        return engine

    def _release(self) -> None:
        with self._prepare_lock:
            self._closed = True
            engine, self._engine = self._engine, None
        if engine is not None:
            release(engine)

    async def aclose(self) -> None:
        """Release this transport's hold on the engine; the last holder frees the model."""
        await anyio.to_thread.run_sync(self._release)

    # -- calls -----------------------------------------------------------------------------

    async def send(
        self, messages: Sequence[ChatMessage], params: GenerationParams, *, timeout_s: float
    ) -> Completion:
        """One completion; raises only `LLMError` subclasses (see the module docstring)."""
        body = build_body(messages, params, self._max_tokens)
        cancel = threading.Event()
        started = time.perf_counter()
        try:
            with anyio.fail_after(timeout_s):
                engine = await self._ready()
                result = await anyio.to_thread.run_sync(
                    engine.chat, body, cancel, abandon_on_cancel=True, limiter=self._limiter
                )
        except TimeoutError:
            raise LLMTimeoutError(
                f"embedded {self.model}: no answer within {timeout_s:g} s"
            ) from None
        except LLMError:
            raise
        except Exception as exc:
            raise UnavailableError(f"embedded {self.model}: llama.cpp failed: {exc!r}") from exc
        finally:
            cancel.set()  # stops an abandoned generation at its next token
        return to_completion(result, latency_s=time.perf_counter() - started, model=self.model)

    def statistics(self) -> EmbeddedStatistics:
        """Slots, calls holding one, calls waiting for one; `loaded` once the model is up."""
        lim = self._limiter
        return EmbeddedStatistics(
            model=self.model,
            loaded=self._engine is not None,
            slots=self._engine.settings.slots if self._engine else self._slots,
            in_flight=lim.borrowed_tokens if lim else 0,
            waiting=lim.statistics().tasks_waiting if lim else 0,
        )


def _xllamacpp_installed() -> bool:
    """Whether the runtime is importable, found without importing it."""
    return importlib.util.find_spec("xllamacpp") is not None


def _resolve(config: BackendConfigLike, opts: EmbeddedOptions) -> tuple[str, ModelPreset | None]:
    model = (config.model or "").strip()
    if opts.model_path or model.endswith(".gguf"):
        if opts.preset:
            raise EmbeddedConfigError("embedded: give either options.preset or a .gguf path")
        path = opts.model_path or model
        return path, None
    if opts.preset and model and opts.preset != model:
        raise EmbeddedConfigError(
            f"embedded: model={model!r} and options.preset={opts.preset!r} disagree; set `model`"
            " to the preset you want (the response cache keys on `model`) and drop the option"
        )
    name = opts.preset or model or DEFAULT_PRESET
    preset = PRESETS.get(name)
    if preset is None:
        known = ", ".join(sorted(PRESETS))
        raise EmbeddedConfigError(f"embedded: unknown preset {name!r}; known presets: {known}")
    return name, preset


def create_transport(config: BackendConfigLike) -> EmbeddedTransport:
    """Build the embedded transport for `config` (see the module docstring for `options`).

    Raises `EmbeddedConfigError` for bad options and `BackendNotAvailableError` (with the exact
    install command) when xllamacpp or the model's packages are missing. Reads no model bytes.
    """
    try:
        opts = EmbeddedOptions.model_validate(dict(config.options))
    except ValidationError as exc:
        raise EmbeddedConfigError(f"embedded: invalid options: {exc}") from None
    name, preset = _resolve(config, opts)
    if not _xllamacpp_installed():
        raise BackendNotAvailableError(INSTALL_HINT)
    model_path: Path | None = None
    if preset is None:
        model_path = Path(name).expanduser()
        if not model_path.is_file():
            raise BackendNotAvailableError(f"embedded: model file {model_path} does not exist")
    else:
        locate_sources(preset)  # fail now, with the pip command, if a package is missing
    threads = opts.threads or _usable_cpus()
    return EmbeddedTransport(
        model=name,
        preset=preset,
        model_path=model_path,
        cache_dir=Path(opts.cache_dir).expanduser() if opts.cache_dir else default_cache_dir(),
        slots=opts.slots or min(config.concurrency, DEFAULT_SLOTS),
        ctx_per_slot=opts.ctx_per_slot or (preset.ctx_per_slot if preset else 2048),
        threads=threads,
        batch_threads=opts.batch_threads or threads,
        max_tokens=opts.max_tokens,
        verbose=opts.verbose,
    )
