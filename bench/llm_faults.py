"""Throughput of the managed client under provider faults: adaptive limit vs a fixed cap.

    .venv/bin/python bench/llm_faults.py --concurrency 64 --latency-ms 200 \
        --rate-limited 0.1 --server-error 0.05 [--calls N] [--provider-cap M] [--json F]

The mock server runs in its own process with fixed latency L and a provider concurrency limit
(`max_concurrency`, default C, `overflow = reject`: a request beyond it is answered 429). Three
runs of the same N distinct calls through `openai-compatible` with `concurrency = C`:

- `fault-free`: no injected faults, adaptive limit;
- `faults, adaptive`: `rate_limited` (429 with `Retry-After: retry_after_s`) and `server_error`
  (500) drawn per attempt, adaptive limit (the default);
- `faults, fixed cap`: the same faults, `adaptive = false`.

Printed per run: wall time, calls/s, the mock's `peak_in_flight` (requests it held at once — must
not exceed the provider cap) and overflow rejections, the client's limit (lowest seen, at the
end), decreases, endpoint pauses, retries and failed calls; then the two ratios the issue asks
for: adaptive/fixed (target ≥ 0.8) and adaptive/fault-free (target ≥ 0.7).
`--provider-cap M` below C adds a fourth pair of runs where the provider's limit is the real
bottleneck (sustained overload): adaptive vs fixed cap, with no faults drawn.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agents.llm.config import BackendConfig
from agents.llm.errors import LLMError
from agents.llm.factory import build_client
from agents.llm.managed import ManagedClient
from agents.llm.mock import LatencyConfig, MockConfig, spawn_mock_server
from agents.llm.mock.config import TransportFaultRates
from agents.llm.types import ChatMessage, GenerationParams
from agents.llm.usage import UsageRecorder

PROMPT = "Answer question number {i}: why is the sky blue? Reply in two sentences."


@dataclass
class Result:
    label: str
    concurrency: int
    provider_cap: int
    calls: int
    failed: int
    seconds: float
    calls_per_s: float
    peak_in_flight: int
    rejected_overflow: int
    min_limit: int
    end_limit: int
    decreases: int
    pauses: int
    retries: int
    faults: dict[str, int]


async def _sample_limit(client: ManagedClient, low: list[int], stop: asyncio.Event) -> None:
    while not stop.is_set():
        low[0] = min(low[0], client.statistics().limit)
        await asyncio.sleep(0.01)


async def run_one(
    label: str, args: argparse.Namespace, *, faults: bool, adaptive: bool, cap: int
) -> Result:
    rates = TransportFaultRates(
        rate_limited=args.rate_limited if faults else 0.0,
        server_error=args.server_error if faults else 0.0,
        retry_after_s=args.retry_after_s,
    )
    mock_config = MockConfig(
        seed=args.seed,
        latency=LatencyConfig(kind="fixed", value_s=args.latency_ms / 1000),
        max_concurrency=cap,
        overflow="reject",
        overflow_retry_after_s=args.retry_after_s,
        faults=rates,
    )
    c, n = args.concurrency, args.calls or 64 * args.concurrency
    async with spawn_mock_server(mock_config) as mock:
        config = BackendConfig(
            backend="openai-compatible", model="mock-model", endpoints=[mock.openai_url],
            concurrency=c, adaptive=adaptive, timeout_s=60, max_attempts=args.max_attempts,
            cache=False, breaker_after=0,
        )  # fmt: skip
        client = build_client("bench", config, cache=None, usage=UsageRecorder())
        params = GenerationParams(max_tokens=64)
        low, stop = [c], asyncio.Event()
        failed = 0

        async def one(i: int) -> None:
            nonlocal failed
            try:
                await client.complete([ChatMessage(role="user", content=PROMPT.format(i=i))],
                                      params)  # fmt: skip
            except LLMError:
                failed += 1

        try:
            sampler = asyncio.create_task(_sample_limit(client, low, stop))
            t0 = time.perf_counter()
            await asyncio.gather(*(one(i) for i in range(n)))
            seconds = time.perf_counter() - t0
            stop.set()
            await sampler
            stats = client.statistics()
        finally:
            await client.aclose()
        server = await mock.stats()
    return Result(
        label=label, concurrency=c, provider_cap=cap, calls=n, failed=failed,
        seconds=round(seconds, 2), calls_per_s=round((n - failed) / seconds, 1),
        peak_in_flight=server.peak_in_flight, rejected_overflow=server.rejected_overflow,
        min_limit=low[0], end_limit=stats.limit, decreases=stats.shrinks,
        pauses=sum(e.pauses for e in stats.endpoints), retries=stats.usage.retries,
        faults=dict(server.transport_faults),
    )  # fmt: skip


def _print(r: Result) -> None:
    print(
        f"{r.label:24} C={r.concurrency} cap={r.provider_cap} N={r.calls} "
        f"{r.seconds:7.2f}s {r.calls_per_s:7.1f} calls/s  failed {r.failed}  "
        f"peak {r.peak_in_flight} overflow {r.rejected_overflow}  "
        f"limit min {r.min_limit} end {r.end_limit}  decreases {r.decreases} "
        f"pauses {r.pauses} retries {r.retries}  faults {r.faults}",
        flush=True,
    )


async def main_async(args: argparse.Namespace) -> list[Result]:
    c = args.concurrency
    runs = [
        ("fault-free", False, True, c),
        ("faults, adaptive", True, True, c),
        ("faults, fixed cap", True, False, c),
    ]
    if args.provider_cap and args.provider_cap < c:
        runs += [
            (f"cap {args.provider_cap}, adaptive", False, True, args.provider_cap),
            (f"cap {args.provider_cap}, fixed cap", False, False, args.provider_cap),
        ]
    results = []
    for label, faults, adaptive, cap in runs:
        r = await run_one(label, args, faults=faults, adaptive=adaptive, cap=cap)
        _print(r)
        results.append(r)
    free, adaptive_r, fixed = results[:3]
    print(
        f"adaptive / fixed cap: {adaptive_r.calls_per_s / fixed.calls_per_s:.3f} (target >= 0.8); "
        f"adaptive / fault-free: {adaptive_r.calls_per_s / free.calls_per_s:.3f} "
        f"(target >= 0.7); peak in flight <= provider cap: "
        f"{all(r.peak_in_flight <= r.provider_cap for r in results[:3])}",
        flush=True,
    )
    return results


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--concurrency", type=int, default=64)
    p.add_argument("--latency-ms", type=float, default=200.0)
    p.add_argument("--calls", type=int, default=0, help="calls per run (default 64*C)")
    p.add_argument("--rate-limited", type=float, default=0.10)
    p.add_argument("--server-error", type=float, default=0.05)
    p.add_argument("--retry-after-s", type=float, default=1.0, help="the mock's Retry-After")
    p.add_argument("--max-attempts", type=int, default=6)
    p.add_argument("--provider-cap", type=int, default=0,
                   help="also run with the provider's limit below C (sustained overload)")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--json", type=Path, help="also write the results as JSON here")
    args = p.parse_args(argv)
    results = asyncio.run(main_async(args))
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in results], indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
