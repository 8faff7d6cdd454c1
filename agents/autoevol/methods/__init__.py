"""Auto Evol-Instruct prompt texts: the initial evolving methods and the optimizer's prompts.

Files here (each may be overridden by a file of the same name in a user directory):

- `general.txt`, `code.txt`, `math.txt`: the universal initial evolving method per domain. A
  method is plain text *without* the instruction: `render_method` appends a fixed closing line
  and the instruction in `<instruction>…</instruction>` as the last block, so any method text
  (an optimized one included) renders as a valid evolve prompt.
- `analysis.txt` (placeholder `{{trajectories}}`): evol-trajectory analysis; the answer is read
  by `agents.autoevol.method_parsing.parse_analysis`.
- `optimize.txt` (placeholders `{{method}}`, `{{feedback}}`): evolving-method optimization; the
  answer is read by `agents.autoevol.method_parsing.parse_optimized_method`.

Errors: `PromptError` naming the path for a missing or incomplete file, or naming the problem
when a method text embeds an instruction block or placeholder.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from agents.evol.templates import PromptError, Template, load_template
from agents.llm.types import ChatMessage

__all__ = [
    "DOMAINS",
    "METHODS_DIR",
    "load_method",
    "render_analysis",
    "render_method",
    "render_optimize",
    "render_trajectories",
]

METHODS_DIR = Path(__file__).parent
DOMAINS = ("general", "code", "math")
METHOD_CLOSING = "Now apply the method above to rewrite this instruction:"


def _path(name: str, user_dir: Path | None) -> Path:
    if user_dir is not None and (user_dir / name).is_file():
        return user_dir / name
    return METHODS_DIR / name


def load_method(domain: str = "general", *, user_dir: Path | None = None) -> str:
    """The initial evolving method for `domain`: a built-in one or `<domain>.txt` in user_dir."""
    if domain in ("analysis", "optimize"):
        raise PromptError(f"{domain!r} is an optimizer prompt, not an evolving method")
    path = _path(f"{domain}.txt", user_dir)
    text = load_template(path).text.strip()
    _check_method(text, str(path))
    return text


def render_method(method: str, instruction: str) -> list[ChatMessage]:
    """The evolve prompt: the method text, a closing line, then the `<instruction>` block."""
    _check_method(method, "method text")
    content = (
        f"{method.strip()}\n\n{METHOD_CLOSING}\n<instruction>\n{instruction.strip()}\n"
        "</instruction>\n"
    )
    return [ChatMessage(role="user", content=content)]


def render_trajectories(trajectories: Mapping[str, Sequence[str]]) -> str:
    """`<trajectory id="…">` blocks, each with `<step n="0">` (the original) to `<step n="l">`."""
    blocks = []
    for tid, steps in trajectories.items():
        inner = "\n".join(
            f'<step n="{n}">\n{text.strip()}\n</step>' for n, text in enumerate(steps)
        )
        blocks.append(f'<trajectory id="{tid}">\n{inner}\n</trajectory>')
    return "\n\n".join(blocks)


def render_analysis(
    trajectories: Mapping[str, Sequence[str]], *, user_dir: Path | None = None
) -> list[ChatMessage]:
    """The trajectory-analysis prompt for the optimizer LLM."""
    template = _template("analysis.txt", ("trajectories",), user_dir)
    content = template.render(trajectories=render_trajectories(trajectories))
    return [ChatMessage(role="user", content=content)]


def render_optimize(
    method: str, feedback: str, *, user_dir: Path | None = None
) -> list[ChatMessage]:
    """The method-optimization prompt: current method and feedback in their tags."""
    template = _template("optimize.txt", ("method", "feedback"), user_dir)
    content = template.render(method=method.strip(), feedback=feedback.strip())
    return [ChatMessage(role="user", content=content)]


def _template(name: str, required: tuple[str, ...], user_dir: Path | None) -> Template:
    return load_template(_path(name, user_dir), required=required)


def _check_method(text: str, source: str) -> None:
    if not text.strip():
        raise PromptError(f"{source}: the evolving method is empty")
    lowered = text.lower()
    if "<instruction>" in lowered or "</instruction>" in lowered or "{{instruction}}" in text:
        raise PromptError(
            f"{source}: a method must not contain an <instruction> block or placeholder; "
            "the instruction is appended when the method is rendered"
        )
