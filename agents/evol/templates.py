"""Prompt templates with a placeholder syntax that survives braces, dollars and code.

A placeholder is `{{name}}` (lowercase letters, digits, underscores). Rendering replaces each
placeholder literally, in one pass over the template: values are never re-scanned, so an
instruction that itself contains `{{x}}`, `{}`, `$var` or `%s` is inserted verbatim. Everything
that is not a placeholder is kept as written (no escaping is needed in template files).

Contract:
- `Template.render(**values)` raises `PromptError` when a placeholder has no value or a value
  names no placeholder: a typo in a template or a caller is an error, never a silent blank.
- `load_template(path, required=...)` reads a UTF-8 file and raises `PromptError` naming the
  path when it is missing, unreadable, or lacks a required placeholder.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from bus.errors import EvolagentsError

__all__ = ["PLACEHOLDER_RE", "PromptError", "Template", "load_template"]

PLACEHOLDER_RE = re.compile(r"\{\{([a-z][a-z0-9_]*)\}\}")


class PromptError(EvolagentsError):
    """A prompt file is missing or invalid. The message names the path: fix or add that file."""


@dataclass(frozen=True)
class Template:
    """A prompt template: its text, where it came from, and the placeholders it uses."""

    text: str
    source: str = "<string>"

    @property
    def placeholders(self) -> frozenset[str]:
        """The placeholder names used in the template."""
        return frozenset(PLACEHOLDER_RE.findall(self.text))

    def render(self, **values: str) -> str:
        """Replace every `{{name}}` with `values[name]`, literally and in a single pass."""
        wanted = self.placeholders
        missing = wanted - values.keys()
        extra = values.keys() - wanted
        if missing or extra:
            raise PromptError(
                f"{self.source}: placeholders do not match: "
                f"missing values for {sorted(missing)}, unknown values {sorted(extra)}"
            )
        return PLACEHOLDER_RE.sub(lambda m: values[m.group(1)], self.text)


def load_template(path: Path, *, required: Iterable[str] = ()) -> Template:
    """Read a template file; raise `PromptError` naming `path` if it is missing or incomplete."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PromptError(f"{path}: prompt file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise PromptError(f"{path}: cannot read prompt file: {exc}") from exc
    template = Template(text=text, source=str(path))
    lacking = set(required) - template.placeholders
    if lacking:
        raise PromptError(
            f"{path}: prompt lacks the placeholder(s) "
            + ", ".join("{{" + name + "}}" for name in sorted(lacking))
        )
    return template
