"""What every elimination rule returns: a `Verdict` naming its `RuleName`."""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict

__all__ = ["Outcome", "RuleName", "Verdict"]


class RuleName(StrEnum):
    """Stable rule names, used in verdicts, counters, the run store and reports."""

    # the paper's four
    NO_INFORMATION_GAIN = "no_information_gain"
    SORRY_SHORT_RESPONSE = "sorry_short_response"
    STOPWORDS_ONLY_RESPONSE = "stopwords_only_response"
    COPIES_EVOLVING_PROMPT = "copies_evolving_prompt"
    # screening rules for what real models get wrong (agents/eliminator/screening.py)
    ANSWER_FRAGMENT = "answer_fragment"
    SOLVED_NOT_REWRITTEN = "solved_not_rewritten"
    REVERTS_TO_ANCESTOR = "reverts_to_ancestor"
    TRIVIAL_EDIT = "trivial_edit"
    GENERIC_APPENDAGE = "generic_appendage"
    LOST_CONTENT = "lost_content"
    ABSENT_REFERENCE = "absent_reference"
    # a response rule beyond the word "sorry"
    REFUSAL_RESPONSE = "refusal_response"


Outcome = Literal["pass", "fail", "unparseable"]


class Verdict(BaseModel):
    """One rule's decision: `outcome` is "fail" when the evolution must be eliminated."""

    model_config = ConfigDict(frozen=True)

    rule: RuleName
    outcome: Outcome
    reason: str

    @property
    def failed(self) -> bool:
        """True only for a definite failure ("unparseable" is not a failure)."""
        return self.outcome == "fail"
