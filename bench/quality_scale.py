"""Near-duplicates and diversity at scale: time and peak memory for N texts.

    python bench/quality_scale.py [--sizes 2000,5000,20000] [--embedder hashed|minilm]
        [--texts cycled|mixed]

Each size runs in a fresh child process (peak RSS from wait4): N instructions cycled from the
shared Alpaca subset (a suffix keeps the cycles distinct), embedded, then `near_duplicates`
(threshold 0.9) and `diversity`, through the embedder wrapper `python -m runtime quality` uses —
what it does for a run's rows. With numpy the embeddings are one matrix and the similarities are
computed a block of rows at a time, so memory grows with N, not N^2.

`--texts cycled` (default): the Alpaca instructions repeated with a suffix past 5,000, so each
has many near-copies (few clusters, many near-duplicate pairs). `--texts mixed`: instruction i
joined to the response of another row, chosen so that every text is distinct. There are few
near-copies, and about as many clusters as texts: the worst case for the clustering.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ALPACA = REPO.parent / "shared" / "data" / "alpaca_data_subset5000_pr152.json"

CHILD = """
import json, sys, time
from agents.judge.metrics import diversity, load_embedder, near_duplicates
from runtime.evaluate import _MemoEmbedder  # what `quality` wraps its embedder in
n, kind, path, mode = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
rows = json.load(open(path))
base = [r["instruction"] for r in rows]
if mode == "cycled":
    texts = [base[i % len(base)] + (f" (variant {i // len(base)})" if i >= len(base) else "")
             for i in range(n)]
else:
    m = len(rows)
    texts = [base[i % m] + " " + rows[(i % m + (i // m) * 977 + 1) % m]["output"]
             for i in range(n)]
embedder = _MemoEmbedder(load_embedder(kind))
t0 = time.perf_counter()
vectors = embedder.embed_array(texts)
t1 = time.perf_counter()
pairs = near_duplicates(texts, embedder, threshold=0.9)
t2 = time.perf_counter()
report = diversity(texts, embedder)
t3 = time.perf_counter()
print(json.dumps({"embed_s": round(t1 - t0, 1), "near_duplicates_s": round(t2 - t1, 1),
                  "diversity_s": round(t3 - t2, 1), "pairs": len(pairs),
                  "clusters": report.clusters}))
"""


def run(n: int, kind: str, mode: str) -> dict[str, float]:
    process = subprocess.Popen([sys.executable, "-c", CHILD, str(n), kind, str(ALPACA), mode],
                               cwd=REPO, stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    output = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    if status != 0:
        return {"error": status}
    result = json.loads(output.strip().splitlines()[-1])
    result["peak_rss_mib"] = round(usage.ru_maxrss / 1024)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="2000,5000,20000")
    parser.add_argument("--embedder", default="hashed", choices=("hashed", "minilm"))
    parser.add_argument("--texts", default="cycled", choices=("cycled", "mixed"))
    args = parser.parse_args()
    for n in (int(x) for x in args.sizes.split(",")):
        result = run(n, args.embedder, args.texts)
        print(json.dumps({"texts": n, "kind": args.texts, "embedder": args.embedder, **result}),
              flush=True)


if __name__ == "__main__":
    main()
