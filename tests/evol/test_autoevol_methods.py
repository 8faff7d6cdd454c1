"""Auto Evol-Instruct prompt texts and the parsers of their answers."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agents.autoevol.method_parsing import (
    AnalysisResult,
    FailedCase,
    format_feedback,
    parse_analysis,
    parse_final_instruction,
    parse_optimized_method,
)
from agents.autoevol.methods import (
    DOMAINS,
    load_method,
    render_analysis,
    render_method,
    render_optimize,
)
from agents.evol.templates import PromptError

FINAL = "Write a poem about rain in exactly 8 lines, each line starting with a colour."

# ------------------------------------------------------------------ prompt texts


@pytest.mark.parametrize("domain", DOMAINS)
def test_method_renders_as_an_evolve_prompt(domain: str) -> None:
    method = load_method(domain)
    assert "#Final Rewritten Instruction#:" in method
    [message] = render_method(method, "Add {x} and $y.")
    text = message.content
    assert text.count("<instruction>") == 1
    assert text.rstrip().endswith("<instruction>\nAdd {x} and $y.\n</instruction>")
    assert "rewrite" in text


def test_method_with_an_instruction_block_is_rejected() -> None:
    with pytest.raises(PromptError, match="must not contain"):
        render_method("Step 1 ...\n<instruction>\nx\n</instruction>", "y")


def test_method_override_from_user_dir(tmp_path: Path) -> None:
    (tmp_path / "math.txt").write_text("My own method: rewrite it harder.\n")
    assert load_method("math", user_dir=tmp_path) == "My own method: rewrite it harder."
    assert load_method("code", user_dir=tmp_path) == load_method("code")


def test_unknown_domain_names_the_missing_file() -> None:
    with pytest.raises(PromptError, match=r"poetry\.txt"):
        load_method("poetry")


def test_analysis_prompt_wraps_each_trajectory_with_its_steps() -> None:
    [message] = render_analysis({"t1": ["Say hi.", "Say hi twice."], "t2": ["A", "B", "C"]})
    text = message.content
    assert '<trajectory id="t1">\n<step n="0">\nSay hi.\n</step>' in text
    assert '<step n="2">\nC\n</step>\n</trajectory>' in text
    assert "<instruction>" not in text
    assert "FAILED" in text
    assert "NO FAILURES" in text


def test_optimize_prompt_shows_method_and_feedback_in_tags() -> None:
    [message] = render_optimize("Step 1: do {this}.", "- Case t1 (step 1): reworded")
    text = message.content
    assert "<method>\nStep 1: do {this}.\n</method>" in text
    assert "<feedback>\n- Case t1 (step 1): reworded\n</feedback>" in text
    assert "<instruction>" not in text


# ------------------------------------------------------------------ final instruction

STRUCTURED = (
    "Step 1 #Methods#:\n- add a constraint\n- be specific\n"
    "Step 2 #Plan#: use both\n"
    "Step 3 #Draft#: Write a poem about rain in 8 lines.\n"
    "Step 4 #Review#: The draft is fine but could be more specific.\n"
)


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(STRUCTURED + f"Step 5 #Final Rewritten Instruction#:\n{FINAL}", id="paper"),
        pytest.param(STRUCTURED + f"Step 5 #Final Rewritten Instruction#: {FINAL}", id="inline"),
        pytest.param(STRUCTURED + f"**Final Rewritten Instruction:**\n\n{FINAL}", id="bold"),
        pytest.param(STRUCTURED + f"#Finally Rewritten Instruction#:\n{FINAL}", id="finally"),
        pytest.param(STRUCTURED + f"Final instruction - {FINAL}", id="dash"),
        pytest.param(STRUCTURED + f"### Final Rewritten Prompt\n{FINAL}", id="md-heading"),
        pytest.param(
            STRUCTURED + f'Step 5 #Final Rewritten Instruction#:\n"{FINAL}"\n\n'
            "This version adds a structural constraint.",
            id="quotes-and-trailer",
        ),
        pytest.param(
            STRUCTURED + f"Step 5 #Final Rewritten Instruction#:\n{FINAL}\n"
            "Step 6 #Notes#: I am done.",
            id="extra-step-after",
        ),
        pytest.param(f"Sure! Here it is.\n\n{FINAL}", id="no-structure-plain-answer"),
    ],
)
def test_final_instruction_is_found(raw: str) -> None:
    assert parse_final_instruction(raw) == FINAL


def test_missing_final_heading_falls_back_to_the_draft() -> None:
    assert parse_final_instruction(STRUCTURED) == "Write a poem about rain in 8 lines."
    assert parse_final_instruction(STRUCTURED, allow_draft=False) is None


def test_structure_without_any_instruction_is_none() -> None:
    assert parse_final_instruction("Step 1 #Methods#:\n- x\nStep 2 #Plan#: y") is None


def test_empty_final_section_uses_the_draft() -> None:
    raw = STRUCTURED + "Step 5 #Final Rewritten Instruction#:\n"
    assert parse_final_instruction(raw) == "Write a poem about rain in 8 lines."


def test_final_instruction_keeps_its_code_block() -> None:
    body = "Fix this function and keep it O(n):\n```python\ndef f(xs):\n    return xs\n```"
    raw = STRUCTURED + f"Step 5 #Final Rewritten Instruction#:\n{body}"
    assert parse_final_instruction(raw) == body


@settings(max_examples=300, deadline=None)
@given(raw=st.text())
def test_fuzz_final_instruction_never_raises(raw: str) -> None:
    result = parse_final_instruction(raw)
    if result is not None:
        assert result
        assert result == result.strip()


@settings(max_examples=200, deadline=None)
@given(
    prose=st.text(st.characters(codec="utf-8", exclude_characters="#*"), max_size=200),
    heading=st.sampled_from(
        [
            "Step 5 #Final Rewritten Instruction#:",
            "#Final Rewritten Instruction#:",
            "**Final Rewritten Instruction:**",
            "Final rewritten instruction -",
        ]
    ),
)
def test_fuzz_final_section_wins_over_preceding_prose(prose: str, heading: str) -> None:
    assert parse_final_instruction(f"{prose}\n{heading}\n{FINAL}") == FINAL


# ------------------------------------------------------------------ analysis


def test_analysis_lines_in_many_styles() -> None:
    raw = (
        "Here is my analysis.\n"
        "FAILED t1 | step 2 | only reworded the instruction\n"
        "- **FAILED t3** | step 1 | answered the question instead\n"
        "2. Failed case t4 (step 2): lost the input table\n"
        "FAILED: id=t5 - no reason\n"
        "The failed trajectories are listed above.\n"
    )
    result = parse_analysis(raw)
    assert result.parseable
    assert result.failures == (
        FailedCase(id="t1", step=2, reason="only reworded the instruction"),
        FailedCase(id="t3", step=1, reason="answered the question instead"),
        FailedCase(id="t4", step=2, reason="lost the input table"),
        FailedCase(id="t5", step=None, reason="no reason"),
    )


def test_analysis_ids_outside_the_batch_are_set_aside() -> None:
    result = parse_analysis("FAILED t1 | step 1 | x\nFAILED t9 | step 1 | y", known_ids={"t1"})
    assert result.failed_ids == ("t1",)
    assert result.unknown_ids == ("t9",)


def test_analysis_no_failures() -> None:
    result = parse_analysis("NO FAILURES")
    assert result == AnalysisResult(no_failures=True)


def test_analysis_without_the_format_is_unparseable() -> None:
    result = parse_analysis("All of them look reasonable to me, mostly.")
    assert not result.parseable
    assert result.failures == ()


def test_feedback_lists_each_case() -> None:
    result = parse_analysis("FAILED t1 | step 2 | reworded\nFAILED t2 | step 1 | answered it")
    assert format_feedback(result) == (
        "- Case t1 (step 2): reworded\n- Case t2 (step 1): answered it"
    )
    assert format_feedback(AnalysisResult(no_failures=True)) == "No case failed to evolve."


@settings(max_examples=300, deadline=None)
@given(raw=st.text())
def test_fuzz_analysis_never_raises(raw: str) -> None:
    result = parse_analysis(raw, known_ids={"t1"})
    assert all(case.id == "t1" for case in result.failures)


# ------------------------------------------------------------------ optimized method


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        pytest.param(
            "<method>\nStep 1: X\nStep 2: Y\n</method>", "Step 1: X\nStep 2: Y", id="plain"
        ),
        pytest.param("Sure.\n<method>A</method>\nThis is better.", "A", id="prose-around"),
        pytest.param("<method>old</method> then <method>new</method>", "new", id="last-wins"),
        pytest.param("<method>\n```\nStep 1: X\n```\n</method>", "Step 1: X", id="fenced"),
        pytest.param("<method>\nStep 1: X\n", "Step 1: X", id="unclosed"),
        pytest.param(
            "<method>Step 1: X\n<instruction>\nHi\n</instruction>\n</method>",
            "Step 1: X",
            id="echoed-instruction",
        ),
        pytest.param("Step 1: X", None, id="no-tags"),
        pytest.param("<method>  </method>", None, id="empty"),
    ],
)
def test_parse_optimized_method(raw: str, expected: str | None) -> None:
    assert parse_optimized_method(raw) == expected


def test_parsed_method_renders() -> None:
    method = parse_optimized_method("<method>Step 1: rewrite it.\n<instruction>x</instruction>")
    assert method is not None
    render_method(method, "Say hi.")
