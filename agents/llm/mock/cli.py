"""`python -m agents.llm.mock` (and the runtime's `mock-llm` subcommand): run the mock server.

The first stdout line is `MOCK_LLM_URL=http://HOST:PORT` (flushed), so a parent process can read
the bound port; the server then runs until SIGINT/SIGTERM and exits 0. Options override a
`--config` file (JSON or TOML holding a `MockConfig`) field by field.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from agents.llm.mock.config import MockConfig
from agents.llm.mock.server import MockLLMServer

__all__ = ["build_config", "main", "parser"]

URL_PREFIX = "MOCK_LLM_URL="


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="mock-llm", description="Mock OpenAI/Anthropic-compatible LLM server."
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="0 picks a free port (default)")
    p.add_argument("--config", type=Path, help="a MockConfig as JSON or TOML")
    p.add_argument("--config-json", help="a MockConfig as an inline JSON string")
    p.add_argument("--seed", type=int)
    p.add_argument("--latency-ms", type=float, help="fixed latency (or lognormal median)")
    p.add_argument("--latency", choices=["fixed", "uniform", "lognormal"])
    p.add_argument("--max-concurrency", type=int)
    p.add_argument("--overflow", choices=["reject", "queue"])
    p.add_argument("--tokens-per-s", type=float)
    p.add_argument("--batch-latency-s", type=float, help="Batch API: time until a batch is done")
    p.add_argument("--api-key", help="require this key (Bearer / x-api-key), else 401")
    p.add_argument("--model", dest="models", action="append", metavar="NAME",
                   help="a model the server knows (repeatable; default mock-model)")
    p.add_argument("--strict-models", action="store_true",
                   help="answer 404 model_not_found for a model not named by --model")
    p.add_argument(
        "--fault", action="append", default=[], metavar="KIND=RATE",
        help="transport fault rate, e.g. rate_limited=0.1 (repeatable)",
    )  # fmt: skip
    p.add_argument(
        "--content-fault", action="append", default=[], metavar="KIND=RATE",
        help="content fault rate, e.g. sorry=0.05 (repeatable)",
    )  # fmt: skip
    return p


def _pairs(items: list[str]) -> dict[str, float]:
    out: dict[str, float] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"expected KIND=RATE, got {item!r}")
        out[key.strip()] = float(value)
    return out


def build_config(args: argparse.Namespace) -> MockConfig:
    data: dict[str, Any] = {}
    if args.config is not None:
        text = args.config.read_text()
        data = tomllib.loads(text) if args.config.suffix == ".toml" else json.loads(text)
    if args.config_json:
        data.update(json.loads(args.config_json))
    if args.seed is not None:
        data["seed"] = args.seed
    latency = dict(data.get("latency", {}))
    if args.latency is not None:
        latency["kind"] = args.latency
    if args.latency_ms is not None:
        latency["value_s"] = args.latency_ms / 1000.0
    if latency:
        data["latency"] = latency
    if args.max_concurrency is not None:
        data["max_concurrency"] = args.max_concurrency
    if args.overflow is not None:
        data["overflow"] = args.overflow
    if args.tokens_per_s is not None:
        data["tokens_per_s"] = args.tokens_per_s
    if args.batch_latency_s is not None:
        data["batch_latency_s"] = args.batch_latency_s
    if args.api_key is not None:
        data["api_key"] = args.api_key
    if args.models:
        data["models"] = args.models
    if args.strict_models:
        data["strict_models"] = True
    if args.fault:
        data["faults"] = {**data.get("faults", {}), **_pairs(args.fault)}
    if args.content_fault:
        data["content_faults"] = {**data.get("content_faults", {}), **_pairs(args.content_fault)}
    return MockConfig.model_validate(data)


async def _serve(config: MockConfig, host: str, port: int) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with MockLLMServer(config, host=host, port=port) as server:
        sys.stdout.write(f"{URL_PREFIX}{server.url}\n")
        sys.stdout.flush()
        await stop.wait()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the server until SIGINT/SIGTERM. Returns 0, or 2 on a bad configuration."""
    args = parser().parse_args(argv)
    try:
        config = build_config(args)
    except (ValueError, ValidationError, OSError, tomllib.TOMLDecodeError) as exc:
        print(f"mock-llm: invalid configuration: {exc}", file=sys.stderr)
        return 2
    asyncio.run(_serve(config, args.host, args.port))
    return 0
