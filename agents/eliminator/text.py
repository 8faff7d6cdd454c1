"""Cheap text analysis for the screening rules: words, content stems, material, instruction shape.

Everything here is pure and fast (regular expressions and sets, no model): the screening rules
built on it run before any LLM call. Word lists live in `prompts/*.txt` (one entry a line, `#`
comments) so users can read and extend them.

- `content_stems(text)`: the text's content words (stop words and punctuation removed,
  contractions expanded, crude suffix stemming), as a multiset-free set. "Can't" and "cannot",
  "poems" and "poem" give the same stems.
- `has_material(text)`: the text carries input material of its own (a table, code, JSON, a list,
  a quoted or colon-introduced passage of some length).
- `reads_as_instruction(text)`: a request or a question (an imperative at a sentence or clause
  start, a request opener, a question mark), as opposed to an answer, a statement or a fragment.
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path

__all__ = [
    "content_stems",
    "has_material",
    "load_word_list",
    "question_count",
    "reads_as_instruction",
    "stem",
    "words",
]

PROMPTS_DIR = Path(__file__).parent / "prompts"

_WORD_RE = re.compile(r"[^\W_]+(?:['\u2019][^\W_]+)*")
_CONTRACTIONS = (
    (re.compile(r"\bcan['\u2019]t\b"), "can not"),
    (re.compile(r"\bwon['\u2019]t\b"), "will not"),
    (re.compile(r"\bcannot\b"), "can not"),
    (re.compile(r"n['\u2019]t\b"), " not"),
    (re.compile(r"['\u2019]re\b"), " are"),
    (re.compile(r"['\u2019]ll\b"), " will"),
    (re.compile(r"['\u2019]ve\b"), " have"),
    (re.compile(r"['\u2019]m\b"), " am"),
    (re.compile(r"['\u2019]d\b"), " would"),
    (re.compile(r"['\u2019]s\b"), ""),
)
_SUFFIXES = ("ing", "ies", "ied", "es", "ed", "ly", "s")


@lru_cache(maxsize=32)
def load_word_list(path: Path) -> frozenset[str]:
    """The entries of a word-list file (one a line, lowercase, `#` comments); raises OSError."""
    lines = path.read_text(encoding="utf-8").splitlines()
    return frozenset(
        line.strip().lower().replace("\u2019", "'")
        for line in lines
        if line.strip() and not line.lstrip().startswith("#")
    )


def _builtin(name: str) -> frozenset[str]:
    return load_word_list(PROMPTS_DIR / name)


def words(text: str) -> list[str]:
    """Lowercase words of `text`, contractions expanded ("can't" → "can", "not")."""
    lowered = text.lower().replace("\u2019", "'")
    for pattern, replacement in _CONTRACTIONS:
        lowered = pattern.sub(replacement, lowered)
    return _WORD_RE.findall(lowered)


@lru_cache(maxsize=65536)
def stem(word: str) -> str:
    """A crude stem: common inflection suffixes cut from words of five letters or more."""
    if len(word) < 5 or word.isdigit():
        return word
    for suffix in _SUFFIXES:
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            base = word[: -len(suffix)]
            return base + "y" if suffix in ("ies", "ied") else base
    return word


def content_stems(text: str, stopwords: frozenset[str] | None = None) -> set[str]:
    """The stems of the words of `text` that are not stop words (numbers count as content)."""
    stop = stopwords if stopwords is not None else _builtin("function_words.txt")
    return {stem(w) for w in words(text) if w not in stop}


# ------------------------------------------------------------------ material

_TABLE_ROW_RE = re.compile(r"^\s*\|?[^|\n]+\|[^|\n]+\|", re.MULTILINE)
_INLINE_TABLE_RE = re.compile(r"(?:\|[^|\n]+){3,}\|")
_FENCE_RE = re.compile(r"```")
_JSON_RE = re.compile(r"[\[{][^\[\]{}]{15,}[\]}]")
_CODE_RE = re.compile(
    r"(?:\bdef \w+\(|\bfunction \w*\(|\bclass \w+|\breturn\b[^.\n]*;|=>|\bfor \w+ in\b|"
    r"\bSELECT\b.+\bFROM\b|#include|\bprint\(|console\.log|\w+\([^()\n]*\)\s*[{:;])"
)
_QUOTED_RE = re.compile(r"[\"“'«]([^\"”'»\n]{30,})[\"”'»]")
_AFTER_COLON_RE = re.compile(r":\s*(\S.{50,})", re.DOTALL)
_LIST_RE = re.compile(r"^\s*(?:[-*•]|\d+[.)])\s+\S", re.MULTILINE)


def has_material(text: str) -> bool:
    """True when `text` carries input material of its own: a table, code, JSON, a list, a quoted
    passage of 30+ characters, or 50+ characters after a colon, or several lines of data."""
    if _FENCE_RE.search(text) or _JSON_RE.search(text) or _CODE_RE.search(text):
        return True
    if len(_TABLE_ROW_RE.findall(text)) >= 2 or _INLINE_TABLE_RE.search(text):
        return True
    if len(_LIST_RE.findall(text)) >= 2 or _QUOTED_RE.search(text):
        return True
    if _AFTER_COLON_RE.search(text):
        return True
    lines = [line for line in text.splitlines() if line.strip()]
    return len(lines) >= 3


# ------------------------------------------------------------------ instruction shape

_CLAUSE_START_RE = re.compile(r"(?:^|[.!?;:\n]\s*|,\s+|\band\s+|\bthen\s+)([A-Za-z']+)")
_ANSWER_OPENER_RE = re.compile(
    r"^\W*(?:answer|solution|result|output|response|explanation|step\s*1|final answer)\s*[:=-]"
    r"|^\W*(?:the\s+answer\s+is|the\s+result\s+is|here\s+(?:is|are)\b(?!\s+(?:a|an|the|some|"
    r"two|three|\d+)\s+\w+\s+(?:of|to|for|about|that|you|i)\b))",
    re.IGNORECASE,
)


def question_count(text: str) -> int:
    """How many questions `text` asks (question marks outside code fences)."""
    return re.sub(r"```.*?```", "", text, flags=re.DOTALL).count("?")


def reads_as_instruction(text: str) -> bool:
    """True when `text` reads as a request or a question, not as an answer or a statement.

    A request: a question mark; or, at the start of the text, of a sentence or of a clause, an
    imperative verb (`imperative_verbs.txt`) or a request opener (`request_openers.txt`:
    "please", "can you", "imagine", "given", ...). Texts that open like an answer ("Answer:",
    "The answer is", "Step 1:") do not count, whatever follows.
    """
    stripped = text.strip()
    if not stripped or _ANSWER_OPENER_RE.search(stripped):
        return False
    if "?" in stripped:
        return True
    verbs, openers = _builtin("imperative_verbs.txt"), _builtin("request_openers.txt")
    for match in _CLAUSE_START_RE.finditer(stripped):
        word = match.group(1).lower()
        if word in verbs or word in openers:
            return True
    lowered = stripped.lower()
    return any(phrase in lowered for phrase in _builtin("request_phrases.txt"))
