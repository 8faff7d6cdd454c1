"""Supervised fine-tuning of a local causal LM, run as `python -m runtime.train`.

Public surface: `TrainConfig` / `LoraSettings` / `PRESETS` / `load_config` (torch-free) and
`run_training` (imports torch lazily). The progress event models live in
`agents.trainer.process` (the launcher parses what this program prints). See docs/training.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from runtime.train._config import PRESETS, LoraSettings, TrainConfig, load_config

if TYPE_CHECKING:
    from agents.trainer.process import DoneEvent
    from runtime.train._loop import Emit

__all__ = ["PRESETS", "LoraSettings", "TrainConfig", "load_config", "run_training"]


def run_training(config: TrainConfig, emit: Emit) -> DoneEvent:
    """Train per `config` in this process; see `runtime.train._loop.run_training`."""
    from runtime.train._loop import run_training as _run

    return _run(config, emit)
