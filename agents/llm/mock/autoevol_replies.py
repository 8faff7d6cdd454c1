"""Mock replies for the Auto Evol-Instruct prompts (trajectory analysis, method optimization).

- analysis — the prompt holds ``<trajectory id="…">`` blocks: each trajectory is reported failed
  with probability 0.3 (deterministic per request and id) as ``FAILED <id> | step 1 | <reason>``,
  or ``NO FAILURES`` when none is.
- optimize — the prompt holds ``<method>…</method>`` and ``<feedback>…</feedback>``: the current
  method with one more deterministic guideline, inside ``<method>…</method>``.
"""

from __future__ import annotations

import re

from agents.llm.mock.replies import Reply, ReplyContext

__all__ = ["analysis", "optimize"]

_TRAJECTORY_ID = re.compile(r'<trajectory id="([^"]+)">')
_METHOD = re.compile(r"<method>\s*(.*?)\s*</method>", re.S)

_REASONS = (
    "the rewrite only reworded the instruction",
    "the added requirement made the task contradictory",
    "the rewrite dropped the input data of the previous version",
    "the rewrite answered the instruction instead of restating it",
)
_GUIDELINES = (
    "Before writing the final instruction, check that every added requirement can be met at once.",
    "Never drop code, tables or data that the instruction already contains.",
    "Prefer one concrete, checkable requirement over several vague ones.",
    "Make sure the final instruction still reads as a request, not as an answer.",
    "Keep the topic and the language of the original instruction unchanged.",
)


def analysis(ctx: ReplyContext) -> Reply | None:
    ids = _TRAJECTORY_ID.findall(ctx.prompt)
    if not ids:
        return None
    lines = [
        f"FAILED {case} | step 1 | {_REASONS[ctx.index('why:' + case, len(_REASONS))]}"
        for case in ids
        if ctx.unit("fail:" + case) < 0.3
    ]
    return Reply("\n".join(lines) if lines else "NO FAILURES", "autoevol_analysis")


def optimize(ctx: ReplyContext) -> Reply | None:
    if "<feedback>" not in ctx.prompt:
        return None
    match = _METHOD.search(ctx.prompt)
    if match is None:
        return None
    guideline = _GUIDELINES[ctx.index("guideline", len(_GUIDELINES))]
    method = match.group(1).strip()
    marker = "Step 5"
    if marker in method:
        head, _, tail = method.partition(marker)
        method = f"{head}Extra rule: {guideline}\n\n{marker}{tail}"
    else:
        method = f"{method}\n\nExtra rule: {guideline}"
    return Reply(f"Here is the improved method.\n\n<method>\n{method}\n</method>",
                 "autoevol_optimize")
