"""HumanEval pass@1: run each completion against its tests in the sandbox.

The program for a task is `prompt + completion + test + check(entry_point)`, exactly as the
original harness builds it, executed by `agents.judge.sandbox` in a separate process with a wall
time, memory and output limit and no network. `extract_code` pulls the code out of a chat model's
fenced answer; a completion that restates the whole function still works, because it simply
redefines the function after the prompt's header.

`HumanEvalRunner.evaluate` runs many tasks at once, at most `concurrency` processes at a time
(each process is one CPU-bound Python; keep it at or below the core count).
"""

from __future__ import annotations

import gzip
import json
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path

import anyio
from pydantic import BaseModel, ConfigDict

from agents.judge.sandbox import ExecutionStatus, SandboxLimits, run_python

__all__ = [
    "HumanEvalProblem",
    "HumanEvalReport",
    "HumanEvalRunner",
    "TaskResult",
    "build_program",
    "extract_code",
    "load_humaneval",
]

_FENCE_RE = re.compile(
    r"```[ \t]*(?:python|py|python3)?[ \t]*\n(.*?)```", re.DOTALL | re.IGNORECASE
)


class HumanEvalProblem(BaseModel):
    """One HumanEval task as in `HumanEval.jsonl.gz`."""

    model_config = ConfigDict(frozen=True)

    task_id: str
    prompt: str
    canonical_solution: str
    test: str
    entry_point: str


class TaskResult(BaseModel):
    """The outcome for one task; `detail` is the tail of the program's stderr."""

    model_config = ConfigDict(frozen=True)

    task_id: str
    status: ExecutionStatus
    detail: str = ""
    duration_s: float = 0.0

    @property
    def passed(self) -> bool:
        """True when all the task's tests passed."""
        return self.status is ExecutionStatus.PASSED


class HumanEvalReport(BaseModel):
    """pass@1 over the evaluated tasks (one completion each); a missing completion fails."""

    model_config = ConfigDict(frozen=True)

    n: int
    passed: int
    pass_at_1: float | None
    by_status: dict[str, int]
    results: list[TaskResult]


def load_humaneval(path: Path | str) -> list[HumanEvalProblem]:
    """Read `HumanEval.jsonl` or `HumanEval.jsonl.gz`."""
    path = Path(path)
    raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    lines = raw.decode("utf-8").splitlines()
    return [HumanEvalProblem.model_validate(json.loads(line)) for line in lines if line.strip()]


def extract_code(answer: str) -> str:
    """The code of a model answer: the first fenced block that defines something (or the first
    fenced block), else the whole answer unchanged."""
    blocks = _FENCE_RE.findall(answer)
    if not blocks:
        return answer
    for block in blocks:
        if "def " in block or "import " in block:
            return str(block)
    return str(blocks[0])


def build_program(problem: HumanEvalProblem, completion: str) -> str:
    """The program the original harness runs for `completion`."""
    return f"{problem.prompt}{completion}\n\n{problem.test}\n\ncheck({problem.entry_point})\n"


class HumanEvalRunner:
    """Checks completions in the sandbox, at most `concurrency` at a time."""

    def __init__(self, limits: SandboxLimits | None = None, *, concurrency: int = 2) -> None:
        self.limits = limits or SandboxLimits()
        self._limiter = anyio.CapacityLimiter(concurrency)

    def statistics(self) -> anyio.CapacityLimiterStatistics:
        """How many runs execute now and how many wait for a slot."""
        return self._limiter.statistics()

    async def check(self, problem: HumanEvalProblem, completion: str) -> TaskResult:
        """Run one completion against its task's tests."""
        result = await run_python(
            build_program(problem, completion), self.limits, limiter=self._limiter
        )
        return TaskResult(
            task_id=problem.task_id,
            status=result.status,
            detail=result.stderr[-1000:],
            duration_s=result.duration_s,
        )

    async def evaluate(
        self, problems: Iterable[HumanEvalProblem], completions: Mapping[str, str]
    ) -> HumanEvalReport:
        """pass@1 of `completions` (task_id → completion) on `problems`, in the problems' order."""
        items = list(problems)
        results: list[TaskResult | None] = [None] * len(items)

        async def one(i: int, problem: HumanEvalProblem) -> None:
            completion = completions.get(problem.task_id)
            if completion is None:
                results[i] = TaskResult(
                    task_id=problem.task_id, status=ExecutionStatus.FAILED, detail="no completion"
                )
            else:
                results[i] = await self.check(problem, completion)

        async with anyio.create_task_group() as tg:
            for i, problem in enumerate(items):
                tg.start_soon(one, i, problem)
        done = [r for r in results if r is not None]
        passed = sum(r.passed for r in done)
        return HumanEvalReport(
            n=len(done),
            passed=passed,
            pass_at_1=passed / len(done) if done else None,
            by_status=dict(Counter(r.status.value for r in done)),
            results=done,
        )
