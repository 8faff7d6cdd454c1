"""13-gram contamination check of instructions against benchmark questions.

Texts are normalised (Unicode NFKC, lower case, every run of non-alphanumeric characters becomes
one space) and split into words. A benchmark item is indexed by its word n-grams (n = 13 by
default); an item shorter than n words is indexed by its whole word sequence, so a short question
copied verbatim is still found. A checked text is contaminated by an item when they share at least
`min_overlap` n-grams (1 by default, as in the GPT-3 paper's check).

Memory is O(total benchmark n-grams); checking is O(words of the checked text) per text.
"""

from __future__ import annotations

import gzip
import json
import re
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

__all__ = [
    "BenchmarkItem",
    "ContaminationHit",
    "ContaminationIndex",
    "ContaminationReport",
    "load_benchmark_items",
    "normalize_words",
    "word_ngrams",
]

_NON_ALNUM_RE = re.compile(r"[\W_]+")
_TEXT_KEYS = ("turns", "question", "prompt", "instruction", "text")
_ID_KEYS = ("question_id", "task_id", "id")


def normalize_words(text: str) -> list[str]:
    """NFKC, lower case, alphanumeric words only."""
    return _NON_ALNUM_RE.sub(" ", unicodedata.normalize("NFKC", text).lower()).split()


def word_ngrams(words: list[str], n: int) -> set[tuple[str, ...]]:
    """All contiguous n-word windows (none when there are fewer than n words)."""
    return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}


class BenchmarkItem(BaseModel):
    """One benchmark question (all turns joined)."""

    model_config = ConfigDict(frozen=True)

    benchmark: str
    item_id: str
    text: str


class ContaminationHit(BaseModel):
    """A checked text sharing n-grams with a benchmark item."""

    model_config = ConfigDict(frozen=True)

    text_id: str
    benchmark: str
    item_id: str
    overlapping_ngrams: int
    item_ngrams: int

    @property
    def item_overlap(self) -> float:
        """Share of the benchmark item's n-grams found in the checked text."""
        return self.overlapping_ngrams / self.item_ngrams if self.item_ngrams else 0.0


class ContaminationReport(BaseModel):
    """All hits of a check, and how many checked texts were contaminated per benchmark."""

    model_config = ConfigDict(frozen=True)

    n: int
    ngram: int
    checked: int
    contaminated: int
    by_benchmark: dict[str, int]
    hits: list[ContaminationHit]


def _record_text(rec: dict[str, Any]) -> str | None:
    for key in _TEXT_KEYS:
        value = rec.get(key)
        if isinstance(value, list):
            return "\n".join(str(v) for v in value)
        if isinstance(value, str):
            extra = rec.get("input") if key == "instruction" else None
            return f"{value}\n{extra}" if isinstance(extra, str) and extra else value
    return None


def load_benchmark_items(path: Path | str, benchmark: str | None = None) -> list[BenchmarkItem]:
    """Questions of a benchmark file: `.jsonl`, `.json` (a list) or either gzipped.

    The text is taken from `turns` (MT-Bench, Vicuna), `question` (GSM8K), `prompt` (HumanEval),
    `instruction` (+ `input`) or `text`; the id from `question_id`, `task_id`, `id` or the record
    index. `benchmark` defaults to the file name without extensions.
    """
    path = Path(path)
    raw = path.read_bytes()
    if path.suffix == ".gz":
        raw = gzip.decompress(raw)
    text = raw.decode("utf-8")
    name = benchmark or path.name.split(".")[0]
    is_json_list = ".json" in path.suffixes and ".jsonl" not in path.suffixes
    records: list[Any] = (
        json.loads(text)
        if is_json_list
        else [json.loads(x) for x in text.splitlines() if x.strip()]
    )
    items: list[BenchmarkItem] = []
    for index, rec in enumerate(records):
        if not isinstance(rec, dict):
            continue
        body = _record_text(rec)
        if body is None:
            continue
        item_id = next((str(rec[k]) for k in _ID_KEYS if k in rec), str(index))
        items.append(BenchmarkItem(benchmark=name, item_id=item_id, text=body))
    return items


class ContaminationIndex:
    """An n-gram index of benchmark items; `check` finds texts that share n-grams with them."""

    def __init__(self, items: Iterable[BenchmarkItem], *, n: int = 13) -> None:
        if n < 1:
            raise ValueError("n must be at least 1")
        self.n = n
        self.items: list[BenchmarkItem] = []
        self._grams: dict[tuple[str, ...], set[int]] = defaultdict(set)
        self._sizes: list[int] = []
        self._lengths: set[int] = set()
        for item in items:
            words = normalize_words(item.text)
            if not words:
                continue
            grams = word_ngrams(words, n) if len(words) >= n else {tuple(words)}
            idx = len(self.items)
            self.items.append(item)
            self._sizes.append(len(grams))
            self._lengths.add(min(n, len(words)))
            for g in grams:
                self._grams[g].add(idx)

    def statistics(self) -> dict[str, int]:
        """Indexed items and distinct n-grams."""
        return {"items": len(self.items), "ngrams": len(self._grams)}

    def hits_for(self, text_id: str, text: str, *, min_overlap: int = 1) -> list[ContaminationHit]:
        """Benchmark items sharing at least `min_overlap` n-grams with `text`, most first."""
        words = normalize_words(text)
        shared: Counter[int] = Counter()
        for length in self._lengths:
            for g in word_ngrams(words, length):
                for idx in self._grams.get(g, ()):
                    shared[idx] += 1
        return [
            ContaminationHit(
                text_id=text_id,
                benchmark=self.items[idx].benchmark,
                item_id=self.items[idx].item_id,
                overlapping_ngrams=count,
                item_ngrams=self._sizes[idx],
            )
            for idx, count in shared.most_common()
            if count >= min_overlap
        ]

    def check(
        self, texts: Iterable[tuple[str, str]], *, min_overlap: int = 1
    ) -> ContaminationReport:
        """Check `(text_id, text)` pairs; each contaminated text counts once per benchmark."""
        hits: list[ContaminationHit] = []
        checked = contaminated = 0
        by_benchmark: Counter[str] = Counter()
        for text_id, text in texts:
            checked += 1
            found = self.hits_for(text_id, text, min_overlap=min_overlap)
            if found:
                contaminated += 1
                by_benchmark.update({h.benchmark for h in found})
                hits.extend(found)
        return ContaminationReport(
            n=len(self.items),
            ngram=self.n,
            checked=checked,
            contaminated=contaminated,
            by_benchmark=dict(by_benchmark),
            hits=hits,
        )
