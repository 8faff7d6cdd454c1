"""Aggregate tokens/s of the embedded backend at several slot and thread counts.

    python bench/embedded_slots.py --preset qwen2.5-coder-0.5b --slots 1,2,4 --threads 1,2

For each (threads, slots) pair the model is loaded fresh, warmed up with one call, then
`--requests` rewrite-style calls are sent at once through the real transport (at most `slots` run
in llama.cpp together). Printed per configuration: completion tokens/s over the wall time
(the figure to compare), prompt tokens/s, mean latency, process CPU seconds per completion token
and the 1-minute load average (other processes on the machine skew wall-clock figures: compare
rows taken under similar load, and repeat with `--rounds`). Rounds are interleaved so a burst of
outside load hits every configuration alike. `--json FILE` writes the raw rows.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agents.llm.embedded import create_transport
from agents.llm.types import ChatMessage, GenerationParams

SYSTEM = (
    "You rewrite instructions to make them a bit harder. Add exactly one new constraint or "
    "requirement. Reply with the rewritten instruction only, on one line."
)
SEEDS = [
    "Write a poem about the sea.",
    "Explain how a bicycle works.",
    "List three uses of vinegar.",
    "Summarise the plot of Hamlet.",
    "Write a Python function that reverses a string.",
    "Describe the water cycle.",
    "Give tips for a job interview.",
    "Explain what a prime number is.",
]


def messages(i: int) -> list[ChatMessage]:
    return [
        ChatMessage(role="system", content=SYSTEM),
        ChatMessage(role="user", content="Instruction: Write a story about a cat."),
        ChatMessage(role="assistant", content="Write a story about a cat in exactly 100 words."),
        ChatMessage(role="user", content=f"Instruction: {SEEDS[i % len(SEEDS)]}"),
    ]


async def run_config(args: argparse.Namespace, threads: int, slots: int) -> dict[str, Any]:
    options = {"slots": slots, "threads": threads, "ctx_per_slot": 1024}
    if args.cache_dir:
        options["cache_dir"] = args.cache_dir
    cfg = SimpleNamespace(model=args.preset, concurrency=args.requests, options=options)
    t = create_transport(cfg)
    t0 = time.perf_counter()
    await t.start()
    load_s = time.perf_counter() - t0
    # Ignore EOS-free differences: same max_tokens, and a repeat penalty like the compact profile.
    params = [
        GenerationParams(max_tokens=args.max_tokens, temperature=0.7, seed=i, repeat_penalty=1.1)
        for i in range(args.requests)
    ]
    await t.send(messages(0), params[0], timeout_s=600)  # warm-up (not counted)
    load1 = os.getloadavg()[0]
    cpu0, w0 = time.process_time(), time.perf_counter()
    results = await asyncio.gather(
        *(t.send(messages(i), params[i], timeout_s=1200) for i in range(args.requests))
    )
    wall = time.perf_counter() - w0
    cpu = time.process_time() - cpu0
    await t.aclose()
    gen = sum(r.completion_tokens for r in results)
    prompt = sum(r.prompt_tokens for r in results)
    return {
        "preset": args.preset,
        "threads": threads,
        "slots": slots,
        "requests": args.requests,
        "load_s": round(load_s, 2),
        "wall_s": round(wall, 2),
        "completion_tokens": gen,
        "prompt_tokens": prompt,
        "gen_tok_s": round(gen / wall, 1),
        "mean_latency_s": round(statistics.mean(r.latency_s for r in results), 2),
        "cpu_s_per_tok": round(cpu / max(gen, 1), 4),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "loadavg_1m": round((load1 + os.getloadavg()[0]) / 2, 2),
        "sample": results[0].text[:120],
    }


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--preset", default="qwen2.5-coder-0.5b")
    ap.add_argument("--slots", default="1,2,4")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--requests", type=int, default=8)
    ap.add_argument("--max-tokens", type=int, default=48)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--cache-dir", default=None)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    configs = [(int(t), int(s)) for t in args.threads.split(",") for s in args.slots.split(",")]
    rows: list[dict[str, Any]] = []
    head = f"{args.preset}: {args.requests} calls x max {args.max_tokens} tokens"
    print(f"{head}, cpus={os.cpu_count()} (OMP_WAIT_POLICY: see the json rows)")
    print("round threads slots  gen tok/s  prompt tok/s  mean lat s  cpu s/tok  load1m  load s")
    for rnd in range(1, args.rounds + 1):
        for threads, slots in configs:
            row = await run_config(args, threads, slots)
            row["round"] = rnd
            rows.append(row)
            print(
                f"{rnd:5d} {threads:7d} {slots:5d} {row['gen_tok_s']:10.1f} "
                f"{row['prompt_tokens'] / row['wall_s']:13.1f} {row['mean_latency_s']:11.2f} "
                f"{row['cpu_s_per_tok']:10.4f} {row['loadavg_1m']:7.2f} {row['load_s']:7.2f}",
                flush=True,
            )
    if args.rounds > 1:
        print("median gen tok/s per (threads, slots):")
        for threads, slots in configs:
            vals = [r["gen_tok_s"] for r in rows if (r["threads"], r["slots"]) == (threads, slots)]
            print(f"  threads={threads} slots={slots}: {statistics.median(vals):.1f}")
    if args.json:
        await asyncio.to_thread(Path(args.json).write_text, json.dumps(rows, indent=1))


if __name__ == "__main__":
    asyncio.run(main())
