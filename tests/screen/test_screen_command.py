"""`python -m runtime screen`: the eliminator over a file of evolutions (no LLM: rule 1's LLM
check off through a config, so the test is offline and instant)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from runtime.cli import main

CONFIG = """
[llm.s]
backend = "scripted"
model = "scripted"

[agents.eliminator]
impl = "eliminate.wizardlm"
llm = "s"
params = { rules = { information_gain = { use_llm = false } } }
"""

ROWS = [
    {"parent": "Write a poem about the sea.", "evolved": "Write a poem about the sea.", "id": 1},
    {"parent": "Is 91 prime?", "evolved": "D) If the grass is dry, then it does not rain.",
     "id": 2},
    {"parent": "Write a poem about the sea.",
     "evolved": "Write a four-line rhyming poem about the sea that mentions a lighthouse.",
     "response": "I apologize, but I can't assist with that.", "id": 3},
    {"parent": "Write a poem about the sea.",
     "evolved": "Write a four-line rhyming poem about the sea that mentions a lighthouse.",
     "response": "Waves roll in beneath the light, the keeper's lamp burns through the night.",
     "id": 4},
]


def _write(path: Path, rows: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_screen_writes_every_row_back_with_its_verdict(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text(CONFIG, encoding="utf-8")
    out = tmp_path / "out.jsonl"
    code = main(["screen", str(_write(tmp_path / "in.jsonl", ROWS)), "--out", str(out),
                 "--config", str(config), "--no-progress"])
    assert code == 0
    got = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in got] == [1, 2, 3, 4]
    assert [r["verdict"] for r in got] == ["rejected", "rejected", "rejected", "accepted"]
    assert [r["rule"] for r in got] == [
        "no_information_gain", "answer_fragment", "refusal_response", None,
    ]


def test_a_missing_field_is_exit_2_naming_the_line_and_nothing_is_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = [{"parent": "a b c", "evolved": "Write a b c twice."}, {"original": "x", "new": "y"}]
    out = tmp_path / "out.jsonl"
    code = main(["screen", str(_write(tmp_path / "in.jsonl", rows)), "--out", str(out)])
    assert code == 2
    err = capsys.readouterr().err
    assert "in.jsonl:2" in err
    assert "evolved" in err
    assert not out.exists()


def test_field_mapping_names_other_columns(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text(CONFIG, encoding="utf-8")
    rows = [{"original": "Write a poem about the sea.", "new": "Write a poem about the sea."}]
    out = tmp_path / "out.jsonl"
    code = main(["screen", str(_write(tmp_path / "in.jsonl", rows)), "--out", str(out),
                 "--config", str(config), "--field", "parent=original", "--field", "evolved=new",
                 "--no-progress"])
    assert code == 0
    assert json.loads(out.read_text())["verdict"] == "rejected"
