"""Throughput of the LLM client paths against the mock server running in its own process.

    .venv/bin/python bench/llm_throughput.py --latency-ms 200 --concurrency 64 256 \
        --paths openai-compatible openai bare-sdk [--calls N] [--find-max]

For each concurrency C and path, N distinct calls run with at most C in flight against a mock
server (separate process, fixed latency L, no server-side cap). Printed per run: achieved calls/s,
its ratio to the ideal C/L, and client CPU ms per call (this process's CPU time / calls; the
server's CPU is not counted). Paths:

- `openai-compatible`: our managed client over the lean aiohttp transport;
- `openai`: our managed client over the official SDK transport;
- `bare-sdk`: `AsyncOpenAI(max_retries=0)` behind an `asyncio.Semaphore(C)`, no wrapper;
- `bare-aiohttp`: one aiohttp session behind an `asyncio.Semaphore(C)`, no wrapper (the ceiling
  of this machine for any Python client).

`--find-max` then searches the highest C at which `openai-compatible` still holds 0.9 of C/L.
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
from agents.llm.factory import build_client
from agents.llm.managed import ManagedClient
from agents.llm.mock import LatencyConfig, MockConfig, spawn_mock_server
from agents.llm.types import ChatMessage, Completion, GenerationParams
from agents.llm.usage import UsageRecorder

PROMPT = (
    "Rewrite the following instruction so that it is slightly harder, adding exactly one new "
    "constraint, and reply with the rewritten instruction only. Instruction number {i}: "
    "explain the main causes of the French Revolution to a high-school student."
)


@dataclass
class Result:
    path: str
    concurrency: int
    latency_ms: float
    calls: int
    seconds: float
    calls_per_s: float
    ratio: float
    cpu_ms_per_call: float
    server_peak_in_flight: int
    server_cpu_ms_per_call: float


def messages(i: int) -> list[ChatMessage]:
    return [ChatMessage(role="user", content=PROMPT.format(i=i))]


async def _run_managed(path: str, url: str, c: int, n: int, offset: int) -> None:
    config = BackendConfig(
        backend=path,
        model="mock-model",
        endpoints=[f"{url}/v1"],
        concurrency=c,
        timeout_s=60,
        cache=False,
    )
    client = build_client("bench", config, cache=None, usage=UsageRecorder())
    params = GenerationParams(max_tokens=256)
    try:
        # warm-up: connections and first-call imports are not what we measure
        await asyncio.gather(*(client.complete(messages(-1 - i), params) for i in range(c)))
        t0, cpu0 = time.perf_counter(), time.process_time()
        await asyncio.gather(*(client.complete(messages(offset + i), params) for i in range(n)))
        _record(t0, cpu0)
    finally:
        await client.aclose()


async def _run_bare_sdk(url: str, c: int, n: int, offset: int) -> None:
    import openai

    client = openai.AsyncOpenAI(api_key="unused", base_url=f"{url}/v1", max_retries=0, timeout=60)
    sem = asyncio.Semaphore(c)

    async def one(i: int) -> str:
        async with sem:
            resp = await client.chat.completions.create(
                model="mock-model",
                messages=[{"role": "user", "content": PROMPT.format(i=i)}],
                max_tokens=256,
            )
            return resp.choices[0].message.content or ""

    try:
        await asyncio.gather(*(one(-1 - i) for i in range(c)))
        t0, cpu0 = time.perf_counter(), time.process_time()
        await asyncio.gather(*(one(offset + i) for i in range(n)))
        _record(t0, cpu0)
    finally:
        await client.close()


async def _run_bare_aiohttp(url: str, c: int, n: int, offset: int) -> None:
    import aiohttp

    connector = aiohttp.TCPConnector(limit=c + 8)
    sem = asyncio.Semaphore(c)
    headers = {"Content-Type": "application/json"}

    async def one(session: aiohttp.ClientSession, i: int) -> str:
        body = {
            "model": "mock-model",
            "messages": [{"role": "user", "content": PROMPT.format(i=i)}],
            "max_tokens": 256,
        }
        async with sem, session.post(f"{url}/v1/chat/completions", data=json.dumps(body)) as r:
            data = json.loads(await r.read())
            return str(data["choices"][0]["message"]["content"])

    async with aiohttp.ClientSession(connector=connector, headers=headers) as session:
        await asyncio.gather(*(one(session, -1 - i) for i in range(c)))
        t0, cpu0 = time.perf_counter(), time.process_time()
        await asyncio.gather(*(one(session, offset + i) for i in range(n)))
        _record(t0, cpu0)


_last: dict[str, float] = {}


def _record(t0: float, cpu0: float) -> None:
    _last["seconds"] = time.perf_counter() - t0
    _last["cpu"] = time.process_time() - cpu0


async def run_one(path: str, c: int, latency_ms: float, n: int) -> Result:
    config = MockConfig(latency=LatencyConfig(kind="fixed", value_s=latency_ms / 1000))
    async with spawn_mock_server(config) as mock:
        before = await mock.stats()
        if path == "bare-sdk":
            await _run_bare_sdk(mock.url, c, n, 0)
        elif path == "bare-aiohttp":
            await _run_bare_aiohttp(mock.url, c, n, 0)
        else:
            await _run_managed(path, mock.url, c, n, 0)
        after = await mock.stats()
    peak = after.peak_in_flight
    server_cpu = (after.process_cpu_s - before.process_cpu_s) / (after.requests - before.requests)
    seconds, cpu = _last["seconds"], _last["cpu"]
    cps = n / seconds
    return Result(
        path=path,
        concurrency=c,
        latency_ms=latency_ms,
        calls=n,
        seconds=round(seconds, 3),
        calls_per_s=round(cps, 1),
        ratio=round(cps / (c / (latency_ms / 1000)), 3),
        cpu_ms_per_call=round(cpu * 1000 / n, 3),
        server_peak_in_flight=peak,
        server_cpu_ms_per_call=round(server_cpu * 1000, 3),
    )


class _NullTransport:
    """Answers instantly: isolates the managed client's own CPU cost."""

    backend = "scripted"
    model = "null"

    def __init__(self) -> None:
        self._reply = Completion(text="ok", prompt_tokens=10, completion_tokens=5, latency_s=1e-6)

    async def send(self, messages: object, params: object, *, timeout_s: float) -> Completion:
        return self._reply

    async def aclose(self) -> None:
        return None


async def wrapper_overhead(c: int, n: int) -> tuple[float, float]:
    """(µs CPU per call through ManagedClient, µs CPU per bare transport call), no I/O."""
    transport = _NullTransport()
    config = BackendConfig(backend="scripted", concurrency=c, cache=False)
    client = ManagedClient("overhead", config, [("local", transport)], usage=UsageRecorder())
    params = GenerationParams(max_tokens=256)
    msgs = [messages(i) for i in range(n)]

    async def bare(m: list[ChatMessage]) -> Completion:
        return await transport.send(m, params, timeout_s=60)

    cpu0 = time.process_time()
    await asyncio.gather(*(bare(m) for m in msgs))
    bare_us = (time.process_time() - cpu0) / n * 1e6
    cpu0 = time.process_time()
    await asyncio.gather(*(client.complete(m, params) for m in msgs))
    managed_us = (time.process_time() - cpu0) / n * 1e6
    return managed_us, bare_us


async def cache_throughput(n: int, path: Path) -> str:
    """Concurrent puts then gets on a fresh ResponseCache, with the loop's worst stall."""
    from agents.llm.cache import ResponseCache

    cache = ResponseCache(path)
    worst = 0.0
    stop = asyncio.Event()

    async def monitor() -> None:
        nonlocal worst
        loop = asyncio.get_running_loop()
        while not stop.is_set():
            t = loop.time()
            await asyncio.sleep(0.001)
            worst = max(worst, loop.time() - t - 0.001)

    mon = asyncio.create_task(monitor())
    text = "An evolved instruction or an answer of a few hundred characters. " * 6
    comp = Completion(text=text, prompt_tokens=100, completion_tokens=100)
    workers = 256  # like 256 LLM calls in flight, each doing its get, then its put

    async def put(w: int) -> None:
        for i in range(w, n, workers):
            await cache.put(f"key-{i}", comp)

    async def get(w: int) -> None:
        for i in range(w, n, workers):
            await cache.get(f"key-{i}")

    t0 = time.perf_counter()
    await asyncio.gather(*(put(w) for w in range(workers)))
    put_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    await asyncio.gather(*(get(w) for w in range(workers)))
    get_s = time.perf_counter() - t0
    stop.set()
    await mon
    batches = cache.stats.batches
    await cache.aclose()
    return (
        f"cache: {n} puts in {put_s:.2f}s ({n / put_s:,.0f}/s, 256 concurrent, "
        f"{batches} group commits), "
        f"{n} gets in {get_s:.2f}s ({n / get_s:,.0f}/s, 256 concurrent); "
        f"worst event-loop stall {worst * 1000:.1f} ms"
    )


def _print(r: Result) -> None:
    print(
        f"{r.path:18} C={r.concurrency:<4} L={r.latency_ms:g}ms N={r.calls:<6} "
        f"{r.calls_per_s:8.1f} calls/s  ratio {r.ratio:5.3f}  "
        f"client CPU {r.cpu_ms_per_call:6.3f} ms/call  "
        f"(server: peak {r.server_peak_in_flight}, CPU {r.server_cpu_ms_per_call:.3f} ms/call)",
        flush=True,
    )


async def main_async(args: argparse.Namespace) -> list[Result]:
    results: list[Result] = []
    if args.cache:
        import tempfile

        with tempfile.TemporaryDirectory() as d:
            print(await cache_throughput(20000, Path(d) / "bench.sqlite"), flush=True)
    if args.overhead:
        for c in args.concurrency:
            managed_us, bare_us = await wrapper_overhead(c, 20000)
            print(
                f"managed-client overhead C={c}: {managed_us - bare_us:.1f} us CPU per call "
                f"(managed {managed_us:.1f} us vs bare transport call {bare_us:.1f} us)",
                flush=True,
            )
    for c in args.concurrency:
        n = args.calls or c * 32
        for path in args.paths:
            r = await run_one(path, c, args.latency_ms, n)
            _print(r)
            results.append(r)
    if args.find_max:
        best = 0
        for c in args.search:
            r = await run_one("openai-compatible", c, args.latency_ms, args.calls or c * 32)
            _print(r)
            results.append(r)
            if r.ratio >= 0.9:
                best = c
            else:
                break
        print(f"highest C holding 0.9 of C/L (openai-compatible): {best}", flush=True)
    return results


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--latency-ms", type=float, default=200.0)
    p.add_argument("--concurrency", type=int, nargs="+", default=[64, 256])
    p.add_argument(
        "--paths", nargs="+", default=["openai-compatible", "openai", "bare-sdk"],
        choices=["openai-compatible", "openai", "bare-sdk", "bare-aiohttp"],
    )  # fmt: skip
    p.add_argument(
        "--calls", type=int, default=0, help="calls per run (default 32*C: whole rounds)"
    )
    p.add_argument("--find-max", action="store_true")
    p.add_argument("--cache", action="store_true", help="also measure the response cache")
    p.add_argument(
        "--overhead", action="store_true",
        help="also measure the managed client's own CPU per call (no I/O)",
    )  # fmt: skip
    p.add_argument("--search", type=int, nargs="+", default=[64, 128, 192, 256, 320, 384, 512])
    p.add_argument("--json", type=Path, help="also write the results as JSON here")
    args = p.parse_args(argv)
    results = asyncio.run(main_async(args))
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in results], indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
