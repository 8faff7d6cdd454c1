"""InsTag-style intent tags: parsing, complexity and diversity.

The `tags` template asks for a JSON list of `{"tag", "explanation"}` objects between `<tags>` and
`</tags>`. `parse_tags` reads the last such block strictly (a code fence inside it is tolerated);
anything else is `Unparseable`. Tags are normalised (case, spaces, surrounding punctuation) so
"Data Analysis." and "data  analysis" count as one.

Complexity is the mean number of distinct tags per instruction; diversity is the number of
distinct tags over the whole set (both over parsed instructions only, as in the InsTag paper).
"""

from __future__ import annotations

import json
import re
from collections import Counter, defaultdict
from collections.abc import Iterable

from pydantic import BaseModel, ConfigDict

from agents.judge.verdicts import Unparseable

__all__ = [
    "Tag",
    "TagMetrics",
    "normalize_tag",
    "parse_tags",
    "tag_metrics",
    "tag_metrics_by_round",
]

_BLOCK_RE = re.compile(r"<tags>(.*?)</tags>", re.DOTALL | re.IGNORECASE)
_FENCE_RE = re.compile(r"^\s*```(?:json)?\s*|\s*```\s*$")
_EXCERPT = 200


class Tag(BaseModel):
    """One intent tag with the judge's explanation."""

    model_config = ConfigDict(frozen=True)

    tag: str
    explanation: str = ""


class TagMetrics(BaseModel):
    """Tag statistics of a set of instructions. `top` lists the most frequent tags."""

    model_config = ConfigDict(frozen=True)

    n: int
    parsed: int
    unparseable: int
    complexity: float | None
    diversity: int
    top: list[tuple[str, int]]


def normalize_tag(tag: str) -> str:
    """Lower-case, single spaces, no surrounding punctuation."""
    return re.sub(r"\s+", " ", tag).strip().strip(".,;:!?\"'`").strip().lower()


def _bad(reason: str, text: str) -> Unparseable:
    return Unparseable(reason=reason, excerpt=text[-_EXCERPT:])


def parse_tags(text: str) -> list[Tag] | Unparseable:
    """The tags in the last `<tags>…</tags>` block, normalised and de-duplicated in order."""
    blocks = _BLOCK_RE.findall(text)
    if not blocks:
        return _bad("no <tags>...</tags> block", text)
    body = _FENCE_RE.sub("", blocks[-1]).strip()
    try:
        data = json.loads(body)
    except ValueError:
        return _bad("tags block is not JSON", text)
    if not isinstance(data, list):
        return _bad("tags block is not a JSON list", text)
    tags: list[Tag] = []
    seen: set[str] = set()
    for item in data:
        if not isinstance(item, dict) or not isinstance(item.get("tag"), str):
            return _bad("a tag entry lacks a string 'tag'", text)
        explanation = item.get("explanation", "")
        if not isinstance(explanation, str):
            return _bad("a tag's 'explanation' is not a string", text)
        name = normalize_tag(item["tag"])
        if not name:
            return _bad("an empty tag", text)
        if name not in seen:
            seen.add(name)
            tags.append(Tag(tag=name, explanation=explanation))
    return tags


def tag_metrics(results: Iterable[list[Tag] | Unparseable], *, top_k: int = 20) -> TagMetrics:
    """Complexity (tags per parsed instruction) and diversity (distinct tags)."""
    n = 0
    parsed: list[list[Tag]] = []
    for r in results:
        n += 1
        if not isinstance(r, Unparseable):
            parsed.append(r)
    counts = Counter(t.tag for tags in parsed for t in tags)
    return TagMetrics(
        n=n,
        parsed=len(parsed),
        unparseable=n - len(parsed),
        complexity=sum(len(t) for t in parsed) / len(parsed) if parsed else None,
        diversity=len(counts),
        top=counts.most_common(top_k),
    )


def tag_metrics_by_round(
    records: Iterable[tuple[int, list[Tag] | Unparseable]], *, top_k: int = 20
) -> dict[int, TagMetrics]:
    """`tag_metrics` per evolution round, rounds ascending."""
    by_round: dict[int, list[list[Tag] | Unparseable]] = defaultdict(list)
    for rnd, result in records:
        by_round[rnd].append(result)
    return {rnd: tag_metrics(by_round[rnd], top_k=top_k) for rnd in sorted(by_round)}
