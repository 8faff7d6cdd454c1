"""Batch backends at scale: N calls as batch lines — wall time over the batch latency, client CPU
per line, peak memory.

    python bench/batch_throughput.py [--lines 10000,50000] [--apis openai,anthropic]
                                     [--latency-s 1.0]

The mock server runs in its own process (`spawn_mock_server`), answering every batch after a
fixed latency; the client is a `ManagedClient` over one batch transport, `concurrency` = N, so
all N calls wait at once and go out as batches of at most `batch_size` (50,000 / 100,000). What
is measured is our side: building and uploading the lines, polling, reading the results back,
answering N waiting calls, and the journal. Prints one JSON line per (api, N): wall s, wall s
minus the batch latency (our overhead plus the mock's work), client CPU s, CPU µs per line,
peak RSS of this process.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from agents.llm.backends.anthropic_batch import AnthropicBatchTransport  # noqa: E402
from agents.llm.backends.openai_batch import OpenAIBatchTransport  # noqa: E402
from agents.llm.config import BackendConfig  # noqa: E402
from agents.llm.managed import ManagedClient  # noqa: E402
from agents.llm.mock import MockConfig  # noqa: E402
from agents.llm.mock.process import spawn_mock_server  # noqa: E402
from agents.llm.types import ChatMessage, GenerationParams  # noqa: E402
from agents.llm.usage import UsageRecorder  # noqa: E402


async def one(api: str, lines: int, latency_s: float, journal: Path) -> dict[str, float | str]:
    async with spawn_mock_server(MockConfig(batch_latency_s=latency_s)) as mock:
        url = mock.openai_url if api == "openai" else mock.url
        transport_class = OpenAIBatchTransport if api == "openai" else AnthropicBatchTransport
        config = BackendConfig(
            backend=f"{api}-batch", model="mock", endpoints=[url], concurrency=lines,
            timeout_s=600.0, adaptive=False, cache=False,
            options={"batch_size": min(lines, transport_class.max_batch_size),
                     "window_s": 0.5, "poll_s": 0.2, "journal": str(journal)},
        )
        client = ManagedClient("bench", config, [(url, transport_class(config, url))],
                               usage=UsageRecorder())
        params = GenerationParams(temperature=0.0, max_tokens=64)
        cpu0, t0 = time.process_time(), time.perf_counter()
        try:
            answers = await asyncio.gather(*(
                client.complete([ChatMessage(role="user", content=f"Explain idea {i} briefly.")],
                                params)
                for i in range(lines)
            ))
        finally:
            await client.aclose()
        wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    assert len(answers) == lines
    return {
        "api": api,
        "lines": lines,
        "wall_s": round(wall, 2),
        "wall_minus_latency_s": round(wall - latency_s, 2),
        "client_cpu_s": round(cpu, 2),
        "cpu_us_per_line": round(cpu / lines * 1e6, 1),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", default="10000,50000")
    parser.add_argument("--apis", default="openai,anthropic")
    parser.add_argument("--latency-s", type=float, default=1.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="evolagents-batch-") as tmp:
        for api in args.apis.split(","):
            for n in (int(x) for x in args.lines.split(",")):
                journal = Path(tmp) / f"{api}-{n}.sqlite"
                print(json.dumps(asyncio.run(one(api, n, args.latency_s, journal))), flush=True)


if __name__ == "__main__":
    main()
