"""What the TrainerAgent announces about fine-tuning (all `Notice`s: logged and stored)."""

from __future__ import annotations

from typing import Literal

from bus.message import Notice

__all__ = ["TrainingDone", "TrainingFailed", "TrainingProgress", "TrainingStarted"]


class TrainingStarted(Notice):
    kind: Literal["training.started"] = "training.started"
    training: int
    rows_train: int
    rows_eval: int
    output_dir: str


class TrainingProgress(Notice):
    kind: Literal["training.progress"] = "training.progress"
    training: int
    step: int
    total_steps: int
    loss: float | None = None
    eval_loss: float | None = None
    tokens_per_s: float | None = None
    gpu_mem_gb: float | None = None


class TrainingDone(Notice):
    kind: Literal["training.done"] = "training.done"
    training: int
    output_dir: str
    steps: int
    final_loss: float | None
    eval_loss: float | None = None
    wall_s: float
    adapter: bool = False


class TrainingFailed(Notice):
    kind: Literal["training.failed"] = "training.failed"
    training: int
    returncode: int
    error: str
    stderr_tail: tuple[str, ...] = ()
