"""The launcher: typed progress from a child, failures with their stderr tail, clean cancel."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest

from agents.trainer.process import (
    CheckpointEvent,
    DoneEvent,
    ErrorEvent,
    LaunchSettings,
    StartEvent,
    StepEvent,
    TrainingProcess,
    parse_event,
    write_shards,
)

REPO = Path(__file__).resolve().parents[2]
FAKE = Path(__file__).with_name("fake_child.py")


def fake(tmp_path: Path, mode: str, **kw: Any) -> TrainingProcess:
    cfg = tmp_path / f"{mode}.json"
    cfg.write_text(json.dumps({"mode": mode}), encoding="utf-8")
    return TrainingProcess(cfg, launch=LaunchSettings(program=[str(FAKE)], **kw))


def assert_gone(pid: int) -> None:
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


# ---------------------------------------------------------------- write_shards


def test_write_shards_splits_by_id_hash_deterministically(
    tmp_path: Path, shard_rows: list[dict[str, str]]
) -> None:
    a = write_shards(shard_rows, tmp_path / "a", eval_fraction=0.2, seed=1)
    b = write_shards(list(reversed(shard_rows)), tmp_path / "b", eval_fraction=0.2, seed=1)
    ids = lambda files: sorted(  # noqa: E731
        json.loads(line)["id"] for f in files for line in f.read_text().splitlines()
    )
    assert a.num_train + a.num_eval == len(shard_rows)
    assert 0 < a.num_eval < len(shard_rows)
    assert ids(a.eval_files) == ids(b.eval_files)
    # adding rows never moves an old row between splits
    c = write_shards(
        [*shard_rows, {"id": "new", "instruction": "x", "response": "y"}],
        tmp_path / "c",
        eval_fraction=0.2,
        seed=1,
    )
    assert set(ids(a.eval_files)) <= set(ids(c.eval_files))


def test_write_shards_writes_chat_format_with_input_after_instruction(tmp_path: Path) -> None:
    rows = [
        {"id": "1", "instruction": "Sort", "input": "3 1 2", "response": "1 2 3"},
        {"id": "1", "instruction": "dup", "response": "dup"},
        {"id": "2", "instruction": "Hi", "response": "Hello"},
    ]
    m = write_shards(rows, tmp_path, eval_fraction=0.0, rows_per_shard=1)
    assert (m.num_train, m.num_eval) == (2, 0)
    assert [p.name for p in m.train_files] == ["train-00000.jsonl", "train-00001.jsonl"]
    first = json.loads(m.train_files[0].read_text())
    assert first["messages"] == [
        {"role": "user", "content": "Sort\n\n3 1 2"},
        {"role": "assistant", "content": "1 2 3"},
    ]


# ---------------------------------------------------------------- protocol and launcher (no torch)


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        pytest.param('{"event":"eval","step":3,"eval_loss":1.5}', "eval", id="known"),
        pytest.param('{"event":"eval","step":3,"eval_loss":1.5,"new":1}', "eval", id="extra-field"),
        pytest.param('{"event":"nope"}', None, id="unknown-event"),
        pytest.param("Loading weights 100%", None, id="not-json"),
        pytest.param('{"event":"step"}', None, id="missing-fields"),
    ],
)
def test_parse_event(line: str, expected: str | None) -> None:
    event = parse_event(line)
    assert (event.event if event else None) == expected


def test_launcher_command_for_each_launcher(tmp_path: Path) -> None:
    cfg = tmp_path / "c.json"
    py = LaunchSettings(python="py").command(cfg)
    tr = LaunchSettings(python="py", launcher="torchrun", nproc_per_node=4).command(cfg)
    ac = LaunchSettings(python="py", launcher="accelerate", nproc_per_node=2).command(cfg)
    assert py == ["py", "-m", "runtime.train", "--config", str(cfg)]
    assert tr[:4] == ["py", "-m", "torch.distributed.run", "--nproc-per-node=4"]
    assert ac[:4] == ["py", "-m", "accelerate.commands.launch", "--num_processes=2"]
    assert tr[4:] == ac[4:] == py[1:]


async def test_events_are_typed_and_stray_stdout_is_kept_not_raised(tmp_path: Path) -> None:
    with anyio.fail_after(30):
        async with fake(tmp_path, "progress") as proc:
            events = [e async for e in proc.events()]
            result = await proc.wait()
    assert [e.event for e in events] == ["start", "step", "step", "step", "done"]
    assert [e.step for e in events if isinstance(e, StepEvent)] == [1, 2, 3]
    assert result.status == "done"
    assert result.returncode == 0
    assert result.last_step == 3
    assert "[stdout] a stray print from some library" in result.stderr_tail
    assert "log line on stderr" in result.stderr_tail
    stats = proc.statistics()
    assert (stats.events, stats.unparsed_stdout_lines, stats.running) == (5, 2, False)


async def test_wait_without_reading_events_drains_them(tmp_path: Path) -> None:
    with anyio.fail_after(30):
        async with fake(tmp_path, "progress") as proc:
            result = await proc.wait()
    assert result.status == "done"
    assert result.done is not None
    assert result.done.steps == 3


async def test_breaking_out_of_events_loses_nothing(tmp_path: Path) -> None:
    with anyio.fail_after(30):
        async with fake(tmp_path, "progress") as proc:
            async for event in proc.events():
                assert isinstance(event, StartEvent)
                break
            rest = [e.event async for e in proc.events()]
            result = await proc.wait()
    assert rest == ["step", "step", "step", "done"]
    assert result.status == "done"


async def test_crashing_child_is_failed_with_its_stderr_tail(tmp_path: Path) -> None:
    with anyio.fail_after(30):
        async with fake(tmp_path, "crash", stderr_tail_lines=5) as proc:
            result = await proc.wait()
    assert result.status == "failed"
    assert result.returncode == 1
    assert result.last_step == 1
    assert len(result.stderr_tail) == 5
    assert result.stderr_tail[-1] == "RuntimeError: boom at step 2"
    assert "boom at step 2" in result.message


async def test_exit_zero_without_done_event_is_failed(tmp_path: Path) -> None:
    with anyio.fail_after(30):
        async with fake(tmp_path, "no_done") as proc:
            result = await proc.wait()
    assert (result.status, result.returncode) == ("failed", 0)


async def test_cancel_terminates_the_child_with_sigterm(tmp_path: Path) -> None:
    with anyio.fail_after(30):
        with anyio.CancelScope() as scope:
            async with fake(tmp_path, "term") as proc:
                async for event in proc.events():
                    assert isinstance(event, StartEvent)
                    scope.cancel()
    assert scope.cancelled_caught
    pid = proc.pid
    assert pid is not None
    assert_gone(pid)
    assert proc.statistics().returncode == -15


async def test_stderr_is_drained_while_a_cancelled_child_shuts_down(tmp_path: Path) -> None:
    # The child writes more than a pipe buffer on SIGTERM: unread, it would block until SIGKILL.
    with anyio.fail_after(60):
        with anyio.CancelScope() as scope:
            async with fake(
                tmp_path, "graceful", terminate_grace_s=30, stderr_tail_lines=3
            ) as proc:
                async for _ in proc.events():
                    scope.cancel()
    assert proc.statistics().returncode == 143
    assert proc.stderr_tail[-1] == "checkpoint written"
    assert proc.statistics().stderr_lines == 2001


async def test_cancel_kills_a_child_that_ignores_sigterm_after_the_grace(tmp_path: Path) -> None:
    with anyio.fail_after(30):
        with anyio.CancelScope() as scope:
            async with fake(tmp_path, "stubborn", terminate_grace_s=0.2) as proc:
                async for _ in proc.events():  # start is printed after SIGTERM is ignored
                    scope.cancel()
    pid = proc.pid
    assert pid is not None
    assert_gone(pid)
    assert proc.statistics().returncode == -9


async def test_missing_program_is_failed_not_raised(tmp_path: Path) -> None:
    cfg = tmp_path / "c.json"
    cfg.write_text("{}", encoding="utf-8")
    launch = LaunchSettings(program=[str(tmp_path / "missing.py")])
    with anyio.fail_after(30):
        async with TrainingProcess(cfg, launch=launch) as proc:
            result = await proc.wait()
    assert result.status == "failed"
    assert result.returncode == 2  # python: can't open file
    assert any("missing.py" in line for line in result.stderr_tail)


# ---------------------------------------------------------------- the real child (torch)


def real(config: dict[str, Any]) -> TrainingProcess:
    # One thread: a tiny model gains nothing from more, and on a shared 2-core box OpenMP
    # spinning under contention makes the run several times slower.
    env = {
        "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
        "OMP_NUM_THREADS": "1",
    }
    return TrainingProcess(config, launch=LaunchSettings(cwd=REPO, env=env, python=sys.executable))


async def test_real_child_with_a_bad_model_dir_fails_with_the_reason(
    train_config: dict[str, Any], tmp_path: Path
) -> None:
    config = {**train_config, "model_dir": str(tmp_path / "no-such-model")}
    with anyio.fail_after(110):
        async with real(config) as proc:
            result = await proc.wait()
    assert result.status == "failed"
    assert result.returncode == 2
    assert isinstance(result.error, ErrorEvent)
    assert result.error.error_type == "ConfigError"
    assert any("not a local model directory" in line for line in result.stderr_tail)


@pytest.mark.timeout(300)  # two cold children: ~20 s idle, but minutes on a loaded 2-core box
async def test_real_child_checkpoints_on_cancel_and_resumes_with_full_progress(
    train_config: dict[str, Any],
) -> None:
    from runtime.train._loop import latest_checkpoint

    # The first run is far too long to finish before the SIGTERM lands; the resumed one stops
    # at 8 (max_steps is not part of the data order, so resume is exact).
    config = {**train_config, "save_steps": 2, "save_total_limit": None}
    with anyio.fail_after(280):
        with anyio.CancelScope() as scope:
            async with real({**config, "max_steps": 500}) as first:
                async for event in first.events():
                    if isinstance(event, CheckpointEvent):
                        scope.cancel()
        assert first.statistics().returncode == 143  # checkpointed and stopped, not killed
        ckpt = latest_checkpoint(Path(config["output_dir"]))
        assert ckpt is not None
        saved = int(ckpt.name.removeprefix("checkpoint-"))
        assert 2 <= saved < 8

        async with real({**config, "max_steps": 8}) as second:
            events = [e async for e in second.events()]
            result = await second.wait()
    assert result.status == "done", result.stderr_tail
    start = events[0]
    assert isinstance(start, StartEvent)
    assert start.resumed_from_step == saved
    steps = [e.step for e in events if isinstance(e, StepEvent)]
    assert steps == list(range(saved + 1, 9))
    # the resumed run streams the whole protocol and writes a loadable model
    checkpoints = [e.step for e in events if isinstance(e, CheckpointEvent)]
    assert checkpoints == [s for s in range(saved + 1, 8) if s % 2 == 0]
    assert [e.event for e in events][-2:] == ["eval", "done"]
    done = events[-1]
    assert isinstance(done, DoneEvent)
    assert done.steps == 8
    out = Path(done.output_dir)
    assert (out / "config.json").is_file()
    assert (out / "model.safetensors").is_file()
    assert (out / "chat_template.jinja").is_file()


@pytest.mark.slow
@pytest.mark.timeout(300)
async def test_torchrun_two_cpu_ranks_train_and_report_once(
    train_config: dict[str, Any],
) -> None:
    config = {**train_config, "max_steps": 4, "logging_steps": 2}
    env = {
        "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
        "OMP_NUM_THREADS": "1",
        "CUDA_VISIBLE_DEVICES": "",
    }
    launch = LaunchSettings(cwd=REPO, env=env, launcher="torchrun", nproc_per_node=2)
    with anyio.fail_after(280):
        async with TrainingProcess(config, launch=launch) as proc:
            events = [e async for e in proc.events()]
            result = await proc.wait()
    assert result.status == "done", result.stderr_tail
    start = events[0]
    assert isinstance(start, StartEvent)
    assert start.world_size == 2
    assert [e.event for e in events].count("done") == 1  # rank 0 alone reports
    assert [e.step for e in events if isinstance(e, StepEvent)] == [2, 4]
