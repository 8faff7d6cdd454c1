"""Fixtures for the fine-tuning tests: ~60 chat rows and a tiny model built from their text."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
ALPACA = Path("/work/shared/data/alpaca_data_subset5000_pr152.json")


def _rows(n: int) -> list[dict[str, str]]:
    """`n` (instruction, input, response) rows: the shared Alpaca subset if present, else made."""
    if ALPACA.is_file():
        data: list[dict[str, str]] = json.loads(ALPACA.read_text(encoding="utf-8"))[:n]
        return [
            {
                "id": f"a{i}",
                "instruction": r["instruction"],
                "input": r["input"],
                "response": r["output"],
            }
            for i, r in enumerate(data)
        ]
    words = ["sea", "wave", "fox", "prime", "list", "sort", "poem", "tip", "sleep", "blue"]
    return [
        {
            "id": f"g{i}",
            "instruction": f"Repeat the word {words[i % len(words)]} twice.",
            "input": "",
            "response": f"{words[i % len(words)]} {words[i % len(words)]}",
        }
        for i in range(n)
    ]


def chat(row: dict[str, str]) -> dict[str, Any]:
    user = row["instruction"] + (f"\n\n{row['input']}" if row["input"] else "")
    return {
        "messages": [
            {"role": "user", "content": user},
            {"role": "assistant", "content": row["response"]},
        ]
    }


@pytest.fixture(scope="session")
def shard_rows() -> list[dict[str, str]]:
    return _rows(60)


@pytest.fixture(scope="session")
def chat_files(
    tmp_path_factory: pytest.TempPathFactory, shard_rows: list[dict[str, str]]
) -> tuple[Path, Path]:
    """(train.jsonl with 50 conversations, eval.jsonl with 10)."""
    d = tmp_path_factory.mktemp("chat")
    train, ev = d / "train.jsonl", d / "eval.jsonl"
    train.write_text("".join(json.dumps(chat(r)) + "\n" for r in shard_rows[:50]), "utf-8")
    ev.write_text("".join(json.dumps(chat(r)) + "\n" for r in shard_rows[50:]), "utf-8")
    return train, ev


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory, shard_rows: list[dict[str, str]]) -> Path:
    """A 2-layer random-init Llama + BPE tokenizer trained on the rows' text (read-only)."""
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from runtime.train.tiny import build_tiny_model

    texts = [t for r in shard_rows for t in (r["instruction"], r["input"], r["response"]) if t]
    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "model", texts)


@pytest.fixture
def train_config(tiny_model: Path, chat_files: tuple[Path, Path], tmp_path: Path) -> dict[str, Any]:
    """A `tiny`-preset config mapping (JSON-ready) writing to a fresh output dir."""
    train, ev = chat_files
    return {
        "preset": "tiny",
        "model_dir": str(tiny_model),
        "train_files": [str(train)],
        "eval_files": [str(ev)],
        "output_dir": str(tmp_path / "out"),
        "max_length": 128,
    }
