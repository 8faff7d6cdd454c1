"""The `transformers` backend: a local model directory, on CPU or GPU, with micro-batching.

torch and transformers are imported only here (in the worker thread, at the first call). Options:
`model_path` (default: `model`), `device` ("cpu", "cuda", … default: cuda when available),
`dtype` ("auto", "float16", "bfloat16", "float32"), `max_batch_size` (8), `batch_wait_s` (0.005).

Requests arriving together with identical sampling parameters are generated as one left-padded
batch on one dedicated worker thread (the loop never blocks on the model). The chat template of
the tokenizer renders the messages. A request that times out while queued is dropped; one that
times out while its batch runs gets `LLMTimeoutError` (the batch finishes for the others).
"""

from __future__ import annotations

import asyncio
import importlib.util
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from agents.llm.config import BackendConfig
from agents.llm.errors import (
    BackendNotAvailableError,
    ContextTooLongError,
    LLMError,
    LLMTimeoutError,
    MalformedResponseError,
)
from agents.llm.types import ChatMessage, Completion, GenerationParams

__all__ = ["TransformersTransport", "create_transport"]

INSTALL_HINT = (
    "LLM backend 'transformers' needs torch and transformers: pip install 'evolagents[train]'"
)


@dataclass(eq=False)
class _Request:
    messages: Sequence[ChatMessage]
    params: GenerationParams
    future: asyncio.Future[Completion] = field(repr=False)


class TransformersTransport:
    """Generation with a Hugging Face causal LM loaded once per transport."""

    backend = "transformers"

    def __init__(self, config: BackendConfig) -> None:
        opts = config.options
        self.model = config.model
        self._path = str(opts.get("model_path") or config.model)
        self._device = opts.get("device")
        self._dtype = str(opts.get("dtype", "auto"))
        self._max_batch = int(opts.get("max_batch_size", 8))
        self._wait_s = float(opts.get("batch_wait_s", 0.005))
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hf-generate")
        self._loaded: tuple[Any, Any, Any] | None = None
        self._queue: list[_Request] = []
        self._batcher: asyncio.Task[None] | None = None

    # -- worker thread -------------------------------------------------------------------------

    def _load(self) -> tuple[Any, Any, Any]:
        if self._loaded is None:
            import torch
            import transformers
            from transformers import AutoModelForCausalLM, AutoTokenizer

            device = self._device or ("cuda" if torch.cuda.is_available() else "cpu")
            dtype: Any = self._dtype if self._dtype == "auto" else getattr(torch, self._dtype)
            tok = AutoTokenizer.from_pretrained(self._path)
            tok.padding_side = "left"
            if tok.pad_token is None:
                tok.pad_token = tok.eos_token
            major, minor = (int(x) for x in transformers.__version__.split(".")[:2])
            dtype_kw = "dtype" if (major, minor) >= (4, 56) else "torch_dtype"
            model: Any = AutoModelForCausalLM.from_pretrained(self._path, **{dtype_kw: dtype})
            model.to(device)
            model.eval()
            self._loaded = (torch, tok, model)
        return self._loaded

    def _generate(self, batch: list[_Request]) -> list[Completion]:
        torch, tok, model = self._load()
        p = batch[0].params
        prompts = [
            tok.apply_chat_template(
                [{"role": m.role, "content": m.content} for m in r.messages],
                tokenize=False,
                add_generation_prompt=True,
            )
            for r in batch
        ]
        enc = tok(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
        enc = {k: v.to(model.device) for k, v in enc.items()}
        width = enc["input_ids"].shape[1]
        limit = getattr(model.config, "max_position_embeddings", None)
        max_new = p.max_tokens or 256
        if limit is not None and width + max_new > limit:
            raise ContextTooLongError(
                f"LLM backend 'transformers': prompt ({width}) + max_tokens ({max_new}) "
                f"exceed the model's {limit} positions"
            )
        kw: dict[str, Any] = {"max_new_tokens": max_new, "pad_token_id": tok.pad_token_id}
        temperature = 1.0 if p.temperature is None else p.temperature
        if temperature > 0:
            kw.update(do_sample=True, temperature=temperature)
            if p.top_p is not None:
                kw["top_p"] = p.top_p
        else:
            kw["do_sample"] = False
        if p.repeat_penalty is not None:
            kw["repetition_penalty"] = p.repeat_penalty
        if p.seed is not None:
            torch.manual_seed(p.seed)
        with torch.inference_mode():
            out = model.generate(**enc, **kw)
        results = []
        eos = tok.eos_token_id
        for i, _ in enumerate(batch):
            new = out[i, width:].tolist()
            if eos is not None and eos in new:
                new = new[: new.index(eos)]
                finish = "stop"
            else:
                finish = "length" if len(new) >= max_new else "stop"
            text = tok.decode(new, skip_special_tokens=True)
            for s in p.stop:
                if s and s in text:
                    text = text[: text.index(s)]
                    finish = "stop"
            results.append(
                Completion(
                    text=text,
                    finish_reason=finish,
                    prompt_tokens=int(enc["attention_mask"][i].sum()),
                    completion_tokens=len(new),
                    backend=self.backend,
                    model=self.model,
                )
            )
        return results

    # -- event loop side -----------------------------------------------------------------------

    async def send(
        self, messages: Sequence[ChatMessage], params: GenerationParams, *, timeout_s: float
    ) -> Completion:
        req = _Request(messages, params, asyncio.get_running_loop().create_future())
        self._queue.append(req)
        if self._batcher is None or self._batcher.done():
            self._batcher = asyncio.create_task(self._run_batches())
        try:
            async with asyncio.timeout(timeout_s):
                completion = await asyncio.shield(req.future)
        except TimeoutError:
            if req in self._queue:
                self._queue.remove(req)
            raise LLMTimeoutError(
                f"LLM backend 'transformers': no answer within {timeout_s:g}s"
            ) from None
        if not completion.text:
            raise MalformedResponseError("LLM backend 'transformers': empty completion")
        return completion

    async def _run_batches(self) -> None:
        loop = asyncio.get_running_loop()
        while self._queue:
            if self._wait_s > 0 and len(self._queue) < self._max_batch:
                await asyncio.sleep(self._wait_s)  # let concurrent callers join the batch
            first = self._queue[0].params
            batch = [r for r in self._queue if r.params == first][: self._max_batch]
            for r in batch:
                self._queue.remove(r)
            try:
                results = await loop.run_in_executor(self._executor, self._generate, batch)
            except LLMError as exc:
                for r in batch:
                    if not r.future.done():
                        r.future.set_exception(exc)
                continue
            except Exception as exc:
                err = MalformedResponseError(
                    f"LLM backend 'transformers': generation failed: {type(exc).__name__}: {exc}"
                )
                for r in batch:
                    if not r.future.done():
                        r.future.set_exception(err)
                continue
            for r, c in zip(batch, results, strict=True):
                if not r.future.done():
                    r.future.set_result(c)

    async def aclose(self) -> None:
        if self._batcher is not None and not self._batcher.done():
            self._batcher.cancel()
        for r in self._queue:
            r.future.cancel()
        self._queue.clear()
        self._executor.shutdown(wait=False, cancel_futures=True)


def create_transport(config: BackendConfig) -> TransformersTransport:
    for module in ("torch", "transformers"):
        if importlib.util.find_spec(module) is None:
            raise BackendNotAvailableError(f"{INSTALL_HINT} ({module} is missing)")
    return TransformersTransport(config)
