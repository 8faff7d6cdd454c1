"""A scripted LLM for Auto Evol-Instruct tests: candidate methods with known failure rates.

Method texts carry ``rate=R``. Evolving ``question N`` with such a method marks the result
``FAILME`` when ``N % 10 < 10 R``; answering a ``FAILME`` instruction asks for more information
(F = 1). So a method's λ on a dev set is known exactly from the dev ids.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from agents.llm.types import ChatMessage, GenerationParams
from agents.pipeline.common import derive_int

RUN_SEED = 11
INITIAL_RATE = 0.6
# step -> the rate of candidate i
RATES: dict[int, tuple[float, ...]] = {
    1: (0.5, 0.2, 0.2),
    2: (0.3, 0.4, 0.3),
    3: (0.25, 0.5, 0.9),
    4: (0.1, 0.1, 0.1),
    5: (0.0, 0.0, 0.0),
}

_RATE = re.compile(r"rate=([0-9.]+)")
_INSTRUCTION = re.compile(r"<instruction>(.*?)</instruction>", re.S)
_QUESTION = re.compile(r"question (\d+)")


def fails(number: int, rate: float) -> bool:
    return number % 10 < round(rate * 10)


def expected_rate(dev_numbers: Sequence[int], rate: float) -> float:
    return sum(fails(n, rate) for n in dev_numbers) / len(dev_numbers)


def handler(messages: Sequence[ChatMessage], params: GenerationParams) -> str:
    prompt = "\n".join(m.content for m in messages)
    if "<feedback>" in prompt:
        for step, rates in RATES.items():
            for index, rate in enumerate(rates):
                if params.seed == derive_int(RUN_SEED, "optimize", step, index):
                    return f"Improved.\n<method>\nEvolve it carefully. rate={rate}\n</method>"
        raise AssertionError("unexpected optimizer call")
    if "<trajectory" in prompt:
        return "NO FAILURES"
    if "Not Equal" in prompt:
        return "Not Equal"
    rate = _RATE.search(prompt)
    blocks = _INSTRUCTION.findall(prompt)
    if rate and blocks:
        instruction = blocks[-1].strip().removeprefix("FAILME ")
        number = _QUESTION.search(instruction)
        assert number is not None, instruction
        mark = "FAILME " if fails(int(number.group(1)), float(rate.group(1))) else ""
        return f"Step 5 #Final Rewritten Instruction#:\n{mark}{instruction}, step by step"
    if "FAILME" in prompt:
        return "Sure! Could you please provide more details about the numbers?"
    return "Here is a complete answer with every step worked out and the final result stated."
