"""Mock replies for Auto Evol-Instruct: a small, explicit model of how good an evolving method is.

What the mock simulates (docs/autoevol.md, "What the mock simulates"):

- **Failure modes.** An evolution can fail in one of three ways (`FAILURE_MODES`): it refers to a
  table the instruction does not contain, it solves the instruction instead of restating it, or
  it adds requirements that contradict each other. Each leaves a fixed *signature* sentence in
  the evolved text, which the mock's answers, analysis and failure judge all read.
- **Method quality.** `method_failure_rates(method)` gives each mode's rate under a method text:
  `BASE_RATE`, times `GUARD_FACTOR` when the method contains the mode's *guard* guideline, times
  `HARM_FACTOR` when it contains the mode's *harmful* guideline (exact sentences, below). Any
  other method text — the built-in ones, a user's file — has the base rates.
- **Dev cases.** Each (instruction, mode) has a fixed *vulnerability* in [0, 1), drawn from the
  server seed and the instruction only — not from the method. Evolving with a method fails in
  the first mode whose vulnerability is below the method's rate for it, so of two methods the
  one with the lower rates fails on a subset of the other's cases: differences in λ come from
  the methods, not from noise.

The recognisers:

- `evolve_with_method` — a method prompt (ends with the method's closing line and an
  ``<instruction>`` block): the ordinary in-depth rewrite, turned into the failure of the mode
  drawn as above (kind ``autoevol_evolve`` or ``autoevol_evolve_failed``).
- `answer_failed_evolution` — a question carrying a signature: the mode's ask-back ("Sure, …
  Could you please provide the table …?"), which the default F rules count as failed.
- `failure_verdict` — the LLM failure judge (``PASS or FAIL``): FAIL when the prompt carries a
  signature or an ask-back, else PASS.
- `analysis` — ``<trajectory id="…">`` blocks: ``FAILED <id> | step <n> | <reason>`` for the first
  step of each trajectory that carries a signature, or ``NO FAILURES``.
- `optimize` — ``<method>`` and ``<feedback>``: the current method plus one guideline it does not
  contain yet (guards, harmful and neutral ones alike, `GUIDELINES`), drawn with the request's
  sampling seed, so the optimizer's m samples differ — a blind proposer: selection by λ does the
  work. Without a sampling seed (the Anthropic route) every sample of a prompt is the same.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from agents.llm.mock.replies import Reply, ReplyContext, evolve

__all__ = [
    "BASE_RATE",
    "FAILURE_MODES",
    "GUARD_FACTOR",
    "GUIDELINES",
    "HARM_FACTOR",
    "METHOD_CLOSING",
    "FailureMode",
    "analysis",
    "answer_failed_evolution",
    "evolve_with_method",
    "failure_mode_of",
    "failure_verdict",
    "method_failure_rates",
    "optimize",
]

#: The line `agents.autoevol.methods.render_method` puts between a method and its instruction (a
#: prompt convention like the others the mock reads; the LLM layer does not import agent
#: packages, and a test checks that the two agree).
METHOD_CLOSING = "Now apply the method above to rewrite this instruction:"
BASE_RATE = 0.15
GUARD_FACTOR = 0.2
HARM_FACTOR = 2.5


@dataclass(frozen=True)
class FailureMode:
    """One way an evolution fails: how it marks the text, what the answer, analyst and judge say,
    and the guideline that guards against it or makes it likelier."""

    name: str
    template: str
    """The failed evolution; ``{text}`` is the rewrite it spoils."""
    signature: str
    reason: str
    ask_back: str
    guard: str
    harm: str


FAILURE_MODES = (
    FailureMode(
        name="absent_reference",
        template="{text} Use the figures in the table below to support your answer.",
        signature="Use the figures in the table below to support your answer.",
        reason="the rewrite refers to a table that the instruction does not contain",
        ask_back="Sure, I can help with that. Could you please provide the table you mention?",
        guard="Never refer to a table, passage or code that the instruction does not contain.",
        harm="To raise the difficulty, ask for supporting data such as a table of figures.",
    ),
    FailureMode(
        name="solved",
        template="{text} Solved step by step, the final result is 42, as each part above shows.",
        signature="Solved step by step, the final result is 42",
        reason="the rewrite answered the instruction instead of restating it",
        ask_back="Thank you for sharing your solution. What would you like me to do with it?",
        guard="Make sure the final instruction still reads as a request, not as an answer.",
        harm="Show the expected solution in the final instruction so the answer can be checked.",
    ),
    FailureMode(
        name="contradictory",
        template="{text} Answer in exactly one word, and explain every step in full detail.",
        signature="Answer in exactly one word, and explain every step in full detail.",
        reason="the added requirements contradict each other",
        ask_back="Could you clarify whether you want a one-word answer or a detailed explanation "
        "of every step?",
        guard="Before writing the final instruction, check that every added requirement can be "
        "met at once.",
        harm="Add requirements on both the length and the depth of the answer.",
    ),
)

_NEUTRAL = (
    "Prefer one concrete, checkable requirement over several vague ones.",
    "Keep the topic and the language of the original instruction unchanged.",
    "Never drop code, tables or data that the instruction already contains.",
)
#: What the mock optimizer may add to a method: every mode's guard and harm, and neutral ones.
GUIDELINES = tuple(g for m in FAILURE_MODES for g in (m.guard, m.harm)) + _NEUTRAL

_INSTRUCTION = re.compile(r"<instruction>(.*?)</instruction>", re.S | re.I)
_TRAJECTORY = re.compile(r'<trajectory id="([^"]+)">(.*?)</trajectory>', re.S)
_STEP = re.compile(r'<step n="(\d+)">(.*?)</step>', re.S)
_METHOD = re.compile(r"<method>\s*(.*?)\s*</method>", re.S)
_LEAD_INS = ("Extra rule:", "Additional check:", "Important:")


def method_failure_rates(method: str) -> dict[str, float]:
    """Each failure mode's rate when evolving with `method` (see the module doc)."""
    rates = {}
    for mode in FAILURE_MODES:
        rate = BASE_RATE
        if mode.guard in method:
            rate *= GUARD_FACTOR
        if mode.harm in method:
            rate *= HARM_FACTOR
        rates[mode.name] = min(rate, 1.0)
    return rates


def failure_mode_of(text: str) -> FailureMode | None:
    """The first failure mode whose signature (or ask-back) `text` carries, or None."""
    for mode in FAILURE_MODES:
        if mode.signature in text or mode.ask_back in text:
            return mode
    return None


def _vulnerability(seed: int, mode: str, instruction: str) -> float:
    """A uniform number in [0, 1) fixed by the server seed, the mode and the instruction."""
    digest = hashlib.sha256(f"{seed}\x00{mode}\x00{instruction.strip()}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def evolve_with_method(ctx: ReplyContext) -> Reply | None:
    if METHOD_CLOSING not in ctx.prompt:
        return None
    blocks = _INSTRUCTION.findall(ctx.prompt)
    rewrite = evolve(ctx)
    if not blocks or rewrite is None:
        return None
    method = ctx.prompt.split(METHOD_CLOSING)[0]
    instruction = blocks[-1]
    rates = method_failure_rates(method)
    for mode in FAILURE_MODES:
        if mode.signature in instruction:
            continue  # a mode spoils an instruction once
        if _vulnerability(ctx.seed, mode.name, instruction) < rates[mode.name]:
            return Reply(_final(mode.template.format(text=rewrite.text)), "autoevol_evolve_failed")
    return Reply(_final(rewrite.text), "autoevol_evolve")


def _final(text: str) -> str:
    """The method's answer: its step headings, then the final instruction (what the parser
    `agents.autoevol.method_parsing.parse_final_instruction` reads)."""
    return (
        "Step 1 #Methods#: add a requirement; ask for more reasoning.\n"
        "Step 2 #Plan#: combine both.\n"
        "Step 3 #Draft#: see below.\n"
        "Step 4 #Review#: the draft is consistent.\n"
        f"Step 5 #Final Rewritten Instruction#:\n{text}"
    )


def answer_failed_evolution(ctx: ReplyContext) -> Reply | None:
    mode = failure_mode_of(ctx.user)
    if mode is None or _INSTRUCTION.search(ctx.prompt):
        return None
    return Reply(mode.ask_back, "autoevol_ask_back")


def failure_verdict(ctx: ReplyContext) -> Reply | None:
    if "PASS or FAIL" not in ctx.prompt:
        return None
    verdict = "FAIL" if failure_mode_of(ctx.prompt) else "PASS"
    return Reply(verdict, "autoevol_failure_verdict")


def analysis(ctx: ReplyContext) -> Reply | None:
    trajectories = _TRAJECTORY.findall(ctx.prompt)
    if not trajectories:
        return None
    lines = []
    for case, body in trajectories:
        for number, step in _STEP.findall(body):
            mode = failure_mode_of(step) if int(number) > 0 else None
            if mode is not None:
                lines.append(f"FAILED {case} | step {number} | {mode.reason}")
                break
    return Reply("\n".join(lines) if lines else "NO FAILURES", "autoevol_analysis")


def optimize(ctx: ReplyContext) -> Reply | None:
    if "<feedback>" not in ctx.prompt:
        return None
    match = _METHOD.search(ctx.prompt)
    if match is None:
        return None
    method = match.group(1).strip()
    unused = [g for g in GUIDELINES if g not in method] or list(GUIDELINES)
    guideline = unused[int(ctx.sample_unit("guideline") * len(unused))]
    rule = f"{_LEAD_INS[int(ctx.sample_unit('lead-in') * len(_LEAD_INS))]} {guideline}"
    marker = "Step 5"
    if marker in method:
        head, _, tail = method.partition(marker)
        method = f"{head}{rule}\n\n{marker}{tail}"
    else:
        method = f"{method}\n\n{rule}"
    return Reply(f"Here is the improved method.\n\n<method>\n{method}\n</method>",
                 "autoevol_optimize")
