"""Fine-tuning as a child process: launch, stream typed progress, stop cleanly.

The child is `python -m runtime.train --config FILE` (or `torchrun` / `accelerate launch` for
several GPUs). It prints one JSON object per line on stdout, each with an `event` field — the
*progress protocol*, modelled here as frozen pydantic events (`StartEvent`, `StepEvent`,
`EvalEvent`, `CheckpointEvent`, `DoneEvent`, `ErrorEvent`). Human logs go to stderr.

Contract of `TrainingProcess`:

- `async with TrainingProcess(...) as proc:` starts the child (in its own process group) and a
  background reader that keeps the last `stderr_tail_lines` lines of stderr (and forwards each to
  `on_stderr` when given). The child's stdout is read only by the consumer: iterate
  `proc.events()` (one consumer) or not at all — `wait()` drains what is left. A consumer that
  stops reading pauses the child once the pipe buffer (~64 KiB) is full; that is the backpressure.
- `await proc.wait()` returns a `TrainingResult`: `done` (exit 0 and a `done` event) or `failed`
  (exit code, `error` event if any, stderr tail). It never raises for a failed child; only a
  launcher that cannot be executed at all (`python` missing) raises `OSError` from `__aenter__`.
- Leaving the block — normally, by an exception, or by cancellation of the enclosing cancel scope
  — terminates a child still running: SIGTERM to the child (`runtime.train` then finishes its
  step, writes a checkpoint and exits 143; torchrun/accelerate forward the signal to their
  workers), then SIGKILL to its whole process group after `terminate_grace_s`. The exit path is
  shielded, so cancellation cannot leave an orphan.

Lines on stdout that are not JSON objects with a known `event` are counted in `statistics()` and
kept in the stderr tail (prefixed `[stdout]`), never raised: a library that prints must not kill
a run.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import subprocess
import sys
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Annotated, Any, Literal, Self

import anyio
from anyio.abc import Process, TaskGroup
from anyio.streams.text import TextReceiveStream
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

__all__ = [
    "CheckpointEvent",
    "DoneEvent",
    "ErrorEvent",
    "EvalEvent",
    "LaunchSettings",
    "ProcessStatistics",
    "ShardManifest",
    "ShardRow",
    "StartEvent",
    "StepEvent",
    "TrainingEvent",
    "TrainingProcess",
    "TrainingResult",
    "parse_event",
    "write_shards",
]


# --------------------------------------------------------------------------- progress protocol


class _Event(BaseModel):
    # extra="ignore": a newer child may add fields; an older parent still parses the line.
    model_config = ConfigDict(frozen=True, extra="ignore")


class StartEvent(_Event):
    """Printed once, after the model and data are loaded and before the first step."""

    event: Literal["start"] = "start"
    total_steps: int
    num_train_examples: int
    num_eval_examples: int
    resumed_from_step: int = 0
    world_size: int = 1
    device: str
    precision: str
    lora: bool = False


class StepEvent(_Event):
    """Every `logging_steps` optimizer steps. `loss` is the mean response-token loss over the
    steps since the last event; `gpu_mem_gb` is peak CUDA memory (None on CPU)."""

    event: Literal["step"] = "step"
    step: int
    total_steps: int
    epoch: float
    loss: float
    lr: float
    tokens_per_s: float
    gpu_mem_gb: float | None = None


class EvalEvent(_Event):
    """After an evaluation on the held-out split: token-weighted mean loss on response tokens."""

    event: Literal["eval"] = "eval"
    step: int
    eval_loss: float


class CheckpointEvent(_Event):
    """A complete checkpoint now exists at `path` (written to a temp dir, then renamed)."""

    event: Literal["checkpoint"] = "checkpoint"
    step: int
    path: str


class DoneEvent(_Event):
    """The last event of a successful run: the model (or LoRA adapter) is in `output_dir`."""

    event: Literal["done"] = "done"
    output_dir: str
    final_loss: float | None
    steps: int
    wall_s: float
    eval_loss: float | None = None
    adapter: bool = False


class ErrorEvent(_Event):
    """Printed before a non-zero exit when the child caught the error itself."""

    event: Literal["error"] = "error"
    error_type: str
    message: str


TrainingEvent = Annotated[
    StartEvent | StepEvent | EvalEvent | CheckpointEvent | DoneEvent | ErrorEvent,
    Field(discriminator="event"),
]
_EVENT_ADAPTER: TypeAdapter[TrainingEvent] = TypeAdapter(TrainingEvent)


def parse_event(line: str) -> TrainingEvent | None:
    """One stdout line → an event, or None when the line is not a known event."""
    line = line.strip()
    if not line.startswith("{"):
        return None
    try:
        return _EVENT_ADAPTER.validate_json(line)
    except ValidationError:
        return None


# --------------------------------------------------------------------------- dataset shards


class ShardRow(BaseModel):
    """An accepted row: `id` decides its split, the rest becomes one user/assistant exchange."""

    model_config = ConfigDict(frozen=True)

    id: str
    instruction: str
    input: str = ""
    response: str


class ShardManifest(BaseModel):
    """What `write_shards` wrote; paths are absolute."""

    model_config = ConfigDict(frozen=True)

    train_files: list[Path]
    eval_files: list[Path]
    num_train: int
    num_eval: int


def _is_eval(row_id: str, eval_fraction: float, seed: int) -> bool:
    digest = hashlib.sha256(f"{seed}:{row_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < eval_fraction


def _chat_line(row: ShardRow) -> str:
    user = row.instruction if not row.input else f"{row.instruction}\n\n{row.input}"
    messages = [{"role": "user", "content": user}, {"role": "assistant", "content": row.response}]
    return json.dumps({"messages": messages, "id": row.id}, ensure_ascii=False)


def write_shards(
    rows: Iterable[ShardRow | Mapping[str, Any]],
    out_dir: Path,
    eval_fraction: float = 0.02,
    seed: int = 0,
    *,
    rows_per_shard: int = 50_000,
) -> ShardManifest:
    """Write chat-format JSONL shards `train-00000.jsonl…` and `eval-00000.jsonl…` to `out_dir`.

    A row goes to eval when `sha256(f"{seed}:{id}")` maps below `eval_fraction`: the split of a
    row never changes as rows are added, and the same rows give byte-identical files. Rows keep
    their input order inside a split; a duplicate id is written once (the first). Each line is
    `{"messages": [user, assistant], "id": ...}` with user = instruction, plus a blank line and
    the input when there is one. Files are written to a temp name and renamed; shards of an
    earlier call left in `out_dir` are removed. Mappings are validated as `ShardRow`
    (pydantic `ValidationError` on a bad row). With few rows the eval split may be empty.
    """
    if not 0.0 <= eval_fraction < 1.0:
        raise ValueError("eval_fraction must be in [0, 1)")
    out_dir = Path(out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    splits: dict[str, list[str]] = {"train": [], "eval": []}
    seen: set[str] = set()
    for raw in rows:
        row = raw if isinstance(raw, ShardRow) else ShardRow.model_validate(raw)
        if row.id in seen:
            continue
        seen.add(row.id)
        splits["eval" if _is_eval(row.id, eval_fraction, seed) else "train"].append(_chat_line(row))
    for old in [*out_dir.glob("train-*.jsonl"), *out_dir.glob("eval-*.jsonl")]:
        old.unlink()
    files: dict[str, list[Path]] = {"train": [], "eval": []}
    for split, lines in splits.items():
        for i in range(0, len(lines), rows_per_shard):
            path = out_dir / f"{split}-{i // rows_per_shard:05d}.jsonl"
            tmp = path.with_suffix(".jsonl.tmp")
            tmp.write_text(
                "".join(f"{line}\n" for line in lines[i : i + rows_per_shard]), encoding="utf-8"
            )
            os.replace(tmp, path)
            files[split].append(path)
    return ShardManifest(
        train_files=files["train"],
        eval_files=files["eval"],
        num_train=len(splits["train"]),
        num_eval=len(splits["eval"]),
    )


# --------------------------------------------------------------------------- the launcher


class LaunchSettings(BaseModel):
    """How to start the training child.

    `launcher`: `python` (one process), `torchrun` (`python -m torch.distributed.run
    --nproc-per-node N`) or `accelerate` (`python -m accelerate.commands.launch --num_processes
    N`). `program` is what follows the launcher (default `-m runtime.train`); tests point it at a
    script. `env` is added to the inherited environment. The child's working directory is `cwd`
    (default: inherited) — relative paths in the training config resolve there.
    """

    model_config = ConfigDict(frozen=True)

    launcher: Literal["python", "torchrun", "accelerate"] = "python"
    nproc_per_node: int = Field(1, ge=1)
    python: str = sys.executable
    program: list[str] = Field(default_factory=lambda: ["-m", "runtime.train"])
    extra_args: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict)
    cwd: Path | None = None
    stderr_tail_lines: int = Field(200, ge=1)
    terminate_grace_s: float = Field(10.0, ge=0.0)

    def command(self, config_file: Path) -> list[str]:
        """The full argv for a run with `config_file`."""
        if self.launcher == "torchrun":
            head = [
                self.python,
                "-m",
                "torch.distributed.run",
                f"--nproc-per-node={self.nproc_per_node}",
            ]
        elif self.launcher == "accelerate":
            head = [
                self.python,
                "-m",
                "accelerate.commands.launch",
                f"--num_processes={self.nproc_per_node}",
            ]
        else:
            head = [self.python]
        return [*head, *self.program, "--config", str(config_file), *self.extra_args]


class TrainingResult(BaseModel):
    """How the child ended. `status="done"` iff it exited 0 after a `done` event."""

    model_config = ConfigDict(frozen=True)

    status: Literal["done", "failed"]
    returncode: int
    """Negative: killed by that signal (e.g. -15 SIGTERM, -9 SIGKILL)."""
    done: DoneEvent | None = None
    error: ErrorEvent | None = None
    last_step: int = 0
    stderr_tail: list[str] = Field(default_factory=list)

    @property
    def message(self) -> str:
        """A one-line reason for a failure (empty when done)."""
        if self.status == "done":
            return ""
        if self.error is not None:
            return f"{self.error.error_type}: {self.error.message}"
        tail = self.stderr_tail[-1] if self.stderr_tail else "no stderr"
        return f"exit code {self.returncode}: {tail}"


@dataclass(frozen=True, slots=True)
class ProcessStatistics:
    """A snapshot of the launcher's state (see `TrainingProcess.statistics`)."""

    pid: int | None
    running: bool
    returncode: int | None
    """None while running; negative: ended by that signal."""
    events: int
    unparsed_stdout_lines: int
    stderr_lines: int
    last_step: int


class TrainingProcess:
    """Run `runtime.train` (or a multi-GPU launcher of it) as a supervised child process.

    `config` is a path to a JSON training config, or a mapping that is written as JSON to
    `config_file` (default: `<output_dir>/train_config.json`; a mapping without `output_dir`
    needs `config_file`). The child validates it: a bad config ends as `failed` with exit code 2
    and an `error` event. `on_stderr` sees each stderr line as it arrives (it must not raise or
    block). An instance runs one child once. See the module docstring for the streaming,
    backpressure and termination contract.
    """

    def __init__(
        self,
        config: Path | Mapping[str, Any],
        *,
        launch: LaunchSettings | None = None,
        config_file: Path | None = None,
        on_stderr: Callable[[str], None] | None = None,
    ) -> None:
        self._launch = launch or LaunchSettings()
        if isinstance(config, Mapping):
            if config_file is None:
                if "output_dir" not in config:
                    raise ValueError("pass config_file, or a config with output_dir")
                config_file = Path(str(config["output_dir"])) / "train_config.json"
            config_file.parent.mkdir(parents=True, exist_ok=True)
            config_file.write_text(
                json.dumps(dict(config), default=str, indent=2), encoding="utf-8"
            )
            self._config_file = config_file
        else:
            self._config_file = Path(config)
        self._on_stderr = on_stderr
        self._process: Process | None = None
        self._tg: TaskGroup | None = None
        self._stderr: deque[str] = deque(maxlen=self._launch.stderr_tail_lines)
        self._stderr_lines = 0
        self._events = 0
        self._unparsed = 0
        self._last_step = 0
        self._done: DoneEvent | None = None
        self._error: ErrorEvent | None = None
        self._stdout_exhausted = False
        self._lines: AsyncGenerator[str, None] | None = None
        self._result: TrainingResult | None = None
        self._stderr_closed = anyio.Event()
        self._reader_scope: anyio.CancelScope | None = None

    @property
    def command(self) -> list[str]:
        """The argv the child is (or will be) started with."""
        return self._launch.command(self._config_file)

    @property
    def stderr_tail(self) -> list[str]:
        """The last `stderr_tail_lines` lines of stderr so far (also after a cancellation)."""
        return list(self._stderr)

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def statistics(self) -> ProcessStatistics:
        """Counts so far: events parsed, stdout lines that were not events, stderr lines."""
        p = self._process
        return ProcessStatistics(
            pid=p.pid if p else None,
            running=p is not None and p.returncode is None,
            returncode=p.returncode if p else None,
            events=self._events,
            unparsed_stdout_lines=self._unparsed,
            stderr_lines=self._stderr_lines,
            last_step=self._last_step,
        )

    async def __aenter__(self) -> Self:
        if self._process is not None:
            raise RuntimeError("a TrainingProcess runs once; create a new one")
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **self._launch.env}
        self._process = await anyio.open_process(
            self.command,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=self._launch.cwd,
            start_new_session=True,  # its own process group: torchrun workers die with it
        )
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        self._tg.start_soon(self._read_stderr)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        assert self._tg is not None
        assert self._process is not None
        with anyio.CancelScope(shield=True):
            if self._process.returncode is None:
                await self._terminate()
            if self._lines is not None:
                await self._lines.aclose()
            # The group is gone, so stderr reaches EOF; the bound covers a stray grandchild
            # that left the group holding the pipe.
            with anyio.move_on_after(max(self._launch.terminate_grace_s, 1.0)):
                await self._stderr_closed.wait()
            if self._reader_scope is not None:
                self._reader_scope.cancel()
            await self._process.aclose()
        return await self._tg.__aexit__(exc_type, exc, tb)

    async def events(self) -> AsyncIterator[TrainingEvent]:
        """Yield progress events until the child closes stdout.

        One consumer at a time. Breaking out early loses nothing: a later `events()` or
        `wait()` continues from the next line.
        """
        process = self._require()
        if process.stdout is None:
            return
        if self._lines is None:
            self._lines = _lines(TextReceiveStream(process.stdout, errors="replace"))
        while not self._stdout_exhausted:
            try:
                line = await anext(self._lines)
            except StopAsyncIteration:
                self._stdout_exhausted = True
                return
            event = parse_event(line)
            if event is None:
                if line.strip():
                    self._unparsed += 1
                    self._keep_stderr(f"[stdout] {line}")
                continue
            self._events += 1
            if isinstance(event, StepEvent):
                self._last_step = event.step
            elif isinstance(event, StartEvent):
                self._last_step = event.resumed_from_step
            elif isinstance(event, DoneEvent):
                self._done = event
            elif isinstance(event, ErrorEvent):
                self._error = event
            yield event

    async def wait(self) -> TrainingResult:
        """Drain unread events, wait for the exit, and return how the run ended."""
        if self._result is not None:
            return self._result
        process = self._require()
        if not self._stdout_exhausted:
            async for _ in self.events():
                pass
        await process.wait()
        # stderr reaches EOF when the child exits; let the reader finish the tail (bounded: a
        # grandchild that left the process group may still hold the pipe).
        with anyio.move_on_after(max(self._launch.terminate_grace_s, 1.0)):
            await self._stderr_closed.wait()
        code = process.returncode if process.returncode is not None else -1
        ok = code == 0 and self._done is not None
        self._result = TrainingResult(
            status="done" if ok else "failed",
            returncode=code,
            done=self._done,
            error=self._error,
            last_step=self._last_step,
            stderr_tail=list(self._stderr),
        )
        return self._result

    async def terminate(self) -> None:
        """Stop the child now: SIGTERM, then SIGKILL to its group after the grace period."""
        with anyio.CancelScope(shield=True):
            await self._terminate()

    # ---- internals

    def _require(self) -> Process:
        if self._process is None:
            raise RuntimeError("use `async with TrainingProcess(...)` first")
        return self._process

    def _keep_stderr(self, line: str) -> None:
        self._stderr.append(line)
        self._stderr_lines += 1
        if self._on_stderr is not None:
            self._on_stderr(line)

    async def _read_stderr(self) -> None:
        # Shielded: when the enclosing scope is cancelled the child is still being stopped and
        # may log plenty while it checkpoints; an unread pipe would block it. The reader ends at
        # EOF, or when __aexit__ cancels this scope after its bounded wait.
        process = self._require()
        with anyio.CancelScope(shield=True) as scope:
            self._reader_scope = scope
            try:
                if process.stderr is not None:
                    async for line in _lines(TextReceiveStream(process.stderr, errors="replace")):
                        self._keep_stderr(line)
            except (anyio.ClosedResourceError, anyio.BrokenResourceError):
                pass  # closed by __aexit__: the tail is what we have
            finally:
                self._stderr_closed.set()

    def _signal_group(self, sig: signal.Signals) -> None:
        process = self._require()
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, sig)

    async def _terminate(self) -> None:
        process = self._require()
        if process.returncode is not None:
            return
        # SIGTERM to the leader only: `runtime.train` checkpoints and exits 143; torchrun and
        # accelerate forward it to their workers (a second SIGTERM straight from us would make
        # the workers die before they checkpoint). SIGKILL goes to the whole group.
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
        with anyio.move_on_after(self._launch.terminate_grace_s):
            await process.wait()
            return
        self._signal_group(signal.SIGKILL)
        await process.wait()


async def _lines(stream: AsyncIterator[str]) -> AsyncGenerator[str, None]:
    """Split a text stream into lines (without the newline); the last partial line too."""
    buf = ""
    async for chunk in stream:
        buf += chunk
        *complete, buf = buf.split("\n")
        for line in complete:
            yield line.rstrip("\r")
    if buf:
        yield buf.rstrip("\r")
