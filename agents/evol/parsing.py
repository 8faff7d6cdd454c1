"""Extract the evolved instruction from an LLM's raw, often messy, answer.

LLMs wrap the instruction they were asked for in all kinds of packaging: a preamble ("Sure!
Here is the rewritten prompt:"), a heading or label ("#Rewritten Prompt#:", "**Rewritten
Instruction:**", "Rewritten prompt -", "After:"), quotes, bold or a code fence around the whole
thing, an echo of the `<instruction>` tags, and a trailing explanation ("This version adds…",
"Note: …"). `extract_evolved_instruction` removes that packaging and keeps the instruction,
including code blocks, tables and input data that are part of it.

Contract:
- never raises; the result is `None` or a non-empty string with no leading/trailing whitespace;
- `None` only when nothing is left once the packaging is removed (empty output, a bare label,
  a preamble with nothing after it, only punctuation);
- profile `"compact"`: the result is the first meaningful line (tiny models are asked for one
  line and often ramble after it);
- it does not judge quality: copied evolving-prompt words are the eliminator's business.
"""

from __future__ import annotations

import re

from agents.evol.operations import Profile

__all__ = ["extract_evolved_instruction", "strip_wrappers"]

_QUAL = (
    r"(?:final|new|rewritten|re-written|created|evolved|improved|revised|modified|updated|"
    r"more\s+complex|complex|harder|more\s+difficult|easier|simpler|enhanced|resulting|"
    r"generated|brand[- ]new|complicated|deepened|concretized|reformulated|rephrased|"
    r"reworded|adjusted|expanded|extended|output)"
)
_NOUN = r"(?:prompt|instruction|version|question|task|problem|query|request|exercise)"
_DECOR = r"[#*_`\"'>\[\]\s]*"
# A label: decorations, one or more qualifiers + a noun (or a standalone label word), decorations,
# then a separator or the end of the line. Group `rest` is any inline content after it.
_LABEL_RE = re.compile(
    rf"^[ \t]*(?:[-*+]\s+)?{_DECOR}(?:(?:the|a|your|my|here\s+is\s+the)\s+)?"
    rf"(?:(?:{_QUAL}\s+)+{_NOUN}(?:\s*\(\w+\))?|rewritten|rewrite|after)"
    rf"[#*_`\"'\]]*[ \t]*(?:[:\-\u2013\u2014=]+|(?=\n)|$)[#*_`\"' \t]*(?P<rest>[^\n]*)$",
    re.IGNORECASE | re.MULTILINE,
)
# Labels of the *original* instruction: what follows them is an echo, not the answer.
_GIVEN_RE = re.compile(
    rf"^[ \t]*{_DECOR}(?:the\s+)?(?:(?:given|original|initial|old)\s+(?:prompt|instruction)|before)"
    rf"[#*_`\"'\]]*[ \t]*(?:[:\-\u2013\u2014]+|(?=\n)|$)",
    re.IGNORECASE | re.MULTILINE,
)
# A label counts anywhere when it is unmistakable (a rewrite word, or `#…#` / bold decoration);
# a plain one ("New task:", "Final question:") only at the top, where it cannot be content.
_STRONG_LABEL_RE = re.compile(
    r"rewrit|re-writ|created|evolved|revised|modified|improved|brand|#|\*\*|after", re.IGNORECASE
)
_PREAMBLE_RE = re.compile(
    r"^[\s*_#>]*(?:(?:sure|certainly|of course|okay|ok|absolutely|alright|great|got it|"
    r"understood|no problem)\b[^\n]*"
    r"|(?:here(?:'s|\u2019s| is| are)|below is|the following is)\b[^\n]*"
    r"(?:prompt|instruction|version|rewrite|question|task|problem|attempt|result)[^\n]*)$",
    re.IGNORECASE,
)
_HERE_RE = re.compile(r"\b(?:here(?:'s|\u2019s| is| are)|below is|the following is)\b", re.I)
_PREAMBLE_NOUN_RE = re.compile(
    r"\b(?:prompt|instruction|version|rewrite|question|task|problem|attempt|result)\b", re.I
)
_TRAILER_RE = re.compile(
    r"^[\s*_(>\[-]*(?:"
    r"(?:explanation|changes(?:\s+made)?|rationale|justification|reasoning|"
    r"modifications|what changed)\s*[*_]*\s*[:\-\u2013]"
    r"|notes?\s*[*_]*\s*[:\-\u2013][^\n]*(?:rewrit|original|given|added|adds|version|chang|"
    r"modif|complex|challenging|difficult|i\s+(?:have|made|kept))"
    r"|(?:this|the|my)\s+(?:rewritten|revised|new|modified|updated|evolved|improved|"
    r"more\s+complex|complex|harder)\s+(?:version|prompt|instruction|question|task|problem)\b"
    r"|this\s+(?:version|prompt|instruction|rewrite|revision|change|modification|adds|added|"
    r"introduces|requires|makes|keeps|increases|way|new)\b"
    r"|in\s+this\s+(?:version|rewrite|revision|new)\b"
    r"|i(?:'ve|\u2019ve|\s+have)?\s+(?:added|made|changed|introduced|rewrote|rewritten|revised|"
    r"kept|included|replaced|modified)\b"
    r"|by\s+(?:adding|introducing|requiring|asking)\b"
    r"|(?:these|the)\s+changes\b|the\s+added\b|the\s+additional\s+(?:constraint|requirement)"
    r"|let me know\b|i hope\b|feel free\b"
    r")",
    re.IGNORECASE,
)
_TAG_RE = re.compile(r"</?\s*instruction\s*>", re.IGNORECASE)
_BLOCK_RE = re.compile(r"<instruction>(.*?)</instruction>", re.IGNORECASE | re.DOTALL)
_FENCE_RE = re.compile(r"^```[ \t]*([\w+-]*)[ \t]*\n(.*)\n```$", re.DOTALL)
_PROSE_FENCES = {"", "text", "txt", "markdown", "md", "plaintext", "plain", "prompt"}
_QUOTES = (('"', '"'), ("“", "”"), ("'", "'"), ("«", "»"), ("**", "**"), ("__", "__"))
_MEANINGFUL_RE = re.compile(r"\w")


def extract_evolved_instruction(raw: str, profile: Profile = "full") -> str | None:
    """The evolved instruction in `raw`, or `None` when there is none (see module contract)."""
    text = _from_tags(raw.replace("\r\n", "\n").replace("\r", "\n")).strip()
    if not text:
        return None
    if profile == "compact":
        return _first_meaningful_line(text)
    text = _after_last_label(text)
    text = _drop_preamble(text)
    text = _cut_trailer(text)
    return _finish(strip_wrappers(text))


def strip_wrappers(text: str) -> str:
    """Remove quotes, bold or a prose code fence that wrap the *whole* text (repeatedly)."""
    text = text.strip()
    for _ in range(4):
        before = text
        fence = _FENCE_RE.match(text)
        if fence and fence.group(1).lower() in _PROSE_FENCES and "```" not in fence.group(2):
            text = fence.group(2).strip()
        for left, right in _QUOTES:
            inner = text[len(left) : len(text) - len(right)]
            if (
                len(text) > len(left) + len(right)
                and text.startswith(left)
                and text.endswith(right)
                and left not in inner
                and right not in inner
            ):
                text = inner.strip()
        if text == before:
            break
    return text


def _from_tags(text: str) -> str:
    """Prefer the content of an echoed `<instruction>` block; drop stray tags."""
    blocks = [b for b in _BLOCK_RE.findall(text) if _MEANINGFUL_RE.search(b)]
    if blocks:
        return str(blocks[-1])
    return _TAG_RE.sub("", text)


def _after_last_label(text: str) -> str:
    """Everything after the last rewritten-instruction label, when one has content after it."""
    accepted = [m for m in _LABEL_RE.finditer(text) if _is_label(m, text)]
    for match in reversed(accepted):
        after = (match.group("rest") + text[match.end() :]).strip()
        if _MEANINGFUL_RE.search(after):
            return after
    return _LABEL_RE.sub(lambda m: m.group("rest") if _is_label(m, text) else m.group(0), text)


def _is_label(match: re.Match[str], text: str) -> bool:
    label = match.group(0)[: match.start("rest") - match.start()]
    return bool(_STRONG_LABEL_RE.search(label)) or _only_preamble(text[: match.start()])


def _only_preamble(text: str) -> bool:
    return all(not line.strip() or _is_preamble(line) for line in text.split("\n"))


def _drop_preamble(text: str) -> str:
    lines = text.split("\n")
    while lines:
        rest = "" if not lines[0].strip() else _split_preamble(lines[0])
        if rest is None:
            break
        if rest:
            lines[0] = rest
            break
        lines.pop(0)
    return "\n".join(lines)


def _is_preamble(line: str) -> bool:
    return _split_preamble(line) == ""


def _split_preamble(line: str) -> str | None:
    """`None` if `line` is not a preamble, else what follows it on the line ("" for nothing).

    "Sure!", "Here is the rewritten prompt:" and "Sure! Here it is." are preambles; so is the
    head of "Here is the rewritten prompt: Write …" (the rest is returned). "Sure, write a poem
    about the sea." and "Great Barrier Reef facts …" are not.
    """
    stripped = line.strip()
    if not _PREAMBLE_RE.match(stripped):
        return None
    if stripped.endswith((":", ":**", ":*", ":__")) or len(stripped.split()) <= 4:
        return ""
    if not _HERE_RE.search(stripped):
        return None
    head, colon, tail = stripped.partition(":")
    if colon and _MEANINGFUL_RE.search(tail) and _PREAMBLE_NOUN_RE.search(head):
        return tail.strip(" *_")
    return "" if not colon else None


def _cut_trailer(text: str) -> str:
    """Cut at the first explanation or echo line after the first line, outside code fences."""
    lines = text.split("\n")
    in_fence = False
    seen_content = False
    for index, line in enumerate(lines):
        if line.lstrip().startswith("```"):
            in_fence = not in_fence
            seen_content = True
            continue
        if in_fence:
            continue
        if seen_content and (_TRAILER_RE.match(line) or _GIVEN_RE.match(line)):
            return "\n".join(lines[:index])
        if line.strip():
            seen_content = True
    return text


def _first_meaningful_line(text: str) -> str | None:
    """The first line that is not a preamble, a fence, an echo of the original or a bare label."""
    for line in text.split("\n"):
        stripped = line.strip()
        if not stripped or stripped.startswith("```"):
            continue
        rest = _split_preamble(stripped)
        if rest == "":
            continue
        stripped = rest or stripped
        if _GIVEN_RE.match(stripped):
            continue
        label = _LABEL_RE.match(stripped)
        if label:
            stripped = label.group("rest").strip()
        result = _finish(strip_wrappers(stripped))
        if result is not None:
            return result
    return None


def _finish(text: str) -> str | None:
    text = text.strip()
    return text if _MEANINGFUL_RE.search(text) else None
