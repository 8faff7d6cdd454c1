"""F(r): does a response show that the evolution of its instruction failed?

Auto Evol-Instruct counts an evolution as failed when the model answering the evolved instruction
cannot simply answer it: it acknowledges and asks back ("Understood. … What would you like me to
…?", "Thank you … ?"), agrees and asks ("Sure, … ?"), or asks for missing information ("please
provide …"). The detector is a configurable rule set; every rule has a name for the per-case
report. The LLM alternative lives in the judge agent.
"""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["FailureRules", "detect_failure"]


class FailureRules(BaseModel):
    """The rule set. Matching is case-insensitive; prefixes are matched at the response start."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    acknowledgement_prefixes: tuple[str, ...] = Field(
        default=(
            "understood", "thank you", "thanks", "got it", "noted", "i understand",
            "certainly", "of course", "sure", "okay", "ok", "absolutely", "great",
        ),
        description="a response that starts so AND ends with a question failed",
    )
    missing_info_phrases: tuple[str, ...] = Field(
        default=(
            "please provide", "could you provide", "can you provide", "could you please provide",
            "please share", "could you share", "please specify", "could you specify",
            "could you clarify", "please clarify", "i need more information",
            "i need more details", "more context", "which one do you", "what would you like me to",
        ),
        description="a response containing one of these asks for missing information: failed",
    )
    empty_is_failure: bool = True


_WORD = re.compile(r"[a-z']+")


def detect_failure(response: str | None, rules: FailureRules | None = None) -> str | None:
    """The name of the failure rule that fires (with detail), or None when the response is fine."""
    rules = rules or FailureRules()
    text = (response or "").strip()
    if not text:
        return "empty_response" if rules.empty_is_failure else None
    lowered = text.lower()
    head = lowered.lstrip("*_#>\"' \t")
    ends_with_question = lowered.rstrip("*_\"') \t\n").endswith("?")
    if ends_with_question:
        for prefix in rules.acknowledgement_prefixes:
            if head.startswith(prefix) and _word_boundary(head, len(prefix)):
                return f"acknowledges ({prefix!r}) and asks back"
    for phrase in rules.missing_info_phrases:
        if phrase in lowered:
            return f"asks for missing information ({phrase!r})"
    return None


def _word_boundary(text: str, end: int) -> bool:
    return end >= len(text) or not text[end].isalnum()
