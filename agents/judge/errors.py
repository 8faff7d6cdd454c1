"""Errors of the judging layer.

    EvolagentsError
    └── JudgeError                   (agents/judge/)
        ├── TemplateError            a judge prompt file is malformed, or a render lacks a field:
        │                            fix the file or pass the field named in the message
        └── EmbedderUnavailableError the embedding model's packages are missing: install them, or
                                     use the hashed n-gram embedder

Parsers never raise on model output: a bad verdict is an `Unparseable` value, counted, not an error.
"""

from __future__ import annotations

from bus.errors import EvolagentsError

__all__ = ["EmbedderUnavailableError", "JudgeError", "TemplateError"]


class JudgeError(EvolagentsError):
    """Something in the judging layer is misconfigured."""


class TemplateError(JudgeError):
    """A judge template could not be loaded or rendered. The message names file and field."""


class EmbedderUnavailableError(JudgeError):
    """The requested embedding model cannot be loaded (a package is missing or the weights are)."""
