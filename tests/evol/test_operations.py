"""Operation packs: loading, overrides, weights, choice and the prompt conventions."""

from __future__ import annotations

import random
import re
from collections import Counter
from pathlib import Path

import pytest

from agents.evol.operations import (
    BUILTIN_PACKS_DIR,
    PROFILES,
    OperationKind,
    OperationPack,
    compose_instruction,
    split_turns,
)
from agents.evol.templates import PromptError

PACKS = ["general", "code", "math"]
CODE_INSTRUCTION = 'Fix this: ```python\nd = {"a": {{x}}}\nprint(f"{d} $HOME %s")\n```'


@pytest.mark.parametrize("name", PACKS)
def test_builtin_pack_loads_with_six_operations_and_one_breadth(name: str) -> None:
    pack = OperationPack.load(name)
    assert len(pack.operations) == 6
    assert [op.kind for op in pack.operations].count(OperationKind.BREADTH) == 1
    assert all(op.weight == 1.0 for op in pack.operations)


def test_general_pack_has_the_paper_operations() -> None:
    names = {op.name for op in OperationPack.load("general").operations}
    assert names == {
        "add_constraints",
        "deepen",
        "concretize",
        "increase_reasoning",
        "complicate_input",
        "breadth",
    }


def test_math_pack_has_easier_variants() -> None:
    names = {op.name for op in OperationPack.load("math").operations}
    assert {"simplify", "subproblem"} <= names


@pytest.mark.parametrize("name", PACKS)
@pytest.mark.parametrize("profile", PROFILES)
def test_rendered_prompts_follow_the_mock_server_conventions(name: str, profile: str) -> None:
    pack = OperationPack.load(name)
    for op in pack.operations:
        messages = pack.render(op, CODE_INSTRUCTION, profile)  # type: ignore[arg-type]
        message = messages[-1]
        assert message.role == "user"
        roles = [m.role for m in messages[:-1]]
        if profile == "compact":
            # a system message, then optional few-shot exchanges as real turns
            assert roles[0] == "system"
            assert roles[1:] == ["user", "assistant"] * (len(roles[1:]) // 2)
        else:
            assert roles == []
        text = "\n\n".join(m.content for m in messages)
        assert text.count("<instruction>") == 1
        assert text.count("</instruction>") == 1
        assert text.rstrip().endswith("</instruction>")
        inside = text.split("<instruction>", 1)[1].split("</instruction>", 1)[0]
        assert inside.strip() == CODE_INSTRUCTION
        assert "rewrite" in text
        is_breadth = op.kind is OperationKind.BREADTH
        assert bool(re.search(r"brand-new|new instruction", text, re.I)) == is_breadth
        assert "{{" not in text.replace(CODE_INSTRUCTION, "")


def test_instruction_with_braces_and_dollars_is_inserted_verbatim() -> None:
    pack = OperationPack.load("code")
    [message] = pack.render("add_constraints", "Use {{instruction}} and $x {0}", "full")
    assert "Use {{instruction}} and $x {0}" in message.content


def test_compose_instruction_appends_input_after_a_blank_line() -> None:
    assert compose_instruction(" Sort these. ", " 3, 1, 2 ") == "Sort these.\n\n3, 1, 2"
    assert compose_instruction("Say hi.", "  ") == "Say hi."


def test_choose_is_uniform_by_default_and_reproducible() -> None:
    pack = OperationPack.load("general")
    picks = [pack.choose(rng).name for rng in [random.Random(1)] for _ in range(6000)]
    counts = Counter(picks)
    assert set(counts) == {op.name for op in pack.operations}
    assert all(800 < n < 1200 for n in counts.values())
    again = [pack.choose(rng).name for rng in [random.Random(1)] for _ in range(6000)]
    assert picks == again


def test_weights_change_the_choice_and_zero_disables() -> None:
    pack = OperationPack.load("general", weights={"breadth": 0.0, "deepen": 3.0})
    rng = random.Random(3)
    counts = Counter(pack.choose(rng).name for _ in range(4000))
    assert counts["breadth"] == 0
    assert counts["deepen"] > 2 * counts["concretize"]


@pytest.mark.parametrize(
    "weights",
    [
        pytest.param({"nope": 1.0}, id="unknown-operation"),
        pytest.param({"deepen": -1.0}, id="negative"),
        pytest.param(
            dict.fromkeys(["add_constraints", "deepen", "concretize", "increase_reasoning"], 0.0)
            | {"complicate_input": 0.0, "breadth": 0.0},
            id="all-zero",
        ),
    ],
)
def test_bad_weights_are_a_prompt_error(weights: dict[str, float]) -> None:
    with pytest.raises(PromptError):
        OperationPack.load("general", weights=weights)


def test_user_dir_overrides_one_file_and_keeps_the_rest(tmp_path: Path) -> None:
    (tmp_path / "deepen.full.txt").write_text(
        "Please rewrite this more deeply.\n<instruction>\n{{instruction}}\n</instruction>\n"
    )
    pack = OperationPack.load("general", user_dir=tmp_path)
    assert pack.render("deepen", "Why?", "full")[0].content.startswith("Please rewrite this")
    builtin = (BUILTIN_PACKS_DIR / "general" / "concretize.full.txt").read_text()
    assert pack.template("concretize", "full").text == builtin


def test_user_only_pack_with_missing_file_names_the_path(tmp_path: Path) -> None:
    (tmp_path / "pack.toml").write_text('[[operations]]\nname = "shorten"\nkind = "depth"\n')
    (tmp_path / "shorten.full.txt").write_text(
        "rewrite shorter\n<instruction>\n{{instruction}}\n</instruction>"
    )
    with pytest.raises(PromptError, match=r"shorten\.compact\.txt"):
        OperationPack.load("my_pack", user_dir=tmp_path)


@pytest.mark.parametrize(
    ("body", "match"),
    [
        pytest.param("rewrite {{instruction}}", "one <instruction>", id="no-tags"),
        pytest.param(
            "rewrite\n<instruction>{{instruction}}</instruction>\nNow answer.",
            "must come last",
            id="block-not-last",
        ),
        pytest.param(
            "change it\n<instruction>{{instruction}}</instruction>", "'rewrite'", id="no-word"
        ),
        pytest.param(
            "rewrite {{text}}\n<instruction>{{instruction}}</instruction>",
            "exactly the",
            id="extra-placeholder",
        ),
        pytest.param(
            "rewrite; give the New Instruction\n<instruction>{{instruction}}</instruction>",
            "must not say",
            id="depth-with-breadth-mark",
        ),
    ],
)
def test_invalid_override_is_rejected_at_load(tmp_path: Path, body: str, match: str) -> None:
    (tmp_path / "deepen.compact.txt").write_text(body)
    with pytest.raises(PromptError, match=match):
        OperationPack.load("general", user_dir=tmp_path)


def test_unknown_builtin_pack_is_a_clear_error() -> None:
    with pytest.raises(PromptError, match=r"pack\.toml"):
        OperationPack.load("no_such_pack")


@pytest.mark.parametrize("pack_name", PACKS)
def test_copied_few_shot_answer_is_detected(pack_name: str) -> None:
    pack = OperationPack.load(pack_name)
    for op in pack.operations:
        template = pack.template(op, "compact").text
        after_lines = [line[7:] for line in template.splitlines() if line.startswith("After: ")]
        after_lines += [  # templates written as turns: the examples are the assistant turns
            m.content for m in split_turns(template) if m.role == "assistant"
        ]
        assert after_lines
        for line in after_lines:
            assert pack.copies_prompt(op, "compact", f"  {line.upper()}  ")


def test_real_rewrite_is_not_a_copy() -> None:
    pack = OperationPack.load("general")
    assert not pack.copies_prompt(
        "add_constraints", "compact", "Explain photosynthesis in three sentences for a child."
    )
    assert not pack.copies_prompt("add_constraints", "compact", "the sea")


def test_system_prompt_can_be_overridden_and_added(tmp_path: Path) -> None:
    (tmp_path / "system.full.txt").write_text("Be brief.\n")
    (tmp_path / "system.compact.txt").write_text("Never answer.\n")
    pack = OperationPack.load("general", user_dir=tmp_path)
    full = pack.render("deepen", "Why?", "full")
    compact = pack.render("deepen", "Why?", "compact")
    assert (full[0].role, full[0].content) == ("system", "Be brief.")
    assert (compact[0].role, compact[0].content) == ("system", "Never answer.")


def test_system_prompt_with_a_placeholder_is_rejected(tmp_path: Path) -> None:
    (tmp_path / "system.compact.txt").write_text("Rewrite {{instruction}}")
    with pytest.raises(PromptError, match="system prompt"):
        OperationPack.load("general", user_dir=tmp_path)


@pytest.mark.parametrize("name", ["../general", "General", ""])
def test_pack_names_are_plain_identifiers(name: str) -> None:
    with pytest.raises(PromptError, match="pack name"):
        OperationPack.load(name)
