"""Structured logging: JSON lines into the run directory, and a console view.

`configure_logging` installs one structlog pipeline that tees every event into
- ``<run_dir>/run.log`` as JSON lines (from ``level`` up), and
- the console (stderr, looked up at each write so a live progress display can redirect it), pretty
  or JSON, from ``console_level`` up.

Secrets never reach a log: keys whose name looks secret are masked by a processor, and so are
the credentials of any URL in a string value (`agents.llm.redact`).
"""

from __future__ import annotations

import json
import logging
import sys
import threading
from collections.abc import MutableMapping
from pathlib import Path
from typing import IO, Any, Literal

import structlog

from agents.llm.redact import redact_text

__all__ = ["close_logging", "configure_logging"]

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING,
           "error": logging.ERROR}
_SECRET_HINTS = ("api_key", "apikey", "secret", "password", "token", "authorization")

_state: dict[str, Any] = {"file": None}


class _StderrLogger:
    """Writes to whatever ``sys.stderr`` is at call time."""

    def msg(self, message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    log = debug = info = warn = warning = error = critical = exception = fatal = msg


def _mask_secrets(
    _: Any, __: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    for key in list(event_dict):
        lowered = key.lower()
        if any(hint in lowered for hint in _SECRET_HINTS) and not lowered.endswith(
            ("_env", "_tokens", "tokens")
        ):
            event_dict[key] = "***"
        elif isinstance(event_dict[key], str):
            event_dict[key] = redact_text(event_dict[key])
    return event_dict


class _Tee:
    """Final processor: JSON line to the file, then the console rendering (or drop)."""

    def __init__(
        self,
        file: IO[str] | None,
        file_level: int,
        console: Literal["pretty", "json", "off"],
        console_level: int,
    ) -> None:
        self._file = file
        self._file_level = file_level
        self._console = console
        self._console_level = console_level
        self._pretty = structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
        self._lock = threading.Lock()

    def __call__(self, logger: Any, method: str, event_dict: MutableMapping[str, Any]) -> str:
        level = _LEVELS.get(str(event_dict.get("level", "info")), logging.INFO)
        if self._file is not None and not self._file.closed and level >= self._file_level:
            line = json.dumps(event_dict, default=str)
            with self._lock:
                self._file.write(line + "\n")
                self._file.flush()
        if self._console == "off" or level < self._console_level:
            raise structlog.DropEvent
        if self._console == "json":
            return json.dumps(event_dict, default=str)
        return str(self._pretty(logger, method, dict(event_dict)))


def configure_logging(
    *,
    run_dir: Path | None = None,
    level: str = "info",
    console: Literal["pretty", "json", "off"] = "pretty",
    console_level: str = "warning",
) -> None:
    """(Re)configure structlog for this process. Safe to call more than once."""
    close_logging()
    file: IO[str] | None = None
    if run_dir is not None:
        run_dir.mkdir(parents=True, exist_ok=True)
        file = (run_dir / "run.log").open("a", encoding="utf-8")
        _state["file"] = file
    file_level = _LEVELS[level]
    console_lvl = _LEVELS[console_level]
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            _mask_secrets,
            _Tee(file, file_level, console, console_lvl),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(min(file_level, console_lvl)),
        logger_factory=lambda *args: _StderrLogger(),
        cache_logger_on_first_use=False,
    )


def close_logging() -> None:
    """Close the run log file, if one is open."""
    file = _state.get("file")
    if file is not None:
        file.close()
        _state["file"] = None
