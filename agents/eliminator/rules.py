"""WizardLM's elimination rules as pure functions, each returning a `Verdict`.

An evolution fails when:

1. `no_information_gain`: an LLM judges the evolved instruction *equal* to its parent (same
   constraints and requirements, same depth and breadth of inquiry). `render_equality_prompt`
   builds the question, `parse_equality_answer` reads the answer strictly but tolerantly, and
   `check_information_gain` turns it into a verdict. An answer that is neither "Equal" nor
   "Not Equal" gives the outcome `"unparseable"`: never a guess; the caller decides (retry,
   count, or keep).
2. `sorry_short_response`: the RESPONSE contains the word "sorry" (case-insensitive, as a word)
   and is shorter than 80 words.
3. `stopwords_only_response`: the RESPONSE consists only of punctuation and stop words (an empty
   response counts).
4. `copies_evolving_prompt`: the evolved INSTRUCTION contains words of the evolving prompt
   ("given prompt", "#Rewritten Prompt#", …), unless its parent already contained them.

Rules 2 and 3 judge the response, never the instruction: an instruction that says "sorry" is
fine. `apply_local_rules` runs the enabled local rules (2, 3, 4) in that fixed order and returns
the first failure; `RuleSet` is the config (each rule on/off, thresholds, word lists).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from agents.eliminator.screening import ScreeningRules, screening_verdicts
from agents.eliminator.text import load_word_list
from agents.eliminator.verdict import RuleName, Verdict
from agents.evol.operations import Profile
from agents.evol.templates import PromptError, Template, load_template
from agents.llm.types import ChatMessage

__all__ = [
    "DEFAULT_PROMPT_PHRASES",
    "DEFAULT_STOPWORDS_FILE",
    "EqualityAnswer",
    "InformationGainRule",
    "PromptWordsRule",
    "RefusalRule",
    "RuleName",
    "RuleSet",
    "SorryRule",
    "StopwordsRule",
    "Verdict",
    "apply_local_rules",
    "check_information_gain",
    "check_prompt_words",
    "check_refusal",
    "check_sorry",
    "check_stopwords_only",
    "check_unchanged",
    "instruction_rules",
    "load_stopwords",
    "parse_equality_answer",
    "render_equality_prompt",
    "response_rules",
    "run_local_rules",
]

PROMPTS_DIR = Path(__file__).parent / "prompts"
DEFAULT_STOPWORDS_FILE = PROMPTS_DIR / "stopwords.txt"
DEFAULT_PROMPT_PHRASES: tuple[str, ...] = (
    "given prompt",
    "rewritten prompt",
    "created prompt",
    "#Given Prompt#",
    "#Rewritten Prompt#",
    "#Created Prompt#",
    "given instruction",
    "rewritten instruction",
    "created instruction",
    "evolved instruction",
    "instruction to rewrite",
    # the compact profile's one-line requests, echoed by small models
    "rewrite this instruction",
    "rewrite this question",
    "rewrite the instruction",
    "rewrite the question",
    "</instruction>",
    "<instruction>",
)


# ------------------------------------------------------------------ rule 1: information gain


class EqualityAnswer(StrEnum):
    """What the equality judge answered."""

    EQUAL = "equal"
    NOT_EQUAL = "not_equal"
    UNPARSEABLE = "unparseable"


_NEGATED_EQUAL_RE = re.compile(
    r"(?:\bnot|n't|\bnever|\bnor)\s+(?:quite\s+|exactly\s+|really\s+)?equal(?:s)?\b|\bunequal\b",
    re.IGNORECASE,
)
_EQUAL_RE = re.compile(r"\bequal\b", re.IGNORECASE)
_NOISE_RE = re.compile(r"[*_#`\"\[\]]")


def render_equality_prompt(
    first: str, second: str, profile: Profile = "full", *, user_dir: Path | None = None
) -> list[ChatMessage]:
    """The messages asking an LLM whether `second` (evolved) equals `first` (its parent).

    The template is `equality.<profile>.txt`, from `user_dir` when it has one, else built in.
    """
    return render_judge_prompt("equality", first, second, profile, user_dir=user_dir)


def render_judge_prompt(
    kind: str, first: str, second: str, profile: str, *, user_dir: Path | None = None
) -> list[ChatMessage]:
    """A pairwise judge prompt, `<kind>.<profile>.txt` (from `user_dir` when it has one, else
    built in), with `{{first}}` and `{{second}}` filled. Raises `PromptError` for a template
    that lacks either placeholder."""
    name = f"{kind}.{profile}.txt"
    path = user_dir / name if user_dir is not None and (user_dir / name).is_file() else None
    template = _judge_template(path or PROMPTS_DIR / name)
    content = template.render(first=first.strip(), second=second.strip())
    return [ChatMessage(role="user", content=content)]


@lru_cache(maxsize=8)
def _judge_template(path: Path) -> Template:
    return load_template(path, required=("first", "second"))


def parse_equality_answer(raw: str) -> EqualityAnswer:
    """Read "Equal" / "Not Equal" in their common variants; anything else is UNPARSEABLE.

    Accepted: "Equal", "**Not Equal**", "Answer: Equal", "The two are not equal.", "Unequal".
    When the text says both, the first line decides if it is unambiguous; otherwise the answer
    is UNPARSEABLE (e.g. "Equal or Not Equal?", "Yes", "").
    """
    text = _NOISE_RE.sub(" ", raw)
    verdict = _classify(text)
    if verdict is not None:
        return verdict
    first_line = next((line for line in text.splitlines() if line.strip()), "")
    return _classify(first_line) or EqualityAnswer.UNPARSEABLE


def _classify(text: str) -> EqualityAnswer | None:
    negated = bool(_NEGATED_EQUAL_RE.search(text))
    plain = bool(_EQUAL_RE.search(_NEGATED_EQUAL_RE.sub(" ", text)))
    if negated and not plain:
        return EqualityAnswer.NOT_EQUAL
    if plain and not negated:
        return EqualityAnswer.EQUAL
    return None


def check_information_gain(answer: str | EqualityAnswer) -> Verdict:
    """Rule 1 from the judge's raw answer (or an already parsed one): "Equal" fails."""
    parsed = answer if isinstance(answer, EqualityAnswer) else parse_equality_answer(answer)
    rule = RuleName.NO_INFORMATION_GAIN
    if parsed is EqualityAnswer.EQUAL:
        return Verdict(rule=rule, outcome="fail", reason="the judge found it equal to its parent")
    if parsed is EqualityAnswer.NOT_EQUAL:
        return Verdict(rule=rule, outcome="pass", reason="the judge found it not equal")
    if isinstance(answer, str):
        reason = f"unparseable answer: {answer.strip()[:80]!r}"
    else:
        reason = "the answer was neither Equal nor Not Equal"
    return Verdict(rule=rule, outcome="unparseable", reason=reason)


# ------------------------------------------------------------------ rule 2: sorry + short


def check_sorry(
    response: str, *, words: Iterable[str] = ("sorry",), max_words: int = 80
) -> Verdict:
    """Rule 2: the response contains one of `words` (as a word) and has < `max_words` words."""
    rule = RuleName.SORRY_SHORT_RESPONSE
    count = len(response.split())
    for word in words:
        if re.search(rf"(?<!\w){re.escape(word)}(?!\w)", response, re.IGNORECASE):
            if count < max_words:
                return Verdict(rule=rule, outcome="fail", reason=f"says {word!r} in {count} words")
            return Verdict(rule=rule, outcome="pass", reason=f"says {word!r} but has {count} words")
    return Verdict(rule=rule, outcome="pass", reason="no apology word")


# ------------------------------------------------------------------ refusals beyond "sorry"

DEFAULT_REFUSAL_FILE = PROMPTS_DIR / "refusal_phrases.txt"


def check_refusal(
    response: str, phrases: Iterable[str], *, opening_words: int = 30, max_words: int = 80
) -> Verdict:
    """A refusal or deflection: a phrase of `phrases` within the first `opening_words` words, or
    anywhere in a response of fewer than `max_words` words. Case and apostrophes are ignored."""
    rule = RuleName.REFUSAL_RESPONSE
    flat = " ".join(response.lower().replace("\u2019", "'").split())
    opening = " ".join(flat.split()[:opening_words])
    short = len(flat.split()) < max_words
    for phrase in phrases:
        pattern = rf"(?<!\w){re.escape(phrase)}(?!\w)"
        if re.search(pattern, opening) or (short and re.search(pattern, flat)):
            return Verdict(rule=rule, outcome="fail", reason=f"refuses: {phrase!r}")
    return Verdict(rule=rule, outcome="pass", reason="no refusal phrase")


# ------------------------------------------------------------------ rule 3: stop words only

_TOKEN_RE = re.compile(r"[^\W_]+(?:['\u2019][^\W_]+)*")


@lru_cache(maxsize=16)
def load_stopwords(path: Path = DEFAULT_STOPWORDS_FILE) -> frozenset[str]:
    """Stop words from a file: one a line, `#` comments; raises `PromptError` naming the path."""
    try:
        return load_word_list(path)
    except (OSError, UnicodeDecodeError) as exc:
        raise PromptError(f"{path}: cannot read word list: {exc}") from exc


def check_stopwords_only(response: str, stopwords: frozenset[str] | None = None) -> Verdict:
    """Rule 3: the response holds no word outside `stopwords` (punctuation is ignored)."""
    rule = RuleName.STOPWORDS_ONLY_RESPONSE
    words = stopwords if stopwords is not None else load_stopwords()
    tokens = [t.lower().replace("\u2019", "'") for t in _TOKEN_RE.findall(response)]
    if not tokens:
        what = "empty" if not response.strip() else "only punctuation"
        return Verdict(rule=rule, outcome="fail", reason=f"the response is {what}")
    content = [t for t in tokens if t not in words]
    if not content:
        return Verdict(
            rule=rule, outcome="fail", reason=f"only stop words and punctuation ({len(tokens)})"
        )
    return Verdict(rule=rule, outcome="pass", reason=f"{len(content)} content words")


# ------------------------------------------------------------------ rule 4: evolving-prompt words


def _words(text: str) -> list[str]:
    return re.findall(r"\w+", text.lower())


def _normalize(text: str) -> str:
    return " ".join(re.sub(r"[#*_`\"'“”:]+", " ", text.lower()).split())


def check_prompt_words(
    instruction: str, phrases: Iterable[str] = DEFAULT_PROMPT_PHRASES, *, parent: str = ""
) -> Verdict:
    """Rule 4: the evolved instruction contains an evolving-prompt phrase its parent lacked.

    Matching ignores case, `#`/`*`/`_` decorations and extra spaces, at word boundaries, so
    "#Rewritten Prompt#:" and "rewritten  prompt" both match "rewritten prompt".
    """
    rule = RuleName.COPIES_EVOLVING_PROMPT
    text, before = f" {_normalize(instruction)} ", f" {_normalize(parent)} "
    for phrase in phrases:
        needle = _normalize(phrase)
        if not needle:
            continue
        pattern = rf"(?<!\w){re.escape(needle)}(?!\w)"
        if re.search(pattern, text) and not re.search(pattern, before):
            return Verdict(rule=rule, outcome="fail", reason=f"contains {phrase!r}")
    return Verdict(rule=rule, outcome="pass", reason="no evolving-prompt words")


# ------------------------------------------------------------------ config and the local pass


class _Rule(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    enabled: bool = True


class InformationGainRule(_Rule):
    """Rule 1: an evolved instruction identical to its parent (after normalising case, spaces and
    punctuation) fails at once; otherwise, with ``use_llm``, the judge LLM decides.

    ``method``: ``"compare"`` (default) asks which of parent and child asks for more, in both
    orders, with a one-token constrained answer, and fails a child whose score is below
    ``threshold`` (`agents.eliminator.comparison`); ``"equality"`` is the paper's free-text
    "Equal / Not Equal" question. ``prompt_dir`` holds prompt overrides (`comparison.<profile>.txt`
    or `equality.<profile>.txt`); the profile follows the eliminator's ``profile``.
    """

    use_llm: bool = True
    method: Literal["compare", "equality"] = "compare"
    threshold: float = Field(default=0.5, ge=0, le=1)
    prompt_dir: Path | None = None


def check_unchanged(parent: str, child: str) -> Verdict:
    """Rule 1's free part: the child only repeats its parent (case, spacing, punctuation aside)."""
    rule = RuleName.NO_INFORMATION_GAIN
    if _words(parent) == _words(child):
        return Verdict(rule=rule, outcome="fail", reason="identical to its parent")
    return Verdict(rule=rule, outcome="pass", reason="differs from its parent")


class SorryRule(_Rule):
    """Rule 2: apology words and the word-count threshold (strictly fewer words fail)."""

    words: tuple[str, ...] = ("sorry",)
    max_words: int = Field(default=80, ge=1)


class RefusalRule(_Rule):
    """Refusals beyond "sorry" ("I apologize, but I can't assist with that."): the phrases of
    `phrases_file` (default: the built-in list) and `extra_phrases`, in the opening words or in a
    short response."""

    phrases_file: Path | None = None
    extra_phrases: tuple[str, ...] = ()
    opening_words: int = Field(default=30, ge=1)
    max_words: int = Field(default=80, ge=1)

    def phrases(self) -> tuple[str, ...]:
        """The effective phrase list."""
        base = load_stopwords(self.phrases_file or DEFAULT_REFUSAL_FILE)
        extra = {p.strip().lower() for p in self.extra_phrases if p.strip()}
        return tuple(sorted(base | extra))


class StopwordsRule(_Rule):
    """Rule 3: the stop-word file (default: the built-in list) and extra words."""

    stopwords_file: Path | None = None
    extra_stopwords: tuple[str, ...] = ()

    def stopwords(self) -> frozenset[str]:
        """The effective stop-word set."""
        base = load_stopwords(self.stopwords_file or DEFAULT_STOPWORDS_FILE)
        return base | {w.strip().lower() for w in self.extra_stopwords if w.strip()}


class PromptWordsRule(_Rule):
    """Rule 4: the phrases that betray a copied evolving prompt."""

    phrases: tuple[str, ...] = DEFAULT_PROMPT_PHRASES
    ignore_if_in_parent: bool = True


class RuleSet(BaseModel):
    """The eliminator's config: each rule on/off with its thresholds and word lists."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    information_gain: InformationGainRule = InformationGainRule()
    sorry: SorryRule = SorryRule()
    stopwords: StopwordsRule = StopwordsRule()
    prompt_words: PromptWordsRule = PromptWordsRule()
    refusal: RefusalRule = RefusalRule()
    screening: ScreeningRules = ScreeningRules()


def response_rules(response: str, rules: RuleSet | None = None) -> list[Verdict]:
    """Verdicts of the enabled rules that judge the RESPONSE, in order: 2 (sorry), 3 (stop
    words), then refusals beyond "sorry"."""
    rules = rules or RuleSet()
    verdicts: list[Verdict] = []
    if rules.sorry.enabled:
        verdicts.append(
            check_sorry(response, words=rules.sorry.words, max_words=rules.sorry.max_words)
        )
    if rules.stopwords.enabled:
        verdicts.append(check_stopwords_only(response, rules.stopwords.stopwords()))
    if rules.refusal.enabled:
        refusal = rules.refusal
        verdicts.append(
            check_refusal(
                response,
                refusal.phrases(),
                opening_words=refusal.opening_words,
                max_words=refusal.max_words,
            )
        )
    return verdicts


def instruction_rules(
    instruction: str,
    rules: RuleSet | None = None,
    *,
    parent: str = "",
    ancestors: Sequence[str] = (),
    operation: str = "",
) -> list[Verdict]:
    """Verdicts of the enabled local rules that judge the evolved INSTRUCTION: rule 4 (prompt
    words), then the screening rules (`agents.eliminator.screening`), in a fixed order.

    They need no response and no LLM, so the eliminator runs them before the step is answered.
    `ancestors` are the row's generations before `parent` (seed first); `operation` the evolving
    operation (parent-comparing rules skip in-breadth ones).
    """
    rules = rules or RuleSet()
    verdicts: list[Verdict] = []
    if rules.prompt_words.enabled:
        exempt = parent if rules.prompt_words.ignore_if_in_parent else ""
        verdicts.append(check_prompt_words(instruction, rules.prompt_words.phrases, parent=exempt))
    verdicts += screening_verdicts(
        instruction, parent, rules.screening, ancestors=ancestors, operation=operation
    )
    return verdicts


def run_local_rules(
    instruction: str, response: str, rules: RuleSet | None = None, *, parent: str = ""
) -> list[Verdict]:
    """Verdicts of every enabled local rule, in the fixed order: sorry, stop words, prompt words.

    `instruction` is the evolved instruction, `response` the answer to it, `parent` the
    instruction it was evolved from (for rule 4's parent exemption).
    """
    return response_rules(response, rules) + instruction_rules(instruction, rules, parent=parent)


def apply_local_rules(
    instruction: str, response: str, rules: RuleSet | None = None, *, parent: str = ""
) -> Verdict | None:
    """The first failing local verdict (fixed order), or `None` when the evolution passes."""
    for verdict in run_local_rules(instruction, response, rules, parent=parent):
        if verdict.failed:
            return verdict
    return None
