"""The screening rules for what real small models get wrong: each catches its failure, lets a
genuine rewrite through, and can be switched off. Cases written for these tests."""

from __future__ import annotations

import pytest

from agents.eliminator.rules import RefusalRule, RuleName, RuleSet, check_refusal, instruction_rules
from agents.eliminator.screening import ScreeningRules, screening_verdicts

PARENT = "Write a short poem about a lighthouse."
GENUINE = "Write a four-line rhyming poem about a lighthouse keeper's last night on duty."


def first_failure(child: str, parent: str = PARENT, **kw: object) -> RuleName | None:
    for verdict in screening_verdicts(child, parent, ScreeningRules(), **kw):  # type: ignore[arg-type]
        if verdict.failed:
            return verdict.rule
    return None


@pytest.mark.parametrize(
    ("child", "parent", "expected"),
    [
        pytest.param("D) If the grass is dry, then it does not rain.",
                     "Which follows? A) ... D) If the grass is dry, then it does not rain.",
                     RuleName.ANSWER_FRAGMENT, id="answer-option"),
        pytest.param("Answer: 42", "What is 6 times 7?", RuleName.ANSWER_FRAGMENT, id="label"),
        pytest.param("The waves crash on the rocks while the old light turns all night long.",
                     PARENT, RuleName.SOLVED_NOT_REWRITTEN, id="solved"),
        pytest.param("Write a short poem, about a lighthouse!", PARENT, RuleName.TRIVIAL_EDIT,
                     id="punctuation-only"),
        pytest.param("Explain why you can't divide by zero.",
                     "Explain why you cannot divide by zero.", RuleName.TRIVIAL_EDIT,
                     id="contraction"),
        pytest.param("Write a short poem about a lighthouse. Let's break it down step by step.",
                     PARENT, RuleName.GENERIC_APPENDAGE, id="generic-appendage"),
        pytest.param("What is photosynthesis, and where in a plant does it take place?",
                     "What is photosynthesis? Why do leaves need sunlight for it?",
                     RuleName.LOST_CONTENT, id="dropped-question"),
        pytest.param("Paris is the capital of France.",
                     "Which is true?\nParis is the capital of France.\nRome is in Spain.",
                     RuleName.ANSWER_FRAGMENT, id="a-line-of-the-parent"),
        pytest.param("Write a recipe for lemon cake with exactly six ingredients.", PARENT,
                     RuleName.LOST_CONTENT, id="drift"),
        pytest.param("Which city is warmest according to this table?", "Which city is warmest?",
                     RuleName.ABSENT_REFERENCE, id="absent-table"),
    ],
)
def test_each_screening_rule_catches_its_failure(
    child: str, parent: str, expected: RuleName
) -> None:
    assert first_failure(child, parent) is expected


def test_a_child_that_reverts_to_the_seed_fails() -> None:
    seed = "Describe a sunset."
    parent = "Describe a sunset over the sea in three sentences."
    assert first_failure("Describe a sunset!", parent, ancestors=(seed,)) is (
        RuleName.REVERTS_TO_ANCESTOR
    )
    assert first_failure("Describe a sunset!", parent) is not RuleName.REVERTS_TO_ANCESTOR


@pytest.mark.parametrize(
    ("child", "parent"),
    [
        (GENUINE, PARENT),
        ("Which city is warmest according to this table? "
         "| city | temp | | Oslo | 4 | | Rome | 17 |",
         "Which city is warmest?"),
        ("Is 91 prime? Check divisibility by 2, 3, 5 and 7 in turn, then name its prime factors.",
         "Is 91 prime?"),
    ],
)
def test_genuine_rewrites_pass_every_screening_rule(child: str, parent: str) -> None:
    assert first_failure(child, parent) is None


def test_breadth_may_leave_the_parent_but_not_swap_one_word() -> None:
    parent = "Give tips for growing tomatoes."
    assert first_failure("Give tips for keeping bees on a city rooftop.", parent,
                         operation="breadth") is None
    assert first_failure("Give tips for growing cucumbers.", parent, operation="breadth") is (
        RuleName.TRIVIAL_EDIT
    )


def test_screening_rules_switch_off_as_a_whole_and_need_a_parent() -> None:
    off = RuleSet(screening=ScreeningRules(enabled=False))
    assert [v.rule for v in instruction_rules("Answer: 42", off, parent="What is 6x7?")] == [
        RuleName.COPIES_EVOLVING_PROMPT
    ]
    assert screening_verdicts("Answer: 42", "", ScreeningRules()) == []


@pytest.mark.parametrize(
    ("response", "refuses"),
    [
        ("I apologize, but I can't assist with that.", True),
        ("As an AI language model, I do not have personal opinions on this.", True),
        ("I'm unable to provide medical dosages; please ask a pharmacist.", True),
        ("Dear neighbour, my apologies for the noise last night. It will not happen again.", False),
        ("I can't stress enough how useful a daily walk is. " + "It helps. " * 40, False),
    ],
)
def test_refusals_beyond_sorry(response: str, refuses: bool) -> None:
    verdict = check_refusal(response, RefusalRule().phrases())
    assert verdict.failed is refuses
