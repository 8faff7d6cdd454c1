"""The pipeline's agents on the `scripted` backend: outcomes, lineage, failures, determinism.

Each test runs the real topology (pool → evol → responder → eliminator, the run store observing
the bus) through `runtime.run.execute`, on a handful of seeds, with instant scripted replies.
"""

from __future__ import annotations

import sqlite3
import subprocess
from pathlib import Path

import anyio
import pytest

from agents.evol.operations import OperationPack
from agents.pipeline.common import derive_rng
from runtime.config import validate_config
from runtime.errors import ConfigError
from tests.pipeline.conftest import (
    RunView,
    assert_accounted,
    pipeline_config,
    run_cli,
    run_pipeline,
    scripted,
    write_config,
    write_seeds,
)
from tests.pipeline.scripts import ANSWER


def seeds(n: int, *, output: bool = True) -> list[dict[str, str]]:
    return [
        {
            "instruction": f"Explain topic number {i} to a student.",
            "input": "" if i % 3 else f"context {i}",
            **({"output": f"Reference answer {i}."} if output else {}),
        }
        for i in range(n)
    ]


def inputs(path: Path) -> list[dict[str, object]]:
    return [{"path": str(path)}]


async def test_steady_run_evolves_every_row_through_every_round(tmp_path: Path) -> None:
    path = write_seeds(tmp_path / "seeds.jsonl", seeds(12))
    outcome = await run_pipeline(
        pipeline_config(inputs(path), scripted("steady"), rounds=3), tmp_path / "run"
    )
    assert outcome.status == "completed"
    assert outcome.exit_code == 0
    view = RunView(tmp_path / "run")
    assert_accounted(view, seeds=12, rounds=3)
    assert view.summary()["rounds"] == {str(k): {"accepted": 12} for k in range(4)}
    data = view.dataset()
    assert len(data) == 12 * 4
    # each round's instruction is its parent's plus one sentence, and the input is kept
    by_step = {r["step_id"]: r for r in data}
    for record in data:
        if record["round"] == 0:
            assert record["operation"] == "seed"
            assert record["parent_step_id"] is None
            continue
        parent = by_step[record["parent_step_id"]]
        assert parent["round"] == record["round"] - 1
        assert record["instruction"].startswith(parent["instruction"])
        assert record["output"] == ANSWER
        assert record["input"] == ""  # the input is folded into the evolved instruction
    chat = view.dataset("chat")
    assert [c["step_id"] for c in chat] == [r["step_id"] for r in data]
    assert chat[1]["messages"][1] == {"role": "assistant", "content": ANSWER}


async def test_unparseable_evolution_is_rejected_and_never_answered(tmp_path: Path) -> None:
    path = write_seeds(tmp_path / "seeds.jsonl", seeds(5))
    await run_pipeline(
        pipeline_config(inputs(path), scripted("unparseable"), rounds=2), tmp_path / "run"
    )
    view = RunView(tmp_path / "run")
    assert_accounted(view, seeds=5, rounds=2)
    assert view.rules() == {"unparseable_evolution": 10}
    for step in view.steps("round >= 1"):
        assert step["raw_text"] == "Sure! Here is the rewritten prompt:"
        assert step["instruction"] == ""
        assert step["response"] is None
    usage = view.summary()["llm_usage"]["callers"]
    assert "responder" not in usage
    assert "eliminator" not in usage
    assert usage["evol"]["calls"] == 10
    # the rows keep their seeds: only round 0 is in the dataset
    assert [r["round"] for r in view.dataset()] == [0] * 5


async def test_rejected_steps_keep_the_parent_and_accepted_steps_replace_it(
    tmp_path: Path,
) -> None:
    path = write_seeds(tmp_path / "seeds.jsonl", seeds(40))
    await run_pipeline(pipeline_config(inputs(path), scripted("mixed"), rounds=4), tmp_path / "run")
    view = RunView(tmp_path / "run")
    assert_accounted(view, seeds=40, rounds=4)
    rules = view.rules()
    assert rules.get("sorry_short_response", 0) > 0
    assert rules.get("no_information_gain", 0) > 0
    chains: dict[str, list[sqlite3.Row]] = {}
    for step in view.steps():
        chains.setdefault(step["seed_id"], []).append(step)
    for chain in chains.values():
        current = chain[0]  # the seed, accepted at round 0
        for step in chain[1:]:
            # every round evolves the row's current instruction: the last accepted one
            assert step["parent_step_id"] == current["step_id"]
            expected = current["instruction"]
            if current["round"] == 0 and current["input"]:
                expected = f"{expected}\n\n{current['input']}"
            assert step["parent_instruction"] == expected
            if step["status"] == "accepted":
                current = step
        row = view.rows()[chain[0]["seed_id"]]
        assert row["current_step_id"] == current["step_id"]
        assert row["rounds_done"] == 4


async def test_screening_before_answering_saves_responses_and_never_changes_the_dataset(
    tmp_path: Path,
) -> None:
    path = write_seeds(tmp_path / "seeds.jsonl", seeds(40))
    views = {}
    for screen in (True, False):
        run_dir = tmp_path / f"screen-{screen}"
        await run_pipeline(
            pipeline_config(
                inputs(path),
                scripted("mixed"),
                rounds=4,
                eliminator={"screen_before_answer": screen},
            ),
            run_dir,
        )
        views[screen] = view = RunView(run_dir)
        assert_accounted(view, seeds=40, rounds=4)
    screened, unscreened = views[True], views[False]
    # the same steps are accepted, with the same responses: the order changes the cost only
    assert screened.dataset() == unscreened.dataset()
    # screening first: a step rejected by rule 1 is never answered...
    equal = screened.steps("rule = 'no_information_gain'")
    assert equal
    assert all(step["response"] is None for step in equal)
    # ...so the responder made exactly as many fewer calls as screening rejected steps
    answered = {
        screen: view.summary()["llm_usage"]["callers"]["responder"]["calls"]
        for screen, view in views.items()
    }
    assert answered[False] - answered[True] == len(equal)
    # a step that fails both rule 1 and rule 2 is counted by the rule that ran first
    both = {s["step_id"] for s in unscreened.steps("rule = 'sorry_short_response'")} & {
        s["step_id"] for s in equal
    }
    assert both
    assert screened.rules()["no_information_gain"] == (
        unscreened.rules()["no_information_gain"] + len(both)
    )
    # judging after answering asks the judge only for steps whose answer was clean
    judge_calls = {
        screen: view.summary()["llm_usage"]["callers"]["eliminator"]["calls"]
        for screen, view in views.items()
    }
    assert judge_calls[False] < judge_calls[True]


async def test_seeds_without_output_are_answered_and_judged_in_round_zero(
    tmp_path: Path,
) -> None:
    records = [
        {"instruction": "Name three primary colours.", "output": "Red, yellow and blue."},
        {"instruction": "Rewrite the given prompt in French.", "input": "Hello"},
        {"instruction": "Please apologise to the customer."},
    ]
    path = write_seeds(tmp_path / "seeds.jsonl", records)
    await run_pipeline(
        pipeline_config(inputs(path), scripted("apologetic_seeds"), rounds=1), tmp_path / "run"
    )
    view = RunView(tmp_path / "run")
    assert_accounted(view, seeds=3, rounds=1)
    zero = {s["parent_instruction"] or s["instruction"]: s for s in view.steps("round = 0")}
    kept = zero["Name three primary colours."]
    assert (kept["status"], kept["response"]) == ("accepted", "Red, yellow and blue.")
    # answered by the responder; rule 4 does not apply to seeds (they were not evolved)
    french = zero["Rewrite the given prompt in French."]
    assert (french["status"], french["response"]) == ("accepted", ANSWER)
    sorry = zero["Please apologise to the customer."]
    assert (sorry["status"], sorry["rule"]) == ("rejected", "sorry_short_response")
    usage = view.summary()["llm_usage"]["callers"]
    assert usage["responder"]["calls"] == 2 + 3  # two unanswered seeds, then round 1 of each row
    # the rejected seed is not in the dataset, but its row still evolved it in round 1
    rounds = [(r["instruction"].split(" Justify")[0], r["round"]) for r in view.dataset()]
    assert ("Please apologise to the customer.", 0) not in rounds
    assert ("Please apologise to the customer.", 1) in rounds


async def test_operation_choice_is_deterministic_per_run_seed_row_and_round(
    tmp_path: Path,
) -> None:
    path = write_seeds(tmp_path / "seeds.jsonl", seeds(30))

    async def operations(run: str, seed: int) -> dict[str, str]:
        raw = pipeline_config(inputs(path), scripted("steady"), rounds=3, seed=seed)
        await run_pipeline(raw, tmp_path / run)
        return {s["step_id"]: s["operation"] for s in RunView(tmp_path / run).steps("round >= 1")}

    first, again, other = (
        await operations("a", 7),
        await operations("b", 7),
        await operations("c", 8),
    )
    assert first == again
    assert first != other
    pack = OperationPack.load("general")
    for step_id, operation in first.items():
        seed_id, round_ = step_id.rsplit(":", 1)
        assert pack.choose(derive_rng(7, "operation", seed_id, int(round_))).name == operation
    assert len(set(first.values())) == len(pack.operations)  # 90 draws cover all six


async def test_forced_operation_weights_pick_only_weighted_operations(tmp_path: Path) -> None:
    path = write_seeds(tmp_path / "seeds.jsonl", seeds(10))
    raw = pipeline_config(
        inputs(path),
        scripted("steady"),
        rounds=2,
        evol={
            "weights": {
                "deepen": 1.0,
                "add_constraints": 0.0,
                "concretize": 0.0,
                "increase_reasoning": 0.0,
                "complicate_input": 0.0,
                "breadth": 0.0,
            }
        },
    )
    await run_pipeline(raw, tmp_path / "run")
    assert {s["operation"] for s in RunView(tmp_path / "run").steps("round >= 1")} == {"deepen"}


@pytest.mark.timeout(120)
async def test_exhausted_retries_fail_the_row_and_resume_retry_failed_completes_it(
    tmp_path: Path,
) -> None:
    records = seeds(6)
    records[2]["instruction"] = "FAILSEED: describe the water cycle."
    path = write_seeds(tmp_path / "seeds.jsonl", records)
    # the responder's prompt starts with the instruction: only row 2's answers fail, twice
    # (max_attempts = 2), so its round 1 ends in StepFailed(stage="respond")
    backend = scripted(
        "steady", failures=[{"error": "unavailable", "times": 2, "pattern": "^FAILSEED"}]
    )
    raw = pipeline_config(inputs(path), backend, rounds=2)
    run_dir = tmp_path / "run"
    outcome = await run_pipeline(raw, run_dir)
    assert outcome.status == "completed"
    assert outcome.exit_code == 1  # a row was lost
    view = RunView(run_dir)
    assert_accounted(view, seeds=6, rounds=2)
    failed = {k: r for k, r in view.rows().items() if r["status"] == "failed"}
    assert len(failed) == 1
    ((seed_id, row),) = failed.items()
    assert "respond: unavailable" in row["error"]
    (step,) = view.steps("status = 'failed'")
    assert (step["seed_id"], step["round"], step["stage"]) == (seed_id, 1, "respond")
    assert view.summary()["failed_by_stage"] == {"respond:unavailable": 1}
    evolve_calls = view.summary()["llm_usage"]["callers"]["evol"]["calls"]

    async def resume(*extra: str) -> subprocess.CompletedProcess[str]:
        return await run_cli(
            "resume", str(run_dir), "--no-progress", "--log-console", "off", *extra
        )

    # a plain resume leaves failed rows alone (the fault is still scripted: nothing changes),
    # and still exits 1, its last lines saying which rows failed, where and why
    plain = await resume()
    assert plain.returncode == 1, plain.stderr
    assert plain.stderr.splitlines()[-3:] == [
        "FAILED: 1 of 6 rows failed (16.7% > run.max_failed_fraction = 0)",
        "  failed steps by stage:error: respond:unavailable 1",
        "  1 rows: respond: unavailable: scripted failure",
    ]
    assert view.rows()[seed_id]["status"] == "failed"
    accepted = await resume("--set", "run.max_failed_fraction=0.2")  # the user accepts a few
    assert accepted.returncode == 0, accepted.stderr
    assert accepted.stderr.splitlines()[-3].startswith("accepted: 1 of 6 rows failed (16.7% <=")
    # the server recovered: --retry-failed retries the row from its last finished round
    retried = await resume("--retry-failed", "--set", "llm.main.options.failures=[]")
    assert retried.returncode == 0, retried.stderr
    assert_accounted(view, seeds=6, rounds=2)
    assert {r["status"] for r in view.rows().values()} == {"done"}
    assert view.rows()[seed_id]["error"] is None
    retried_steps = view.steps("seed_id = ?", (seed_id,))
    assert [s["status"] for s in retried_steps] == ["accepted"] * 3
    # the retried step no longer carries the error of its failed attempt
    assert [(s["stage"], s["error_type"], s["error"]) for s in retried_steps] == [(None,) * 3] * 3
    # the failed step's evolution was cached: the retry did not evolve round 1 again
    usage = view.summary()["llm_usage_session"]["callers"]
    assert usage["evol"]["calls"] == 1
    assert usage["evol"]["cache_hits"] == 1
    assert evolve_calls == 6 * 2 - 1  # row 2 never reached round 2 in the first run
    # the run's usage counts its four sessions: 11 evolutions, none, none, then 1
    assert view.summary()["sessions"] == 4
    assert view.summary()["llm_usage"]["callers"]["evol"]["calls"] == 6 * 2
    assert len(view.dataset()) == 6 * 3


async def test_resume_refuses_a_directory_without_a_run(tmp_path: Path) -> None:
    result = await run_cli("resume", str(tmp_path))
    assert result.returncode == 2
    assert "no run to resume" in result.stderr


def test_config_round_trips_through_toml(tmp_path: Path) -> None:
    raw = pipeline_config([{"path": "x.jsonl"}], scripted("steady", failures=[]), rounds=2)
    path = write_config(tmp_path / "c.toml", raw)
    from runtime.config import load_config

    assert load_config(path) == validate_config(raw)


async def test_resume_reads_inputs_given_relative_to_the_config_file(tmp_path: Path) -> None:
    config_dir = tmp_path / "project"
    config_dir.mkdir()
    write_seeds(config_dir / "seeds.jsonl", seeds(3))
    raw = pipeline_config([{"path": "seeds.jsonl"}], scripted("steady"), rounds=1)
    path = write_config(config_dir / "evol.toml", raw)
    run_dir = tmp_path / "run"
    first = await run_cli(str(path), "--run-dir", str(run_dir), "--no-progress",
                          "--log-console", "off")  # fmt: skip
    assert first.returncode == 0, first.stderr
    # the stored config names the file absolutely: a resume from elsewhere reads the same seeds
    resumed = await run_cli("resume", str(run_dir), "--no-progress", "--log-console", "off")
    assert resumed.returncode == 0, resumed.stderr
    assert len(RunView(run_dir).rows()) == 3


async def test_a_crashing_handler_ends_its_row_as_failed_instead_of_hanging(
    tmp_path: Path,
) -> None:
    # an equality prompt override without its placeholders: every judgement raises PromptError
    prompts = tmp_path / "prompts"
    prompts.mkdir()
    (prompts / "equality.full.txt").write_text("Are they equal?\n", encoding="utf-8")
    path = write_seeds(tmp_path / "seeds.jsonl", seeds(4))
    raw = pipeline_config(
        inputs(path),
        scripted("steady"),
        rounds=2,
        eliminator={
            "rules": {"information_gain": {"method": "equality", "prompt_dir": str(prompts)}}
        },
    )
    with anyio.fail_after(60):
        outcome = await run_pipeline(raw, tmp_path / "run")
    assert outcome.status == "completed"
    assert outcome.dead_letters == 4
    assert outcome.exit_code == 1  # dead letters make the run exit non-zero
    view = RunView(tmp_path / "run")
    assert_accounted(view, seeds=4, rounds=2)
    rows = view.rows().values()
    assert {r["status"] for r in rows} == {"failed"}
    assert all(r["error"].startswith("eliminator raised PromptError") for r in rows)
    assert view.summary()["dead_letters"] == 4


async def test_export_samples_a_deterministic_subset_of_the_mixed_rounds(tmp_path: Path) -> None:
    path = write_seeds(tmp_path / "seeds.jsonl", seeds(10))
    full = pipeline_config(inputs(path), scripted("steady"), rounds=2)
    sampled = pipeline_config(inputs(path), scripted("steady"), rounds=2)
    sampled["run"]["export"] = {"sample": 7, "min_round": 1, "formats": ["alpaca"]}
    await run_pipeline(full, tmp_path / "full")
    await run_pipeline(sampled, tmp_path / "a")
    await run_pipeline(sampled, tmp_path / "b")
    everything = RunView(tmp_path / "full").dataset()
    subset = RunView(tmp_path / "a").dataset()
    assert len(everything) == 30
    assert len(subset) == 7
    assert subset == RunView(tmp_path / "b").dataset()  # same run seed, same sample
    assert all(r["round"] >= 1 for r in subset)
    order = [r["step_id"] for r in everything]
    assert [r["step_id"] for r in subset] == sorted(
        (r["step_id"] for r in subset), key=order.index
    )  # the sample keeps the dataset's order
    assert not (tmp_path / "a" / "dataset.chat.jsonl").exists()


def small_loop_config(path: Path, max_in_flight: int) -> dict[str, object]:
    raw = pipeline_config(inputs(path), scripted("steady"), rounds=3,
                          pool={"max_in_flight": max_in_flight})
    for agent in raw["agents"].values():
        agent.update(mailbox=4, concurrency=1)
    return raw


def test_max_in_flight_that_a_loop_of_mailboxes_cannot_hold_is_a_config_error(
    tmp_path: Path,
) -> None:
    # eliminator -> responder -> eliminator is a loop: 2 x (mailbox 4 + 1 handler) = 10 messages
    # fill it and it hangs (seen: 150 rows in flight with these mailboxes never finished)
    path = write_seeds(tmp_path / "seeds.jsonl", seeds(3))
    with pytest.raises(ConfigError, match=r"max_in_flight = 10 must stay below .* \(10: "
                       r"mailbox \+ concurrency of responder \+ eliminator\)"):
        validate_config(small_loop_config(path, 10))


async def test_max_in_flight_just_below_the_tightest_loop_runs_to_the_end(
    tmp_path: Path,
) -> None:
    path = write_seeds(tmp_path / "seeds.jsonl", seeds(60))
    outcome = await run_pipeline(small_loop_config(path, 9), tmp_path / "run")
    assert outcome.status == "completed"
    assert_accounted(RunView(tmp_path / "run"), seeds=60, rounds=3)
