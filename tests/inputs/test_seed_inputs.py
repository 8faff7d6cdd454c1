"""Seed loaders: real public data files, every format, broken records, stable ids, streaming."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runtime.errors import InputDataError
from runtime.inputs import SeedReader, SeedRecord, detect_container, read_seeds

DATA = Path(__file__).parents[2].parent / "shared" / "data"
REPO = Path(__file__).parents[2]


def shared(name: str) -> Path:
    path = DATA / name
    if not path.is_file():
        pytest.skip(f"shared data file {path} is absent (it lives outside the repository)")
    return path


def write_lines(path: Path, *lines: str) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


# ------------------------------------------------------------------ real files


def test_alpaca_json_array_subset() -> None:
    records = list(read_seeds(shared("alpaca_data_subset5000_pr152.json")))
    assert len(records) == 5000
    assert len({r.id for r in records}) == 5000
    with_input = [r for r in records if r.input]
    assert with_input
    assert all(r.output is not None for r in records)
    assert records[0].source == "alpaca_data_subset5000_pr152.json"


def test_pretty_printed_json_array_reports_real_line_numbers() -> None:
    records = list(read_seeds(shared("code_alpaca_2k.json")))
    assert len(records) == 2017
    lines = (DATA / "code_alpaca_2k.json").read_text(encoding="utf-8").splitlines()
    second = records[1]
    assert lines[second.line - 1].strip() == "{"
    assert second.instruction in lines[second.line]


def test_self_instruct_seed_tasks_take_the_first_instance() -> None:
    path = shared("alpaca_seed_tasks_175.jsonl")
    records = list(read_seeds(path))
    assert len(records) == 175
    first_raw = json.loads(path.read_text(encoding="utf-8").splitlines()[0])
    assert records[0].instruction == first_raw["instruction"].strip()
    assert records[0].output == first_raw["instances"][0]["output"]
    assert records[0].line == 1


def test_gsm8k_with_a_field_mapping() -> None:
    reader = SeedReader(
        shared("gsm8k_train.jsonl"), mapping={"instruction": "question", "output": "answer"}
    )
    records = list(reader)
    assert len(records) == 7473
    assert reader.stats.yielded == 7473
    assert reader.stats.skipped == 0
    assert all(r.output and "####" in r.output for r in records[:50])


@pytest.mark.parametrize("name", ["mt_bench_questions_80.jsonl", "vicuna_bench_questions_80.jsonl"])
def test_question_sets_use_the_first_turn(name: str) -> None:
    path = shared(name)
    records = list(read_seeds(path))
    assert len(records) == 80
    first_raw = json.loads(path.read_text(encoding="utf-8").splitlines()[0])
    assert records[0].instruction == first_raw["turns"][0].strip()


def test_mapping_with_a_dotted_path() -> None:
    records = list(
        read_seeds(shared("mt_bench_questions_80.jsonl"), mapping={"instruction": "turns.1"})
    )
    assert len(records) == 80
    first_raw = json.loads(
        (DATA / "mt_bench_questions_80.jsonl").read_text(encoding="utf-8").splitlines()[0]
    )
    assert records[0].instruction == first_raw["turns"][1].strip()


def test_gzip_jsonl_is_read() -> None:
    records = list(read_seeds(shared("HumanEval.jsonl.gz"), mapping={"instruction": "prompt"}))
    assert len(records) == 164


def test_project_seed_set_loads_cleanly() -> None:
    reader = SeedReader(REPO / "seeds" / "general.jsonl")
    records = list(reader)
    assert len(records) >= 120
    assert reader.stats.skipped == 0
    assert len({r.instruction for r in records}) == len(records)
    assert sum(1 for r in records if r.input) >= 15


# ------------------------------------------------------------------ formats on temp files


def test_alpaca_jsonl_with_missing_input_and_output(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "a.jsonl", json.dumps({"instruction": " Say hi. "}))
    [record] = read_seeds(path)
    assert (record.instruction, record.input, record.output) == ("Say hi.", "", None)


def test_sharegpt_first_human_turn_and_its_reply(tmp_path: Path) -> None:
    conv = {
        "conversations": [
            {"from": "system", "value": "Be nice."},
            {"from": "human", "value": "Name a planet."},
            {"from": "gpt", "value": "Mars."},
            {"from": "human", "value": "Another?"},
        ]
    }
    [record] = read_seeds(write_lines(tmp_path / "s.jsonl", json.dumps(conv)))
    assert (record.instruction, record.output) == ("Name a planet.", "Mars.")


def test_chat_messages_with_content_parts(tmp_path: Path) -> None:
    row = {
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "Count to three."}]},
            {"role": "assistant", "content": "1, 2, 3"},
        ]
    }
    [record] = read_seeds(write_lines(tmp_path / "m.json", json.dumps([row])))
    assert (record.instruction, record.output) == ("Count to three.", "1, 2, 3")


def test_plain_text_skips_blank_lines_and_keeps_line_numbers(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "p.txt", "Write a haiku.", "", "   ", "List three fruits.")
    records = list(read_seeds(path))
    assert [(r.instruction, r.line, r.position) for r in records] == [
        ("Write a haiku.", 1, 0),
        ("List three fruits.", 4, 1),
    ]


def test_csv_with_mapping_and_multiline_cells(tmp_path: Path) -> None:
    path = tmp_path / "q.csv"
    path.write_text('question,answer\n"Two\nlines?",yes\nThird?,no\n', encoding="utf-8")
    records = list(read_seeds(path, mapping={"instruction": "question", "output": "answer"}))
    assert [(r.instruction, r.output, r.line) for r in records] == [
        ("Two\nlines?", "yes", 2),
        ("Third?", "no", 4),
    ]


def test_csv_with_an_instruction_column_needs_no_mapping(tmp_path: Path) -> None:
    path = tmp_path / "q.tsv"
    path.write_text("instruction\tinput\nSort it.\t3 1 2\n", encoding="utf-8")
    [record] = read_seeds(path, format="alpaca")
    assert (record.instruction, record.input) == ("Sort it.", "3 1 2")


def test_format_override_beats_detection(tmp_path: Path) -> None:
    row = {"instruction": "Outer", "turns": ["Inner"]}
    path = write_lines(tmp_path / "o.jsonl", json.dumps(row))
    assert next(read_seeds(path)).instruction == "Outer"
    assert next(read_seeds(path, format="turns")).instruction == "Inner"


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("x.json", "[]", "json"),
        ("x.jsonl", "{}", "jsonl"),
        ("x.data", "  [\n{}]", "json"),
        ("x.data", '{"a": 1}\n', "jsonl"),
        ("x.data", "hello", "text"),
        ("x.CSV", "a,b", "csv"),
    ],
)
def test_detect_container(tmp_path: Path, name: str, content: str, expected: str) -> None:
    path = tmp_path / name
    path.write_text(content)
    assert detect_container(path) == expected


def test_utf8_bom_is_ignored(tmp_path: Path) -> None:
    path = tmp_path / "b.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps({"instruction": "Hi"}).encode() + b"\n")
    assert next(read_seeds(path)).instruction == "Hi"


# ------------------------------------------------------------------ stable ids


def test_ids_are_stable_and_depend_on_source_position_and_content(tmp_path: Path) -> None:
    path = write_lines(
        tmp_path / "s.jsonl",
        json.dumps({"instruction": "Same"}),
        json.dumps({"instruction": "Same"}),
    )
    first = [r.id for r in read_seeds(path)]
    assert first == [r.id for r in read_seeds(path)]
    assert len(set(first)) == 2
    renamed = [r.id for r in read_seeds(path, source="other.jsonl")]
    assert set(renamed).isdisjoint(first)
    write_lines(path, json.dumps({"instruction": "Same"}), json.dumps({"instruction": "Changed"}))
    changed = [r.id for r in read_seeds(path)]
    assert changed[0] == first[0]
    assert changed[1] != first[1]


def test_blank_and_skipped_records_do_not_shift_positions_of_later_good_ones(
    tmp_path: Path,
) -> None:
    good = json.dumps({"instruction": "Good"})
    path = write_lines(tmp_path / "g.jsonl", good, "", "{broken", good)
    records = list(read_seeds(path, on_bad_record="skip"))
    assert [r.position for r in records] == [0, 1]
    assert [r.line for r in records] == [1, 4]


# ------------------------------------------------------------------ malformed records


BROKEN = [
    pytest.param("{not json", 2, "", id="invalid-json"),
    pytest.param(json.dumps({"input": "x"}), 2, "instruction", id="missing-instruction"),
    pytest.param(json.dumps({"instruction": "  "}), 2, "instruction", id="empty-instruction"),
    pytest.param(json.dumps({"instruction": 3}), 2, "instruction", id="wrong-type"),
    pytest.param(json.dumps({"instruction": "x", "input": ["a"]}), 2, "input", id="bad-input"),
    pytest.param(json.dumps(["a list"]), 2, "", id="not-an-object"),
]


@pytest.mark.parametrize(("bad", "line", "field"), BROKEN)
def test_malformed_record_names_file_line_and_field(
    tmp_path: Path, bad: str, line: int, field: str
) -> None:
    path = write_lines(tmp_path / "b.jsonl", json.dumps({"instruction": "ok"}), bad)
    with pytest.raises(InputDataError) as info:
        list(read_seeds(path, format="alpaca"))
    err = info.value
    assert (err.file, err.line, err.field) == (path, line, field)
    assert str(path) in str(err)
    assert f":{line}" in str(err)


@pytest.mark.parametrize(("bad", "line", "field"), BROKEN)
def test_skip_counts_malformed_records(tmp_path: Path, bad: str, line: int, field: str) -> None:
    del line, field
    path = write_lines(
        tmp_path / "b.jsonl",
        json.dumps({"instruction": "ok"}),
        bad,
        json.dumps({"instruction": "also ok"}),
    )
    reader = SeedReader(path, format="alpaca", on_bad_record="skip")
    assert [r.instruction for r in reader] == ["ok", "also ok"]
    assert (reader.stats.read, reader.stats.yielded, reader.stats.skipped) == (3, 2, 1)
    assert len(reader.stats.errors) == 1
    assert ":2" in reader.stats.errors[0]


@pytest.mark.parametrize(
    ("row", "field"),
    [
        pytest.param({"conversations": [{"from": "gpt", "value": "hi"}]}, "conversations"),
        pytest.param({"conversations": "nope"}, "conversations"),
        pytest.param({"messages": [{"role": "user", "content": 5}]}, "messages.0.content"),
        pytest.param({"instruction": "x", "instances": "nope"}, "instances"),
        pytest.param({"turns": []}, "turns"),
    ],
)
def test_malformed_chat_and_question_records(
    tmp_path: Path, row: dict[str, object], field: str
) -> None:
    path = write_lines(tmp_path / "c.jsonl", json.dumps(row))
    with pytest.raises(InputDataError) as info:
        list(read_seeds(path))
    assert (info.value.line, info.value.field) == (1, field)


def test_mapping_missing_field_is_bad_record(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "m.jsonl", json.dumps({"q": "fine"}), json.dumps({"x": 1}))
    with pytest.raises(InputDataError) as info:
        list(read_seeds(path, mapping={"instruction": "q"}))
    assert (info.value.line, info.value.field) == (2, "q")


def test_mapping_must_name_the_instruction(tmp_path: Path) -> None:
    with pytest.raises(InputDataError, match="instruction"):
        SeedReader(tmp_path / "x.jsonl", mapping={"output": "answer"})


def test_broken_json_array_fails_with_its_line_even_when_skipping(tmp_path: Path) -> None:
    path = tmp_path / "a.json"
    path.write_text('[\n{"instruction": "ok"},\n{"instruction": oops}\n]\n')
    reader = SeedReader(path, on_bad_record="skip")
    with pytest.raises(InputDataError) as info:
        list(reader)
    assert info.value.line == 3


def test_bad_record_inside_json_array_is_skippable(tmp_path: Path) -> None:
    path = tmp_path / "a.json"
    path.write_text('[\n{"instruction": "ok"},\n{"instruction": ""},\n{"instruction": "b"}\n]')
    reader = SeedReader(path, on_bad_record="skip")
    assert [(r.instruction, r.line) for r in reader] == [("ok", 2), ("b", 4)]
    assert reader.stats.skipped == 1


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InputDataError, match="not found"):
        list(read_seeds(tmp_path / "nope.jsonl"))


def test_undecodable_file_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "latin.txt"
    path.write_bytes(b"fine line\ncaf\xe9\n")
    with pytest.raises(InputDataError, match="UTF-8") as info:
        list(read_seeds(path))
    assert info.value.line == 2


def test_undecodable_line_can_be_skipped(tmp_path: Path) -> None:
    path = tmp_path / "latin.txt"
    path.write_bytes(b"fine line\ncaf\xe9\nlast line\n")
    reader = SeedReader(path, on_bad_record="skip")
    assert [(r.instruction, r.line) for r in reader] == [("fine line", 1), ("last line", 3)]
    assert reader.stats.skipped == 1


def test_unknown_schema_is_explained(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "u.jsonl", json.dumps({"question": "?"}))
    with pytest.raises(InputDataError, match="mapping"):
        list(read_seeds(path))


# ------------------------------------------------------------------ streaming


def test_jsonl_is_streamed_not_read_whole(tmp_path: Path) -> None:
    path = tmp_path / "big.jsonl"
    with path.open("w", encoding="utf-8") as fh:
        for i in range(1000):
            fh.write(json.dumps({"instruction": f"Task {i}"}) + "\n")
    reader = SeedReader(path)
    stream: Iterator[SeedRecord] = iter(reader)
    assert next(stream).instruction == "Task 0"
    assert reader.stats.read == 1
    with path.open("a", encoding="utf-8") as fh:
        fh.write(json.dumps({"instruction": "Appended later"}) + "\n")
    assert list(stream)[-1].instruction == "Appended later"


def test_gzip_container_detection(tmp_path: Path) -> None:
    path = tmp_path / "g.jsonl.gz"
    with gzip.open(path, "wt", encoding="utf-8") as fh:
        fh.write(json.dumps({"instruction": "Zipped"}) + "\n")
    assert detect_container(path) == "jsonl"
    assert next(read_seeds(path)).instruction == "Zipped"


# ------------------------------------------------------------------ fuzz

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)
RECORDS = st.dictionaries(
    st.sampled_from(
        ["instruction", "input", "output", "instances", "conversations", "messages", "turns", "x"]
    ),
    JSON_VALUES,
    max_size=4,
)
LINES = st.lists(
    st.one_of(RECORDS.map(json.dumps), st.text(max_size=30).map(lambda s: s.replace("\n", " "))),
    max_size=8,
)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(lines=LINES, fmt=st.sampled_from(["auto", "alpaca", "sharegpt", "messages", "turns"]))
def test_fuzz_jsonl_only_ever_raises_input_data_error(
    tmp_path: Path, lines: list[str], fmt: str
) -> None:
    path = tmp_path / "fuzz.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    skipping = SeedReader(path, format=fmt, on_bad_record="skip")  # type: ignore[arg-type]
    records = list(skipping)
    assert skipping.stats.yielded == len(records)
    assert skipping.stats.read == skipping.stats.yielded + skipping.stats.skipped
    assert all(r.instruction and r.instruction == r.instruction.strip() for r in records)
    strict = SeedReader(path, format=fmt)  # type: ignore[arg-type]
    if skipping.stats.skipped:
        with pytest.raises(InputDataError) as info:
            list(strict)
        assert info.value.line is not None
    else:
        assert [r.id for r in strict] == [r.id for r in records]
