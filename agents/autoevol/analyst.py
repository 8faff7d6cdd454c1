"""AnalystAgent: evol trajectory analysis — which cases of a mini-batch failed to evolve, and why.

Handles `AnalyzeTrajectories` (a request) with the optimizer LLM and the analysis prompt
(``agents/autoevol/methods/analysis.txt``, overridable by ``prompt_dir``), and replies
`Feedback`. The parser is strict: an answer that names neither failures nor "NO FAILURES" is
``parseable=False`` with empty failures, never a guess; ids the model invents are dropped.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from agents.autoevol.messages import AnalyzeTrajectories, CaseFailure, Feedback, Trajectory
from agents.autoevol.method_parsing import format_feedback, parse_analysis
from agents.autoevol.methods import render_analysis
from agents.base import Agent, AgentProgress, handles
from agents.llm.types import GenerationParams
from agents.pipeline.common import derive_int, llm_for
from agents.registry import register

__all__ = ["AnalystAgent", "AnalystParams", "trajectory_steps"]


class AnalystParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    prompt_dir: Path | None = Field(
        default=None, description="a directory whose analysis.txt overrides the built-in one"
    )
    temperature: float = Field(default=0.0, ge=0)
    max_tokens: int = Field(default=1024, ge=1)


def trajectory_steps(trajectories: tuple[Trajectory, ...]) -> dict[str, list[str]]:
    """Trajectories as the analysis prompt shows them; an early stop becomes a last step."""
    shown: dict[str, list[str]] = {}
    for trajectory in trajectories:
        steps = list(trajectory.steps)
        if trajectory.stopped:
            steps.append(f"(no instruction produced: {trajectory.stopped})")
        shown[trajectory.id] = steps
    return shown


@register("autoevol.analyst")
class AnalystAgent(Agent[AnalystParams]):
    """Reads evolution trajectories and names the failed cases with reasons (Auto Evol)."""

    role = "analyst"
    analyzed = 0

    async def on_start(self) -> None:
        # fail at start, not at the first batch, when an override is broken
        render_analysis({}, user_dir=self.params.prompt_dir)

    @handles
    async def on_analyze(self, request: AnalyzeTrajectories) -> Feedback:
        prompt = render_analysis(
            trajectory_steps(request.trajectories), user_dir=self.params.prompt_dir
        )
        params = GenerationParams(
            temperature=self.params.temperature,
            max_tokens=self.params.max_tokens,
            seed=derive_int(self.context.seed, "analysis", request.step),
        )
        completion = await llm_for(self).complete(prompt, params, caller=self.name)
        result = parse_analysis(completion.text, known_ids={t.id for t in request.trajectories})
        self.analyzed += 1
        failures = tuple(
            CaseFailure(id=case.id, step=case.step, reason=case.reason)
            for case in result.failures
        )
        if not result.parseable:
            self.log.warning("analysis_unparseable", step=request.step)
        return Feedback.caused_by(
            request,
            step=request.step,
            failures=failures,
            parseable=result.parseable,
            text=format_feedback(result),
            raw_text=completion.text,
        )

    def progress(self) -> AgentProgress:
        return AgentProgress(label="batches analyzed", completed=self.analyzed)
