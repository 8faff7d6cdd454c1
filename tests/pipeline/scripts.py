"""Handlers for the `scripted` LLM backend (`options.handler = "tests.pipeline.scripts:NAME"`).

Each is `f(messages, params) -> str`, deterministic in its input, and recognises the pipeline's
three prompts: an evolve prompt (an `<instruction>` block), rule 1's judge — the equality check
(`<first>` and `<second>` blocks) or the comparison (`<A>` and `<B>` blocks, the child being the
longer one) — and anything else, an instruction to answer.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence

from agents.llm.types import ChatMessage, GenerationParams

_BLOCK = re.compile(r"<(instruction|first|second|A|B)>\s*(.*?)\s*</\1>", re.S)
ANSWER = "Photosynthesis turns light, water and carbon dioxide into sugar and oxygen in leaves."


def _blocks(messages: Sequence[ChatMessage]) -> dict[str, str]:
    prompt = "\n".join(m.content for m in messages)
    return {tag: text for tag, text in _BLOCK.findall(prompt)}


def _unit(*parts: object) -> float:
    digest = hashlib.sha256(repr(parts).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def _judge(blocks: dict[str, str], equal: bool) -> str:
    """Rule 1's answer: the child is "equal" to its parent, or it adds something."""
    if "second" in blocks:
        return "Equal" if equal else "Not Equal"
    child_letter = "A" if len(blocks["A"]) > len(blocks["B"]) else "B"
    parent_letter = "B" if child_letter == "A" else "A"
    return parent_letter if equal else child_letter


def _child(blocks: dict[str, str]) -> str:
    if "second" in blocks:
        return blocks["second"]
    return max(blocks["A"], blocks["B"], key=len)


def _is_judge(blocks: dict[str, str]) -> bool:
    return "second" in blocks or "B" in blocks


def steady(messages: Sequence[ChatMessage], params: GenerationParams) -> str:
    """Every evolution adds a sentence, every answer is good, every child is Not Equal."""
    blocks = _blocks(messages)
    if _is_judge(blocks):
        return _judge(blocks, equal=False)
    if "instruction" in blocks:
        return f"{blocks['instruction']} Justify step {params.seed}."
    return ANSWER


def mixed(messages: Sequence[ChatMessage], params: GenerationParams) -> str:
    """Like `steady`, but about a third of the evolutions fail: a short apology as the answer,
    or a judge that finds the child Equal to its parent (both decided by the content)."""
    blocks = _blocks(messages)
    if _is_judge(blocks):
        return _judge(blocks, equal=_unit("equal", _child(blocks)) < 0.2)
    if "instruction" in blocks:
        return f"{blocks['instruction']} Justify step {params.seed}."
    question = messages[-1].content
    if "Justify" in question and _unit("sorry", question) < 0.15:
        return "Sorry, I cannot help with that."
    return ANSWER


def unparseable(messages: Sequence[ChatMessage], params: GenerationParams) -> str:
    """The evolve output is only packaging (a preamble with nothing after it)."""
    blocks = _blocks(messages)
    if _is_judge(blocks):
        return _judge(blocks, equal=False)
    if "instruction" in blocks:
        return "Sure! Here is the rewritten prompt:"
    return ANSWER


def apologetic_seeds(messages: Sequence[ChatMessage], params: GenerationParams) -> str:
    """`steady`, except that unevolved questions mentioning "apologise" get a short apology."""
    text = steady(messages, params)
    question = messages[-1].content
    if text == ANSWER and "apologise" in question and "Justify" not in question:
        return "I'm sorry, I can't do that."
    return text
