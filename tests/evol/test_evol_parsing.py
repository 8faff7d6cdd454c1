"""extract_evolved_instruction on realistic messy LLM outputs, plus a hypothesis fuzz."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agents.evol.parsing import extract_evolved_instruction, strip_wrappers

GOAL = "Write a haiku about autumn that mentions a fox and a full moon."


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(GOAL, id="clean"),
        pytest.param(f"  \n{GOAL}\n\n", id="whitespace"),
        pytest.param(f"Sure! Here is the rewritten prompt:\n\n{GOAL}", id="preamble-sure"),
        pytest.param(f"Here's a more complex version of the instruction:\n{GOAL}", id="heres"),
        pytest.param(f"Certainly!\n\n{GOAL}", id="certainly-alone"),
        pytest.param(f"Sure! Here it is.\n{GOAL}", id="sure-here-it-is"),
        pytest.param(
            f"Here is the rewritten prompt based on the given prompt: {GOAL}", id="inline-preamble"
        ),
        pytest.param(f"**Here's the more complex version:** {GOAL}", id="bold-inline-preamble"),
        pytest.param(f"#Rewritten Prompt#:\n{GOAL}", id="hash-label-own-line"),
        pytest.param(f"#Rewritten Prompt#: {GOAL}", id="hash-label-inline"),
        pytest.param(f"**Rewritten Instruction:** {GOAL}", id="bold-label"),
        pytest.param(f"**Rewritten Instruction**\n\n{GOAL}", id="bold-label-no-colon"),
        pytest.param(f"Rewritten prompt - {GOAL}", id="dash-label"),
        pytest.param(f"### New Instruction\n{GOAL}", id="markdown-heading"),
        pytest.param(f"Evolved instruction (depth): {GOAL}", id="label-with-paren"),
        pytest.param(f"After: {GOAL}", id="few-shot-label"),
        pytest.param(f'"{GOAL}"', id="double-quotes"),
        pytest.param(f"“{GOAL}”", id="curly-quotes"),
        pytest.param(f"**{GOAL}**", id="bold-whole"),
        pytest.param(f"```\n{GOAL}\n```", id="fence"),
        pytest.param(f"```text\n{GOAL}\n```", id="text-fence"),
        pytest.param(f'Rewritten Prompt:\n```\n"{GOAL}"\n```', id="label-fence-quotes"),
        pytest.param(f"<instruction>\n{GOAL}\n</instruction>", id="echoed-tags"),
        pytest.param(f"{GOAL}\n</instruction>", id="stray-closing-tag"),
        pytest.param(
            f"#Given Prompt#: Write a haiku.\n\n#Rewritten Prompt#: {GOAL}", id="given-then-new"
        ),
        pytest.param(
            f"{GOAL}\n\nThis version adds a constraint about the fox and the moon.",
            id="trailer-this-version",
        ),
        pytest.param(f"{GOAL}\nNote: I added two concrete images.", id="trailer-note"),
        pytest.param(
            f"{GOAL}\n\nIn this rewrite, the poem must include two images.", id="trailer-in-this"
        ),
        pytest.param(f"{GOAL}\n\nI added a fox to make it harder.", id="trailer-i-added"),
        pytest.param(f"{GOAL}\n\nLet me know if you want more changes!", id="trailer-let-me-know"),
        pytest.param(
            f'Sure! Here is the rewritten prompt:\n\n**Rewritten Prompt:**\n"{GOAL}"\n\n'
            "**Explanation:** The new prompt adds two constraints.",
            id="everything-at-once",
        ),
    ],
)
def test_packaging_is_removed(raw: str) -> None:
    assert extract_evolved_instruction(raw) == GOAL


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param("", id="empty"),
        pytest.param(" \n\t ", id="whitespace"),
        pytest.param("#Rewritten Prompt#:", id="bare-label"),
        pytest.param("Sure! Here is the rewritten prompt:", id="preamble-only"),
        pytest.param("...", id="punctuation"),
        pytest.param("<instruction></instruction>", id="empty-tags"),
        pytest.param('""', id="empty-quotes"),
    ],
)
def test_nothing_left_is_none(raw: str) -> None:
    assert extract_evolved_instruction(raw) is None
    assert extract_evolved_instruction(raw, "compact") is None


def test_code_block_that_belongs_to_the_instruction_is_kept() -> None:
    body = (
        "Find the bug in this function and fix it so it also handles empty lists:\n"
        "```python\ndef largest(xs):\n    best = 0\n    for x in xs:\n"
        "        best = max(best, x)\n    return best\n```"
    )
    raw = f"Here is the rewritten prompt:\n\n{body}\n\nThis version adds an edge case."
    assert extract_evolved_instruction(raw) == body


def test_lines_inside_a_code_block_never_cut_the_instruction() -> None:
    body = "Explain what this prints:\n```python\n# Note: this is a comment\nprint(1)\n```"
    assert extract_evolved_instruction(body) == body


def test_table_and_input_are_kept() -> None:
    body = (
        "Using the table, name the city with the largest population growth.\n\n"
        "| City | 2010 | 2020 |\n|---|---|---|\n| A | 10 | 14 |\n| B | 20 | 22 |"
    )
    assert extract_evolved_instruction(f"#Rewritten Prompt#:\n{body}") == body


def test_code_fence_with_a_language_is_not_unwrapped() -> None:
    raw = "```python\nprint('hi')\n```"
    assert extract_evolved_instruction(raw) == raw


def test_inner_quotes_are_kept() -> None:
    raw = 'Write a poem titled "Rain" and another titled "Dawn".'
    assert extract_evolved_instruction(raw) == raw


def test_compact_takes_the_first_meaningful_line() -> None:
    raw = (
        "Sure!\nAfter: Write a four-line poem about the sea that mentions a lighthouse.\n"
        "Before: Write a poem.\nAfter: something else"
    )
    assert extract_evolved_instruction(raw, "compact") == (
        "Write a four-line poem about the sea that mentions a lighthouse."
    )


def test_compact_ignores_rambling_after_the_first_line() -> None:
    raw = "Write a limerick about a cat who hates Mondays.\nWrite a limerick about a dog.\n"
    assert extract_evolved_instruction(raw, "compact") == (
        "Write a limerick about a cat who hates Mondays."
    )


def test_strip_wrappers_leaves_unbalanced_text_alone() -> None:
    assert strip_wrappers('"Quote" then more') == '"Quote" then more'


WORDS = st.sampled_from(
    ["write", "a", "poem", "about", "cats", "list", "three", "facts", "sum", "42", "why", "sky"]
)
SENTENCE = st.lists(WORDS, min_size=1, max_size=12).map(" ".join)


@settings(max_examples=400, deadline=None)
@given(raw=st.text(), profile=st.sampled_from(["full", "compact"]))
def test_fuzz_never_raises_and_returns_stripped_text(raw: str, profile: str) -> None:
    result = extract_evolved_instruction(raw, profile)  # type: ignore[arg-type]
    if result is not None:
        assert result
        assert result == result.strip()


@settings(max_examples=300, deadline=None)
@given(
    lines=st.lists(SENTENCE, min_size=1, max_size=5),
    punct=st.sampled_from(["", ".", "?", "!"]),
    profile=st.sampled_from(["full", "compact"]),
)
def test_fuzz_plain_sentences_are_never_lost(lines: list[str], punct: str, profile: str) -> None:
    raw = "\n".join(line + punct for line in lines)
    result = extract_evolved_instruction(raw, profile)  # type: ignore[arg-type]
    assert result is not None
    expected = raw.strip() if profile == "full" else lines[0] + punct
    assert result == expected


@settings(max_examples=200, deadline=None)
@given(raw=st.text(alphabet=st.sampled_from(" \n\t.,;:!?-*#\"'`")))
def test_fuzz_punctuation_only_is_none(raw: str) -> None:
    assert extract_evolved_instruction(raw) is None


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(
            "Write a function that sums a list.\nInput: [1, 2, 3]\nOutput: 6", id="io-example"
        ),
        pytest.param(
            "Rewrite the sentence more formally.\nOriginal: hey, what's up?", id="original-field"
        ),
        pytest.param(
            "Solve the puzzle below and give the answer.\nAnswer: one word only", id="answer-line"
        ),
        pytest.param(
            "Write a function that returns the median of a list.\n"
            "Note: the list may contain negative numbers.",
            id="note-that-belongs",
        ),
        pytest.param(
            "Tom has 3 apples and buys 4 more.\nFinal question: how many does he have?",
            id="plain-label-inside",
        ),
        pytest.param("Given: a triangle with sides 3, 4 and 5.\nFind its area.", id="given-field"),
    ],
)
def test_content_lines_that_look_like_packaging_are_kept(body: str) -> None:
    assert extract_evolved_instruction(body) == body
    assert extract_evolved_instruction(f"#Rewritten Prompt#:\n{body}") == body


def test_plain_label_at_the_top_is_still_removed() -> None:
    assert extract_evolved_instruction(f"New task: {GOAL}") == GOAL
    assert extract_evolved_instruction(f"Sure!\nFinal question:\n{GOAL}") == GOAL


def test_note_about_the_rewrite_is_cut() -> None:
    raw = f"{GOAL}\nNote: the original prompt was made more specific."
    assert extract_evolved_instruction(raw) == GOAL


@pytest.mark.parametrize(
    "body",
    [
        "Sure, write a poem about the sea for a child.",
        "Great Barrier Reef: list three threats to it and one solution for each.",
        "Here are three numbers: 3, 5 and 7. Which is the odd one out?",
        "Okay is a word with a disputed origin; summarise the main theories.",
    ],
)
def test_instructions_that_start_like_a_preamble_are_kept(body: str) -> None:
    assert extract_evolved_instruction(body) == body
    assert extract_evolved_instruction(body, "compact") == body
