"""The analysis parser keeps the short case labels the analyst shows the model."""

from __future__ import annotations

import pytest

from agents.autoevol.method_parsing import parse_analysis

LABELS = {f"case{n}" for n in range(1, 11)}


@pytest.mark.parametrize(
    ("line", "case_id", "step"),
    [
        pytest.param("FAILED case6 | step 1 | reworded only", "case6", 1, id="plain"),
        pytest.param("- **FAILED** case10 - step 2 - lost the table", "case10", 2, id="bold"),
        pytest.param("FAILED trajectory case3: drifted off topic", "case3", None, id="prefixed"),
        pytest.param("1. FAILED: case7 | step 1 | answered it", "case7", 1, id="numbered"),
    ],
)
def test_case_labels_are_not_split(line: str, case_id: str, step: int | None) -> None:
    result = parse_analysis(line, known_ids=LABELS)
    assert result.parseable
    assert [(case.id, case.step) for case in result.failures] == [(case_id, step)]
