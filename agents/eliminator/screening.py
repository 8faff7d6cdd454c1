"""Screening rules for the ways real (small) models fail to evolve an instruction.

The paper's four rules miss most failures of small local models (measured in docs/benchmarks.md,
"Screening accuracy"). These rules catch them from the text alone, before any LLM call. Each is a
pure function `(child, parent, ...) -> Verdict`, switchable and tunable in the eliminator's
`rules` config:

- `answer_fragment`: the "instruction" is an answer option ("D) If the grass is dry ..."), an
  answer label ("Answer: 12") or a bare piece of the parent (one of its lines or options).
- `solved_not_rewritten`: the output does not read as a request at all: the model answered or
  performed the task (a poem, a result, a statement) instead of rewriting it.
- `reverts_to_ancestor`: the child repeats an earlier generation of its row (the seed or any
  ancestor before the parent), up to function words and punctuation.
- `trivial_edit`: only function words, punctuation, contractions, inflections or word order
  changed ("can't" → "cannot").
- `generic_appendage`: the parent plus a generic phrase that asks for nothing specific ("Let's
  break it down step by step.", "Explain your answer in detail.").
- `lost_content`: a depth evolution dropped what the parent asked: one of its questions, its
  input material, or most of its content words (drift to another task).
- `absent_reference`: the child points at material that is not there ("according to this table"
  with no table, "the code above") and its parent did not.

Rules that compare with the parent skip in-breadth operations (a brand-new instruction is meant to
differ); the others apply to every operation.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from agents.eliminator.text import (
    PROMPTS_DIR,
    content_stems,
    has_material,
    load_word_list,
    question_count,
    reads_as_instruction,
    stem,
    words,
)
from agents.eliminator.verdict import RuleName, Verdict

__all__ = [
    "AbsentReferenceRule",
    "AnswerFragmentRule",
    "GenericAppendageRule",
    "LostContentRule",
    "RevertRule",
    "ScreeningRules",
    "SolvedRule",
    "TrivialEditRule",
    "check_absent_reference",
    "check_answer_fragment",
    "check_generic_appendage",
    "check_lost_content",
    "check_reverts",
    "check_solved",
    "check_trivial_edit",
    "screening_verdicts",
]

BREADTH_OPERATIONS = frozenset({"breadth", "in_breadth", "mutation", "rare_requirement_breadth"})


def _pass(rule: RuleName, reason: str) -> Verdict:
    return Verdict(rule=rule, outcome="pass", reason=reason)


def _fail(rule: RuleName, reason: str) -> Verdict:
    return Verdict(rule=rule, outcome="fail", reason=reason)


def _norm(text: str) -> str:
    return " ".join(words(text))


# ------------------------------------------------------------------ answer fragment

_OPTION_RE = re.compile(
    r"^\s*(?:\(?[A-Ea-e]\)|[A-Ea-e][.:]\s|option\s+[A-Ea-e]\b|choice\s+[A-E]\b)"
)
_LABEL_RE = re.compile(
    r"^\W*(?:answer|correct answer|solution|final answer|output|result)\s*[:=-]", re.IGNORECASE
)
_PIECE_SPLIT_RE = re.compile(r"\n+|(?=\(?\b[A-E]\)\s)")
_BARE_RE = re.compile(r"^\W*(?:yes|no|true|false|none|[-+]?\d[\d.,/%]*)\W*$", re.IGNORECASE)


def check_answer_fragment(child: str, parent: str) -> Verdict:
    """Fails an answer option, an answer label, a bare yes/no/number, or a line (or an answer
    option) of the parent taken on its own."""
    rule = RuleName.ANSWER_FRAGMENT
    if _OPTION_RE.match(child):
        return _fail(rule, "an answer option, not an instruction")
    if _LABEL_RE.match(child) or _BARE_RE.match(child):
        return _fail(rule, "an answer, not an instruction")
    child_norm = _norm(child)
    pieces = {_norm(piece) for piece in _PIECE_SPLIT_RE.split(parent)} - {_norm(parent), ""}
    if child_norm and child_norm in pieces:
        return _fail(rule, "a line or option of the parent, not a rewrite of it")
    return _pass(rule, "not an answer fragment")


class AnswerFragmentRule(BaseModel):
    """`answer_fragment`: answer options, answer labels and bare pieces of the parent."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    enabled: bool = True


# ------------------------------------------------------------------ solved instead of rewritten


def check_solved(child: str, parent: str) -> Verdict:
    """Fails a child that does not read as a request (when its parent did)."""
    rule = RuleName.SOLVED_NOT_REWRITTEN
    if reads_as_instruction(child):
        return _pass(rule, "reads as an instruction")
    if parent and not reads_as_instruction(parent):
        return _pass(rule, "its parent does not read as an instruction either")
    return _fail(rule, "does not read as an instruction: the task was answered, not rewritten")


class SolvedRule(BaseModel):
    """`solved_not_rewritten`: the output is an answer or a statement, not a request."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    enabled: bool = True


# ------------------------------------------------------------------ revert to an ancestor


def check_reverts(child: str, ancestors: Sequence[str]) -> Verdict:
    """Fails a child with the same words (or content stems) as an ancestor before its parent."""
    rule = RuleName.REVERTS_TO_ANCESTOR
    child_norm, child_stems = _norm(child), content_stems(child)
    for generation, ancestor in enumerate(ancestors):
        same_words = _norm(ancestor) == child_norm
        if same_words or (child_stems and content_stems(ancestor) == child_stems):
            which = "the seed" if generation == 0 else f"generation {generation}"
            return _fail(rule, f"repeats {which} of its row")
    return _pass(rule, "repeats no ancestor")


class RevertRule(BaseModel):
    """`reverts_to_ancestor`: the child repeats the seed or any generation before its parent."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    enabled: bool = True


# ------------------------------------------------------------------ trivial edit


def check_trivial_edit(child: str, parent: str, *, breadth: bool = False) -> Verdict:
    """Fails a child whose content words equal its parent's (only function words, punctuation,
    contractions, inflections or word order changed). For an in-breadth operation, which must
    write a new instruction, swapping a single content word is trivial too."""
    rule = RuleName.TRIVIAL_EDIT
    if not parent:
        return _pass(rule, "no parent")
    child_stems, parent_stems = content_stems(child), content_stems(parent)
    if child_stems == parent_stems:
        return _fail(rule, "only function words, punctuation or word forms changed")
    added, dropped = child_stems - parent_stems, parent_stems - child_stems
    if breadth and len(added) <= 1 and len(dropped) == 1:
        return _fail(rule, "a new instruction was asked for; one word was swapped")
    return _pass(rule, f"{len(added)} new content words")


class TrivialEditRule(BaseModel):
    """`trivial_edit`: the same content words as the parent."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    enabled: bool = True


# ------------------------------------------------------------------ generic appendage


def check_generic_appendage(
    child: str, parent: str, generic: frozenset[str], *, min_kept: float = 0.9
) -> Verdict:
    """Fails a child that keeps its parent and adds only generic words (stems in `generic`)."""
    rule = RuleName.GENERIC_APPENDAGE
    child_stems, parent_stems = content_stems(child), content_stems(parent)
    added = child_stems - parent_stems
    if not parent_stems or not added:
        return _pass(rule, "nothing added")
    kept = len(child_stems & parent_stems) / len(parent_stems)
    generic_stems = {stem(w) for w in generic}
    if kept >= min_kept and added <= generic_stems:
        return _fail(rule, f"adds only generic words: {', '.join(sorted(added))}")
    return _pass(rule, "adds specific content")


class GenericAppendageRule(BaseModel):
    """`generic_appendage`: the parent plus generic words only (`words_file`, default built in).

    ``min_kept``: the share of the parent's content words the child must keep to count as "the
    parent plus something" (below it, `lost_content` decides)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    enabled: bool = True
    words_file: Path | None = None
    extra_words: tuple[str, ...] = ()
    min_kept: float = Field(default=0.9, ge=0, le=1)

    def generic_words(self) -> frozenset[str]:
        base = load_word_list(self.words_file or PROMPTS_DIR / "generic_words.txt")
        return base | {w.strip().lower() for w in self.extra_words if w.strip()}


# ------------------------------------------------------------------ lost content


def check_lost_content(child: str, parent: str, *, min_coverage: float = 0.5) -> Verdict:
    """Fails a depth evolution that drops a question, the input material, or most content words
    of its parent (`min_coverage`: the share of the parent's content stems the child must keep)."""
    rule = RuleName.LOST_CONTENT
    parent_stems = content_stems(parent)
    if not parent_stems:
        return _pass(rule, "the parent has no content words")
    coverage = len(content_stems(child) & parent_stems) / len(parent_stems)
    asked = question_count(parent)
    if asked >= 2 and question_count(child) < asked and coverage < 0.9:
        return _fail(rule, "drops one of the parent's questions")
    if has_material(parent) and not has_material(child) and coverage < 0.8:
        return _fail(rule, "drops the parent's input material")
    if coverage < min_coverage:
        return _fail(rule, f"keeps only {coverage:.0%} of the parent's content words")
    return _pass(rule, f"keeps {coverage:.0%} of the parent's content words")


class LostContentRule(BaseModel):
    """`lost_content`: a depth evolution must keep the parent's questions, input and content."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    enabled: bool = True
    min_coverage: float = Field(default=0.5, ge=0, le=1)


# ------------------------------------------------------------------ absent reference

_THING = (
    r"(?:table|chart|graph|figure|image|picture|photo|diagram|map|code|snippet|program|script|"
    r"function|query|passage|text|paragraph|excerpt|article|essay|document|report|story|poem|"
    r"letter|email|data|dataset|json|csv|xml|spreadsheet|list|sentence|equation|formula|"
    r"transcript|conversation|dialogue|review|file|link|url|video|recording)s?"
)
_REFERENCE_RE = re.compile(
    rf"\b(?:(?:this|these|the\s+following|following|the\s+given|given|the\s+provided|provided|"
    rf"the\s+attached|attached|the\s+above|the\s+below)\s+(?:\w+\s+)?{_THING}"
    rf"|(?:the|this)\s+{_THING}\s+(?:above|below|provided|given|attached|shown|here)"
    rf"|(?:shown|given|provided|listed|mentioned)\s+(?:above|below)"
    rf"|according\s+to\s+(?:the|this)\s+{_THING})\b",
    re.IGNORECASE,
)


def check_absent_reference(child: str, parent: str) -> Verdict:
    """Fails a child that points at material ("this table", "the code above") it does not carry,
    unless its parent made the same kind of reference."""
    rule = RuleName.ABSENT_REFERENCE
    match = _REFERENCE_RE.search(child)
    if match is None:
        return _pass(rule, "refers to no material")
    if has_material(child):
        return _pass(rule, "carries the material it refers to")
    if _REFERENCE_RE.search(parent):
        return _pass(rule, "its parent makes the same kind of reference")
    return _fail(rule, f"refers to {match.group(0)!r}, which is not there")


class AbsentReferenceRule(BaseModel):
    """`absent_reference`: references to a table, code or passage that the text lacks."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    enabled: bool = True


# ------------------------------------------------------------------ the set


class ScreeningRules(BaseModel):
    """The screening rules' switches and thresholds (the eliminator's `rules.screening`).

    ``enabled = false`` switches them all off (the paper's four rules only)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    enabled: bool = True
    answer_fragment: AnswerFragmentRule = AnswerFragmentRule()
    solved: SolvedRule = SolvedRule()
    reverts: RevertRule = RevertRule()
    trivial_edit: TrivialEditRule = TrivialEditRule()
    generic_appendage: GenericAppendageRule = GenericAppendageRule()
    lost_content: LostContentRule = LostContentRule()
    absent_reference: AbsentReferenceRule = AbsentReferenceRule()


def screening_verdicts(
    child: str,
    parent: str,
    rules: ScreeningRules,
    *,
    ancestors: Sequence[str] = (),
    operation: str = "",
) -> list[Verdict]:
    """The verdicts of the enabled screening rules, cheapest and most specific first.

    `ancestors` are the row's generations before `parent` (the seed first); `operation` is the
    evolving operation (rules that compare with the parent skip in-breadth operations). With no
    `parent` there is no evolution to screen: no verdicts.
    """
    if not rules.enabled or not parent.strip():
        return []
    depth = operation not in BREADTH_OPERATIONS
    checks: list[Verdict] = []
    if rules.reverts.enabled and ancestors:
        checks.append(check_reverts(child, ancestors))
    if rules.answer_fragment.enabled:
        checks.append(check_answer_fragment(child, parent))
    if rules.solved.enabled:
        checks.append(check_solved(child, parent))
    if rules.trivial_edit.enabled:
        checks.append(check_trivial_edit(child, parent, breadth=not depth))
    if depth and rules.generic_appendage.enabled:
        appendage = rules.generic_appendage
        checks.append(
            check_generic_appendage(
                child, parent, appendage.generic_words(), min_kept=appendage.min_kept
            )
        )
    if depth and rules.lost_content.enabled:
        checks.append(
            check_lost_content(child, parent, min_coverage=rules.lost_content.min_coverage)
        )
    if rules.absent_reference.enabled:
        checks.append(check_absent_reference(child, parent))
    return checks
