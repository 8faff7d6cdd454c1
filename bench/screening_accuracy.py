"""Screening accuracy on the labelled set (bench/data/screening/): recall per failure mode and the
share of genuine evolutions kept, per split.

    python bench/screening_accuracy.py --split held_out            # the free rules only
    python bench/screening_accuracy.py --split held_out --preset qwen2.5-coder-0.5b   # + rule 1 LLM

Tune on `--split tuning` only; the held-out part is for reporting.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from pathlib import Path

import anyio

from agents.eliminator.rules import RuleSet
from agents.eliminator.screener import Screener
from agents.llm.config import BackendConfig
from agents.llm.factory import build_client
from agents.llm.usage import UsageRecorder

DATA = Path(__file__).parent / "data" / "screening"


async def _main(args: argparse.Namespace) -> None:
    rows = [json.loads(line) for line in (DATA / "evolutions.jsonl").open(encoding="utf-8")]
    rows = [r for r in rows if args.split == "all" or r["split"] == args.split]
    client = None
    if args.preset:
        config = BackendConfig(backend="embedded", model=args.preset, concurrency=2,
                               timeout_s=300, prompt_profile=args.profile)
        client = build_client("judge", config, cache=None, usage=UsageRecorder())
    screener = Screener(RuleSet(), client, profile=args.profile)
    total, caught, by_rule = Counter(), Counter(), Counter()
    t0 = time.perf_counter()
    for row in rows:
        verdict = await screener.judge_instruction(
            row["evolved"], row["parent"], ancestors=row["ancestors"], operation=row["operation"]
        )
        total[row["label"]] += 1
        if verdict is not None:
            caught[row["label"]] += 1
            by_rule[str(verdict.rule)] += 1
    if client is not None:
        await client.aclose()
    failures = sum(v for k, v in total.items() if k != "genuine")
    rejected = sum(v for k, v in caught.items() if k != "genuine")
    print(f"split={args.split} rows={len(rows)} judge={args.preset or 'none'} "
          f"time={time.perf_counter() - t0:.1f}s")
    print(f"failures rejected: {rejected}/{failures} = {rejected / max(failures, 1):.1%}")
    kept = total["genuine"] - caught["genuine"]
    print(f"genuine kept:      {kept}/{total['genuine']} = {kept / max(total['genuine'], 1):.1%}")
    for label, n in sorted(total.items(), key=lambda kv: -kv[1]):
        print(f"  {label:<18} {caught[label]:>4}/{n:<4} rejected")
    print("rejections by rule:", dict(by_rule.most_common()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split", choices=("tuning", "held_out", "all"), default="held_out")
    parser.add_argument("--preset", default="", help="embedded preset for rule 1 (default: none)")
    parser.add_argument("--profile", choices=("full", "compact"), default="compact")
    anyio.run(_main, parser.parse_args())


if __name__ == "__main__":
    main()
