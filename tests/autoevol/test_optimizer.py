"""Auto Evol-Instruct's loop with a scripted LLM whose candidate methods have known λ."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from runtime.config import validate_config
from runtime.run import execute
from runtime.store import STORE_FILE, RunStore
from tests.autoevol import scripts

REPO = Path(__file__).resolve().parents[2]


def write_inputs(tmp_path: Path, count: int = 60) -> Path:
    path = tmp_path / "questions.txt"
    path.write_text("".join(f"Solve question {n} about apples.\n" for n in range(count)))
    return path


def topology(tmp_path: Path, **optimizer: Any) -> dict[str, Any]:
    method = tmp_path / "initial.txt"
    method.write_text(f"Rewrite the instruction. rate={scripts.INITIAL_RATE}\n")
    params = {"steps": 5, "candidates": 3, "evolutions": 2, "batch_size": 4, "dev_size": 20,
              "pool_size": 30, "patience": 2, "initial_method": str(method), **optimizer}
    scripted = {"backend": "scripted", "concurrency": 8,
                "options": {"handler": "tests.autoevol.scripts:handler"}}
    return {
        "run": {"name": "ae", "seed": scripts.RUN_SEED, "progress": False,
                "inputs": [{"path": str(write_inputs(tmp_path))}]},
        "llm": {"s": scripted},
        "agents": {
            "optimizer": {"impl": "autoevol.optimizer", "llms": {"optimizer": "s"},
                          "params": params},
            "analyst": {"impl": "autoevol.analyst", "llm": "s"},
            "judge": {"impl": "judge.failure_rate", "concurrency": 3},
            "pool": {"impl": "pool.rounds",
                     "params": {"rounds": 1, "method_source": "autoevol"}},
            "evol": {"impl": "evol.wizardlm", "llm": "s", "concurrency": 8},
            "responder": {"impl": "respond.default", "llm": "s", "concurrency": 8},
            "eliminator": {
                "impl": "eliminate.wizardlm",
                "llm": "s",
                "concurrency": 4,
                # scripted one-line methods; the screening rules are measured on real outputs
                "params": {"rules": {"screening": {"enabled": False}}},
            },
        },
    }


def records(run_dir: Path) -> dict[str, Any]:
    store = RunStore(run_dir / STORE_FILE)
    try:
        return dict(store.records("autoevol"))
    finally:
        store.close()


def question_number(seed_id: str, run_dir: Path) -> int:
    store = RunStore(run_dir / STORE_FILE)
    try:
        row = next(iter(store.query("SELECT instruction FROM seeds WHERE seed_id = ?", (seed_id,))),
                   None)
    finally:
        store.close()
    if row is not None:
        return int(row["instruction"].split()[2])
    # dev seeds are never evolved by the pool, so they are not in the seeds table: ids carry
    # the record position, which is the question number here
    return int(seed_id.split("-")[1])


@pytest.mark.timeout(120)
async def test_lowest_failure_rate_wins_ties_break_by_index_and_patience_stops(
    tmp_path: Path,
) -> None:
    run_dir = tmp_path / "run"
    outcome = await execute(validate_config(topology(tmp_path)), run_dir, handle_signals=False,
                            show_progress=False)
    assert outcome.status == "completed", outcome.errors
    saved = records(run_dir)
    dev = saved["split"]["dev"]
    pool = saved["split"]["pool"]
    assert len(dev) == 20
    assert len(pool) == 30
    assert not set(dev) & set(pool), "the dev set must be held out of the optimization pool"
    numbers = [question_number(seed_id, run_dir) for seed_id in dev]

    assert saved["initial"]["failure_rate"] == scripts.expected_rate(numbers, scripts.INITIAL_RATE)
    for step in (1, 2, 3):
        record = saved[f"step-{step:03d}"]
        rates = [c["failure_rate"] for c in record["candidates"]]
        assert rates == [scripts.expected_rate(numbers, r) for r in scripts.RATES[step]]
        assert set(record["batch"]) <= set(pool)
    # step 1: 0.2 twice -> the tie goes to the lower index (m1.1), and it beats the initial 0.6
    assert saved["step-001"]["chosen"]["method_id"] == "m1.1"
    assert saved["step-001"]["improved"] is True
    # steps 2 and 3 do not beat 0.2: patience 2 stops the loop before step 4
    assert saved["step-002"]["improved"] is False
    assert saved["step-003"]["improved"] is False
    assert "step-004" not in saved
    assert saved["final"]["method_id"] == "m1.1"
    assert saved["final"]["steps_run"] == 3

    # all m candidates of a step are evaluated at once
    assert outcome.statistics is not None
    assert outcome.statistics.agents["judge"].peak_in_flight > 1

    # the final method evolved everything outside the dev set, with the method text
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["seeds"] == 40
    assert summary["rows"] == {"done": 40}
    assert summary["autoevol"]["final_method"] == "m1.1"
    assert [p["step"] for p in summary["autoevol"]["lambda_curve"]] == [0, 1, 2, 3]
    dataset = (run_dir / "dataset.alpaca.jsonl").read_text().splitlines()
    rows = [json.loads(line) for line in dataset]
    evolved = [r for r in rows if r["round"] == 1]
    assert evolved
    assert all(r["method_id"] == "m1.1" for r in evolved)
    assert not {r["seed_id"] for r in rows} & set(dev)
    history = json.loads((run_dir / "methods.json").read_text())
    assert len(history["steps"]) == 3
    assert (run_dir / "final_method.txt").read_text().strip().endswith("rate=0.2")


@pytest.mark.timeout(120)
async def test_optimizer_stops_after_t_steps(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    config = validate_config(topology(tmp_path, steps=1, patience=5))
    outcome = await execute(config, run_dir, handle_signals=False, show_progress=False)
    assert outcome.status == "completed", outcome.errors
    saved = records(run_dir)
    assert "step-002" not in saved
    assert saved["final"]["steps_run"] == 1


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_kill_and_resume_mid_optimization_chooses_the_same_methods(tmp_path: Path) -> None:
    config = topology(tmp_path, patience=5)  # runs all 5 steps
    config_path = tmp_path / "ae.json"
    reference_dir, killed_dir = tmp_path / "reference", tmp_path / "killed"

    def start(args: list[str]) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-m", "runtime", *args, "--no-progress", "--log-console", "json",
             "--set", 'run.log.console_level="info"'],
            cwd=REPO, stderr=subprocess.PIPE, text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )

    toml = tmp_path / "ae.toml"
    toml.write_text(_to_toml(config))
    config_path.write_text(json.dumps(config))
    assert subprocess.run(
        [sys.executable, "-m", "runtime", str(toml), "--run-dir", str(reference_dir),
         "--no-progress"], cwd=REPO, capture_output=True, text=True, check=False,
    ).returncode == 0

    process = start([str(toml), "--run-dir", str(killed_dir)])
    assert process.stderr is not None
    for line in process.stderr:
        if line.startswith("{") and json.loads(line).get("key") == "step-002":
            process.send_signal(signal.SIGKILL)
            break
    process.wait(timeout=30)
    process.stderr.close()
    assert process.returncode == -signal.SIGKILL
    partial = records(killed_dir)
    assert "step-002" in partial or "step-001" in partial
    assert "final" not in partial

    resumed = start(["resume", str(killed_dir)])
    _, err = resumed.communicate(timeout=120)
    assert resumed.returncode == 0, err[-2000:]
    expected, got = records(reference_dir), records(killed_dir)
    for key in ("initial", *(f"step-{t:03d}" for t in range(1, 6)), "final"):
        assert got[key] == expected[key], key


def _to_toml(config: dict[str, Any]) -> str:
    """A tiny TOML writer for this test's config (tables of scalars, lists and inline tables)."""

    def value(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, int | float):
            return repr(v)
        if isinstance(v, str):
            return json.dumps(v)
        if isinstance(v, list):
            return "[" + ", ".join(value(x) for x in v) + "]"
        return "{ " + ", ".join(f"{k} = {value(x)}" for k, x in v.items()) + " }"

    lines = ["[run]"] + [f"{k} = {value(v)}" for k, v in config["run"].items()]
    for name, llm in config["llm"].items():
        lines += [f"[llm.{name}]"] + [f"{k} = {value(v)}" for k, v in llm.items()]
    for name, agent in config["agents"].items():
        lines += [f"[agents.{name}]"] + [f"{k} = {value(v)}" for k, v in agent.items()]
    return "\n".join(lines) + "\n"


@pytest.mark.timeout(120)
async def test_per_cluster_optimizers_evolve_each_cluster_with_its_own_method(
    tmp_path: Path,
) -> None:
    inputs = []
    for name, first in (("math.txt", 0), ("code.txt", 100)):
        path = tmp_path / name
        path.write_text("".join(f"Solve question {n} about apples.\n"
                                for n in range(first, first + 40)))
        inputs.append({"path": str(path)})
    config = topology(tmp_path)
    config["run"]["inputs"] = inputs
    base = config["agents"].pop("optimizer")
    for cluster, source in (("math", "math.txt"), ("code", "code.txt")):
        config["agents"][f"optimizer_{cluster}"] = {
            **base,
            "params": {**base["params"], "steps": 1, "dev_size": 10, "pool_size": 20,
                       "cluster": cluster, "sources": [source]},
        }
    config["agents"]["pool"]["params"]["methods_expected"] = 2
    run_dir = tmp_path / "run"
    outcome = await execute(validate_config(config), run_dir, handle_signals=False,
                            show_progress=False)
    assert outcome.status == "completed", outcome.errors

    store = RunStore(run_dir / STORE_FILE)
    try:
        math, code = dict(store.records("autoevol:math")), dict(store.records("autoevol:code"))
    finally:
        store.close()
    assert all(i.startswith("math-") for i in math["split"]["dev"] + math["split"]["pool"])
    assert all(i.startswith("code-") for i in code["split"]["dev"] + code["split"]["pool"])
    dataset = (run_dir / "dataset.alpaca.jsonl").read_text().splitlines()
    evolved = [json.loads(line) for line in dataset if json.loads(line)["round"] == 1]
    assert len(evolved) == 60  # 2 x (40 - 10 dev)
    for row in evolved:
        cluster = row["seed_id"].split("-")[0]
        assert row["method_id"].startswith(f"{cluster}/"), row
    assert (run_dir / "methods.math.json").is_file()
    assert (run_dir / "final_method.code.txt").is_file()
