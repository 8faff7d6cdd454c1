from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from agents.judge.errors import TemplateError
from agents.judge.templates import (
    BUILTIN_NAMES,
    builtin_templates,
    load_fastchat_jsonl,
    load_templates,
    parse_template_text,
)

VALUES = {
    "question": "What is 2+2? {not a field}",
    "answer": "4",
    "answer_a": "four",
    "answer_b": "5",
    "ref_answer_1": "4",
    "instruction": "Write a haiku about {braces}.",
}


def test_every_builtin_renders_with_its_fields() -> None:
    templates = builtin_templates()
    assert set(templates) == set(BUILTIN_NAMES)
    for t in templates.values():
        messages = t.render(**VALUES)
        assert messages[-1].role == "user"
        assert all(m.content for m in messages)


@pytest.mark.parametrize(
    ("name", "markers"),
    [
        pytest.param("pair-verdict", ["[[A]]", "[[B]]", "[[C]]"], id="verdict"),
        pytest.param("pair-verdict-ref", ["[[A]]", "[[B]]", "[[C]]"], id="verdict-ref"),
        pytest.param("single", ["[[rating]]"], id="single"),
        pytest.param("single-ref", ["[[rating]]"], id="single-ref"),
        pytest.param("difficulty", ["[[difficulty]]"], id="difficulty"),
        pytest.param("tags", ["<tags>"], id="tags"),
    ],
)
def test_prompts_carry_the_mock_server_markers(name: str, markers: list[str]) -> None:
    text = "\n".join(m.content for m in builtin_templates()[name].render(**VALUES))
    for marker in markers:
        assert marker in text


def test_user_text_is_inserted_verbatim_even_with_braces() -> None:
    text = builtin_templates()["tags"].render(**VALUES)[-1].content
    assert "Write a haiku about {braces}." in text
    assert '[{"tag": "data analysis"' in text


def test_reference_templates_declare_the_reference_field() -> None:
    t = builtin_templates()
    assert t["single-ref"].needs_reference
    assert t["pair-verdict-ref"].needs_reference
    assert not t["single"].needs_reference
    assert not t["pair-verdict"].multi_turn


def test_missing_field_raises_and_names_it() -> None:
    with pytest.raises(TemplateError, match="answer_b"):
        builtin_templates()["pair-verdict"].render(question="q", answer_a="a")


def test_override_directory_replaces_and_adds(tmp_path: Path) -> None:
    (tmp_path / "single.txt").write_text(
        "kind: single\noutput: rating\n=== system ===\n=== user ===\n"
        "Grade {answer} as [[rating]].\n"
    )
    (tmp_path / "mine.txt").write_text(
        "kind: difficulty\noutput: difficulty\n=== system ===\nS\n=== user ===\n"
        "{instruction} [[difficulty]]\n"
    )
    templates = load_templates(tmp_path)
    single = templates["single"].render(answer="42")
    assert [m.role for m in single] == ["user"]
    assert single[0].content == "Grade 42 as [[rating]]."
    assert templates["mine"].kind == "difficulty"
    assert "pair-verdict" in templates


def test_missing_override_directory_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(TemplateError, match="does not exist"):
        load_templates(tmp_path / "nope")


@pytest.mark.parametrize(
    ("text", "match"),
    [
        pytest.param(
            "kind: single\noutput: rating\nno sections", "=== system ===", id="no-sections"
        ),
        pytest.param("kind: x\noutput: rating\n=== system ===\n=== user ===\nu", "kind", id="kind"),
        pytest.param(
            "kind: single\noutput: x\n=== system ===\n=== user ===\nu", "output", id="out"
        ),
        pytest.param(
            "kind: single\noutput: rating\n=== system ===\n=== user ===\n{a[0]}", "plain", id="idx"
        ),
        pytest.param(
            "kind: single\noutput: rating\n=== system ===\n=== user ===\n{oops",
            "braces",
            id="brace",
        ),
        pytest.param(
            "kind: single\noutput: rating\n=== system ===\ns\n=== user ===\n", "empty", id="e"
        ),
    ],
)
def test_malformed_template_files_fail_at_load(text: str, match: str) -> None:
    with pytest.raises(TemplateError, match=match):
        parse_template_text(text, name="t", source="t.txt")


def test_fastchat_judge_prompts_all_load_and_render(data_file: Callable[[str], Path]) -> None:
    path = data_file("mt_bench_judge_prompts.jsonl")
    templates = load_fastchat_jsonl(path)
    assert len(templates) == sum(1 for line in path.read_text().splitlines() if line.strip())
    for t in templates.values():
        values = {f: f"<{f}>" for f in t.fields}
        messages = t.render(**values)
        joined = "\n".join(m.content for m in messages)
        for f in t.fields:
            assert f"<{f}>" in joined
        marker = "[[A]]" if t.kind == "pairwise" else "[[rating]]"
        assert marker in joined
    assert templates["pair-v2-multi-turn"].multi_turn
    assert templates["single-math-v1"].needs_reference


def test_fastchat_loader_rejects_unknown_output_format(tmp_path: Path) -> None:
    bad = tmp_path / "p.jsonl"
    record = {"name": "x", "type": "pairwise", "system_prompt": "", "prompt_template": "{q}"}
    bad.write_text(json.dumps({**record, "output_format": "weird"}) + "\n")
    with pytest.raises(TemplateError, match="unsupported"):
        load_fastchat_jsonl(bad)
    bad.write_text("{not json\n")
    with pytest.raises(TemplateError, match=r"p\.jsonl:1"):
        load_fastchat_jsonl(bad)
