"""`python -m runtime.train` — supervised fine-tuning with JSON-lines progress on stdout.

    python -m runtime.train --config TRAIN.json [--preset paper|tiny] [--model-dir DIR]
        [--train-file F ...] [--eval-file F ...] [--output-dir DIR] [--max-steps N]
        [--set key=JSON_VALUE ...]

stdout carries only progress events (one JSON object per line, see `agents.trainer.process`);
everything else — logs, warnings, stray prints of libraries — goes to stderr. Exit codes: 0 done,
2 bad config or input data (nothing trained), 1 any other failure (traceback on stderr and an
`error` event on stdout), 143 stopped by SIGTERM after writing a checkpoint (a SIGTERM before
training starts, or a second one, kills the process the default way).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import traceback
from pathlib import Path
from typing import Any, TextIO

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m runtime.train", description="SFT of a local causal LM on chat JSONL shards."
    )
    p.add_argument("--config", type=Path, help="a JSON file of TrainConfig keys")
    p.add_argument("--preset", help="named defaults applied before the file: paper, tiny")
    p.add_argument("--model-dir", type=Path)
    p.add_argument("--train-file", type=Path, action="append", dest="train_files")
    p.add_argument("--eval-file", type=Path, action="append", dest="eval_files")
    p.add_argument("--output-dir", type=Path)
    p.add_argument("--max-steps", type=int)
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=JSON",
        help="override any key; the value is JSON (bare words are strings)",
    )
    return p


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in ("model_dir", "train_files", "eval_files", "output_dir", "max_steps"):
        value = getattr(args, key)
        if value is not None:
            out[key] = value
    for item in args.set:
        key, sep, raw = item.partition("=")
        if not sep:
            raise SystemExit(f"--set expects KEY=VALUE, got {item!r}")
        try:
            out[key.strip()] = json.loads(raw)
        except json.JSONDecodeError:
            out[key.strip()] = raw
    return out


def _take_stdout() -> TextIO:
    """Keep fd 1 for events only: dup it, then point fd 1 and sys.stdout at stderr."""
    sys.stdout.flush()
    events_fd = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return os.fdopen(events_fd, "w", buffering=1, encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    """Run one training job; see the module docstring for the I/O contract and exit codes."""
    args = _parser().parse_args(argv)  # --help and usage errors print before stdout is taken
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach a hub from the training child
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    events = _take_stdout()
    logging.basicConfig(
        stream=sys.stderr,
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )

    def emit(event: Any) -> None:
        events.write(event.model_dump_json() + "\n")
        events.flush()

    from agents.trainer.process import ErrorEvent
    from bus.errors import EvolagentsError
    from runtime.train._config import load_config
    from runtime.train._loop import TrainingInterrupted, run_training  # torch loads lazily

    try:
        config = load_config(preset=args.preset, file=args.config, overrides=_overrides(args))
        run_training(config, emit)
    except TrainingInterrupted as exc:
        print(f"stopped: {exc}", file=sys.stderr)
        return 143
    except EvolagentsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        emit(ErrorEvent(error_type=type(exc).__name__, message=str(exc)))
        return 2
    except Exception as exc:
        traceback.print_exc()
        emit(ErrorEvent(error_type=type(exc).__name__, message=str(exc)))
        return 1
    finally:
        events.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
