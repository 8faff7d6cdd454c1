"""Errors of the runtime layer: bad configs, bad input data, a run that cannot start.

    EvolagentsError
    ├── ConfigError      a topology config is invalid: the message names file, key path, expectation
    ├── InputDataError   an input record is malformed: the message names file, line and field
    ├── PreflightError   `run.preflight` found an endpoint unreachable, refusing the key or
    │                    without the model: the message names each (credentials masked)
    └── RunLockedError   another live process holds the run directory: the message names its PID

All map to exit code 2 in the CLI, and nothing is written when they are raised before a run.
"""

from __future__ import annotations

from pathlib import Path

from bus.errors import EvolagentsError

__all__ = ["ConfigError", "InputDataError", "PreflightError", "RunLockedError"]


class ConfigError(EvolagentsError):
    """The topology config is invalid. Fix the key named in the message."""

    def __init__(self, message: str, *, file: Path | str | None = None, key: str = "") -> None:
        where = str(file) if file is not None else "<config>"
        if key:
            where = f"{where}: {key}"
        super().__init__(f"{where}: {message}")
        self.file = file
        self.key = key


class InputDataError(EvolagentsError):
    """An input record could not be read. Fix the record, or set `on_bad_record = "skip"`."""

    def __init__(
        self, message: str, *, file: Path | str, line: int | None = None, field: str = ""
    ) -> None:
        where = str(file)
        if line is not None:
            where = f"{where}:{line}"
        if field:
            where = f"{where}: field {field!r}"
        super().__init__(f"{where}: {message}")
        self.file = file
        self.line = line
        self.field = field


class PreflightError(EvolagentsError):
    """An endpoint failed the preflight request. Fix the endpoint, key or model it names."""


class RunLockedError(EvolagentsError):
    """The run directory is locked by another live process (``run``/``resume``, or an
    ``export`` reading it). Wait for it, or stop it (the message names its PID)."""
