"""The training loop in-process on the tiny model: loss falls, LoRA, packing, fallback template."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from agents.trainer.process import DoneEvent, EvalEvent, StartEvent, StepEvent
from runtime.train import load_config, run_training

torch = pytest.importorskip("torch")


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """A tiny model gains nothing from threads; a loaded 2-core box loses a lot to them."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def train(config: dict[str, Any]) -> list[BaseModel]:
    events: list[BaseModel] = []
    run_training(load_config(preset=config.pop("preset", None), overrides=config), events.append)
    return events


def steps(events: list[BaseModel]) -> list[StepEvent]:
    return [e for e in events if isinstance(e, StepEvent)]


def test_loss_goes_down_on_fifty_rows(train_config: dict[str, Any]) -> None:
    events = train({**train_config, "num_epochs": 3, "logging_steps": 1})
    losses = [e.loss for e in steps(events)]
    assert len(losses) == 39  # 50 rows / batch 4 = 13 steps x 3 epochs
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    assert last < first - 0.5, (first, last)
    start, done = events[0], events[-1]
    assert isinstance(start, StartEvent)
    # `precision = auto`: fp32 on CPU, bf16 autocast on a CUDA GPU that has it
    cuda = torch.cuda.is_available()
    expected = (
        ("cuda:0", "bf16" if torch.cuda.is_bf16_supported() else "fp32")
        if cuda
        else (
            "cpu",
            "fp32",
        )
    )
    assert (start.device, start.precision, start.total_steps) == (*expected, 39)
    assert isinstance(done, DoneEvent)
    evals = [e for e in events if isinstance(e, EvalEvent)]
    assert done.eval_loss == evals[-1].eval_loss
    assert all((e.gpu_mem_gb is not None) == cuda and e.tokens_per_s > 0 for e in steps(events))
    # the cosine schedule decays to zero at the last step
    assert steps(events)[-1].lr == pytest.approx(0.0, abs=1e-12)


def test_lora_trains_only_the_adapter_and_saves_it(train_config: dict[str, Any]) -> None:
    pytest.importorskip("peft")
    config = {
        **train_config,
        "max_steps": 4,
        "lora": {"r": 4, "alpha": 8, "merge_on_save": True},
        "gradient_checkpointing": True,
    }
    events = train(config)
    done = events[-1]
    assert isinstance(done, DoneEvent)
    assert done.adapter
    out = Path(done.output_dir)
    assert (out / "adapter_config.json").is_file()
    assert not (out / "model.safetensors").exists()
    assert (out / "merged" / "model.safetensors").is_file()
    assert json.loads((out / "adapter_config.json").read_text())["r"] == 4


@pytest.mark.parametrize("isolation", [True, False])
def test_packed_batches_train(train_config: dict[str, Any], isolation: bool) -> None:
    config = {"batching": "packed", "max_steps": 3, "max_length": 256}
    events = train({**train_config, **config, "pack_isolation": isolation})
    assert [e.step for e in steps(events)] == [1, 2, 3]
    assert all(e.loss > 0 for e in steps(events))


def test_packed_examples_see_only_themselves(tiny_model: Path) -> None:
    from transformers import AutoModelForCausalLM

    from runtime.train._data import Example, make_batches
    from runtime.train._loop import packed_attention_mask

    model = AutoModelForCausalLM.from_pretrained(str(tiny_model), local_files_only=True).eval()
    lengths = [7, 5, 4, 9]
    examples = [
        Example(list(range(10 + 3 * k, 10 + 3 * k + n)), [-100] * n) for k, n in enumerate(lengths)
    ]
    (batch,) = make_batches(
        examples,
        batch_size=4,
        mode="packed",
        max_length=16,
        pad_id=0,
        seed=0,
        pad_to_multiple_of=8,
    )
    assert len(batch.input_ids) < len(examples)  # some row holds two examples
    ids = torch.tensor(batch.input_ids)
    pos = torch.tensor(batch.position_ids)
    mask = torch.tensor(batch.attention_mask)
    with torch.no_grad():
        isolated = model(
            input_ids=ids, position_ids=pos, attention_mask=packed_attention_mask(pos, mask)
        ).logits
        shared = model(input_ids=ids, position_ids=pos, attention_mask=mask).logits
        alone = {
            tuple(e.input_ids): model(input_ids=torch.tensor([e.input_ids])).logits[0]
            for e in examples
        }
    differs = 0
    for row, (r_ids, r_pos) in enumerate(zip(batch.input_ids, batch.position_ids, strict=True)):
        n = sum(batch.attention_mask[row])
        starts = [i for i in range(n) if r_pos[i] == 0] + [n]
        for a, b in itertools.pairwise(starts):
            reference = alone[tuple(r_ids[a:b])]
            assert torch.allclose(isolated[row, a:b], reference, atol=1e-5)
            differs += not torch.allclose(shared[row, a:b], reference, atol=1e-5)
    assert differs > 0  # without the mask, a later example in a row sees the earlier one


def test_tokenizer_without_template_trains_with_the_fallback_and_saves_it(
    train_config: dict[str, Any], tmp_path: Path, shard_rows: list[dict[str, str]]
) -> None:
    from runtime.train._data import FALLBACK_CHAT_TEMPLATE
    from runtime.train.tiny import build_tiny_model

    bare = build_tiny_model(
        tmp_path / "bare",
        [r["response"] for r in shard_rows],
        with_chat_template=False,
        vocab_size=300,
    )
    assert not (bare / "chat_template.jinja").exists()
    events = train({**train_config, "model_dir": str(bare), "max_steps": 2})
    out = Path(train_config["output_dir"])
    assert isinstance(events[-1], DoneEvent)
    assert (out / "chat_template.jinja").read_text() == FALLBACK_CHAT_TEMPLATE


def test_gradient_accumulation_counts_optimizer_steps(train_config: dict[str, Any]) -> None:
    events = train({**train_config, "num_epochs": 1, "gradient_accumulation_steps": 4})
    start = events[0]
    assert isinstance(start, StartEvent)
    assert start.total_steps == 4  # ceil(13 micro-batches / 4)
    assert [e.step for e in steps(events)] == [1, 2, 3, 4]


def test_save_dtype_bfloat16_halves_the_saved_weights(train_config: dict[str, Any]) -> None:
    from safetensors import safe_open

    events = train({**train_config, "max_steps": 1, "save_dtype": "bfloat16"})
    done = events[-1]
    assert isinstance(done, DoneEvent)
    with safe_open(str(Path(done.output_dir) / "model.safetensors"), "pt") as f:
        dtypes = {f.get_slice(k).get_dtype() for k in f.keys()}  # noqa: SIM118
    assert dtypes == {"BF16"}


def test_eval_fraction_holds_out_train_rows_when_no_eval_files(
    train_config: dict[str, Any],
) -> None:
    config = {**train_config, "eval_files": [], "eval_fraction": 0.2, "max_steps": 2}
    events = train(config)
    start = events[0]
    assert isinstance(start, StartEvent)
    assert start.num_train_examples + start.num_eval_examples == 50
    assert 0 < start.num_eval_examples < 25
    assert any(isinstance(e, EvalEvent) for e in events)


@pytest.mark.gpu
def test_cuda_run_uses_bf16_and_reports_memory(train_config: dict[str, Any]) -> None:
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    events = train({**train_config, "max_steps": 4})
    start = events[0]
    assert isinstance(start, StartEvent)
    assert start.device.startswith("cuda")
    assert start.precision == ("bf16" if torch.cuda.is_bf16_supported() else "fp32")
    assert all(e.gpu_mem_gb is not None and e.gpu_mem_gb > 0 for e in steps(events))
    # cuDNN attention (a plan per new shape) is off unless the config allows it
    assert not torch.backends.cuda.cudnn_sdp_enabled()


def test_lora_run_resumes_its_adapter_from_a_checkpoint(train_config: dict[str, Any]) -> None:
    pytest.importorskip("peft")
    config = {**train_config, "lora": {"r": 4, "alpha": 8}, "save_steps": 2}
    train({**config, "max_steps": 3})  # leaves checkpoint-2
    events = train({**config, "max_steps": 5})
    start = events[0]
    assert isinstance(start, StartEvent)
    assert start.resumed_from_step == 2
    assert [e.step for e in steps(events)] == [3, 4, 5]


@pytest.mark.gpu
def test_cuda_lora_loads_the_frozen_base_in_bf16(train_config: dict[str, Any]) -> None:
    if not torch.cuda.is_available() or not torch.cuda.is_bf16_supported():
        pytest.skip("needs a CUDA GPU with bf16")
    pytest.importorskip("peft")
    events = train({**train_config, "max_steps": 4, "lora": {"r": 4, "alpha": 8}})
    done = events[-1]
    assert isinstance(done, DoneEvent)
    assert done.adapter
    assert all(e.gpu_mem_gb is not None for e in steps(events))
