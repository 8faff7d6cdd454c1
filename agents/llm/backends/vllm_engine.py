"""The `vllm` backend: vLLM's in-process async engine on a GPU machine.

`vllm` is imported only here, when a topology selects this backend; without it,
`create_transport` raises `BackendNotAvailableError` telling how to install it. Options:
`engine_args` (dict, passed to `AsyncEngineArgs`, e.g. `tensor_parallel_size`,
`gpu_memory_utilization`, `max_model_len`). The chat template of the model's tokenizer renders
the messages. The engine batches concurrent requests itself (continuous batching), so the
managed client's `concurrency` is the number of sequences offered to it at once. A request past
its timeout is aborted in the engine.
"""

from __future__ import annotations

import asyncio
import importlib.util
import inspect
import uuid
from collections.abc import Sequence
from typing import Any

from agents.llm.config import BackendConfig
from agents.llm.errors import (
    BackendNotAvailableError,
    BadRequestError,
    ContextTooLongError,
    LLMTimeoutError,
    MalformedResponseError,
    UnavailableError,
)
from agents.llm.types import ChatMessage, Completion, GenerationParams

__all__ = ["VLLMTransport", "create_transport"]

INSTALL_HINT = (
    "LLM backend 'vllm' needs vLLM, which is not installed: "
    "pip install 'evolagents[vllm]' on a machine with a CUDA GPU"
)


class VLLMTransport:
    """One request to a shared in-process `AsyncLLMEngine`."""

    backend = "vllm"

    def __init__(self, config: BackendConfig) -> None:
        from vllm import AsyncEngineArgs, AsyncLLMEngine

        self.model = config.model
        engine_args = dict(config.options.get("engine_args", {}))
        self._engine: Any = AsyncLLMEngine.from_engine_args(
            AsyncEngineArgs(model=config.model, **engine_args)
        )
        self._tokenizer: Any = None

    async def _render(self, messages: Sequence[ChatMessage]) -> str:
        if self._tokenizer is None:
            tok = self._engine.get_tokenizer()
            self._tokenizer = await tok if inspect.isawaitable(tok) else tok
        msgs = [{"role": m.role, "content": m.content} for m in messages]
        return str(
            self._tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
        )

    async def send(
        self, messages: Sequence[ChatMessage], params: GenerationParams, *, timeout_s: float
    ) -> Completion:
        from vllm import SamplingParams

        kw: dict[str, Any] = {}
        if params.temperature is not None:
            kw["temperature"] = params.temperature
        if params.top_p is not None:
            kw["top_p"] = params.top_p
        if params.max_tokens is not None:
            kw["max_tokens"] = params.max_tokens
        if params.stop:
            kw["stop"] = list(params.stop)
        if params.seed is not None:
            kw["seed"] = params.seed
        if params.repeat_penalty is not None:
            kw["repetition_penalty"] = params.repeat_penalty
        request_id = uuid.uuid4().hex
        final: Any = None
        try:
            async with asyncio.timeout(timeout_s):
                prompt = await self._render(messages)
                async for out in self._engine.generate(prompt, SamplingParams(**kw), request_id):
                    final = out
        except TimeoutError:
            await self._abort(request_id)
            raise LLMTimeoutError(f"LLM backend 'vllm': no answer within {timeout_s:g}s") from None
        except ValueError as exc:
            text = str(exc).lower()
            if "length" in text or "too long" in text:
                raise ContextTooLongError(f"LLM backend 'vllm': {exc}") from None
            raise BadRequestError(f"LLM backend 'vllm': {exc}") from None
        except asyncio.CancelledError:
            await self._abort(request_id)
            raise
        except Exception as exc:  # engine died or similar
            raise UnavailableError(f"LLM backend 'vllm': {type(exc).__name__}: {exc}") from None
        if final is None or not final.outputs:
            raise MalformedResponseError("LLM backend 'vllm': the engine returned no output")
        out0 = final.outputs[0]
        if not out0.text:
            raise MalformedResponseError("LLM backend 'vllm': empty completion")
        return Completion(
            text=out0.text,
            finish_reason=str(out0.finish_reason or "stop"),
            prompt_tokens=len(final.prompt_token_ids or ()),
            completion_tokens=len(out0.token_ids or ()),
            backend=self.backend,
            model=self.model,
        )

    async def _abort(self, request_id: str) -> None:
        try:
            res = self._engine.abort(request_id)
            if inspect.isawaitable(res):
                await res
        except Exception:  # best effort: the engine may already have finished it
            pass

    async def aclose(self) -> None:
        shutdown = getattr(self._engine, "shutdown", None)
        if callable(shutdown):
            res = shutdown()
            if inspect.isawaitable(res):
                await res


def create_transport(config: BackendConfig) -> VLLMTransport:
    if importlib.util.find_spec("vllm") is None:
        raise BackendNotAvailableError(INSTALL_HINT)
    return VLLMTransport(config)
