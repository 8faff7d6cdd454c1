from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from agents.judge.gsm8k import (
    extract_final_number,
    is_correct,
    load_gsm8k,
    normalize_number,
    reference_number,
    score_gsm8k,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("She makes 9 * 2 = 18 dollars.", "18", id="last-number-trailing-period"),
        pytest.param("Steps 1, 2 and 3.\n#### 42\nThen 7.", "42", id="hashes-win"),
        pytest.param("So the total is \\boxed{1,250}. Check: 3", "1250", id="boxed"),
        pytest.param("The answer is $1,000,000.", "1000000", id="dollars-commas"),
        pytest.param("The answer is: -7 degrees, not 3", "-7", id="answer-is-negative"),
        pytest.param("It drops to -12.", "-12", id="negative"),
        pytest.param("Total: 3.50 dollars", "3.5", id="decimal"),
        pytest.param("Costs 5.00", "5", id="integral-decimal"),
        pytest.param("10-3=7", "7", id="subtraction-is-not-a-sign"),
        pytest.param("It is .5 of it", "0.5", id="leading-dot"),
        pytest.param("**Answer: 15**", "15", id="markdown"),
        pytest.param("no numbers here", None, id="none"),
        pytest.param("", None, id="empty"),
        pytest.param("#### 2,125", "2125", id="reference-with-comma"),
    ],
)
def test_extract_final_number(text: str, expected: str | None) -> None:
    assert extract_final_number(text) == expected


def test_normalize_number_rejects_garbage() -> None:
    assert normalize_number("inf") is None
    assert normalize_number("abc") is None
    assert normalize_number("$ 1,200.50") == "1200.5"


def test_exact_match_compares_values_not_strings() -> None:
    assert is_correct("The answer is $18.00.", "Janet sells 9 eggs.\n#### 18")
    assert not is_correct("The answer is 17.", "#### 18")
    assert not is_correct("I do not know.", "#### 18")
    assert is_correct("5,600 in total", "5600")


def test_reference_without_hashes_raises() -> None:
    with pytest.raises(ValueError, match="####"):
        reference_number("just 18")


def test_score_counts_missing_numbers() -> None:
    score = score_gsm8k([("18", "#### 18"), ("nothing", "#### 3"), ("4", "#### 5")])
    assert (score.n, score.correct, score.no_number) == (3, 1, 1)
    assert score.accuracy == pytest.approx(1 / 3)


def test_every_real_reference_answer_extracts(data_file: Callable[[str], Path]) -> None:
    path = data_file("gsm8k_test.jsonl")
    items = load_gsm8k(path)
    assert len(items) == 1319
    for item in items:
        tail = item.answer.rsplit("####", 1)[1].strip().replace(",", "")
        assert item.reference == str(int(tail))
        assert extract_final_number(item.answer) == item.reference
        assert is_correct(item.answer, item.answer)
    answers = [json.loads(line)["answer"] for line in path.read_text().splitlines()]
    assert score_gsm8k((a, a) for a in answers).accuracy == 1.0


def test_real_answers_without_hashes_still_score_by_last_number(
    data_file: Callable[[str], Path],
) -> None:
    items = load_gsm8k(data_file("gsm8k_test.jsonl"))
    # A model echoing the worked solution with the final sentence "The answer is N." scores right.
    preds = [
        (item.answer.rsplit("####", 1)[0] + f"The answer is {item.reference}.", item.answer)
        for item in items
    ]
    assert score_gsm8k(preds).correct == len(items)
