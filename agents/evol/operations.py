"""Operation packs: which evolving operations exist, how often each is picked, and their prompts.

A pack is a directory holding `pack.toml` (the operations: name, kind, default weight) and one
template per operation and profile, `<operation>.<profile>.txt`. Built-in packs live in
`agents/evol/prompts/<pack>/` (`general`, `code`, `math`).

An optional `system.<profile>.txt` holds a system message sent before every prompt of that
profile (the built-in packs have one for `compact`: tiny models answer the instruction instead of
rewriting it unless told firmly, in a system turn, that they must not).

Overrides: `OperationPack.load(name, user_dir=DIR)` looks up every file in `DIR` first and
falls back to the built-in pack, per file: a user directory holding only
`add_constraints.full.txt` changes that one prompt. A `pack.toml` in `DIR` replaces the
manifest (to add, drop or re-weight operations); a pack that exists only in `DIR` is allowed.

Contract (checked at load time, so a bad override fails before any LLM call):
- every template exists (`PromptError` names the paths looked at) and uses exactly the
  `{{instruction}}` placeholder;
- a rendered prompt holds exactly one `<instruction>…</instruction>` block, and nothing but
  whitespace follows it; depth prompts contain the word "rewrite" and neither "brand-new" nor
  "new instruction" (the marks of a breadth prompt); breadth prompts contain "brand-new".
- `choose(rng)` picks an operation with probability proportional to its weight (equal by
  default) and depends only on `rng`, so a seeded `random.Random` reproduces a run.
"""

from __future__ import annotations

import random
import re
import tomllib
from collections.abc import Mapping
from enum import StrEnum
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from agents.evol.templates import PromptError, Template, load_template
from agents.llm.types import ChatMessage

__all__ = [
    "BUILTIN_PACKS_DIR",
    "PROFILES",
    "Operation",
    "OperationKind",
    "OperationPack",
    "Profile",
    "compose_instruction",
    "split_turns",
]

BUILTIN_PACKS_DIR = Path(__file__).parent / "prompts"
MANIFEST = "pack.toml"
Profile = Literal["full", "compact"]
PROFILES: tuple[Profile, ...] = ("full", "compact")
_BREADTH_MARK_RE = re.compile(r"brand-new|new\s+instruction", re.IGNORECASE)
_NAME_RE = re.compile(r"^[a-z][a-z0-9_]*$")
_BLOCK_RE = re.compile(r"<instruction>(.*?)</instruction>", re.DOTALL)


class OperationKind(StrEnum):
    """Depth operations make an instruction harder (or easier); breadth ones make a new one."""

    DEPTH = "depth"
    BREADTH = "breadth"


class Operation(BaseModel):
    """One evolving operation of a pack."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    kind: OperationKind
    weight: float = Field(default=1.0, ge=0.0)
    description: str = ""


class _Manifest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    description: str = ""
    operations: list[Operation] = Field(min_length=1)


def compose_instruction(instruction: str, input_text: str = "") -> str:
    """The text shown inside `<instruction>`: the instruction, then its input (if any)."""
    instruction, input_text = instruction.strip(), input_text.strip()
    return f"{instruction}\n\n{input_text}" if input_text else instruction


class OperationPack:
    """A loaded pack: operations with weights and their validated templates per profile."""

    def __init__(
        self,
        name: str,
        operations: tuple[Operation, ...],
        templates: Mapping[tuple[str, Profile], Template],
        description: str = "",
        system: Mapping[Profile, Template] | None = None,
    ) -> None:
        if not _NAME_RE.match(name):
            raise PromptError(f"pack name {name!r}: use lowercase letters, digits and '_'")
        if not operations:
            raise PromptError(f"pack {name!r}: no operations")
        names = [op.name for op in operations]
        if "system" in names:
            raise PromptError(f"pack {name!r}: 'system' is reserved for system.<profile>.txt")
        if len(set(names)) != len(names):
            raise PromptError(f"pack {name!r}: duplicate operation names in {names}")
        if sum(op.weight for op in operations) <= 0:
            raise PromptError(f"pack {name!r}: all operation weights are zero")
        for op in operations:
            for profile in PROFILES:
                if (op.name, profile) not in templates:
                    raise PromptError(f"pack {name!r}: no {profile!r} template for {op.name!r}")
                _check_template(templates[op.name, profile], op)
        self._system = dict(system or {})
        for template in self._system.values():
            if template.placeholders or "<instruction>" in template.text:
                raise PromptError(
                    f"{template.source}: a system prompt takes no placeholders and no "
                    "<instruction> block"
                )
        self.name = name
        self.description = description
        self.operations = operations
        self._by_name = {op.name: op for op in operations}
        self._templates = dict(templates)

    @classmethod
    def load(
        cls,
        name: str,
        *,
        user_dir: Path | None = None,
        weights: Mapping[str, float] | None = None,
    ) -> OperationPack:
        """Load built-in pack `name`, with per-file overrides from `user_dir` and new weights.

        Raises `PromptError` naming the path for a missing or invalid file, and for weights
        that name an unknown operation, are negative, or are all zero.
        """
        if not _NAME_RE.match(name):
            raise PromptError(f"pack name {name!r}: use lowercase letters, digits and '_'")
        builtin = BUILTIN_PACKS_DIR / name
        dirs = [d for d in (user_dir, builtin) if d is not None]
        manifest_path = _first_existing(dirs, MANIFEST)
        manifest = _read_manifest(manifest_path)
        templates: dict[tuple[str, Profile], Template] = {}
        for op in manifest.operations:
            for profile in PROFILES:
                path = _first_existing(dirs, f"{op.name}.{profile}.txt")
                templates[op.name, profile] = load_template(path, required=("instruction",))
        system: dict[Profile, Template] = {}
        for profile in PROFILES:
            found = [
                d / f"system.{profile}.txt" for d in dirs if (d / f"system.{profile}.txt").is_file()
            ]
            if found:
                system[profile] = load_template(found[0])
        pack = cls(name, tuple(manifest.operations), templates, manifest.description, system)
        return pack.with_weights(weights) if weights else pack

    def with_weights(self, weights: Mapping[str, float]) -> OperationPack:
        """A copy with some weights replaced (`{"breadth": 0}` disables in-breadth evolving)."""
        unknown = set(weights) - self._by_name.keys()
        if unknown:
            raise PromptError(
                f"pack {self.name!r}: weights name unknown operations {sorted(unknown)}; "
                f"known: {sorted(self._by_name)}"
            )
        try:
            ops = tuple(
                Operation.model_validate({**op.model_dump(), "weight": weights[op.name]})
                if op.name in weights
                else op
                for op in self.operations
            )
        except ValidationError as exc:
            raise PromptError(f"pack {self.name!r}: invalid weights: {exc}") from exc
        return OperationPack(self.name, ops, self._templates, self.description, self._system)

    def operation(self, name: str) -> Operation:
        """The operation called `name`; `KeyError` if the pack has none."""
        return self._by_name[name]

    def choose(self, rng: random.Random) -> Operation:
        """Pick one operation, with probability proportional to its weight."""
        return rng.choices(self.operations, weights=[op.weight for op in self.operations])[0]

    def template(self, operation: Operation | str, profile: Profile) -> Template:
        """The template of `operation` in `profile`."""
        name = operation if isinstance(operation, str) else operation.name
        return self._templates[name, profile]

    def render(
        self, operation: Operation | str, instruction_text: str, profile: Profile = "full"
    ) -> list[ChatMessage]:
        """The chat messages asking an LLM to apply `operation` to `instruction_text`.

        One user message — or, for a template written as turns (`split_turns`), few-shot user /
        assistant turns ending with the user turn that holds the instruction — preceded by the
        pack's system message for `profile` when it has one.

        `instruction_text` is the whole text to evolve, input included (`compose_instruction`).
        """
        prompt = self.template(operation, profile).render(instruction=instruction_text.strip())
        messages = split_turns(prompt)
        if profile in self._system:
            messages.insert(
                0, ChatMessage(role="system", content=self._system[profile].text.strip())
            )
        return messages

    def copies_prompt(self, operation: Operation | str, profile: Profile, text: str) -> bool:
        """True when `text` is lifted from the prompt itself (e.g. a few-shot example's answer).

        Tiny models often repeat an example instead of rewriting the instruction; such an
        "evolution" must be rejected. Matching ignores case, spacing and edge punctuation; texts
        under three words are never counted as copies.
        """
        needle = _normalize(text)
        if len(needle.split()) < 3:
            return False
        haystack = _normalize(self.template(operation, profile).text.replace("{{instruction}}", ""))
        return needle in haystack

    def __repr__(self) -> str:
        ops = ", ".join(f"{op.name}={op.weight:g}" for op in self.operations)
        return f"OperationPack({self.name!r}: {ops})"


_TURN_RE = re.compile(r"^\[(user|assistant)\][ \t]*$", re.MULTILINE)


def split_turns(prompt: str) -> list[ChatMessage]:
    """A rendered prompt as chat messages.

    A template may be written as turns: lines holding only ``[user]`` or ``[assistant]`` start a
    turn (few-shot examples as real exchanges work far better with small chat models than
    examples inside one message). Text before the first marker belongs to the first turn. A
    template without markers is one user message. The last turn must be a user turn.
    """
    markers = list(_TURN_RE.finditer(prompt))
    if not markers:
        return [ChatMessage(role="user", content=prompt)]
    messages: list[ChatMessage] = []
    lead = prompt[: markers[0].start()].strip()
    for index, marker in enumerate(markers):
        end = markers[index + 1].start() if index + 1 < len(markers) else len(prompt)
        content = prompt[marker.end() : end].strip()
        if index == 0 and lead:
            content = f"{lead}\n\n{content}"
        role = "user" if marker.group(1) == "user" else "assistant"
        messages.append(ChatMessage(role=role, content=content))
    if messages[-1].role != "user":
        raise PromptError("a prompt written as turns must end with a [user] turn")
    return messages


def _normalize(text: str) -> str:
    words = re.sub(r"[\"'`*_]", " ", text.lower()).split()
    return " ".join(words).strip(".,;:!? ")


def _first_existing(dirs: list[Path], filename: str) -> Path:
    for directory in dirs:
        if (directory / filename).is_file():
            return directory / filename
    looked = ", ".join(str(d / filename) for d in dirs)
    raise PromptError(f"{dirs[0] / filename}: prompt file not found (looked at: {looked})")


def _read_manifest(path: Path) -> _Manifest:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
        return _Manifest.model_validate(data)
    except (OSError, tomllib.TOMLDecodeError, ValidationError) as exc:
        raise PromptError(f"{path}: invalid pack manifest: {exc}") from exc


def _check_template(template: Template, op: Operation) -> None:
    if template.placeholders != {"instruction"}:
        raise PromptError(
            f"{template.source}: must use exactly the {{{{instruction}}}} placeholder, "
            f"found {sorted(template.placeholders)}"
        )
    probe = template.render(instruction="PROBE")
    try:
        split_turns(probe)
    except PromptError as exc:
        raise PromptError(f"{template.source}: {exc}") from None
    blocks = _BLOCK_RE.findall(probe)
    if len(blocks) != 1 or probe.count("<instruction>") != 1 or blocks[0].strip() != "PROBE":
        raise PromptError(
            f"{template.source}: must hold exactly one <instruction>{{{{instruction}}}}"
            "</instruction> block"
        )
    if probe.split("</instruction>", 1)[1].strip():
        raise PromptError(f"{template.source}: the <instruction> block must come last")
    word = "brand-new" if op.kind is OperationKind.BREADTH else "rewrite"
    if word not in probe:
        raise PromptError(f"{template.source}: a {op.kind.value} prompt must contain {word!r}")
    if op.kind is OperationKind.DEPTH and _BREADTH_MARK_RE.search(probe):
        raise PromptError(
            f"{template.source}: a depth prompt must not say 'brand-new' or 'new instruction' "
            "(those words mark in-breadth prompts)"
        )
