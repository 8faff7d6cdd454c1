"""TrainerAgent: hands accepted rows to a fine-tuning child process and reports its progress.

- Every `Accepted` step (from ``min_round`` on) is appended to ``<run_dir>/<output>/accepted.jsonl``
  as it arrives: memory stays flat and a resumed run keeps what earlier attempts accepted (rows
  are de-duplicated by step id when shards are written).
- Training ``k`` writes chat-format shards with a deterministic train/eval split
  (`write_shards`) and runs ``python -m runtime.train`` (or torchrun/accelerate) as a child
  process (`TrainingProcess`): the child owns the GPU and may crash without taking the agents down.
- When: at the end of the run (``train_at_end``, in the completion phase) and, with
  ``every_rows = N``, each time N new rows have arrived (the main task trains while the pipeline
  keeps running; it ends when the pool announces `PoolFinished`).
- It publishes `TrainingStarted`, `TrainingProgress` (per step/eval event), `TrainingDone` or
  `TrainingFailed` (exit code and stderr tail) — notices — and stores each result as a record of
  kind ``"training"``. A failed training never fails the run; cancellation (abort) stops the
  child cleanly (SIGTERM, then SIGKILL of its process group).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import IO, Any

import anyio
from pydantic import BaseModel, ConfigDict, Field

from agents.base import Agent, AgentProgress, handles
from agents.pipeline.messages import Accepted, PoolFinished
from agents.registry import register
from agents.trainer.messages import (
    TrainingDone,
    TrainingFailed,
    TrainingProgress,
    TrainingStarted,
)
from agents.trainer.process import (
    CheckpointEvent,
    DoneEvent,
    EvalEvent,
    LaunchSettings,
    StepEvent,
    TrainingProcess,
    write_shards,
)

__all__ = ["TrainerAgent", "TrainerParams"]

ROWS_FILE = "accepted.jsonl"


class TrainerParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    model_dir: Path = Field(description="local base model directory (never fetched from a hub)")
    output: str = Field(default="training", description="directory under the run directory")
    min_round: int = Field(default=0, ge=0, description="train on rounds from this one on")
    train_at_end: bool = True
    every_rows: int | None = Field(default=None, ge=1, description="also train every N new rows")
    eval_fraction: float = Field(default=0.02, ge=0, lt=1)
    train: dict[str, Any] = Field(
        default_factory=dict,
        description="runtime.train settings (num_epochs, learning_rate, max_length, lora, ...)",
    )
    launch: LaunchSettings = Field(default_factory=LaunchSettings)


@register("trainer.sft")
class TrainerAgent(Agent[TrainerParams]):
    """Fine-tunes a local model on the accepted rows in a child process (SFT, optional LoRA)."""

    role = "trainer"

    async def on_start(self) -> None:
        self.dir = self.context.run_dir / self.params.output
        self.dir.mkdir(parents=True, exist_ok=True)
        self.rows_path = self.dir / ROWS_FILE
        self.rows = _count_lines(self.rows_path)
        self.trained_rows = 0
        self.trainings = 0
        self.step = 0
        self.total_steps: int | None = None
        self.pool_finished = anyio.Event()
        self.wake = anyio.Event()
        self._file: IO[str] = self.rows_path.open("a", encoding="utf-8")

    async def on_stop(self) -> None:
        self._file.close()

    @handles
    async def on_accepted(self, message: Accepted) -> None:
        step = message.step
        if step.round < self.params.min_round or not step.response:
            return
        row = {
            "id": step.step_id,
            "instruction": step.instruction,
            "input": step.input,
            "response": step.response,
        }
        self._file.write(json.dumps(row, ensure_ascii=False) + "\n")
        self._file.flush()
        self.rows += 1
        every = self.params.every_rows
        if every is not None and self.rows - self.trained_rows >= every:
            self.wake.set()

    @handles
    async def on_pool_finished(self, message: PoolFinished) -> None:
        self.pool_finished.set()
        self.wake.set()

    async def run(self) -> None:
        """With ``every_rows``: train each time enough new rows arrived, until the pool is done."""
        if self.params.every_rows is None:
            return
        while not self.pool_finished.is_set() and not self.context.stopping.is_set():
            await self.wake.wait()
            self.wake = anyio.Event()
            if self.rows - self.trained_rows >= self.params.every_rows:
                await self.train()

    async def on_run_complete(self) -> None:
        if self.params.train_at_end and self.rows > self.trained_rows:
            await self.train()

    async def train(self) -> bool:
        """One training on every row accepted so far. Returns True when it succeeded."""
        self.trainings += 1
        number = self.trainings
        rows = self.rows
        out = self.dir / f"training-{number:02d}"
        shards = await anyio.to_thread.run_sync(  # file I/O: keep the event loop free
            lambda: write_shards(
                _read_rows(self.rows_path), out / "data", self.params.eval_fraction,
                self.context.seed,
            )
        )
        config = {
            "model_dir": str(self.params.model_dir.resolve()),
            "train_files": [str(p) for p in shards.train_files],
            "eval_files": [str(p) for p in shards.eval_files],
            "output_dir": str(out / "model"),
            "seed": self.context.seed,
            **self.params.train,
        }
        await self.publish(
            TrainingStarted(
                training=number,
                rows_train=shards.num_train,
                rows_eval=shards.num_eval,
                output_dir=str(out),
            )
        )
        self.log.info("training_started", training=number, rows=rows)
        async with TrainingProcess(
            config, launch=self.params.launch, config_file=out / "train_config.json"
        ) as process:
            async for event in process.events():
                if isinstance(event, StepEvent):
                    self.step, self.total_steps = event.step, event.total_steps
                    await self.publish(
                        TrainingProgress(
                            training=number,
                            step=event.step,
                            total_steps=event.total_steps,
                            loss=event.loss,
                            tokens_per_s=event.tokens_per_s,
                            gpu_mem_gb=event.gpu_mem_gb,
                        )
                    )
                elif isinstance(event, EvalEvent):
                    await self.publish(
                        TrainingProgress(
                            training=number,
                            step=event.step,
                            total_steps=self.total_steps or 0,
                            eval_loss=event.eval_loss,
                        )
                    )
                elif isinstance(event, CheckpointEvent | DoneEvent):
                    self.log.info("training_event", training=number, kind=event.event)
            result = await process.wait()
        self.trained_rows = rows
        store = self.context.services.get("store")
        if result.status == "done" and result.done is not None:
            done = result.done
            await self.publish(
                TrainingDone(
                    training=number,
                    output_dir=done.output_dir,
                    steps=done.steps,
                    final_loss=done.final_loss,
                    eval_loss=done.eval_loss,
                    wall_s=done.wall_s,
                    adapter=done.adapter,
                )
            )
            if store is not None:
                store.put_record(
                    "training",
                    f"training-{number:02d}",
                    {"status": "done", "rows": rows, **done.model_dump(mode="json")},
                )
            return True
        await self.publish(
            TrainingFailed(
                training=number,
                returncode=result.returncode,
                error=result.message,
                stderr_tail=tuple(result.stderr_tail[-20:]),
            )
        )
        if store is not None:
            store.put_record(
                "training",
                f"training-{number:02d}",
                {
                    "status": "failed",
                    "rows": rows,
                    "returncode": result.returncode,
                    "error": result.message,
                    "stderr_tail": result.stderr_tail[-20:],
                },
            )
        self.log.error("training_failed", training=number, error=result.message)
        return False

    def progress(self) -> AgentProgress:
        if self.total_steps:
            return AgentProgress(
                label=f"training {self.trainings} steps",
                completed=self.step,
                total=self.total_steps,
            )
        return AgentProgress(label="rows for training", completed=self.rows)


def _count_lines(path: Path) -> int:
    if not path.is_file():
        return 0
    with path.open(encoding="utf-8") as handle:
        return sum(1 for _ in handle)


def _read_rows(path: Path) -> Any:
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                yield json.loads(line)
