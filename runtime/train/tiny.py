"""A tiny random-init causal LM and a tokenizer trained on local text: tests and CPU smoke runs.

Nothing is downloaded: the tokenizer is a byte-level BPE trained with `tokenizers` on the text you
pass (or a built-in paragraph), wrapped as a `PreTrainedTokenizerFast` with the fallback chat
template set; the model is a 2-layer Llama with hidden size 64 and random weights. Both are saved to
one directory that `runtime.train` (and the `transformers` LLM backend) loads with
`local_files_only=True`.

    python -m runtime.train.tiny OUT_DIR [--text-file FILE ...] [--vocab-size 512]
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from runtime.train._data import FALLBACK_CHAT_TEMPLATE

__all__ = ["SPECIAL_TOKENS", "build_tiny_model", "build_tiny_tokenizer"]

SPECIAL_TOKENS = ["<|pad|>", "<|bos|>", "<|eos|>", "<|system|>", "<|user|>", "<|assistant|>"]

_DEFAULT_TEXT = (
    "Write a short poem about the sea. The sea is wide and blue, the waves come in and out. "
    "Give three tips for staying healthy. Eat well, sleep enough and move every day. "
    "Explain what a prime number is. A prime number has exactly two divisors: one and itself. "
    "Translate hello into French. Bonjour. Sort the numbers 3, 1, 2. The sorted list is 1, 2, 3."
)


def build_tiny_tokenizer(texts: Iterable[str], vocab_size: int = 512) -> Any:
    """A byte-level BPE `PreTrainedTokenizerFast` trained on `texts`, with BOS/EOS/PAD, the chat
    role tokens as special tokens and `FALLBACK_CHAT_TEMPLATE` as its chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(list(texts) or [_DEFAULT_TEXT], trainer)
    fast: Any = PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]
        tokenizer_object=tok, bos_token="<|bos|>", eos_token="<|eos|>", pad_token="<|pad|>"
    )
    fast.chat_template = FALLBACK_CHAT_TEMPLATE
    return fast


def build_tiny_model(
    out_dir: Path,
    texts: Iterable[str] = (),
    *,
    vocab_size: int = 512,
    hidden_size: int = 64,
    num_layers: int = 2,
    num_heads: int = 4,
    max_positions: int = 2048,
    seed: int = 0,
    with_chat_template: bool = True,
) -> Path:
    """Save a random-init Llama and its tokenizer to `out_dir`; return `out_dir`.

    Deterministic in (`texts`, sizes, `seed`). `with_chat_template=False` saves the tokenizer
    without a chat template, to exercise the fallback.
    """
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tiny_tokenizer(texts, vocab_size)
    if not with_chat_template:
        tokenizer.chat_template = None
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 2,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=num_heads,
        max_position_embeddings=max_positions,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir


def _texts_from_files(paths: list[Path]) -> list[str]:
    texts: list[str] = []
    for p in paths:
        for line in p.read_text(encoding="utf-8").splitlines():
            try:
                obj = json.loads(line)
            except json.JSONDecodeError:
                texts.append(line)
                continue
            if isinstance(obj, dict) and isinstance(obj.get("messages"), list):
                texts.extend(str(m.get("content", "")) for m in obj["messages"])
            else:
                texts.append(line)
    return texts


def main(argv: list[str] | None = None) -> int:
    """CLI: build the tiny model in OUT_DIR from text files (chat JSONL or plain text)."""
    parser = argparse.ArgumentParser(prog="python -m runtime.train.tiny", description=__doc__)
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--text-file", type=Path, action="append", default=[])
    parser.add_argument("--vocab-size", type=int, default=512)
    parser.add_argument("--hidden-size", type=int, default=64)
    parser.add_argument("--num-layers", type=int, default=2)
    args = parser.parse_args(argv)
    build_tiny_model(
        args.out_dir,
        _texts_from_files(args.text_file),
        vocab_size=args.vocab_size,
        hidden_size=args.hidden_size,
        num_layers=args.num_layers,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
