"""The WizardLM elimination rules, one behaviour per test, including the cases peers got wrong."""

from __future__ import annotations

from pathlib import Path

import pytest

from agents.eliminator.rules import (
    EqualityAnswer,
    PromptWordsRule,
    RefusalRule,
    RuleName,
    RuleSet,
    SorryRule,
    StopwordsRule,
    apply_local_rules,
    check_information_gain,
    check_prompt_words,
    check_sorry,
    check_stopwords_only,
    instruction_rules,
    load_stopwords,
    parse_equality_answer,
    render_equality_prompt,
    response_rules,
    run_local_rules,
)
from agents.evol.templates import PromptError

LONG_ANSWER = " ".join(["word"] * 85)

# ------------------------------------------------------------------ rule 1


@pytest.mark.parametrize("profile", ["full", "compact"])
def test_equality_prompt_uses_first_second_tags_and_names_both_answers(profile: str) -> None:
    [message] = render_equality_prompt("Say {hi}.", "Say $hi twice.", profile)  # type: ignore[arg-type]
    text = message.content
    assert "<first>\nSay {hi}.\n</first>" in text
    assert "<second>\nSay $hi twice.\n</second>" in text
    assert "<instruction>" not in text
    assert "Equal" in text
    assert "Not Equal" in text


def test_equality_prompt_override_from_user_dir(tmp_path: Path) -> None:
    (tmp_path / "equality.full.txt").write_text("A {{first}} B {{second}} Equal / Not Equal")
    [message] = render_equality_prompt("x", "y", user_dir=tmp_path)
    assert message.content == "A x B y Equal / Not Equal"


def test_equality_prompt_override_missing_placeholder_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "equality.full.txt").write_text("only {{first}}")
    with pytest.raises(PromptError, match="second"):
        render_equality_prompt("x", "y", user_dir=tmp_path)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Equal", EqualityAnswer.EQUAL),
        ("equal.", EqualityAnswer.EQUAL),
        ("Not Equal", EqualityAnswer.NOT_EQUAL),
        ("**Not Equal**", EqualityAnswer.NOT_EQUAL),
        ("NOT EQUAL", EqualityAnswer.NOT_EQUAL),
        ("Answer: Equal", EqualityAnswer.EQUAL),
        ("Your Judgement: Not Equal", EqualityAnswer.NOT_EQUAL),
        ("The two are not equal.", EqualityAnswer.NOT_EQUAL),
        ("They aren't equal", EqualityAnswer.NOT_EQUAL),
        ("The two instructions are equal.", EqualityAnswer.EQUAL),
        ("Unequal", EqualityAnswer.NOT_EQUAL),
        ('"Not Equal"', EqualityAnswer.NOT_EQUAL),
        (
            "Not Equal.\nThe second has equal length but adds a constraint.",
            EqualityAnswer.NOT_EQUAL,
        ),
        ("Equal\nThey are not equal in wording only.", EqualityAnswer.EQUAL),
        ("", EqualityAnswer.UNPARSEABLE),
        ("Yes", EqualityAnswer.UNPARSEABLE),
        ("The second one is harder.", EqualityAnswer.UNPARSEABLE),
        ("Equal or Not Equal?", EqualityAnswer.UNPARSEABLE),
        ("They are equally hard.", EqualityAnswer.UNPARSEABLE),
    ],
)
def test_parse_equality_answer(raw: str, expected: EqualityAnswer) -> None:
    assert parse_equality_answer(raw) is expected


def test_equal_means_no_information_gain() -> None:
    verdict = check_information_gain("Equal")
    assert verdict.failed
    assert verdict.rule is RuleName.NO_INFORMATION_GAIN


def test_not_equal_passes() -> None:
    assert check_information_gain("**Not Equal**").outcome == "pass"


def test_unparseable_answer_is_never_a_guess() -> None:
    verdict = check_information_gain("I think the second one is better")
    assert verdict.outcome == "unparseable"
    assert not verdict.failed
    assert "I think" in verdict.reason


# ------------------------------------------------------------------ rule 2


def test_short_sorry_response_fails() -> None:
    verdict = check_sorry("Sorry, but I cannot help with that request.")
    assert verdict.failed
    assert verdict.rule is RuleName.SORRY_SHORT_RESPONSE


def test_long_sorry_response_passes() -> None:
    assert not check_sorry("I am sorry to hear that. " + LONG_ANSWER).failed


def test_sorry_inside_another_word_does_not_count() -> None:
    assert not check_sorry("The sorryful tale ends.").failed


def test_sorry_is_case_insensitive() -> None:
    assert check_sorry("SORRY.").failed


def test_threshold_is_strictly_fewer_than_max_words() -> None:
    exactly = "sorry " + " ".join(["x"] * 79)
    assert not check_sorry(exactly).failed
    assert check_sorry(exactly, max_words=81).failed


def test_instruction_with_sorry_passes_rule_2() -> None:
    instruction = "Write a short note saying sorry to a neighbour for the noise."
    response = "Dear neighbour, my apologies for the noise last night. It will not happen again."
    assert apply_local_rules(instruction, response) is None


# ------------------------------------------------------------------ rule 3


@pytest.mark.parametrize(
    "response",
    [
        pytest.param("the , of ... and ?", id="stopwords-and-punctuation"),
        pytest.param("...!?", id="punctuation-only"),
        pytest.param("", id="empty"),
        pytest.param("It is what it is.", id="sentence-of-stopwords"),
        pytest.param("Don\u2019t do that!", id="curly-apostrophe"),
    ],
)
def test_stopwords_only_response_fails(response: str) -> None:
    verdict = check_stopwords_only(response)
    assert verdict.failed
    assert verdict.rule is RuleName.STOPWORDS_ONLY_RESPONSE


@pytest.mark.parametrize("response", ["No", "Yes.", "Paris", "42", "The answer is 7."])
def test_short_real_answers_pass_rule_3(response: str) -> None:
    assert not check_stopwords_only(response).failed


def test_rule_3_looks_at_the_response_not_the_instruction() -> None:
    verdict = apply_local_rules("Name a prime number.", "the , of ... and ?")
    assert verdict is not None
    assert verdict.rule is RuleName.STOPWORDS_ONLY_RESPONSE
    assert apply_local_rules("the , of ... and ?", "Seven is prime.") is None


def test_builtin_stopwords_file_is_loaded() -> None:
    words = load_stopwords()
    assert {"the", "and", "of"} <= words
    assert "yes" not in words
    assert not any(w.startswith("#") for w in words)


def test_extra_stopwords_extend_the_list() -> None:
    rules = RuleSet(stopwords=StopwordsRule(extra_stopwords=("Hmm",)))
    assert apply_local_rules("Say something.", "Hmm, the...") is None
    verdict = apply_local_rules("Say something.", "Hmm, the...", rules)
    assert verdict is not None
    assert verdict.rule is RuleName.STOPWORDS_ONLY_RESPONSE


def test_custom_stopwords_file(tmp_path: Path) -> None:
    path = tmp_path / "stop.txt"
    path.write_text("# mine\nfoo\nbar\n")
    rules = RuleSet(stopwords=StopwordsRule(stopwords_file=path))
    assert apply_local_rules("x", "foo, bar!", rules) is not None
    assert apply_local_rules("x", "the", rules) is None


def test_missing_stopwords_file_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(PromptError, match=r"nope\.txt"):
        load_stopwords(tmp_path / "nope.txt")


# ------------------------------------------------------------------ rule 4


@pytest.mark.parametrize(
    "instruction",
    [
        "#Rewritten Prompt#: Write a haiku about rain.",
        "Following the given prompt, write a haiku.",
        "Write a haiku. (Created Prompt)",
        "**Rewritten   prompt**: write a haiku",
        "Rewrite the #Given Prompt# as a haiku.",
    ],
)
def test_copied_evolving_prompt_words_fail(instruction: str) -> None:
    verdict = check_prompt_words(instruction)
    assert verdict.failed
    assert verdict.rule is RuleName.COPIES_EVOLVING_PROMPT


def test_clean_instruction_passes_rule_4() -> None:
    assert not check_prompt_words("Write a prompt for an image generator about rain.").failed


def test_phrase_already_in_parent_is_exempt() -> None:
    parent = "Improve the given prompt for clarity."
    child = "Improve the given prompt for clarity and keep it under 30 words."
    assert not check_prompt_words(child, parent=parent).failed
    rules = RuleSet(prompt_words=PromptWordsRule(ignore_if_in_parent=False))
    assert apply_local_rules(child, "A fine long answer.", rules, parent=parent) is not None


def test_phrase_list_is_configurable() -> None:
    rules = RuleSet(prompt_words=PromptWordsRule(phrases=("as an AI",)))
    verdict = apply_local_rules("As an AI, write a poem.", "Roses bloom.", rules)
    assert verdict is not None
    assert verdict.reason == "contains 'as an AI'"


# ------------------------------------------------------------------ the local pass


def test_local_rules_run_in_fixed_order_and_report_the_first_failure() -> None:
    verdicts = run_local_rules("#Given Prompt#", "Sorry.")
    assert [v.rule for v in verdicts] == [
        RuleName.SORRY_SHORT_RESPONSE,
        RuleName.STOPWORDS_ONLY_RESPONSE,
        RuleName.REFUSAL_RESPONSE,
        RuleName.COPIES_EVOLVING_PROMPT,
    ]
    first = apply_local_rules("#Given Prompt#", "Sorry.")
    assert first is not None
    assert first.rule is RuleName.SORRY_SHORT_RESPONSE


def test_instruction_rules_need_no_response_and_response_rules_no_instruction() -> None:
    # the eliminator screens with the instruction rules before the step is answered
    assert [v.rule for v in instruction_rules("#Given Prompt#")] == [
        RuleName.COPIES_EVOLVING_PROMPT
    ]
    assert (
        instruction_rules("#Given Prompt# again", parent="Rewrite the #Given Prompt#")[0].outcome
        == "pass"
    )
    assert [v.rule for v in response_rules("Sorry.")] == [
        RuleName.SORRY_SHORT_RESPONSE,
        RuleName.STOPWORDS_ONLY_RESPONSE,
        RuleName.REFUSAL_RESPONSE,
    ]
    assert response_rules("Sorry.") + instruction_rules("#Given Prompt#") == run_local_rules(
        "#Given Prompt#", "Sorry."
    )


def test_disabled_rules_do_not_run() -> None:
    rules = RuleSet(
        sorry=SorryRule(enabled=False),
        stopwords=StopwordsRule(enabled=False),
        prompt_words=PromptWordsRule(enabled=False),
        refusal=RefusalRule(enabled=False),
    )
    assert run_local_rules("#Given Prompt#", "Sorry.", rules) == []
    assert instruction_rules("#Given Prompt#", rules) == response_rules("Sorry.", rules) == []
    assert apply_local_rules("#Given Prompt#", "Sorry.", rules) is None


def test_ruleset_is_configurable_from_plain_data() -> None:
    rules = RuleSet.model_validate(
        {"sorry": {"max_words": 20}, "information_gain": {"enabled": False}}
    )
    assert rules.sorry.max_words == 20
    assert not rules.information_gain.enabled
    with pytest.raises(ValueError, match="extra"):
        RuleSet.model_validate({"sory": {}})


@pytest.mark.parametrize(
    ("child", "failed"),
    [
        pytest.param("Write a poem about the sea.", True, id="same"),
        pytest.param("  write a POEM about the sea ", True, id="case-and-spacing"),
        pytest.param("Write a four-line poem about the sea.", False, id="changed"),
    ],
)
def test_unchanged_child_fails_information_gain_without_an_llm(child: str, failed: bool) -> None:
    from agents.eliminator.rules import check_unchanged

    verdict = check_unchanged("Write a poem about the sea.", child)
    assert verdict.failed is failed
    assert verdict.rule == RuleName.NO_INFORMATION_GAIN
