"""Export memory: peak RSS of exporting a run store of N rows, per format.

    python bench/export_memory.py [--sizes 20000,200000] [--formats alpaca,chat,parquet,hf]

Builds a run store with N accepted rows (N/2 seeds x rounds 0 and 1, ~1.2 KB of text per row)
in a temporary directory, then exports it in a fresh child process per (size, format) and prints
the child's peak RSS (ru_maxrss from wait4) and wall time. Flat RSS across sizes = the export
streams (no list of all rows); the baseline is the interpreter with pyarrow imported.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import anyio

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from agents.pipeline.messages import Accepted, Step, step_id_for  # noqa: E402
from bus.protocol import Envelope  # noqa: E402
from runtime.store import RunStore  # noqa: E402

FILLER = "Explain the idea step by step, with an example and a short summary. " * 9


class _Seed:
    def __init__(self, n: int) -> None:
        self.id = f"s{n:07d}"
        self.instruction = f"Instruction {n}: {FILLER[:200]}"
        self.input = ""
        self.output = None


async def build(path: Path, rows: int) -> None:
    store = RunStore(path)
    try:
        for n in range(rows // 2):
            seed = _Seed(n)
            store.start_row(seed, n)
            for round_ in (0, 1):
                step = Step(seed_id=seed.id, round=round_, step_id=step_id_for(seed.id, round_),
                            instruction=f"{seed.instruction} (round {round_})",
                            response=f"Answer {n}.{round_}: {FILLER}")
                await store.on_publish(Envelope(Accepted(seed_id=seed.id, round=round_,
                                                         step=step)))
            store.finish_row(seed.id, "done")
        store.flush()
    finally:
        store.close()


CHILD = """
import json, sys, time
from pathlib import Path
from runtime.export import ExportSettings, export_dataset
from runtime.store import RunStore
import pyarrow, pyarrow.parquet
store = RunStore(Path(sys.argv[1]))
start = time.perf_counter()
files = export_dataset(store, Path(sys.argv[2]), ExportSettings(formats=tuple(sys.argv[3:])),
                       resolved_config={"run": {"name": "bench"}}, summary={})
print(json.dumps({"wall_s": round(time.perf_counter() - start, 2)}))
"""


def export_in_child(store: Path, out: Path, formats: list[str]) -> dict[str, float]:
    process = subprocess.Popen([sys.executable, "-c", CHILD, str(store), str(out), *formats],
                               cwd=REPO, stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    output = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    if status != 0:
        raise SystemExit(f"export failed ({status}): {output}")
    result = json.loads(output.strip().splitlines()[-1])
    result["peak_rss_mib"] = round(usage.ru_maxrss / 1024, 1)
    return result


def baseline_rss() -> float:
    process = subprocess.Popen(
        [sys.executable, "-c", "import pyarrow, pyarrow.parquet, runtime.export"], cwd=REPO)
    _, _, usage = os.wait4(process.pid, 0)
    return round(usage.ru_maxrss / 1024, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="20000,200000")
    parser.add_argument("--formats", default="alpaca,chat,parquet,hf")
    args = parser.parse_args()
    sizes = [int(n) for n in args.sizes.split(",")]
    formats = args.formats.split(",")
    print(f"baseline (python + pyarrow + runtime.export): {baseline_rss()} MiB")
    print(f"{'rows':>9} {'format':>8} {'peak RSS MiB':>13} {'wall s':>8} {'output MiB':>11}")
    with tempfile.TemporaryDirectory(prefix="evolagents-export-") as tmp:
        for size in sizes:
            store = Path(tmp) / f"run-{size}.sqlite"
            anyio.run(build, store, size)
            for fmt in formats:
                out = Path(tmp) / f"out-{size}-{fmt}"
                result = export_in_child(store, out, [fmt])
                written = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
                print(f"{size:>9} {fmt:>8} {result['peak_rss_mib']:>13} {result['wall_s']:>8} "
                      f"{written / 2**20:>11.1f}", flush=True)


if __name__ == "__main__":
    main()
