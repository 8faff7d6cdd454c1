"""Evol-Instruct throughput and memory: the whole pipeline against the mock LLM server.

    python bench/evol_throughput.py throughput [--seeds 800] [--rounds 4] [--latency-ms 200]
                                               [--cap 64] [--no-cache]
    python bench/evol_throughput.py rss [--sizes 5000,20000,50000] [--rounds 1]

Both start the mock server in its own process (`agents.llm.mock`) and run the pipeline as
`python -m runtime CONFIG` in another, exactly as a user would; seed files are generated as JSONL
into a temporary directory (cycled from the shared Alpaca subset when present, else synthetic).

- `throughput`: the mock answers after a fixed latency L; the client's concurrency cap is C, so the
  LLM's ceiling is C/L calls/s. Prints rows/s, calls/s and their ratio to C/L — over the whole run
  and over its steady state (from 10% to 90% of the calls, sampled from /mock/stats) — plus the
  run process's CPU time per call. Target: ratio ≥ 0.9 (the LLM, not the pipeline, is the
  bottleneck).
- `rss`: a zero-latency mock; prints the run process's peak RSS (ru_maxrss from wait4) per seed
  count. Flat across sizes = the pipeline streams (no whole-dataset lists).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from agents.llm.mock import MockConfig
from agents.llm.mock.process import MockProcess, spawn_mock_server

REPO = Path(__file__).resolve().parents[1]
ALPACA = REPO.parent / "shared" / "data" / "alpaca_data_subset5000_pr152.json"


def write_seeds(path: Path, count: int) -> Path:
    """`count` Alpaca-style records as JSONL (distinct instructions, all with an output)."""
    if ALPACA.is_file():
        base = [r for r in json.loads(ALPACA.read_text(encoding="utf-8")) if r.get("output")]
    else:
        base = [
            {"instruction": f"Explain idea {i} of thermodynamics.", "input": "", "output": "..."}
            for i in range(100)
        ]
    with path.open("w", encoding="utf-8") as out:
        for index, record in zip(range(count), itertools.cycle(base), strict=False):
            lap = index // len(base)
            instruction = record["instruction"] + (f" (variant {lap})" if lap else "")
            out.write(json.dumps({**record, "instruction": instruction}) + "\n")
    return path


def write_config(
    path: Path, seeds: Path, url: str, *, rounds: int, cap: int, cache: bool = True
) -> Path:
    stage = f'concurrency = {cap}\nmailbox = 1024\nllm = "mock"'
    path.write_text(
        f"""
[run]
name = "bench"
seed = 1
progress = false
inputs = [{{ path = "{seeds}" }}]
log = {{ level = "warning", console = "off" }}

[llm.mock]
backend = "openai-compatible"
model = "mock"
endpoints = ["{url}"]
concurrency = {cap}
timeout_s = 60.0
cache = {"true" if cache else "false"}

[agents.pool]
impl = "pool.rounds"
params = {{ rounds = {rounds}, max_in_flight = {max(256, 4 * cap)} }}

[agents.evol]
impl = "evol.wizardlm"
{stage}

[agents.responder]
impl = "respond.default"
{stage}

[agents.eliminator]
impl = "eliminate.wizardlm"
{stage}
""",
        encoding="utf-8",
    )
    return path


@dataclass
class RunResult:
    wall_s: float
    cpu_s: float
    max_rss_mb: float
    calls: int
    samples: list[tuple[float, int]]
    in_flight: list[int]


async def run_once(mock: MockProcess, config: Path, run_dir: Path) -> RunResult:
    """Run the pipeline in a child process; sample the mock's completed calls every 0.25 s."""
    await mock.reset()
    start_calls = 0
    # Popen + os.wait4 (not asyncio's child watcher): wait4 returns the child's own rusage
    proc = subprocess.Popen(  # noqa: ASYNC220
        [sys.executable, "-m", "runtime", str(config), "--run-dir", str(run_dir),
         "--no-progress", "--log-console", "off"],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    t0 = time.perf_counter()
    waiter = asyncio.ensure_future(asyncio.to_thread(os.wait4, proc.pid, 0))
    samples: list[tuple[float, int]] = []
    in_flight: list[int] = []
    while not waiter.done():
        stats = await mock.stats()
        samples.append((time.perf_counter() - t0, stats.completed - start_calls))
        in_flight.append(stats.in_flight)
        await asyncio.wait({waiter}, timeout=0.25)
    _, status, usage = waiter.result()
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    stderr = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    if proc.returncode != 0:
        raise RuntimeError(f"run failed ({proc.returncode}): {stderr[-2000:]}")
    final = (await mock.stats()).completed
    samples.append((wall, final))
    cpu = usage.ru_utime + usage.ru_stime
    return RunResult(wall, cpu, usage.ru_maxrss / 1024, final, samples, in_flight)


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a live process (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def steady_rate(samples: list[tuple[float, int]]) -> float:
    """Calls/s between the samples where 10% and 90% of the calls had completed."""
    total = samples[-1][1]
    lo = next(s for s in samples if s[1] >= 0.1 * total)
    hi = next(s for s in samples if s[1] >= 0.9 * total)
    return (hi[1] - lo[1]) / (hi[0] - lo[0]) if hi[0] > lo[0] else float("nan")


async def throughput(args: argparse.Namespace) -> None:
    latency = args.latency_ms / 1000
    ceiling = args.cap / latency
    config = MockConfig(latency={"kind": "fixed", "value_s": latency})
    with tempfile.TemporaryDirectory(prefix="evol-bench-") as tmp:
        work = Path(tmp)
        seeds = write_seeds(work / "seeds.jsonl", args.seeds)
        async with spawn_mock_server(config) as mock:
            cfg = write_config(work / "bench.toml", seeds, mock.openai_url, rounds=args.rounds,
                               cap=args.cap, cache=not args.no_cache)  # fmt: skip
            mock_cpu = process_cpu_s(mock.process.pid)
            result = await run_once(mock, cfg, work / "run")
            mock_cpu = process_cpu_s(mock.process.pid) - mock_cpu
            peak = (await mock.stats()).peak_in_flight
    overall = result.calls / result.wall_s
    steady = steady_rate(result.samples)
    print(f"seeds={args.seeds} rounds={args.rounds} L={args.latency_ms:g}ms C={args.cap} "
          f"response cache={'off' if args.no_cache else 'on'} "
          f"ceiling C/L={ceiling:.0f} calls/s")  # fmt: skip
    print(f"wall={result.wall_s:.1f}s calls={result.calls} rows/s={args.seeds / result.wall_s:.1f}")
    print(f"calls/s overall={overall:.1f} (ratio {overall / ceiling:.3f}), "
          f"steady 10-90%={steady:.1f} (ratio {steady / ceiling:.3f}), "
          f"peak in flight at the mock={peak}")  # fmt: skip
    middle = result.in_flight[len(result.in_flight) // 10 : -len(result.in_flight) // 10 or None]
    print(f"mean requests in flight at the mock (middle 80% of samples)="
          f"{sum(middle) / max(1, len(middle)):.1f}")  # fmt: skip
    print(f"run process: cpu={result.cpu_s:.1f}s ({1000 * result.cpu_s / result.calls:.2f} ms/call)"
          f", peak RSS={result.max_rss_mb:.0f} MiB; mock process: cpu={mock_cpu:.1f}s "
          f"({1000 * mock_cpu / result.calls:.2f} ms/call); load average {os.getloadavg()[0]:.1f} "
          f"on {os.cpu_count()} CPUs")  # fmt: skip


async def rss(args: argparse.Namespace) -> None:
    sizes = [int(s) for s in args.sizes.split(",")]
    with tempfile.TemporaryDirectory(prefix="evol-bench-") as tmp:
        work = Path(tmp)
        async with spawn_mock_server(MockConfig()) as mock:
            for size in sizes:
                seeds = write_seeds(work / f"seeds-{size}.jsonl", size)
                cfg = write_config(work / f"bench-{size}.toml", seeds, mock.openai_url,
                                   rounds=args.rounds, cap=args.cap)  # fmt: skip
                result = await run_once(mock, cfg, work / f"run-{size}")
                print(f"seeds={size} rounds={args.rounds} wall={result.wall_s:.1f}s "
                      f"calls={result.calls} rows/s={size / result.wall_s:.0f} "
                      f"cpu={1000 * result.cpu_s / max(1, result.calls):.2f} ms/call "
                      f"peak RSS={result.max_rss_mb:.0f} MiB", flush=True)  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    t = sub.add_parser("throughput")
    t.add_argument("--seeds", type=int, default=800)
    t.add_argument("--rounds", type=int, default=4)
    t.add_argument("--latency-ms", type=float, default=200.0)
    t.add_argument("--cap", type=int, default=64)
    t.add_argument("--no-cache", action="store_true", help="run without the response cache")
    r = sub.add_parser("rss")
    r.add_argument("--sizes", default="5000,20000,50000")
    r.add_argument("--rounds", type=int, default=1)
    r.add_argument("--cap", type=int, default=64)
    args = parser.parse_args()
    asyncio.run(throughput(args) if args.command == "throughput" else rss(args))


if __name__ == "__main__":
    main()
