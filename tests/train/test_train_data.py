"""Tokenisation with response-only labels, batching and packing, input validation, config."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from runtime.errors import ConfigError, InputDataError
from runtime.train import PRESETS, TrainConfig, load_config
from runtime.train._data import (
    FALLBACK_CHAT_TEMPLATE,
    Example,
    encode_conversation,
    encode_conversations,
    make_batches,
    read_chat_jsonl,
    split_by_hash,
)

CONV = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Sort 3 1 2"},
    {"role": "assistant", "content": "1 2 3"},
    {"role": "user", "content": "Reverse it"},
    {"role": "assistant", "content": "3 2 1"},
]

CHATML = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}<|eos|>{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


@pytest.fixture(scope="module")
def tokenizer(tiny_model: Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(tiny_model), local_files_only=True)


def labelled_text(tokenizer: Any, ex: Example) -> str:
    return str(tokenizer.decode([t for t in ex.labels if t != -100]))


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        pytest.param(FALLBACK_CHAT_TEMPLATE, "1 2 3<|eos|>\n3 2 1<|eos|>\n", id="fallback"),
        pytest.param(CHATML, "1 2 3<|eos|>3 2 1<|eos|>", id="custom"),
    ],
)
def test_only_assistant_tokens_and_their_end_marker_are_labelled(
    tokenizer: Any, template: str, expected: str
) -> None:
    ex = encode_conversation(tokenizer, CONV, template, max_length=512)
    assert labelled_text(tokenizer, ex) == expected
    assert len(ex.labels) == len(ex.input_ids)
    # every labelled token is its own input id; prompt tokens (system, users, role tags) are -100
    first = next(i for i, t in enumerate(ex.labels) if t != -100)
    assert all(t == -100 for t in ex.labels[:first])
    assert "Sort 3 1 2" in tokenizer.decode(ex.input_ids[:first])
    assert all(t in (-100, i) for t, i in zip(ex.labels, ex.input_ids, strict=True))


def test_batched_encoding_equals_one_by_one(tokenizer: Any) -> None:
    convs = [
        CONV,
        CONV[1:3],
        CONV[:3],
        [*CONV[1:3], {"role": "user", "content": "and?"}, {"role": "assistant", "content": "done"}],
    ] * 3
    batched = encode_conversations(tokenizer, convs, FALLBACK_CHAT_TEMPLATE, 64, chunk=5)
    assert batched == [encode_conversation(tokenizer, c, FALLBACK_CHAT_TEMPLATE, 64) for c in convs]


def test_non_prefix_stable_template_still_labels_the_reply_text(tokenizer: Any) -> None:
    # renders the generation prompt differently from a finished turn: not prefix-stable
    odd = (
        "{% for m in messages %}[{{ m['role'] }}]{{ m['content'] }}{% endfor %}"
        "{% if add_generation_prompt %}[assistant-to-be]{% endif %}"
    )
    ex = encode_conversation(tokenizer, CONV[1:3], odd, max_length=512)
    assert labelled_text(tokenizer, ex).strip() == "1 2 3"


def test_truncation_keeps_the_head_and_can_leave_no_labels(tokenizer: Any) -> None:
    ex = encode_conversation(tokenizer, CONV, FALLBACK_CHAT_TEMPLATE, max_length=4)
    assert len(ex.input_ids) == 4
    assert ex.n_label_tokens == 0


def rows(lengths: list[int]) -> list[Example]:
    return [Example(list(range(1, n + 1)), [-100, *range(2, n + 1)]) for n in lengths]


def test_grouped_batches_pad_to_the_longest_and_mask_padding() -> None:
    batches = make_batches(
        rows([3, 5, 4, 9]), batch_size=2, mode="grouped", max_length=16, pad_id=0, seed=0
    )
    assert sorted(len(b.input_ids) for b in batches) == [2, 2]
    for b in batches:
        width = len(b.input_ids[0])
        for ids, labels, mask in zip(b.input_ids, b.labels, b.attention_mask, strict=True):
            n = sum(mask)
            assert len(ids) == len(labels) == width
            assert ids[n:] == [0] * (width - n)
            assert labels[n:] == [-100] * (width - n)
    # length grouping: the two shortest rows share a batch
    widths = sorted(len(b.input_ids[0]) for b in batches)
    assert widths == [4, 9]


@pytest.mark.parametrize(
    ("lengths", "multiple", "max_length", "width"),
    [
        pytest.param([3, 5], 8, 64, 8, id="rounded-up"),
        pytest.param([8, 2], 8, 64, 8, id="already-a-multiple"),
        pytest.param([9, 2], 8, 12, 12, id="capped-at-max-length"),
        pytest.param([3, 5], 1, 64, 5, id="no-rounding"),
    ],
)
def test_batch_width_rounds_up_to_the_multiple(
    lengths: list[int], multiple: int, max_length: int, width: int
) -> None:
    (batch,) = make_batches(
        rows(lengths),
        batch_size=2,
        mode="grouped",
        max_length=max_length,
        pad_id=0,
        seed=0,
        pad_to_multiple_of=multiple,
    )
    assert [len(r) for r in batch.input_ids] == [width, width]
    assert sorted(sum(m) for m in batch.attention_mask) == sorted(lengths)
    assert batch.n_tokens == sum(lengths)  # padding is not counted as trained tokens
    assert all(
        lab[n:] == [-100] * (width - n)
        for lab, n in zip(batch.labels, (sum(m) for m in batch.attention_mask), strict=True)
    )


def test_the_default_config_pads_to_multiples_of_eight() -> None:
    assert TrainConfig.model_fields["pad_to_multiple_of"].default == 8
    with pytest.raises(ValueError, match="pad_to_multiple_of"):
        make_batches(
            rows([3]),
            batch_size=1,
            mode="grouped",
            max_length=8,
            pad_id=0,
            seed=0,
            pad_to_multiple_of=0,
        )


def test_batches_are_deterministic_in_seed() -> None:
    ex = rows(list(range(2, 40)))
    a = make_batches(ex, batch_size=4, mode="grouped", max_length=64, pad_id=0, seed=7)
    b = make_batches(ex, batch_size=4, mode="grouped", max_length=64, pad_id=0, seed=7)
    c = make_batches(ex, batch_size=4, mode="grouped", max_length=64, pad_id=0, seed=8)
    assert a == b
    assert a != c


def test_packing_fits_whole_rows_and_restarts_positions() -> None:
    batches = make_batches(
        rows([6, 5, 4, 3, 2]), batch_size=8, mode="packed", max_length=8, pad_id=0, seed=0
    )
    (batch,) = batches
    assert all(sum(m) <= 8 for m in batch.attention_mask)
    assert sum(sum(m) for m in batch.attention_mask) == 20  # nothing dropped, nothing split
    assert len(batch.input_ids) == 3  # 6+2, 5+3, 4
    for pos, mask in zip(batch.position_ids, batch.attention_mask, strict=True):
        n = sum(mask)
        starts = [i for i, p in enumerate(pos[:n]) if p == 0]
        assert starts[0] == 0
        assert len(starts) in (1, 2)


def write(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("line", "field"),
    [
        pytest.param("not json", "", id="not-json"),
        pytest.param('{"messages": []}', "messages", id="empty"),
        pytest.param('{"messages": [{"role": "user"}]}', "messages", id="no-content"),
        pytest.param(
            '{"messages": [{"role": "bot", "content": "x"}]}', "messages.role", id="bad-role"
        ),
        pytest.param(
            '{"messages": [{"role": "user", "content": "x"}]}', "messages", id="no-assistant"
        ),
    ],
)
def test_bad_chat_lines_name_file_line_and_field(tmp_path: Path, line: str, field: str) -> None:
    ok = json.dumps({"messages": CONV})
    path = write(tmp_path / "d.jsonl", [ok, line])
    with pytest.raises(InputDataError) as info:
        read_chat_jsonl([path])
    assert info.value.line == 2
    assert info.value.field == field


def test_split_by_hash_is_stable() -> None:
    convs = [
        [{"role": "user", "content": str(i)}, {"role": "assistant", "content": "x"}]
        for i in range(200)
    ]
    train, held = split_by_hash(convs, 0.1, seed=3)
    assert len(train) + len(held) == 200
    assert 5 < len(held) < 40
    assert split_by_hash(convs, 0.1, seed=3) == (train, held)


def test_paper_preset_is_the_default() -> None:
    base = {"model_dir": "m", "train_files": ["t"], "output_dir": "o"}
    config = load_config(preset="paper", overrides=base)
    assert config == TrainConfig.model_validate(base)
    assert (config.num_epochs, config.learning_rate, config.max_length) == (3.0, 2e-5, 2048)
    assert (config.warmup_ratio, config.lr_scheduler) == (0.03, "cosine")
    assert set(PRESETS) >= {"paper", "tiny"}


def test_file_then_overrides_win_over_the_preset(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    path.write_text(
        json.dumps(
            {
                "preset": "tiny",
                "model_dir": "m",
                "train_files": ["t"],
                "output_dir": "o",
                "learning_rate": 0.5,
            }
        ),
        encoding="utf-8",
    )
    config = load_config(file=path, overrides={"max_length": 64})
    assert config.learning_rate == 0.5
    assert config.max_length == 64
    assert config.num_epochs == PRESETS["tiny"]["num_epochs"]


@pytest.mark.parametrize(
    ("data", "key"),
    [
        pytest.param({"lerning_rate": 1}, "lerning_rate", id="typo"),
        pytest.param({"learning_rate": -1}, "learning_rate", id="negative"),
        pytest.param({"lora": {"r": 0}}, "lora.r", id="nested"),
    ],
)
def test_bad_config_names_the_key(tmp_path: Path, data: dict[str, Any], key: str) -> None:
    base = {"model_dir": "m", "train_files": ["t"], "output_dir": "o"}
    with pytest.raises(ConfigError) as info:
        load_config(overrides={**base, **data})
    assert info.value.key == key


def test_unknown_preset_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="unknown preset"):
        load_config(preset="huge")
