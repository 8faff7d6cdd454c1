"""Judge prompt templates: built-in files, user overrides, and FastChat's `judge_prompts.jsonl`.

A template is a system text and a user text with `str.format` fields (`{question}`, `{answer_a}`,
`{answer_b}`, `{answer}`, `{ref_answer_1}`, `{instruction}`; multi-turn FastChat templates use
`{question_1}`, `{answer_a_1}`, ...). Literal braces are written `{{` and `}}`.

Built-in templates live in `agents/judge/prompts/NAME.txt`; a file is a few `key: value` header
lines (`kind`, `output`, `description`) followed by `=== system ===` and `=== user ===` sections.
`load_templates(override_dir)` starts from the built-ins, then every `*.txt` file in the directory
replaces (or adds) the template of the same stem and every `*.jsonl` file is read in FastChat's
format. Loading validates fields, so a broken file fails at start-up, not mid-run.

Conventions the mock LLM server relies on: pairwise verdict prompts contain `[[A]]`, `[[B]]` and
`[[C]]`; rating prompts contain `[[rating]]`; difficulty prompts `[[difficulty]]`; tag prompts
`<tags>`.
"""

from __future__ import annotations

import json
import string
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict

from agents.judge.errors import TemplateError
from agents.llm.types import ChatMessage

__all__ = [
    "BUILTIN_NAMES",
    "JudgeTemplate",
    "OutputFormat",
    "TemplateKind",
    "builtin_templates",
    "load_fastchat_jsonl",
    "load_templates",
    "parse_template_text",
]

TemplateKind = Literal["pairwise", "single", "difficulty", "tags"]
OutputFormat = Literal["verdict", "score_pair", "rating", "difficulty", "tags"]

BUILTIN_NAMES = (
    "pair-score",
    "pair-verdict",
    "pair-verdict-ref",
    "single",
    "single-ref",
    "difficulty",
    "tags",
)

_KINDS: dict[str, TemplateKind] = {
    "pairwise": "pairwise",
    "single": "single",
    "difficulty": "difficulty",
    "tags": "tags",
}
_OUTPUTS: dict[str, OutputFormat] = {
    "verdict": "verdict",
    "score_pair": "score_pair",
    "rating": "rating",
    "difficulty": "difficulty",
    "tags": "tags",
}
# FastChat's `output_format` values.
_FASTCHAT_OUTPUTS: dict[str, OutputFormat] = {
    "[[A]]": "verdict",
    "[[rating]]": "rating",
    "[[rating_a,rating_b]]": "score_pair",
}
_SYSTEM_MARK = "=== system ==="
_USER_MARK = "=== user ==="


def _field_names(text: str, where: str) -> frozenset[str]:
    names: set[str] = set()
    try:
        parsed = list(string.Formatter().parse(text))
    except ValueError as exc:
        raise TemplateError(
            f"{where}: bad braces ({exc}); write literal braces as {{{{ }}}}"
        ) from exc
    for _literal, field, spec, conversion in parsed:
        if field is None:
            continue
        if not field.isidentifier() or spec or conversion:
            raise TemplateError(
                f"{where}: field {{{field}}} must be a plain name (no index, format or conversion)"
            )
        names.add(field)
    return frozenset(names)


class JudgeTemplate(BaseModel):
    """One judge prompt. `render(**values)` gives the chat messages to send."""

    model_config = ConfigDict(frozen=True)

    name: str
    kind: TemplateKind
    output: OutputFormat
    system: str
    user: str
    description: str = ""
    source: str = ""

    @property
    def fields(self) -> frozenset[str]:
        """The field names the system and user texts need."""
        return _field_names(self.system, self.name) | _field_names(self.user, self.name)

    @property
    def multi_turn(self) -> bool:
        """True for two-turn (MT-Bench) templates."""
        return any(f.endswith("_2") for f in self.fields)

    @property
    def needs_reference(self) -> bool:
        """True when a reference answer must be supplied."""
        return any(f.startswith("ref_answer") for f in self.fields)

    def render(self, **values: str) -> list[ChatMessage]:
        """Fill the fields; extra values are ignored, a missing one raises `TemplateError`.

        The system message is omitted when the system text is empty (FastChat's single-answer
        templates put everything in the user turn).
        """
        missing = sorted(self.fields - values.keys())
        if missing:
            raise TemplateError(f"template {self.name!r} ({self.source}) needs fields {missing}")
        messages: list[ChatMessage] = []
        system = self.system.format_map(values).strip()
        if system:
            messages.append(ChatMessage(role="system", content=system))
        messages.append(ChatMessage(role="user", content=self.user.format_map(values).strip()))
        return messages


def _validated(template: JudgeTemplate) -> JudgeTemplate:
    _ = template.fields  # raises TemplateError on bad braces or fields
    if not template.user.strip():
        raise TemplateError(f"{template.source}: template {template.name!r} has an empty user text")
    return template


def parse_template_text(text: str, *, name: str, source: str = "") -> JudgeTemplate:
    """Parse the `.txt` template format (header lines, `=== system ===`, `=== user ===`)."""
    where = source or name
    if _SYSTEM_MARK not in text or _USER_MARK not in text:
        raise TemplateError(f"{where}: needs a {_SYSTEM_MARK!r} and a {_USER_MARK!r} line")
    header, rest = text.split(_SYSTEM_MARK, 1)
    system, user = rest.split(_USER_MARK, 1)
    meta: dict[str, str] = {}
    for line in header.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        key, sep, value = line.partition(":")
        if not sep:
            raise TemplateError(f"{where}: header line {line!r} is not 'key: value'")
        meta[key.strip()] = value.strip()
    kind = _KINDS.get(meta.get("kind", ""))
    output = _OUTPUTS.get(meta.get("output", ""))
    if kind is None:
        raise TemplateError(f"{where}: 'kind' must be one of {sorted(_KINDS)}")
    if output is None:
        raise TemplateError(f"{where}: 'output' must be one of {sorted(_OUTPUTS)}")
    return _validated(
        JudgeTemplate(
            name=name,
            kind=kind,
            output=output,
            system=system.strip("\n"),
            user=user.strip("\n"),
            description=meta.get("description", ""),
            source=source,
        )
    )


def builtin_templates() -> dict[str, JudgeTemplate]:
    """The templates shipped in `agents/judge/prompts/`."""
    root = resources.files("agents.judge") / "prompts"
    out: dict[str, JudgeTemplate] = {}
    for name in BUILTIN_NAMES:
        res = root / f"{name}.txt"
        out[name] = parse_template_text(
            res.read_text(encoding="utf-8"), name=name, source=f"builtin:{name}.txt"
        )
    return out


def load_fastchat_jsonl(path: Path | str) -> dict[str, JudgeTemplate]:
    """Read FastChat's `judge_prompts.jsonl` (`name`, `type`, `system_prompt`, `prompt_template`,
    `output_format`, ...). Unknown `type`/`output_format` values raise `TemplateError`."""
    path = Path(path)
    out: dict[str, JudgeTemplate] = {}
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}:{lineno}"
        try:
            rec = json.loads(line)
            name, ttype = str(rec["name"]), str(rec["type"])
            system, user = str(rec.get("system_prompt", "")), str(rec["prompt_template"])
            fmt = str(rec.get("output_format", ""))
        except (ValueError, KeyError, TypeError) as exc:
            raise TemplateError(f"{where}: not a FastChat judge prompt record ({exc})") from exc
        kind = _KINDS.get(ttype)
        output = _FASTCHAT_OUTPUTS.get(fmt)
        if kind not in ("pairwise", "single") or output is None:
            raise TemplateError(f"{where}: unsupported type {ttype!r} / output_format {fmt!r}")
        out[name] = _validated(
            JudgeTemplate(
                name=name,
                kind=kind,
                output=output,
                system=system,
                user=user,
                description=str(rec.get("description", "")),
                source=where,
            )
        )
    return out


def load_templates(override_dir: Path | str | None = None) -> Mapping[str, JudgeTemplate]:
    """The built-ins, overridden or extended by `*.txt` and `*.jsonl` files in `override_dir`.

    A missing `override_dir` raises `TemplateError` (a typo in a config should not silently fall
    back to the built-ins). Files are read in name order; a later file wins on a name clash.
    """
    templates = builtin_templates()
    if override_dir is None:
        return templates
    directory = Path(override_dir)
    if not directory.is_dir():
        raise TemplateError(f"{directory}: judge template directory does not exist")
    for path in sorted(directory.iterdir()):
        if path.suffix == ".txt":
            text = path.read_text(encoding="utf-8")
            templates[path.stem] = parse_template_text(text, name=path.stem, source=str(path))
        elif path.suffix == ".jsonl":
            templates.update(load_fastchat_jsonl(path))
    return templates
