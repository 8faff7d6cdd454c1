"""Sample real evolution chains from a model, for labelling (the screening set's raw material).

For each parent instruction it evolves `--rounds` times, each round from the previous child (every
child is kept, as if the eliminator accepted all), with the operation pack the EvolAgent uses, the
backend's prompt profile and the same extraction. One JSON object a line:

    {"preset", "profile", "pack", "operation", "round", "seed_id", "ancestors": [...],
     "parent", "evolved", "raw"}

`ancestors` holds every earlier instruction of the chain (the seed first, the parent last).

    python scripts/sample_evolutions.py seeds/general.jsonl --out samples.jsonl \
        --preset qwen2.5-coder-0.5b --limit 40 --rounds 3

Runs offline on the embedded backend; nothing here is used by the pipeline itself.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
from pathlib import Path

from agents.evol.operations import OperationPack, compose_instruction
from agents.evol.parsing import extract_evolved_instruction
from agents.llm.config import BackendConfig
from agents.llm.factory import build_client
from agents.llm.types import GenerationParams
from agents.llm.usage import UsageRecorder
from runtime.inputs import read_seeds


async def _chain(client, pack, seed, args, rng, out, lock) -> None:  # type: ignore[no-untyped-def]
    text = compose_instruction(seed.instruction, seed.input)
    ancestors: list[str] = []
    for round_ in range(1, args.rounds + 1):
        operation = pack.choose(rng).name
        messages = pack.render(operation, text, args.profile)
        params = GenerationParams(
            temperature=args.temperature,
            top_p=0.95,
            max_tokens=args.max_tokens,
            seed=rng.randrange(2**31),
            repeat_penalty=1.1,
        )
        completion = await client.complete(messages, params, caller="sample")
        child = extract_evolved_instruction(completion.text, args.profile) or ""
        ancestors.append(text)
        record = {
            "preset": args.preset,
            "profile": args.profile,
            "pack": args.pack,
            "operation": operation,
            "round": round_,
            "seed_id": seed.id,
            "ancestors": list(ancestors),
            "parent": text,
            "evolved": child,
            "raw": completion.text,
        }
        async with lock:
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
            out.flush()
        if not child:
            return
        text = child


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("seeds", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--preset", default="qwen2.5-coder-0.5b")
    parser.add_argument("--profile", default="compact", choices=["compact", "full"])
    parser.add_argument("--pack", default="general")
    parser.add_argument("--limit", type=int, default=20)
    parser.add_argument("--skip", type=int, default=0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--max-tokens", type=int, default=96)
    parser.add_argument("--temperature", type=float, default=0.7)
    parser.add_argument("--slots", type=int, default=2)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    config = BackendConfig(
        backend="embedded", model=args.preset, concurrency=args.slots, timeout_s=600,
        prompt_profile=args.profile, cache=False,
    )
    client = build_client("sample", config, cache=None, usage=UsageRecorder())
    pack = OperationPack.load(args.pack)
    seeds = list(read_seeds(args.seeds))[args.skip : args.skip + args.limit]
    lock = asyncio.Lock()
    sem = asyncio.Semaphore(args.slots)
    with args.out.open("a", encoding="utf-8") as out:

        async def one(index: int, seed) -> None:  # type: ignore[no-untyped-def]
            async with sem:
                rng = random.Random(f"{args.seed}:{args.preset}:{seed.id}:{index}")
                await _chain(client, pack, seed, args, rng, out, lock)

        await asyncio.gather(*(one(i, s) for i, s in enumerate(seeds)))
    await client.aclose()
    print(f"wrote chains for {len(seeds)} seeds to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
