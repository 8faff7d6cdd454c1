"""What screening before answering saves: the eliminator's two orders on the same run.

    python bench/elimination_order.py [--seeds 500] [--rounds 4] [--sorry 0.05]
                                      [--stopwords 0.05] [--copy-prompt 0.15] [--equal 0.1]

Runs the Evol-Instruct pipeline twice against the mock server (its own process) with content
faults, once with `screen_before_answer = true` (rules 4 and 1 before the responder) and once with
`false` (every rule after the response), and prints, per order, the responder's and the judge's
calls and completion tokens, and whether the two datasets are identical. The figure that matters
is the responder calls saved: each is a full response (up to `max_tokens`) on a paid endpoint;
a judge call is 16 tokens at most.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
from pathlib import Path
from typing import Any

from agents.llm.mock import MockConfig
from agents.llm.mock.process import spawn_mock_server
from runtime.config import validate_config
from runtime.run import execute

REPO = Path(__file__).resolve().parents[1]
ALPACA = REPO.parent / "shared" / "data" / "alpaca_data_subset5000_pr152.json"


def topology(seeds: Path, url: str, *, rounds: int, screen: bool) -> dict[str, Any]:
    stage = {"concurrency": 32, "mailbox": 1024, "llm": "main"}
    return {
        "run": {
            "name": "elimination-order",
            "seed": 7,
            "progress": False,
            "inputs": [{"path": str(seeds)}],
            "log": {"level": "warning", "console": "off"},
        },
        "llm": {
            "main": {
                "backend": "openai-compatible",
                "model": "mock",
                "endpoints": [url],
                "concurrency": 32,
                "timeout_s": 30.0,
            }
        },
        "agents": {
            "pool": {"impl": "pool.rounds", "params": {"rounds": rounds}},
            "evol": {"impl": "evol.wizardlm", **stage},
            "responder": {"impl": "respond.default", **stage},
            "eliminator": {
                "impl": "eliminate.wizardlm",
                **stage,
                "params": {"screen_before_answer": screen},
            },
        },
    }


def dataset(run_dir: Path) -> list[str]:
    path = run_dir / "dataset.alpaca.jsonl"
    return path.read_text(encoding="utf-8").splitlines()


async def one_run(
    seeds: Path, faults: dict[str, float], rounds: int, screen: bool, run_dir: Path
) -> dict[str, Any]:
    async with spawn_mock_server(MockConfig(seed=3, content_faults=faults)) as mock:
        config = validate_config(topology(seeds, mock.openai_url, rounds=rounds, screen=screen))
        outcome = await execute(config, run_dir, show_progress=False, handle_signals=False)
    if outcome.status != "completed":
        raise SystemExit(f"run failed: {outcome.errors}")
    summary = json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))
    return summary


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--sorry", type=float, default=0.05)
    parser.add_argument("--stopwords", type=float, default=0.05)
    parser.add_argument("--copy-prompt", type=float, default=0.15)
    parser.add_argument("--equal", type=float, default=0.1)
    args = parser.parse_args()
    faults = {
        "sorry": args.sorry,
        "stopwords": args.stopwords,
        "copy_prompt": args.copy_prompt,
        "equal": args.equal,
    }
    with tempfile.TemporaryDirectory(prefix="evolagents-bench-") as tmp:
        seeds = Path(tmp) / "seeds.jsonl"
        records = json.loads(ALPACA.read_text(encoding="utf-8"))[: args.seeds]
        seeds.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
        results = {}
        datasets = {}
        for screen in (True, False):
            run_dir = Path(tmp) / f"screen-{screen}"
            results[screen] = await one_run(seeds, faults, args.rounds, screen, run_dir)
            datasets[screen] = dataset(run_dir)
    print(f"{args.seeds} seeds x {args.rounds} rounds, mock content faults {faults}")
    print(
        f"{'order':<26}{'responder calls':>16}{'resp. tokens':>14}{'judge calls':>13}"
        f"{'judge tokens':>14}{'rejected':>10}"
    )
    for screen, summary in results.items():
        callers = summary["llm_usage"]["callers"]
        responder, judge = callers["responder"], callers["eliminator"]
        label = "screen first (default)" if screen else "answer first"
        print(
            f"{label:<26}{responder['calls']:>16}{responder['tokens_out']:>14}"
            f"{judge['calls']:>13}{judge['tokens_out']:>14}"
            f"{sum(summary['rejected_by_rule'].values()):>10}"
        )
    first, last = (results[s]["llm_usage"]["callers"] for s in (True, False))
    saved = last["responder"]["calls"] - first["responder"]["calls"]
    extra = first["eliminator"]["calls"] - last["eliminator"]["calls"]
    print(
        f"responder calls saved: {saved} ({saved / last['responder']['calls']:.1%} of the "
        f"answer-first run's), responder tokens saved: "
        f"{last['responder']['tokens_out'] - first['responder']['tokens_out']}; "
        f"extra judge calls: {extra}"
    )
    same = datasets[True] == datasets[False] and bool(datasets[True])
    print(f"datasets identical: {same} ({len(datasets[True])} rows)")
    if not same:
        raise SystemExit(1)


if __name__ == "__main__":
    asyncio.run(main())
