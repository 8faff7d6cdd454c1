"""Parsers for the Auto Evol-Instruct LLM outputs.

- `parse_final_instruction(raw)`: the instruction after the last "#Final Rewritten Instruction#"
  heading (and its variants: "**Final Rewritten Instruction:**", "Step 5 Final instruction -",
  "#Finally Rewritten Instruction#"), cleaned like any evolved instruction. Without that heading
  it falls back to the last draft section ("#Draft#", "#Rewritten Instruction#") when
  `allow_draft`, and an answer with no step structure at all is read as a bare instruction.
  Never raises; `None` or a stripped, non-empty string.
- `parse_analysis(raw, known_ids=…)`: the failed cases from the trajectory analysis, one
  `FAILED <id> | step <n> | <reason>` line each (bullets, bold, other separators tolerated),
  or "NO FAILURES". An answer with neither gives `parseable=False`, never a guess.
- `parse_optimized_method(raw)`: the text of the last `<method>…</method>` block (an unclosed
  last block counts; code fences and any echoed `<instruction>` block are removed), or `None`.
- `format_feedback(result)`: the analysis result as the `{{feedback}}` text of the optimizer.
"""

from __future__ import annotations

import re
from collections.abc import Collection

from pydantic import BaseModel, ConfigDict

from agents.evol.parsing import extract_evolved_instruction, strip_wrappers

__all__ = [
    "AnalysisResult",
    "FailedCase",
    "format_feedback",
    "parse_analysis",
    "parse_final_instruction",
    "parse_optimized_method",
]

_STEP_PREFIX = r"(?:step\s*\d+\s*[:.)\-]?\s*)?"
_FINAL_RE = re.compile(
    rf"^[ \t>*_\-]*{_STEP_PREFIX}[#*_ \t]*final(?:ly)?(?:\s+(?:rewritten|revised|evolved|"
    r"improved|complex))?\s+(?:instruction|prompt|version|question|problem|task)s?"
    r"[#*_ \t]*(?:[:\-\u2013\u2014]+|$)[#*_ \t]*",
    re.IGNORECASE | re.MULTILINE,
)
_DRAFT_RE = re.compile(
    rf"^[ \t>*_\-]*{_STEP_PREFIX}[#*_ \t]*(?:draft|rewritten\s+(?:instruction|prompt)|"
    r"revised\s+(?:instruction|prompt))[#*_ \t]*(?:[:\-\u2013\u2014]+|$)[#*_ \t]*",
    re.IGNORECASE | re.MULTILINE,
)
_SECTION_RE = re.compile(
    r"^[ \t>*_\-]*(?:step\s*\d+\b|#[^#\n]{2,40}#\s*:?|\*\*[^*\n]{2,40}:?\*\*\s*:?\s*$)",
    re.IGNORECASE | re.MULTILINE,
)


def parse_final_instruction(raw: str, *, allow_draft: bool = True) -> str | None:
    """The final rewritten instruction of a method's answer, or `None` (see module doc)."""
    text = raw.replace("\r\n", "\n").replace("\r", "\n")
    for heading in (_FINAL_RE, _DRAFT_RE) if allow_draft else (_FINAL_RE,):
        for match in reversed(list(heading.finditer(text))):
            section = _until_next_section(text[match.end() :])
            found = extract_evolved_instruction(section)
            if found is not None:
                return found
    if _SECTION_RE.search(text):
        return None
    return extract_evolved_instruction(text)


def _until_next_section(text: str) -> str:
    """The text up to the next step or heading line (the first line always belongs to it)."""
    first, _, rest = text.partition("\n")
    nxt = _SECTION_RE.search(rest)
    return first + "\n" + (rest[: nxt.start()] if nxt else rest)


class FailedCase(BaseModel):
    """One trajectory the analysis says failed to evolve."""

    model_config = ConfigDict(frozen=True)

    id: str
    step: int | None = None
    reason: str = ""


class AnalysisResult(BaseModel):
    """What the trajectory analysis said: failures, or explicitly none, or unparseable."""

    model_config = ConfigDict(frozen=True)

    failures: tuple[FailedCase, ...] = ()
    no_failures: bool = False
    parseable: bool = True
    unknown_ids: tuple[str, ...] = ()

    @property
    def failed_ids(self) -> tuple[str, ...]:
        """Ids of the failed cases, in the order given, without duplicates."""
        return tuple(dict.fromkeys(case.id for case in self.failures))


_FAILED_RE = re.compile(
    r"^[\s>*_\-\u2022\d.)]*\**\s*fail(?:ed|ure)?\**\s*[:\-]?\s*"
    r"(?:(?:case|trajectory|id)(?:\s+|\s*[#:=]\s*))?[\"'`\[(]?(?P<id>[\w.:\-]+?)[\"'`\])]?"
    r"(?:\s*[|:,;\u2013\u2014\-]\s*|\s+)"
    r"(?:\(?\s*(?:at\s+)?step\s*[#:=]?\s*(?P<step>\d+)\s*\)?\s*[|:,;\u2013\u2014\-]?\s*)?"
    r"(?P<reason>.*)$",
    re.IGNORECASE,
)
# Prose such as "Failed trajectories are:" must not yield a case id.
_NOT_IDS = frozenset(
    {
        "a",
        "an",
        "the",
        "are",
        "is",
        "were",
        "to",
        "in",
        "of",
        "case",
        "cases",
        "trajectory",
        "trajectories",
        "step",
        "steps",
        "reason",
        "reasons",
        "ones",
        "evolutions",
        "instructions",
    }
)
_NONE_RE = re.compile(r"\bno\s+(?:failures?|failed\s+(?:cases|trajectories))\b|^\W*none\W*$", re.I)


def parse_analysis(raw: str, *, known_ids: Collection[str] | None = None) -> AnalysisResult:
    """Failed cases from the analysis answer; ids outside `known_ids` go to `unknown_ids`."""
    failures: list[FailedCase] = []
    unknown: list[str] = []
    for line in raw.replace("\r\n", "\n").split("\n"):
        match = _FAILED_RE.match(line.strip().replace("**", ""))
        if not match:
            continue
        case_id = match.group("id").strip(".:-")
        if not case_id or case_id.lower() in _NOT_IDS:
            continue
        if known_ids is not None and case_id not in known_ids:
            unknown.append(case_id)
            continue
        step = int(match.group("step")) if match.group("step") else None
        reason = match.group("reason").strip(" |-:*")
        failures.append(FailedCase(id=case_id, step=step, reason=reason))
    if failures:
        return AnalysisResult(failures=tuple(failures), unknown_ids=tuple(unknown))
    if any(_NONE_RE.search(line.strip()) for line in raw.split("\n")):
        return AnalysisResult(no_failures=True, unknown_ids=tuple(unknown))
    return AnalysisResult(parseable=False, unknown_ids=tuple(unknown))


def format_feedback(result: AnalysisResult) -> str:
    """The optimizer's `{{feedback}}`: one line per failed case with its step and reason."""
    if not result.failures:
        return "No case failed to evolve."
    lines = []
    for case in result.failures:
        where = f" (step {case.step})" if case.step is not None else ""
        lines.append(f"- Case {case.id}{where}: {case.reason or 'no reason given'}")
    return "\n".join(lines)


_METHOD_RE = re.compile(r"<method>(.*?)(?:</method>|\Z)", re.IGNORECASE | re.DOTALL)
_INSTRUCTION_BLOCK_RE = re.compile(
    r"<instruction>.*?(?:</instruction>|\Z)|</?instruction>|\{\{instruction\}\}",
    re.IGNORECASE | re.DOTALL,
)


def parse_optimized_method(raw: str) -> str | None:
    """The new method text from the optimizer's answer, or `None` when it has no `<method>`."""
    blocks = [b for b in _METHOD_RE.findall(raw) if b.strip()]
    if not blocks:
        return None
    text = _INSTRUCTION_BLOCK_RE.sub("", blocks[-1])
    text = strip_wrappers(text).strip()
    return text or None
