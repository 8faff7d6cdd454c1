"""JudgeAgent for Auto Evol-Instruct: the failure rate λ of an evolving method on the dev set.

Handles `EvaluateMethod` (a request): every dev case is evolved with the method (`EvolveOnce` to
the EvolAgent), the evolved instruction answered (`AnswerOnce` to the responder), and F(r) decides
failure — by the rule set (`agents/autoevol/failure.py`) or, with ``f = "llm"``, by asking the
judge LLM. λ = failures / |dev|. A case whose evolution yields no instruction counts as failed; a
case whose LLM calls failed for good is counted in ``errors`` and as failed (so a broken method
never wins by erroring out). Cases run concurrently up to ``max_parallel``; several
`EvaluateMethod` requests (the m candidates) run concurrently up to the agent's concurrency.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import anyio
from pydantic import BaseModel, ConfigDict, Field

from agents.autoevol.failure import FailureRules, detect_failure
from agents.autoevol.messages import (
    AnswerOnce,
    AnswerResult,
    CaseFailure,
    DevCase,
    EvaluateMethod,
    EvolveOnce,
    EvolveResult,
    MethodScore,
)
from agents.base import Agent, AgentProgress, handles
from agents.evol.templates import load_template
from agents.llm.errors import LLMError
from agents.llm.types import ChatMessage, GenerationParams
from agents.pipeline.common import llm_for
from agents.registry import register

__all__ = ["FailureRateJudge", "FailureRateParams"]

METHODS_DIR = Path(__file__).parent / "methods"


class FailureRateParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    f: Literal["rules", "llm"] = Field(default="rules", description="how F(r) is decided")
    rules: FailureRules = Field(default_factory=FailureRules)
    llm_prompt_file: Path | None = Field(default=None, description="override failure_judge.txt")
    max_parallel: int = Field(default=16, ge=1, description="dev cases in flight per method")
    request_timeout_s: float = Field(default=1800.0, gt=0)


class _Case(BaseModel):
    failed: bool
    reason: str = ""
    error: bool = False


@register("judge.failure_rate")
class FailureRateJudge(Agent[FailureRateParams]):
    """Auto Evol-Instruct's judge: λ of a method over the held-out dev set (rules or LLM F)."""

    role = "judge"
    evaluated = 0

    async def on_start(self) -> None:
        self.template = None
        if self.params.f == "llm":
            path = self.params.llm_prompt_file or METHODS_DIR / "failure_judge.txt"
            self.template = load_template(path, required=("instruction", "response"))

    @handles
    async def on_evaluate(self, request: EvaluateMethod) -> MethodScore:
        results: dict[str, _Case] = {}
        limiter = anyio.Semaphore(self.params.max_parallel)

        async def run_case(case: DevCase) -> None:
            async with limiter:
                results[case.id] = await self._case(request, case)

        async with anyio.create_task_group() as tg:
            for case in request.dev:
                tg.start_soon(run_case, case)
        failures = tuple(
            CaseFailure(id=case.id, reason=results[case.id].reason)
            for case in request.dev
            if results[case.id].failed
        )
        self.evaluated += 1
        total = len(request.dev)
        return MethodScore.caused_by(
            request,
            method_id=request.method_id,
            failure_rate=len(failures) / total if total else 0.0,
            evaluated=total,
            failures=failures,
            errors=sum(1 for r in results.values() if r.error),
        )

    async def _case(self, request: EvaluateMethod, case: DevCase) -> _Case:
        timeout = self.params.request_timeout_s
        key = f"dev:{request.method_id}:{case.id}"
        evolved = await self.request(
            EvolveOnce.caused_by(
                request,
                key=key,
                instruction=case.instruction,
                input=case.input,
                method_id=request.method_id,
                method_text=request.method_text,
                temperature=request.evol_temperature,
            ),
            timeout=timeout,
        )
        assert isinstance(evolved, EvolveResult)
        if evolved.error is not None:
            return _Case(failed=True, reason=f"evolution error: {evolved.error}", error=True)
        if not evolved.instruction:
            return _Case(failed=True, reason="no rewritten instruction in the method's output")
        answered = await self.request(
            AnswerOnce.caused_by(request, key=key, instruction=evolved.instruction),
            timeout=timeout,
        )
        assert isinstance(answered, AnswerResult)
        if answered.error is not None:
            return _Case(failed=True, reason=f"answer error: {answered.error}", error=True)
        if self.params.f == "rules":
            reason = detect_failure(answered.response, self.params.rules)
            return _Case(failed=reason is not None, reason=reason or "")
        return await self._llm_failure(evolved.instruction, answered.response or "")

    async def _llm_failure(self, instruction: str, response: str) -> _Case:
        assert self.template is not None
        prompt = self.template.render(instruction=instruction, response=response)
        try:
            completion = await llm_for(self).complete(
                [ChatMessage(role="user", content=prompt)],
                GenerationParams(temperature=0.0, max_tokens=8),
                caller=self.name,
            )
        except LLMError as exc:
            return _Case(failed=True, reason=f"judge error: {exc.kind}", error=True)
        verdict = completion.text.strip().lower()
        if verdict.startswith("fail"):
            return _Case(failed=True, reason="the judge LLM says the evolution failed")
        if verdict.startswith("pass") or verdict.startswith("ok"):
            return _Case(failed=False)
        rule = detect_failure(response, self.params.rules)  # unparseable verdict: fall back
        return _Case(failed=rule is not None, reason=rule or "")

    def progress(self) -> AgentProgress:
        return AgentProgress(label="methods evaluated", completed=self.evaluated)
