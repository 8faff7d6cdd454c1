"""Chat JSONL → token ids + labels (loss on assistant tokens only) → batches.

Masking contract: for every assistant message, the tokens from the end of the rendered prompt
(`render(messages[:i], add_generation_prompt=True)`) to the end of `render(messages[:i+1])` get
labels (the reply text and the template's end-of-turn marker, e.g. EOS); every other token gets
-100. Character spans are mapped to tokens through the fast tokenizer's offsets, so this works with
any chat template that renders a conversation as a prefix of its continuation. For templates that
do not, the reply text itself is located in the rendering (the end-of-turn marker is then not
learned; a warning says so once).

Imports no torch: batches are plain lists; `_loop.py` makes tensors.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runtime.errors import ConfigError, InputDataError

__all__ = [
    "FALLBACK_CHAT_TEMPLATE",
    "Example",
    "MicroBatch",
    "encode_conversation",
    "encode_conversations",
    "make_batches",
    "read_chat_jsonl",
    "split_by_hash",
]

log = logging.getLogger("runtime.train")

FALLBACK_CHAT_TEMPLATE = (
    "{% if bos_token %}{{ bos_token }}{% endif %}"
    "{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}{{ eos_token }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)
"""Used when the tokenizer has no chat template and the config names none. Each turn ends with EOS,
so a model trained on it learns to stop; the template is saved with the fine-tuned model."""

_ROLES = {"system", "user", "assistant"}


@dataclass(frozen=True, slots=True)
class Example:
    """One tokenised conversation: `labels[i]` is `input_ids[i]` or -100 (not learned)."""

    input_ids: list[int]
    labels: list[int]

    @property
    def n_label_tokens(self) -> int:
        return sum(1 for t in self.labels if t != -100)


@dataclass(frozen=True, slots=True)
class MicroBatch:
    """Padded rows ready for the model. `position_ids` restart at 0 for each packed row."""

    input_ids: list[list[int]]
    labels: list[list[int]]
    attention_mask: list[list[int]]
    position_ids: list[list[int]]

    @property
    def n_tokens(self) -> int:
        """Real (non-padding) tokens: what tokens/s counts."""
        return sum(sum(row) for row in self.attention_mask)

    @property
    def n_label_tokens(self) -> int:
        return sum(1 for row in self.labels for t in row if t != -100)


def read_chat_jsonl(paths: Sequence[Path]) -> list[list[dict[str, str]]]:
    """Read conversations from chat JSONL files, in file then line order.

    Raises `InputDataError` (file, line, field) for a line that is not a JSON object with a
    `messages` list of `{"role", "content"}` strings, a role outside system/user/assistant, or a
    conversation with no assistant message. Blank lines are skipped.
    """
    out: list[list[dict[str, str]]] = []
    for path in paths:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise InputDataError(f"cannot read: {exc}", file=path) from exc
        for lineno, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InputDataError(f"not JSON: {exc}", file=path, line=lineno) from exc
            msgs = obj.get("messages") if isinstance(obj, dict) else None
            if not isinstance(msgs, list) or not msgs:
                raise InputDataError(
                    "expected a non-empty list", file=path, line=lineno, field="messages"
                )
            conv: list[dict[str, str]] = []
            for m in msgs:
                if not (
                    isinstance(m, dict)
                    and isinstance(m.get("role"), str)
                    and isinstance(m.get("content"), str)
                ):
                    raise InputDataError(
                        "each message needs string role and content",
                        file=path,
                        line=lineno,
                        field="messages",
                    )
                if m["role"] not in _ROLES:
                    raise InputDataError(
                        f"unknown role {m['role']!r}", file=path, line=lineno, field="messages.role"
                    )
                conv.append({"role": m["role"], "content": m["content"]})
            if not any(m["role"] == "assistant" for m in conv):
                raise InputDataError(
                    "no assistant message: nothing to learn",
                    file=path,
                    line=lineno,
                    field="messages",
                )
            out.append(conv)
    return out


def split_by_hash(
    convs: list[list[dict[str, str]]], fraction: float, seed: int
) -> tuple[list[list[dict[str, str]]], list[list[dict[str, str]]]]:
    """Deterministically hold out ~`fraction` of conversations by content hash → (train, eval)."""
    train: list[list[dict[str, str]]] = []
    held: list[list[dict[str, str]]] = []
    for conv in convs:
        key = f"{seed}:{json.dumps(conv, sort_keys=True)}".encode()
        u = int.from_bytes(hashlib.sha256(key).digest()[:8], "big") / 2**64
        (held if u < fraction else train).append(conv)
    return train, held


def _render(tokenizer: Any, msgs: list[dict[str, str]], template: str, gen: bool) -> str:
    out = tokenizer.apply_chat_template(
        msgs, tokenize=False, add_generation_prompt=gen, chat_template=template
    )
    if not isinstance(out, str):
        raise ConfigError("the chat template did not render to a string", key="chat_template")
    return out


_warned_non_prefix = False


def _assistant_spans(
    tokenizer: Any, conv: list[dict[str, str]], template: str
) -> tuple[str, list[tuple[int, int]]]:
    """The full rendering and the character spans that carry labels."""
    global _warned_non_prefix
    full = _render(tokenizer, conv, template, gen=False)
    spans: list[tuple[int, int]] = []
    cursor = 0
    for i, m in enumerate(conv):
        if m["role"] != "assistant":
            continue
        prompt = _render(tokenizer, conv[:i], template, gen=True) if i else ""
        last = i == len(conv) - 1
        upto = full if last else _render(tokenizer, conv[: i + 1], template, gen=False)
        if full.startswith(upto) and upto.startswith(prompt) and len(prompt) >= cursor:
            spans.append((len(prompt), len(upto)))
            cursor = len(upto)
            continue
        # The template is not prefix-stable (e.g. it strips past reasoning): locate the text.
        if not _warned_non_prefix:
            log.warning("chat template is not prefix-stable; labelling reply text only")
            _warned_non_prefix = True
        start = full.find(m["content"], cursor)
        if start < 0:
            raise InputDataError("assistant text not found in the rendered chat", file="<data>")
        spans.append((start, start + len(m["content"])))
        cursor = start + len(m["content"])
    return full, spans


def encode_conversation(
    tokenizer: Any, conv: list[dict[str, str]], template: str, max_length: int
) -> Example:
    """Tokenise one conversation with response-only labels, truncated to `max_length`.

    A token is labelled when its first character lies in an assistant span. Truncation keeps the
    head of the conversation; an example left with no label token is still returned (callers
    drop it: `n_label_tokens == 0`).
    """
    return encode_conversations(tokenizer, [conv], template, max_length)[0]


def encode_conversations(
    tokenizer: Any,
    convs: Sequence[list[dict[str, str]]],
    template: str,
    max_length: int,
    *,
    chunk: int = 1024,
) -> list[Example]:
    """`encode_conversation` for many conversations, tokenising `chunk` texts per call (the
    fast tokenizer's batch path: less Python overhead, parallel in Rust where allowed)."""
    out: list[Example] = []
    for start in range(0, len(convs), chunk):
        rendered = [_assistant_spans(tokenizer, c, template) for c in convs[start : start + chunk]]
        enc = tokenizer(
            [text for text, _ in rendered], add_special_tokens=False, return_offsets_mapping=True
        )
        for (_text, spans), ids, offsets in zip(
            rendered, enc["input_ids"], enc["offset_mapping"], strict=True
        ):
            out.append(_label(list(ids), offsets, spans, max_length))
    return out


def _label(
    ids: list[int], offsets: Sequence[Sequence[int]], spans: list[tuple[int, int]], max_length: int
) -> Example:
    labels: list[int] = []
    si = 0
    n_spans = len(spans)
    for tok, offset in zip(ids, offsets, strict=True):
        start = offset[0]
        while si < n_spans and start >= spans[si][1]:
            si += 1
        labels.append(tok if si < n_spans and spans[si][0] <= start else -100)
    return Example(input_ids=ids[:max_length], labels=labels[:max_length])


def _pad_rows(
    rows: list[tuple[list[int], list[int], list[int]]],
    pad_id: int,
    multiple: int = 1,
    max_length: int | None = None,
) -> MicroBatch:
    """Pad `rows` to the longest, rounded up to `multiple` (never past `max_length` when the
    longest row fits in it)."""
    longest = max(len(r[0]) for r in rows)
    width = -(-longest // multiple) * multiple
    if max_length is not None and longest <= max_length:
        width = min(width, max_length)
    ids, labels, mask, pos = [], [], [], []
    for r_ids, r_labels, r_pos in rows:
        pad = width - len(r_ids)
        ids.append(r_ids + [pad_id] * pad)
        labels.append(r_labels + [-100] * pad)
        mask.append([1] * len(r_ids) + [0] * pad)
        pos.append(r_pos + [0] * pad)
    return MicroBatch(input_ids=ids, labels=labels, attention_mask=mask, position_ids=pos)


def _pack(
    examples: Iterable[Example], max_length: int
) -> list[tuple[list[int], list[int], list[int]]]:
    """First-fit-decreasing bin packing of whole examples into rows of at most `max_length`."""
    bins: list[tuple[list[int], list[int], list[int]]] = []
    for ex in sorted(examples, key=lambda e: len(e.input_ids), reverse=True):
        n = len(ex.input_ids)
        for b in bins:
            if len(b[0]) + n <= max_length:
                b[0].extend(ex.input_ids)
                b[1].extend(ex.labels)
                b[2].extend(range(n))
                break
        else:
            bins.append((list(ex.input_ids), list(ex.labels), list(range(n))))
    return bins


def make_batches(
    examples: Sequence[Example],
    *,
    batch_size: int,
    mode: str,
    max_length: int,
    pad_id: int,
    seed: int,
    shuffle: bool = True,
    pad_to_multiple_of: int = 1,
) -> list[MicroBatch]:
    """Micro-batches for one epoch, deterministic in (`examples`, `seed`).

    `grouped`: shuffle, then sort by length inside windows of 50 batches, cut into batches and
    shuffle the batch order — rows in a batch have similar lengths, so little padding.
    `packed`: bin-pack examples into rows of up to `max_length` tokens, then batch the rows.
    `shuffle=False` (eval) keeps the input order. Each batch is padded to its longest row
    rounded up to `pad_to_multiple_of` (capped at `max_length`): fewer distinct shapes for the
    GPU kernels that specialise on them, and tensor-core-friendly widths.
    """
    if pad_to_multiple_of < 1:
        raise ValueError("pad_to_multiple_of must be >= 1")
    rng = random.Random(seed)
    order = list(examples)
    if shuffle:
        rng.shuffle(order)
    rows: list[tuple[list[int], list[int], list[int]]]
    if mode == "packed":
        rows = _pack(order, max_length)
        if shuffle:
            rng.shuffle(rows)
    else:
        rows = []
        window = batch_size * 50
        for w in range(0, len(order), window):
            chunk = order[w : w + window]
            if shuffle:
                chunk = sorted(chunk, key=lambda e: len(e.input_ids))
            rows.extend(
                (list(e.input_ids), list(e.labels), list(range(len(e.input_ids)))) for e in chunk
            )
    batches = [
        _pad_rows(rows[i : i + batch_size], pad_id, pad_to_multiple_of, max_length)
        for i in range(0, len(rows), batch_size)
    ]
    if shuffle:
        rng.shuffle(batches)
    return batches
