"""Mock replies for the data-quality and Vicuna-style judge prompts (`agents/judge/prompts/`).

Registered before the built-in recognisers when `agents.llm.mock.replies` is imported:

- `judge_difficulty` — contains `[[difficulty]]`: a reason, then `Difficulty: [[N]]`. N grows
  with the constraints the mock's in-depth rewrites add (2 each), constraint words and length
  (plus a deterministic jitter of ±1), so instructions evolved in depth round after round are
  rated harder — the shape the WizardLM paper reports.
- `judge_tags` — contains `<tags>`: `<tags>[{"tag": ..., "explanation": ...}]</tags>` with one
  tag per ~12 words of the request (1-8), taken from its keywords.
- `judge_score_pair` — the Vicuna `pair-score` prompt (`[Assistant 1's answer begins]` and
  `[Assistant 2's answer begins]`): two scores 1-10 on the first line, then a reason.

Deterministic like every mock reply: the same prompt always gets the same answer.
"""

from __future__ import annotations

import json
import re

from agents.llm.mock import _text
from agents.llm.mock.replies import Reply, ReplyContext

__all__ = ["judge_difficulty", "judge_score_pair", "judge_tags"]

_INSTRUCTION = re.compile(r"\[Instruction begins\](.*?)\[Instruction ends\]", re.S)
_REQUEST = re.compile(r"\[Request begins\](.*?)\[Request ends\]", re.S)
_CONSTRAINT = re.compile(
    r"\b(must|should|without|exactly|at least|at most|each|every|explain|compare|steps?|"
    r"constraints?|ensure|include|only|format|table|justify)\b",
    re.I,
)


def _between(pattern: re.Pattern[str], ctx: ReplyContext) -> str:
    found = pattern.findall(ctx.prompt)
    return str(found[-1]).strip() if found else ctx.user


def judge_difficulty(ctx: ReplyContext) -> Reply | None:
    if "[[difficulty]]" not in ctx.prompt:
        return None
    text = _between(_INSTRUCTION, ctx)
    words = len(text.split())
    added = sum(constraint in text for constraint in _text.CONSTRAINTS)
    base = 1.5 + 2 * added + words / 25 + 0.25 * len(_CONSTRAINT.findall(text))
    score = max(1, min(10, round(base + ctx.index("jitter", 3) - 1)))
    reason = _text.judge_reason(ctx.index("why", 3))
    return Reply(f"{reason}\n\nDifficulty: [[{score}]]", "judge_difficulty")


def judge_tags(ctx: ReplyContext) -> Reply | None:
    if "<tags>" not in ctx.prompt:
        return None
    text = _between(_REQUEST, ctx)
    count = max(1, min(8, 1 + len(text.split()) // 12))
    keywords = _text.keywords(text, limit=count) or ["general request"]
    tags = [
        {"tag": word.lower(), "explanation": f"the request is about {word.lower()}"}
        for word in keywords[:count]
    ]
    return Reply(f"<tags>{json.dumps(tags)}</tags>", "judge_tags")


def judge_score_pair(ctx: ReplyContext) -> Reply | None:
    if "[Assistant 1's answer begins]" not in ctx.prompt:
        return None
    if "[Assistant 2's answer begins]" not in ctx.prompt:
        return None
    a = 3 + ctx.index("score-a", 8)
    b = 3 + ctx.index("score-b", 8)
    reason = _text.judge_reason(ctx.index("why", 3))
    return Reply(f"{a} {b}\n{reason}", "judge_score_pair")
