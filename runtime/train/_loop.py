"""The SFT loop: plain torch, one process per device (torchrun / accelerate launch set the env).

Why plain torch and not `transformers.Trainer`: the progress protocol, the loss normalisation
(token-weighted over the whole accumulation step, across ranks), resume and checkpoint layout are
ours to define and test, and the loop stays ~300 lines with no hidden callbacks or warnings.

Checkpoint layout (`<output_dir>/checkpoints/checkpoint-<step>/`): `model/` (save_pretrained: full
weights, or the LoRA adapter), `optimizer.pt`, `scheduler.pt`, `rng.pt`, `state.json` (written
last). A checkpoint is written to `.tmp-checkpoint-<step>` and renamed, so one that exists is
complete. Resume restores weights, optimizer, scheduler and RNG and skips the micro-batches already
consumed in the current epoch (the data order is a pure function of seed and epoch), so the step
count and data order continue as if uninterrupted — given the same config and data.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import random
import shutil
import signal
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from agents.trainer.process import (
    CheckpointEvent,
    DoneEvent,
    EvalEvent,
    StartEvent,
    StepEvent,
)
from bus.errors import EvolagentsError
from runtime.errors import ConfigError, InputDataError
from runtime.train._config import TrainConfig
from runtime.train._data import (
    FALLBACK_CHAT_TEMPLATE,
    Example,
    MicroBatch,
    encode_conversations,
    make_batches,
    read_chat_jsonl,
    split_by_hash,
)

__all__ = [
    "Emit",
    "TrainingInterrupted",
    "latest_checkpoint",
    "packed_attention_mask",
    "run_training",
]

log = logging.getLogger("runtime.train")

Emit = Callable[[BaseModel], None]
"""Receives each progress event (rank 0 only). The CLI prints them as JSON lines."""


@dataclass(frozen=True, slots=True)
class _Dist:
    world: int
    rank: int
    local_rank: int

    @property
    def main(self) -> bool:
        return self.rank == 0


class TrainingInterrupted(EvolagentsError):
    """SIGTERM stopped the run after a checkpoint at `step`; resume continues from there.

    The CLI exits with 143 (128 + SIGTERM) on it.
    """

    def __init__(self, step: int) -> None:
        super().__init__(f"stopped by SIGTERM; checkpoint at step {step}")
        self.step = step


class _SigtermFlag:
    """While installed, the first SIGTERM only sets `raised` (the loop checkpoints and stops);
    a second one kills the process the default way. Installed only on the main thread."""

    def __init__(self, enabled: bool) -> None:
        self.raised = False
        self._previous: Any = None
        self._installed = False
        if enabled and threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, self._handle)
            self._installed = True

    def _handle(self, signum: int, frame: Any) -> None:
        if self.raised:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGTERM)
        self.raised = True

    def restore(self) -> None:
        if self._installed:
            signal.signal(signal.SIGTERM, self._previous)
            self._installed = False


def latest_checkpoint(output_dir: Path) -> Path | None:
    """The complete checkpoint with the highest step under `output_dir/checkpoints`, or None."""
    root = Path(output_dir) / "checkpoints"
    best: tuple[int, Path] | None = None
    if root.is_dir():
        for p in root.iterdir():
            name = p.name
            if not name.startswith("checkpoint-") or not (p / "state.json").is_file():
                continue
            try:
                step = int(name.removeprefix("checkpoint-"))
            except ValueError:
                continue
            if best is None or step > best[0]:
                best = (step, p)
    return best[1] if best else None


def _lr_lambda(kind: str, warmup: int, total: int) -> Callable[[int], float]:
    def f(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        if kind == "constant":
            return 1.0
        progress = (step - warmup) / max(1, total - warmup)
        if kind == "linear":
            return max(0.0, 1.0 - progress)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return f


def _check_paths(config: TrainConfig) -> None:
    if not (config.model_dir / "config.json").is_file():
        raise ConfigError(
            f"no config.json in {config.model_dir}: not a local model directory", key="model_dir"
        )
    for i, path in enumerate([*config.train_files, *config.eval_files]):
        if not Path(path).is_file():
            raise InputDataError("no such file", file=path, field=f"data file #{i}")


def _load_tokenizer(config: TrainConfig) -> tuple[Any, str]:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(config.model_dir), local_files_only=True)
    if not getattr(tokenizer, "is_fast", False):
        raise ConfigError(
            "a fast tokenizer (tokenizer.json) is needed for label masking", key="model_dir"
        )
    own = tokenizer.chat_template if isinstance(tokenizer.chat_template, str) else None
    template = config.chat_template or own
    if template is None:
        if tokenizer.eos_token is None:
            raise ConfigError(
                "the tokenizer has neither a chat template nor an EOS token", key="chat_template"
            )
        log.info("tokenizer has no chat template: using the fallback template")
        template = FALLBACK_CHAT_TEMPLATE
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer, template


def _encode(
    tokenizer: Any, template: str, convs: list[list[dict[str, str]]], max_length: int
) -> list[Example]:
    out = encode_conversations(tokenizer, convs, template, max_length)
    kept = [e for e in out if e.n_label_tokens > 0]
    if len(kept) < len(out):
        log.warning(
            "dropped %d conversations with no response token within max_length=%d",
            len(out) - len(kept),
            max_length,
        )
    return kept


def _data_fingerprint(config: TrainConfig, n_train: int) -> str:
    keys = (
        "per_device_batch_size",
        "gradient_accumulation_steps",
        "batching",
        "max_length",
        "seed",
    )
    return json.dumps({**{k: getattr(config, k) for k in keys}, "n_train": n_train}, sort_keys=True)


def run_training(config: TrainConfig, emit: Emit) -> DoneEvent:
    """Train per `config`, emitting progress events; return the `done` event (also emitted).

    Raises `ConfigError` / `InputDataError` for bad inputs (before any training) and lets other
    errors propagate. Under torchrun/accelerate (WORLD_SIZE > 1) every rank runs this; rank 0
    alone emits and writes files.
    """
    _check_paths(config)  # fail fast, before the slow imports
    import torch
    import torch.distributed as tdist
    import torch.nn.functional as F
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    t0 = time.monotonic()
    world = int(os.environ.get("WORLD_SIZE", "1"))
    dist = _Dist(world, int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0")))
    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.set_device(dist.local_rank)
        device = torch.device("cuda", dist.local_rank)
    else:
        device = torch.device("cpu")
    if world > 1 and not tdist.is_initialized():
        tdist.init_process_group(backend="nccl" if cuda else "gloo")

    if cuda and not config.cudnn_attention:
        # see TrainConfig.cudnn_attention: a plan per new shape costs more than the step
        torch.backends.cuda.enable_cudnn_sdp(False)

    if config.precision == "bf16" and not (cuda and torch.cuda.is_bf16_supported()):
        raise ConfigError("bf16 needs a CUDA device that supports it", key="precision")
    bf16 = config.precision == "bf16" or (
        config.precision == "auto" and cuda and torch.cuda.is_bf16_supported()
    )
    autocast = (
        (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if bf16 else contextlib.nullcontext
    )

    random.seed(config.seed)
    torch.manual_seed(config.seed)

    # ---- data
    tokenizer, template = _load_tokenizer(config)
    train_convs = read_chat_jsonl(config.train_files)
    if config.eval_files:
        eval_convs = read_chat_jsonl(config.eval_files)
    elif config.eval_fraction > 0:
        train_convs, eval_convs = split_by_hash(train_convs, config.eval_fraction, config.seed)
    else:
        eval_convs = []
    train_ex = _encode(tokenizer, template, train_convs, config.max_length)
    eval_ex = _encode(tokenizer, template, eval_convs, config.max_length)
    if not train_ex:
        raise InputDataError("no trainable conversation", file=str(config.train_files[0]))
    pad_id = int(tokenizer.pad_token_id)

    def epoch_batches(epoch: int) -> list[MicroBatch]:
        batches = make_batches(
            train_ex,
            batch_size=config.per_device_batch_size,
            mode=config.batching,
            max_length=config.max_length,
            pad_id=pad_id,
            seed=config.seed + epoch,
            pad_to_multiple_of=config.pad_to_multiple_of,
        )
        per_rank = len(batches) // world
        return batches[dist.rank :: world][:per_rank]

    per_rank_batches = len(epoch_batches(0))
    if per_rank_batches == 0:
        raise InputDataError(f"fewer batches than ranks ({world})", file=str(config.train_files[0]))
    accum = config.gradient_accumulation_steps
    steps_per_epoch = math.ceil(per_rank_batches / accum)
    total_steps = config.max_steps or math.ceil(config.num_epochs * steps_per_epoch)

    # ---- model (fresh, or from a checkpoint)
    resume_dir: Path | None = None
    if config.resume_from is not None:
        resume_dir = config.resume_from
        if not (resume_dir / "state.json").is_file():
            raise ConfigError(f"not a complete checkpoint: {resume_dir}", key="resume_from")
    elif config.resume:
        resume_dir = latest_checkpoint(config.output_dir)
    load_dtype = torch.bfloat16 if (bf16 and config.lora is not None) else torch.float32
    weights_dir = resume_dir / "model" if (resume_dir and config.lora is None) else config.model_dir
    model: Any = AutoModelForCausalLM.from_pretrained(
        str(weights_dir), local_files_only=True, dtype=load_dtype
    )
    model.config.use_cache = False
    if config.gradient_checkpointing:
        _enable_checkpointing(model)
    if config.lora is not None:
        model = _apply_lora(model, config, resume_dir)
    model.to(device)
    model.train()
    raw_model = model
    if world > 1:
        model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[dist.local_rank] if cuda else None
        )

    params = [p for p in model.parameters() if p.requires_grad]
    # fused: one kernel for the whole update on CUDA (the unfused step was two thirds of the
    # GPU time of a 71 M-parameter model's step, profiled on an H100)
    optimizer = torch.optim.AdamW(
        params,
        lr=config.learning_rate,
        weight_decay=config.weight_decay,
        fused=True if cuda else None,
    )
    warmup = math.ceil(config.warmup_ratio * total_steps)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, _lr_lambda(config.lr_scheduler, warmup, total_steps)
    )
    fingerprint = _data_fingerprint(config, len(train_ex))
    step = 0
    if resume_dir is not None:
        step = _restore(resume_dir, optimizer, scheduler, fingerprint)
        log.info("resumed from %s at step %d", resume_dir, step)

    if dist.main:  # checkpoints a killed run left half-written
        for tmp in (config.output_dir / "checkpoints").glob(".tmp-checkpoint-*"):
            shutil.rmtree(tmp, ignore_errors=True)
    emit_main: Emit = emit if dist.main else (lambda _ev: None)
    emit_main(
        StartEvent(
            total_steps=total_steps,
            num_train_examples=len(train_ex),
            num_eval_examples=len(eval_ex),
            resumed_from_step=step,
            world_size=world,
            device=str(device),
            precision="bf16" if bf16 else "fp32",
            lora=config.lora is not None,
        )
    )

    def to_dev(rows: list[list[int]]) -> Any:
        if not cuda:
            return torch.tensor(rows, dtype=torch.long)
        # from pinned memory the copy is asynchronous: the CPU goes on queueing kernels (a copy
        # from pageable memory waits for the GPU to finish what is queued before it)
        host = torch.tensor(rows, dtype=torch.long, pin_memory=True)
        return host.to(device, non_blocking=True)

    isolate = config.batching == "packed" and config.pack_isolation

    def forward_loss_sum(mb: MicroBatch, net: Any, packed: bool = False) -> Any:
        """Summed token loss of `mb`; `packed`: its rows hold several examples to isolate."""
        attention_mask = to_dev(mb.attention_mask)
        position_ids = to_dev(mb.position_ids)
        if packed:
            attention_mask = packed_attention_mask(position_ids, attention_mask)
        with autocast():
            out = net(
                input_ids=to_dev(mb.input_ids),
                attention_mask=attention_mask,
                position_ids=position_ids,
            )
        logits = out.logits[:, :-1, :].float()
        labels = to_dev(mb.labels)[:, 1:]
        return F.cross_entropy(
            logits.reshape(-1, logits.size(-1)),
            labels.reshape(-1),
            ignore_index=-100,
            reduction="sum",
        )

    def all_sum(*values: float) -> list[float]:
        if world == 1:
            return list(values)
        t = torch.tensor(values, dtype=torch.float64, device=device)
        tdist.all_reduce(t)
        return [float(x) for x in t.tolist()]

    def evaluate() -> float | None:
        if not eval_ex:
            return None
        raw_model.eval()
        loss_sum, n = 0.0, 0.0
        batches = make_batches(
            eval_ex,
            batch_size=config.per_device_batch_size,
            mode="grouped",
            max_length=config.max_length,
            pad_id=pad_id,
            seed=0,
            shuffle=False,
            pad_to_multiple_of=config.pad_to_multiple_of,
        )
        with torch.no_grad():
            for mb in batches[dist.rank :: world]:
                # the unwrapped model: DDP's forward would sync buffers, and ranks may run
                # different numbers of eval batches
                loss_sum += float(forward_loss_sum(mb, raw_model))
                n += mb.n_label_tokens
        raw_model.train()
        loss_sum, n = all_sum(loss_sum, n)
        eval_loss = loss_sum / max(n, 1.0)
        emit_main(EvalEvent(step=step, eval_loss=eval_loss))
        return eval_loss

    # ---- loop
    # the window's loss stays on the device until an event needs it: reading it each
    # micro-batch would make the CPU wait for the GPU every time
    win_loss: Any = torch.zeros((), dtype=torch.float64, device=device)
    win_tokens, win_seen = 0.0, 0.0
    win_t = time.monotonic()
    last_loss: float | None = None
    last_eval: float | None = None
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)

    def checkpoint() -> None:
        path = _save_checkpoint(config, raw_model, optimizer, scheduler, step, fingerprint, dist)
        if world > 1:
            tdist.barrier()
        if path is not None:
            emit_main(CheckpointEvent(step=step, path=str(path.resolve())))

    stop_flag = _SigtermFlag(config.checkpoint_on_sigterm)
    try:
        epoch = step // steps_per_epoch
        while step < total_steps:
            mine = epoch_batches(epoch)
            groups = [mine[i : i + accum] for i in range(0, len(mine), accum)]
            for group in groups[step - epoch * steps_per_epoch :]:
                if step >= total_steps:
                    break
                (n_label,) = all_sum(float(sum(mb.n_label_tokens for mb in group)))
                for k, mb in enumerate(group):
                    sync = world == 1 or k == len(group) - 1
                    ctx = contextlib.nullcontext() if sync else model.no_sync()
                    with ctx:
                        loss_sum = forward_loss_sum(mb, model, packed=isolate)
                        (loss_sum * (world / max(n_label, 1.0))).backward()
                    win_loss += loss_sum.detach()
                    win_seen += mb.n_label_tokens
                    win_tokens += mb.n_tokens
                if config.max_grad_norm is not None:
                    torch.nn.utils.clip_grad_norm_(params, config.max_grad_norm)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                step += 1

                if step % config.logging_steps == 0 or step == total_steps:
                    g_loss, g_seen, g_tokens = all_sum(float(win_loss), win_seen, win_tokens)
                    now = time.monotonic()
                    last_loss = g_loss / max(g_seen, 1.0)
                    emit_main(
                        StepEvent(
                            step=step,
                            total_steps=total_steps,
                            epoch=step / steps_per_epoch,
                            loss=last_loss,
                            lr=float(scheduler.get_last_lr()[0]),
                            tokens_per_s=g_tokens / max(now - win_t, 1e-9),
                            gpu_mem_gb=(torch.cuda.max_memory_allocated(device) / 2**30)
                            if cuda
                            else None,
                        )
                    )
                    win_loss.zero_()
                    win_tokens, win_seen, win_t = 0.0, 0.0, now
                if config.eval_steps and step % config.eval_steps == 0 and step < total_steps:
                    last_eval = evaluate()
                saved = False
                if config.save_steps and step % config.save_steps == 0 and step < total_steps:
                    checkpoint()
                    saved = True
                stop = stop_flag.raised if world == 1 else all_sum(float(stop_flag.raised))[0] > 0
                if stop and step < total_steps:
                    if not saved:
                        checkpoint()
                    raise TrainingInterrupted(step)
            epoch += 1
    finally:
        stop_flag.restore()

    last_eval = evaluate() if eval_ex else last_eval
    if dist.main:
        save_bf16 = config.save_dtype == "bfloat16" or (config.save_dtype == "auto" and bf16)
        _save_final(config, raw_model, tokenizer, template, torch.bfloat16 if save_bf16 else None)
    if world > 1:
        tdist.barrier()
        tdist.destroy_process_group()
    done = DoneEvent(
        output_dir=str(config.output_dir.resolve()),
        final_loss=last_loss,
        steps=step,
        wall_s=time.monotonic() - t0,
        eval_loss=last_eval,
        adapter=config.lora is not None,
    )
    emit_main(done)
    return done


def packed_attention_mask(position_ids: Any, attention_mask: Any) -> Any:
    """A 4-D boolean mask (batch, 1, L, L), True where a token may attend: causal, and only
    within its own example of a packed row (an example starts where its position id is 0).
    Padding (attention mask 0) attends to itself only and is never attended to; its labels are
    -100, so it adds nothing to the loss. Built on the tensors' device."""
    import torch

    segment = torch.cumsum((position_ids == 0).to(torch.int32), dim=1)
    segment = torch.where(
        attention_mask.bool(), segment, -1 - torch.arange(segment.size(1), device=segment.device)
    )  # each padding token its own segment
    length = position_ids.size(1)
    causal = torch.ones(length, length, dtype=torch.bool, device=position_ids.device).tril()
    same = segment[:, :, None] == segment[:, None, :]
    return (same & causal)[:, None, :, :]


def _enable_checkpointing(model: Any) -> None:
    """Activation (gradient) checkpointing, non-reentrant (works with frozen LoRA bases)."""
    kwargs = {"use_reentrant": False}
    if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5.x
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)


def _apply_lora(model: Any, config: TrainConfig, resume_dir: Path | None) -> Any:
    """Wrap `model` with a fresh LoRA adapter, or the checkpoint's adapter when resuming."""
    lora = config.lora
    assert lora is not None
    try:
        from peft import LoraConfig, PeftModel, get_peft_model
    except ImportError as exc:  # pragma: no cover - peft is in the train extra
        raise ConfigError("LoRA needs peft: pip install 'evolagents[train]'", key="lora") from exc
    with warnings.catch_warnings():
        # peft reads transformers' deprecated `is_gradient_checkpointing`: harmless, not ours.
        warnings.filterwarnings(
            "ignore", message=r".*is_gradient_checkpointing.*deprecated", category=FutureWarning
        )
        if resume_dir is not None:
            return PeftModel.from_pretrained(model, str(resume_dir / "model"), is_trainable=True)
        target: Any = lora.target_modules
        peft_config = LoraConfig(
            r=lora.r,
            lora_alpha=lora.alpha,
            lora_dropout=lora.dropout,
            target_modules=target,
            task_type="CAUSAL_LM",
        )
        return get_peft_model(model, peft_config)


def _restore(resume_dir: Path, optimizer: Any, scheduler: Any, fingerprint: str) -> int:
    import torch

    state = json.loads((resume_dir / "state.json").read_text(encoding="utf-8"))
    if state.get("data_fingerprint") != fingerprint:
        log.warning("resuming with different data or batch settings: the data order differs")
    optimizer.load_state_dict(torch.load(resume_dir / "optimizer.pt", weights_only=True))
    scheduler.load_state_dict(torch.load(resume_dir / "scheduler.pt", weights_only=True))
    rng = torch.load(resume_dir / "rng.pt", weights_only=False)
    torch.set_rng_state(rng["torch"])
    if torch.cuda.is_available() and rng.get("cuda") is not None:
        torch.cuda.set_rng_state_all(rng["cuda"])
    random.setstate(rng["python"])
    return int(state["step"])


def _iter_old_checkpoints(root: Path, keep: int | None) -> Iterator[Path]:
    if keep is None:
        return
    done = sorted(
        (int(p.name.removeprefix("checkpoint-")), p)
        for p in root.iterdir()
        if p.name.startswith("checkpoint-") and (p / "state.json").is_file()
    )
    for _, p in done[:-keep]:
        yield p


def _save_checkpoint(
    config: TrainConfig,
    model: Any,
    optimizer: Any,
    scheduler: Any,
    step: int,
    fingerprint: str,
    dist: _Dist,
) -> Path | None:
    import torch

    if not dist.main:
        return None
    root = config.output_dir / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f".tmp-checkpoint-{step}"
    final = root / f"checkpoint-{step}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    model.save_pretrained(str(tmp / "model"))
    torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
    torch.save(scheduler.state_dict(), tmp / "scheduler.pt")
    torch.save(
        {
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
            "python": random.getstate(),
        },
        tmp / "rng.pt",
    )
    (tmp / "state.json").write_text(
        json.dumps({"step": step, "data_fingerprint": fingerprint}), encoding="utf-8"
    )
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    for old in _iter_old_checkpoints(root, config.save_total_limit):
        shutil.rmtree(old, ignore_errors=True)
    return final


def _save_final(
    config: TrainConfig, model: Any, tokenizer: Any, template: str, cast_to: Any
) -> None:
    """Write the model (or adapter) and tokenizer; `cast_to` (a torch dtype) casts full weights
    (and the merged model) before saving — training is over, so in place is fine."""
    out = config.output_dir
    out.mkdir(parents=True, exist_ok=True)
    if cast_to is not None and config.lora is None:
        model.to(cast_to)
    model.save_pretrained(str(out))
    tokenizer.chat_template = template  # serve with the format it was trained on
    tokenizer.save_pretrained(str(out))
    if config.lora is not None and config.lora.merge_on_save:
        merged = model.merge_and_unload()
        if cast_to is not None:
            merged.to(cast_to)
        merged.save_pretrained(str(out / "merged"))
        tokenizer.save_pretrained(str(out / "merged"))
