"""The `hf` export (a Hugging Face dataset directory) and streaming Parquet: what `datasets` loads,
what the card says (and never says), sharding, and nothing half written."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest

from runtime.export import ExportSettings, export_dataset, summarize
from runtime.hf_dataset import HF_DIR, HFSettings
from runtime.store import RunStore
from tests.runtime.test_export import fill

pq = pytest.importorskip("pyarrow.parquet")
yaml = pytest.importorskip("yaml")

REPO = Path(__file__).resolve().parents[2]

RESOLVED: dict[str, Any] = {
    "run": {
        "name": "evol-demo",
        "seed": 5,
        "inputs": [{"path": "/secret/place/alpaca_seeds.jsonl"}],
        "export": {"formats": ["hf"]},
    },
    "llm": {
        "main": {
            "backend": "openai-compatible",
            "model": "Qwen/Qwen2.5-7B-Instruct",
            "endpoints": ["http://10.1.2.3:8000/v1"],
            "api_key_env": "MY_PRIVATE_KEY_VAR",
        }
    },
    "agents": {
        "pool": {"impl": "pool.rounds", "params": {"rounds": 2}},
        "evol": {"impl": "evol.wizardlm", "llm": "main"},
        "responder": {"impl": "respond.default", "llm": "main"},
    },
}


def front_matter(card: str) -> dict[str, Any]:
    head, sep, _ = card.removeprefix("---\n").partition("\n---\n")
    assert sep, "the card starts with a YAML block between --- lines"
    data = yaml.safe_load(head)
    assert isinstance(data, dict)
    return data


async def export_hf(tmp_path: Path, seeds: int, **hf: Any) -> Path:
    store = RunStore(tmp_path / "run.sqlite")
    try:
        await fill(store, seeds=seeds)
        settings = ExportSettings(formats=("hf",), hf=HFSettings(**hf))
        files = export_dataset(store, tmp_path / "out", settings, resolved_config=RESOLVED,
                               summary=summarize(store))
    finally:
        store.close()
    return files["hf"]


async def test_the_directory_has_shards_of_the_size_asked_and_every_row_once(
    tmp_path: Path,
) -> None:
    directory = await export_hf(tmp_path, seeds=25, rows_per_shard=20)  # 50 rows
    shards = sorted((directory / "data").iterdir())
    assert [p.name for p in shards] == [f"train-0000{i}-of-00003.parquet" for i in range(3)]
    tables = [pq.read_table(p) for p in shards]
    assert [t.num_rows for t in tables] == [20, 20, 10]
    rows = [row for t in tables for row in t.to_pylist()]
    assert [(r["seed_id"], r["round"]) for r in rows[:3]] == [("s000", 0), ("s000", 1),
                                                              ("s001", 0)]
    assert len({r["step_id"] for r in rows}) == 50
    assert rows[3]["messages"] == [
        {"role": "user", "content": "Harder 1\n\nsome input"},
        {"role": "assistant", "content": "Answer to Harder 1"},
    ]
    assert rows[3]["input"] == "some input"
    assert not list(directory.parent.glob("*.tmp"))
    assert not list(directory.rglob("*.tmp"))


async def test_the_card_describes_the_run_and_hides_endpoints_keys_and_paths(
    tmp_path: Path,
) -> None:
    directory = await export_hf(tmp_path, seeds=4, license="cc-by-4.0", tags=("math",))
    card = (directory / "README.md").read_text(encoding="utf-8")
    meta = front_matter(card)
    assert meta["license"] == "cc-by-4.0"
    assert meta["pretty_name"] == "evol-demo"
    assert meta["configs"] == [
        {"config_name": "default", "data_files": [{"split": "train", "path": "data/train-*"}]}
    ]
    assert meta["dataset_info"]["splits"][0]["num_examples"] == 8
    assert [f["name"] for f in meta["dataset_info"]["features"]][:4] == [
        "instruction", "input", "output", "messages"]  # fmt: skip
    assert {"synthetic", "evol-instruct", "math"} <= set(meta["tags"])
    assert meta["size_categories"] == ["n<1K"]
    assert "Qwen/Qwen2.5-7B-Instruct (openai-compatible)" in card
    assert "`alpaca_seeds.jsonl`" in card
    assert "rounds of evolution: 2" in card
    assert "| 2 | 0 | 4 | 0 |" in card  # round 2: every step rejected
    for secret in ("10.1.2.3", "MY_PRIVATE_KEY_VAR", "/secret/place"):
        assert secret not in card


async def test_without_a_license_the_card_claims_none(tmp_path: Path) -> None:
    card = (await export_hf(tmp_path, seeds=2) / "README.md").read_text(encoding="utf-8")
    assert "license" not in front_matter(card)


async def test_a_failed_export_leaves_the_previous_directory_untouched(tmp_path: Path) -> None:
    directory = await export_hf(tmp_path, seeds=3)
    before = sorted(p.name for p in directory.rglob("*"))

    store = RunStore(tmp_path / "run.sqlite")
    try:
        with pytest.raises(AttributeError):  # the card breaks after every shard was written
            export_dataset(store, directory.parent, ExportSettings(formats=("hf",)),
                           resolved_config=RESOLVED, summary={"rounds": object()})
    finally:
        store.close()
    assert sorted(p.name for p in directory.rglob("*")) == before
    assert not (directory.parent / f"{HF_DIR}.tmp").exists()


async def test_datasets_loads_the_directory_offline(tmp_path: Path) -> None:
    pytest.importorskip("datasets")
    directory = await export_hf(tmp_path, seeds=6, rows_per_shard=5)
    script = (
        "import json, sys\n"
        "from datasets import load_dataset\n"
        "ds = load_dataset(sys.argv[1], split='train')\n"
        "print(json.dumps({'rows': ds.num_rows, 'columns': ds.column_names,\n"
        "                  'first': ds[1]['messages'], 'round': ds[1]['round']}))\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "HF_HOME": str(tmp_path / "hf-home")}
    done = await anyio.run_process([sys.executable, "-c", script, str(directory)], env=env,
                                   check=False)
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    loaded = json.loads(done.stdout.decode().strip().splitlines()[-1])
    assert loaded["rows"] == 12
    assert loaded["columns"][:4] == ["instruction", "input", "output", "messages"]
    assert loaded["first"][1] == {"role": "assistant", "content": "Answer to Harder 0"}
    assert loaded["round"] == 1


async def test_parquet_streams_in_row_groups_with_a_fixed_schema(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "run.sqlite")
    try:
        await fill(store, seeds=3000)  # 6,000 rows: three row groups of 2,048 at most
        path = export_dataset(store, tmp_path, ExportSettings(formats=("parquet",)))["parquet"]
    finally:
        store.close()
    meta = pq.ParquetFile(path).metadata
    assert meta.num_rows == 6000
    assert meta.num_row_groups == 3
    schema = pq.read_schema(path)
    assert str(schema.field("method_id").type) == "string"  # None in every row, typed anyway
    assert str(schema.field("round").type) == "int64"


def test_cli_export_reexports_a_run_with_other_formats_and_a_sample(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    store = RunStore(run_dir / "run.sqlite")
    anyio.run(fill, store, 10)
    store.close()
    (run_dir / "config.resolved.json").write_text(json.dumps(RESOLVED), encoding="utf-8")
    out = tmp_path / "out"
    done = subprocess.run(
        [sys.executable, "-m", "runtime", "export", str(run_dir), "--format", "hf", "--format",
         "alpaca", "--sample", "7", "--out", str(out), "--name", "My set"],
        capture_output=True, text=True, cwd=REPO, timeout=120, check=False,
    )
    assert done.returncode == 0, done.stderr
    assert f"hf: {out / HF_DIR}" in done.stdout
    assert len((out / "dataset.alpaca.jsonl").read_text().splitlines()) == 7
    card = (out / HF_DIR / "README.md").read_text(encoding="utf-8")
    assert front_matter(card)["pretty_name"] == "My set"
    assert "7 rows (a random sample of the run's accepted steps, `sample = 7`)." in card

    bad = subprocess.run(
        [sys.executable, "-m", "runtime", "export", str(tmp_path), "--format", "hf"],
        capture_output=True, text=True, cwd=REPO, timeout=120, check=False,
    )
    assert bad.returncode == 2
    assert "not a run directory" in bad.stderr
