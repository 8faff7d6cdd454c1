"""GSM8K exact-match scoring from the final number of an answer.

`extract_final_number` looks, in order, for the last `#### N` (GSM8K's own format), the last
`\\boxed{N}`, the last "answer is N" / "answer: N", and finally the last number anywhere. Numbers
may carry thousands separators (`1,000`), a `$`, a sign and decimals; a trailing period is not part
of the number. The result is a canonical decimal string (`"1000"`, `"3.5"`, `"-2"`), so `5`, `5.0`
and `$5.00` compare equal. A text without any number gives `None`, which scores as wrong.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from decimal import Decimal, InvalidOperation
from pathlib import Path

from pydantic import BaseModel, ConfigDict

__all__ = [
    "GSM8KItem",
    "GSM8KScore",
    "extract_final_number",
    "is_correct",
    "load_gsm8k",
    "normalize_number",
    "reference_number",
    "score_gsm8k",
]

_NUMBER = (
    r"(?P<neg>(?<![\w)\]])-\s?)?\$?\s?(?P<neg2>-)?"
    r"(?P<num>(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|\.\d+)"
)
_NUMBER_RE = re.compile(_NUMBER)
_HASHES_RE = re.compile(r"####\s*" + _NUMBER)
_BOXED_RE = re.compile(r"\\boxed\{([^{}]*)\}")
_ANSWER_IS_RE = re.compile(
    r"answer(?:\s+is\s*[:=]?|\s*[:=])\s*(?:\*\*)?\s*" + _NUMBER, re.IGNORECASE
)


def normalize_number(token: str) -> str | None:
    """Canonical decimal string of a number token (`"$1,200.50"` → `"1200.5"`), or `None`."""
    cleaned = token.strip().rstrip(".").replace(",", "").replace("$", "").replace(" ", "")
    try:
        value = Decimal(cleaned)
    except InvalidOperation:
        return None
    if not value.is_finite():
        return None
    if value == value.to_integral_value():
        return str(int(value))
    return format(value.normalize(), "f")


def _from_match(match: re.Match[str]) -> str | None:
    sign = "-" if (match.group("neg") or match.group("neg2")) else ""
    return normalize_number(sign + match.group("num"))


def _last(pattern: re.Pattern[str], text: str) -> re.Match[str] | None:
    matches = list(pattern.finditer(text))
    return matches[-1] if matches else None


def extract_final_number(text: str) -> str | None:
    """The final numeric answer of `text` as a canonical decimal string, or `None`."""
    match = _last(_HASHES_RE, text)
    if match is not None:
        return _from_match(match)
    boxed = _last(_BOXED_RE, text)
    if boxed is not None:
        inner = _last(_NUMBER_RE, boxed.group(1))
        if inner is not None:
            return _from_match(inner)
    for pattern in (_ANSWER_IS_RE, _NUMBER_RE):
        match = _last(pattern, text)
        if match is not None:
            return _from_match(match)
    return None


def reference_number(answer_field: str) -> str:
    """The number after `####` in a GSM8K reference answer; `ValueError` when there is none."""
    match = _last(_HASHES_RE, answer_field)
    value = _from_match(match) if match is not None else None
    if value is None:
        raise ValueError(f"no '#### N' in reference answer: {answer_field[-80:]!r}")
    return value


def is_correct(prediction: str, reference: str) -> bool:
    """Exact match of the prediction's final number with the reference number (a canonical
    string or a full GSM8K answer with `####`)."""
    predicted = extract_final_number(prediction)
    expected = reference_number(reference) if "####" in reference else normalize_number(reference)
    return predicted is not None and predicted == expected


class GSM8KItem(BaseModel):
    """One GSM8K problem with its canonical reference number."""

    model_config = ConfigDict(frozen=True)

    index: int
    question: str
    answer: str
    reference: str


class GSM8KScore(BaseModel):
    """Exact-match accuracy; `no_number` counts predictions without any number."""

    model_config = ConfigDict(frozen=True)

    n: int
    correct: int
    no_number: int
    accuracy: float | None


def load_gsm8k(path: Path | str) -> list[GSM8KItem]:
    """Read a GSM8K `.jsonl` file (`question`, `answer` with `#### N`)."""
    items: list[GSM8KItem] = []
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    for index, line in enumerate(line for line in lines if line.strip()):
        rec = json.loads(line)
        answer = str(rec["answer"])
        items.append(
            GSM8KItem(
                index=index,
                question=str(rec["question"]),
                answer=answer,
                reference=reference_number(answer),
            )
        )
    return items


def score_gsm8k(pairs: Iterable[tuple[str, str]]) -> GSM8KScore:
    """Score `(prediction text, reference)` pairs by exact match of the final number."""
    n = correct = no_number = 0
    for prediction, reference in pairs:
        n += 1
        if extract_final_number(prediction) is None:
            no_number += 1
        elif is_correct(prediction, reference):
            correct += 1
    return GSM8KScore(
        n=n, correct=correct, no_number=no_number, accuracy=correct / n if n else None
    )
