"""`export --drop-near-duplicates --drop-contaminated`: the findings of `quality` applied to an
export — one row kept per group of near-duplicates (the earliest), benchmark overlaps left out,
and the card saying so."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import anyio
import pytest

from agents.pipeline.messages import Accepted, Step, step_id_for
from bus.protocol import Envelope
from runtime.curation import exclusions_from_quality
from runtime.errors import ConfigError
from runtime.store import RunStore

REPO = Path(__file__).resolve().parents[2]
GSM8K = REPO.parent / "shared" / "data" / "gsm8k_test.jsonl"

DISTINCT = [
    "Write a haiku about the sea at night.",
    "List three uses of a paperclip in an office.",
    "Explain recursion to a ten-year-old with an example.",
    "Compare tea and coffee for an early morning.",
    "Describe how a bicycle gear system works.",
    "Translate a short greeting into French and Spanish.",
]


class Seed:
    def __init__(self, n: int, text: str) -> None:
        self.id = f"s{n:03d}"
        self.instruction = text
        self.input = ""
        self.output = "Reference."


def benchmark_question() -> str:
    with GSM8K.open(encoding="utf-8") as fh:
        return str(json.loads(fh.readline())["question"])


async def build_run(run_dir: Path) -> None:
    """Seeds 0-5 distinct; seed 6 repeats seed 1, seed 7 repeats seed 3 (their round-1 children
    repeat theirs too); seed 8 is a GSM8K test question, evolved into a new problem."""
    texts = [*DISTINCT, DISTINCT[1], DISTINCT[3], benchmark_question()]
    store = RunStore(run_dir / "run.sqlite")
    try:
        for n, text in enumerate(texts):
            seed = Seed(n, text)
            store.start_row(seed, n)
            child = (f"{text} Answer in exactly two sentences." if n < 8 else
                     "Invent a harder word problem about a market stall and solve it.")
            for round_, instruction in ((0, text), (1, child)):
                step = Step(seed_id=seed.id, round=round_, step_id=step_id_for(seed.id, round_),
                            instruction=instruction, response=f"Answer {n}.{round_}")
                await store.on_publish(Envelope(Accepted(seed_id=seed.id, round=round_,
                                                         step=step)))
            store.finish_row(seed.id, "done")
    finally:
        store.close()
    config = {"run": {"name": "curated", "seed": 1, "export": {"formats": ["alpaca"]}}}
    (run_dir / "config.resolved.json").write_text(json.dumps(config), encoding="utf-8")


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "runtime", *args], capture_output=True,
                          text=True, cwd=REPO, timeout=180, check=False)


@pytest.mark.skipif(not GSM8K.is_file(), reason=f"shared data set not found: {GSM8K}")
def test_quality_findings_are_dropped_from_the_export_and_stated_in_the_card(
    tmp_path: Path,
) -> None:
    pytest.importorskip("pyarrow")
    run_dir = tmp_path / "run"
    anyio.run(build_run, run_dir)

    refused = cli("export", str(run_dir), "--drop-near-duplicates")
    assert refused.returncode == 2
    assert "run `python -m runtime quality RUN_DIR` first" in refused.stderr

    quality = cli("quality", str(run_dir), "--embedder", "hashed", "--benchmark", str(GSM8K))
    assert quality.returncode == 0, quality.stderr
    done = cli("export", str(run_dir), "--format", "alpaca", "--format", "hf",
               "--drop-near-duplicates", "--drop-contaminated", "--out", str(tmp_path / "out"))
    assert done.returncode == 0, done.stderr
    rows = [json.loads(x) for x in (tmp_path / "out" / "dataset.alpaca.jsonl").read_text(
        encoding="utf-8").splitlines()]
    kept = {r["step_id"] for r in rows}
    # the later copies (seeds 6 and 7, both rounds) go; their earlier twins stay
    for dropped in ("s006:0", "s006:1", "s007:0", "s007:1"):
        assert dropped not in kept
    for twin in ("s001:0", "s001:1", "s003:0", "s003:1"):
        assert twin in kept
    # the benchmark question goes, its new problem stays
    assert "s008:0" not in kept
    assert "s008:1" in kept
    assert len(rows) == 13  # 18 rows - 4 near-duplicates - 1 contaminated
    assert "removed: 4 near-duplicates" in done.stdout
    assert "removed: 1 row sharing a 13-gram with gsm8k_test" in done.stdout
    card = (tmp_path / "out" / "dataset_hf" / "README.md").read_text(encoding="utf-8")
    assert "Removed before export: 4 near-duplicates (cosine ≥ 0.9, hashed" in card
    assert "1 row sharing a 13-gram with gsm8k_test" in card


def test_asking_for_a_missing_record_names_the_command(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "run.sqlite")
    try:
        with pytest.raises(ConfigError, match="--benchmark FILE` first"):
            exclusions_from_quality(store, near_duplicates=False, contaminated=True)
    finally:
        store.close()


def test_one_row_survives_per_group_and_it_is_the_earliest(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "run.sqlite")
    try:
        texts = ["alpha task", "beta task", "gamma task", "delta task"]
        anyio.run(_fill_plain, store, texts)
        # a chain a~b~c: b is dropped (a kept), c is kept (its only partner b was dropped);
        # d~a: d dropped
        pairs = [("s000:0", "s001:0"), ("s001:0", "s002:0"), ("s003:0", "s000:0")]
        store.put_record("quality", "diversity", {
            "report": {"n": 4, "embedder": "hashed"}, "threshold": 0.9,
            "near_duplicates": [{"a": a, "b": b, "similarity": 0.95} for a, b in pairs],
        })
        found = exclusions_from_quality(store, near_duplicates=True, contaminated=False)
    finally:
        store.close()
    assert found.step_ids == {"s001:0", "s003:0"}
    assert found.near_duplicates == 2
    assert found.describe() == [
        "2 near-duplicates (cosine ≥ 0.9, hashed; the earliest of each group kept, "
        "of 4 rows checked)"
    ]


async def _fill_plain(store: RunStore, texts: list[str]) -> None:
    for n, text in enumerate(texts):
        seed = Seed(n, text)
        store.start_row(seed, n)
        step = Step(seed_id=seed.id, round=0, step_id=step_id_for(seed.id, 0), instruction=text,
                    response="ok")
        await store.on_publish(Envelope(Accepted(seed_id=seed.id, round=0, step=step)))
