"""Auto Evol-Instruct selects on the mock server: distinct candidates, different λ, the lowest wins.

Real HTTP to the mock (127.0.0.1, port 0). The mock's model of method quality is documented in
`agents/llm/mock/autoevol_replies.py` and docs/autoevol.md; this test shows the loop acting on
it: the optimizer's m samples differ (each carries its own sampling seed), their λ on the dev
set differ, the lowest-λ one is chosen, and the data evolved with it fails less often than the
data the initial method evolves from the same seeds.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from agents.autoevol import methods
from agents.autoevol.failure import detect_failure
from agents.autoevol.method_parsing import parse_optimized_method
from agents.autoevol.methods import METHODS_DIR, load_method, render_analysis, render_optimize
from agents.llm.mock import MockConfig, MockLLMServer, generate_reply
from agents.llm.mock.autoevol_replies import (
    BASE_RATE,
    FAILURE_MODES,
    GUIDELINES,
    METHOD_CLOSING,
    failure_mode_of,
    method_failure_rates,
)
from agents.llm.types import ChatMessage
from runtime.config import validate_config
from runtime.run import execute
from runtime.store import STORE_FILE, RunStore

RUN_SEED = 5
_TOPICS = (
    "photosynthesis", "compound interest", "plate tectonics", "binary search", "the water cycle",
    "supply and demand", "vaccination", "recursion", "ocean tides", "the French Revolution",
    "solar panels", "sourdough bread", "black holes", "password hashing", "bird migration",
)
_ASKS = ("Explain how {} works.", "Describe the main ideas behind {}.",
         "Give a short introduction to {} for a student.", "Why does {} matter in daily life?",
         "Summarise what is known about {}.")


def write_inputs(tmp_path: Path) -> Path:
    """75 distinct instructions, one per line."""
    path = tmp_path / "instructions.txt"
    lines = [ask.format(topic) for ask in _ASKS for topic in _TOPICS]
    path.write_text("\n".join(lines) + "\n")
    return path


def topology(tmp_path: Path, url: str, steps: int) -> dict[str, Any]:
    llm = {"backend": "openai-compatible", "model": "mock-model", "endpoints": [url],
           "concurrency": 16}
    params = {"steps": steps, "candidates": 3, "evolutions": 1, "batch_size": 4,
              "dev_size": 40, "pool_size": 35, "patience": 2, "initial_method": "general"}
    return {
        "run": {"name": "ae-mock", "seed": RUN_SEED, "progress": False,
                "inputs": [{"path": str(write_inputs(tmp_path))}]},
        "llm": {"evol": llm, "optimizer": llm},
        "agents": {
            "optimizer": {"impl": "autoevol.optimizer", "llms": {"optimizer": "optimizer"},
                          "params": params},
            "analyst": {"impl": "autoevol.analyst", "llm": "optimizer"},
            "judge": {"impl": "judge.failure_rate", "llm": "evol", "concurrency": 3},
            "pool": {"impl": "pool.rounds", "params": {"rounds": 1, "method_source": "autoevol"}},
            "evol": {"impl": "evol.wizardlm", "llm": "evol", "concurrency": 16},
            "responder": {"impl": "respond.default", "llm": "evol", "concurrency": 16},
            "eliminator": {"impl": "eliminate.wizardlm", "llm": "evol", "concurrency": 8},
        },
    }


def read_run(run_dir: Path) -> tuple[dict[str, Any], dict[str, str]]:
    """The autoevol records, and the round-1 evolved instruction of every pool seed."""
    store = RunStore(run_dir / STORE_FILE)
    try:
        saved = dict(store.records("autoevol"))
        rows = store.query("SELECT seed_id, instruction FROM steps WHERE round = 1")
        evolved = {row["seed_id"]: row["instruction"] for row in rows}
    finally:
        store.close()
    return saved, evolved


async def run_auto_evol(tmp_path: Path, url: str, steps: int) -> tuple[dict[str, Any],
                                                                      dict[str, str]]:
    run_dir = tmp_path / f"run-{steps}"
    config = validate_config(topology(tmp_path, url, steps))
    outcome = await execute(config, run_dir, handle_signals=False, show_progress=False)
    assert outcome.status == "completed", outcome.errors
    return read_run(run_dir)


def user(text: str) -> list[ChatMessage]:
    return [ChatMessage(role="user", content=text)]


def sampled(prompt: list[ChatMessage], seed: int | None) -> str:
    return generate_reply(prompt, seed=3, sample_seed=seed).text


def test_the_mock_optimizer_varies_its_samples_by_sampling_seed() -> None:
    prompt = render_optimize(load_method("general"), "- Case case1 (step 1): reworded")
    texts = [sampled(prompt, seed) for seed in range(6)]
    assert len(set(texts)) >= 4, "samples with different seeds must mostly differ"
    assert texts == [sampled(prompt, seed) for seed in range(6)], "deterministic per seed"
    methods = [parse_optimized_method(text) for text in texts]
    assert all(m and sum(g in m for g in GUIDELINES) == 1 for m in methods)


def test_method_features_set_the_failure_rates_and_the_judges_read_the_failures() -> None:
    assert METHOD_CLOSING == methods.METHOD_CLOSING  # how the mock tells a method prompt
    mode = FAILURE_MODES[0]
    base = load_method("general")
    assert set(method_failure_rates(base).values()) == {BASE_RATE}
    assert method_failure_rates(f"{base}\n{mode.guard}")[mode.name] < BASE_RATE
    assert method_failure_rates(f"{base}\n{mode.harm}")[mode.name] > BASE_RATE
    failed = mode.template.format(text="Explain how tides work.")
    ask_back = generate_reply(user(failed))
    assert detect_failure(ask_back.text) is not None  # F = 1 by the default rules
    assert detect_failure(generate_reply(user("Explain how tides work.")).text) is None
    judge = (METHODS_DIR / "failure_judge.txt").read_text()
    verdict = judge.replace("{{instruction}}", failed).replace("{{response}}", ask_back.text)
    assert generate_reply(user(verdict)).text == "FAIL"
    fine = judge.replace("{{instruction}}", "Explain tides.").replace("{{response}}", "Tides…")
    assert generate_reply(user(fine)).text == "PASS"
    analysis = render_analysis({"case1": ["Explain tides.", failed], "case2": ["A.", "A b."]})
    assert generate_reply(analysis).text == f"FAILED case1 | step 1 | {mode.reason}"


@pytest.mark.timeout(60)
async def test_the_lowest_lambda_candidate_wins_and_changes_the_evolved_data(
    tmp_path: Path,
) -> None:
    async with MockLLMServer(MockConfig(seed=3)) as server:
        saved, evolved = await run_auto_evol(tmp_path, server.openai_url, steps=2)
        _, evolved_initial = await run_auto_evol(tmp_path, server.openai_url, steps=0)

    steps = [saved["step-001"], saved["step-002"]]
    for step in steps:
        texts = [c["method_text"] for c in step["candidates"]]
        assert len(texts) == 3
        assert len(set(texts)) == 3, "the m candidates must differ"
        rates = [c["failure_rate"] for c in step["candidates"]]
        assert len(set(rates)) > 1, f"the candidates' λ must differ: {rates}"
        best = min(range(3), key=lambda i: (rates[i], i))
        assert step["chosen"]["method_id"] == step["candidates"][best]["method_id"]
        assert step["chosen"]["failure_rate"] == min(rates)
    # the figures docs/autoevol.md quotes (seed 3, dev 40): λ₀ 0.35, then 0.275, then 0.2
    assert saved["initial"]["failure_rate"] == 0.35
    assert [c["failure_rate"] for c in steps[0]["candidates"]] == [0.35, 0.275, 0.45]
    assert [c["failure_rate"] for c in steps[1]["candidates"]] == [0.275, 0.4, 0.2]
    assert all(step["improved"] for step in steps)
    assert saved["final"]["method_id"] == "m2.2"
    assert saved["final"]["failure_rate"] < saved["initial"]["failure_rate"]

    # λ depends on the method only through its failure rates: equal rates, equal λ
    lambdas: dict[tuple[float, ...], set[float]] = {}
    for method in [saved["initial"], *(c for step in steps for c in step["candidates"])]:
        key = tuple(method_failure_rates(method["method_text"]).values())
        lambdas.setdefault(key, set()).add(method["failure_rate"])
    assert all(len(values) == 1 for values in lambdas.values()), lambdas

    # the same pool seeds, evolved with e* and with the initial method: different, better data
    assert evolved.keys() == evolved_initial.keys()
    assert len(evolved) == 35
    changed = [seed for seed in evolved if evolved[seed] != evolved_initial[seed]]
    assert changed
    failed = sum(failure_mode_of(text) is not None for text in evolved.values())
    failed_initial = sum(failure_mode_of(text) is not None for text in evolved_initial.values())
    assert (failed, failed_initial) == (7, 13)
