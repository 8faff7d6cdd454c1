"""AnalystAgent: evol trajectory analysis — which cases of a mini-batch failed to evolve, and why.

Handles `AnalyzeTrajectories` (a request) with the optimizer LLM and the analysis prompt
(``agents/autoevol/methods/analysis.txt``, overridable), and replies `Feedback`. The parser is
strict: an answer that names neither failures nor "NO FAILURES" is ``parseable=False`` with empty
failures, never a guess; ids the model invents are dropped.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from agents.autoevol.messages import AnalyzeTrajectories, CaseFailure, Feedback, Trajectory
from agents.autoevol.method_parsing import format_feedback, parse_analysis
from agents.base import Agent, AgentProgress, handles
from agents.evol.templates import load_template
from agents.llm.types import ChatMessage, GenerationParams
from agents.pipeline.common import derive_int, llm_for
from agents.registry import register

__all__ = ["AnalystAgent", "AnalystParams", "format_trajectories"]

METHODS_DIR = Path(__file__).parent / "methods"


class AnalystParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    prompt_file: Path | None = Field(default=None, description="override analysis.txt")
    temperature: float = Field(default=0.0, ge=0)
    max_tokens: int = Field(default=1024, ge=1)


def format_trajectories(trajectories: tuple[Trajectory, ...]) -> str:
    """Trajectories as the prompt shows them: ``<trajectory id="…">`` with numbered steps."""
    blocks = []
    for trajectory in trajectories:
        lines = [f'<trajectory id="{trajectory.id}">']
        for index, text in enumerate(trajectory.steps):
            lines.append(f"Step {index}:\n{text}")
        if trajectory.stopped:
            lines.append(f"Step {len(trajectory.steps)}: (no instruction produced: "
                         f"{trajectory.stopped})")
        lines.append("</trajectory>")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


@register("autoevol.analyst")
class AnalystAgent(Agent[AnalystParams]):
    """Reads evolution trajectories and names the failed cases with reasons (Auto Evol)."""

    role = "analyst"
    analyzed = 0

    async def on_start(self) -> None:
        path = self.params.prompt_file or METHODS_DIR / "analysis.txt"
        self.template = load_template(path, required=("trajectories",))

    @handles
    async def on_analyze(self, request: AnalyzeTrajectories) -> Feedback:
        prompt = self.template.render(trajectories=format_trajectories(request.trajectories))
        params = GenerationParams(
            temperature=self.params.temperature,
            max_tokens=self.params.max_tokens,
            seed=derive_int(self.context.seed, "analysis", request.step),
        )
        completion = await llm_for(self).complete(
            [ChatMessage(role="user", content=prompt)], params, caller=self.name
        )
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
