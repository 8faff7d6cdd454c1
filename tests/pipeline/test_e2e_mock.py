"""End to end over real HTTP: 500 Alpaca seeds, 4 rounds, against the mock server with content
faults — every seed is accounted for and every rejection is traced to the fault that caused it.

How the mock's content-fault counters (`/mock/stats`) relate to our per-rule counts:

- The responder's and the evolver's calls carry a sampling seed derived from (run seed, row,
  round), so their cache keys never repeat: each of those calls reaches the mock exactly once and
  the mock's counters see every fault they inject.
- The eliminator screens each evolved instruction BEFORE it is answered — evolving-prompt words
  (rule 4), then the LLM equality question (rule 1) — and judges the response of the survivors —
  sorry (rule 2), stop words (rule 3). So every leak that survives parsing is counted under rule
  4, an instruction rejected at screening is never answered (no response is paid for), and every
  "sorry" / "stopwords" answer the mock injects is counted under its own rule.
- The equality check is greedy (temperature 0) and the same (parent, child) pair comes back in a
  later round when a row evolves a rejected parent again, so the response cache (and
  single-flight, for concurrent duplicates) answers repeats without a request: the mock counts
  each distinct pair once; we count every rejection.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest

from agents.eliminator.rules import check_prompt_words
from agents.llm.mock._text import COPY_LEAKS
from tests.pipeline.conftest import (
    RunView,
    SpawnMock,
    assert_accounted,
    http_backend,
    pipeline_config,
    run_pipeline,
)

SEEDS = 500
ROUNDS = 4
CONTENT_FAULTS = {"sorry": 0.05, "stopwords": 0.05, "copy_prompt": 0.15, "equal": 0.1}


def leak_form(raw_text: str) -> int | None:
    """Which of the mock's `COPY_LEAKS` templates produced `raw_text` (None: no leak)."""
    for index, template in enumerate(COPY_LEAKS):
        head, _, tail = template.partition("{text}")
        if re.fullmatch(re.escape(head) + r".+" + re.escape(tail), raw_text, re.S):
            return index
    return None


@pytest.mark.slow
@pytest.mark.timeout(240)
async def test_every_seed_is_accounted_for_and_rule_counts_match_injected_faults(
    alpaca: Path, spawn_mock: SpawnMock, tmp_path: Path
) -> None:
    mock = await spawn_mock(seed=3, content_faults=CONTENT_FAULTS)
    raw = pipeline_config(
        [{"path": str(alpaca), "limit": SEEDS}],
        http_backend(mock.openai_url, concurrency=32, timeout_s=30.0),
        rounds=ROUNDS,
        concurrency=32,
        # the paper's four rules against the mock's injected faults; the screening rules for
        # real models' failures are measured on real outputs (bench/screening_accuracy.py)
        eliminator={
            "rules": {"screening": {"enabled": False}, "information_gain": {"method": "equality"}}
        },
    )
    outcome = await run_pipeline(raw, tmp_path / "run")
    assert outcome.status == "completed", outcome.errors
    assert outcome.exit_code == 0
    stats = await mock.stats()
    view = RunView(tmp_path / "run")
    summary = view.summary()

    # -- every seed accounted for: no transport faults, so every row is done --------------------
    assert_accounted(view, seeds=SEEDS, rounds=ROUNDS)
    assert summary["rows"] == {"done": SEEDS}
    assert summary["dead_letters"] == 0
    assert summary["failed_by_stage"] == {}
    accepted = view.steps("status = 'accepted'")
    assert len(view.dataset()) == len(accepted) == len(view.dataset("chat"))

    # -- one request per call that is not a cache hit; nothing lost on the way -------------------
    usage = summary["llm_usage"]["callers"]
    assert stats.transport_faults == {}
    assert stats.completed == stats.requests
    assert stats.requests == summary["llm_usage"]["total"]["calls"]
    assert summary["llm_cache"]["writes"] == stats.requests  # every answer committed once
    assert usage["evol"]["cache_hits"] == usage["responder"]["cache_hits"] == 0
    assert (
        stats.replies_by_kind["evolve_breadth"] + stats.replies_by_kind.get("evolve_depth", 0)
        == usage["evol"]["calls"]
        == SEEDS * ROUNDS
    )
    # the responder answers the seeds without a reference output and the evolved steps that passed
    # screening — never a step that rule 4 or rule 1 rejected
    screened_out = view.steps(
        "round >= 1 AND rule IN ('copies_evolving_prompt', 'no_information_gain')"
    )
    assert all(step["response"] is None for step in screened_out)
    answered = view.steps("response IS NOT NULL AND round >= 1")
    evolved = view.steps("round >= 1")
    assert len(answered) == len(evolved) - len(screened_out)
    seeds_without_output = len(
        view.query("SELECT seed_id FROM seeds WHERE output IS NULL OR output = ''")
    )
    assert (
        stats.replies_by_kind["answer"]
        == usage["responder"]["calls"]
        == len(answered) + seeds_without_output
    )

    rules = view.rules()
    faults = stats.content_faults
    # -- rules 2 and 3 judge the RESPONSE of every answered step: exact --------------------------
    assert rules["sorry_short_response"] == faults["sorry"]
    assert rules["stopwords_only_response"] == faults["stopwords"]
    for step in view.steps("rule = 'sorry_short_response'"):
        assert len(step["response"].split()) < 80
        assert "sorry" in step["response"].lower()

    # -- rule 1 (LLM equality) runs for every evolved step that passed rule 4; repeats come from
    # the cache ----------------------------------------------------------------------------------
    judged = view.steps("round >= 1 AND (rule IS NULL OR rule != 'copies_evolving_prompt')")
    pairs = Counter((s["parent_instruction"], s["instruction"]) for s in judged)
    assert stats.replies_by_kind["equality"] == len(pairs) == usage["eliminator"]["cache_misses"]
    assert usage["eliminator"]["calls"] == len(pairs)
    assert usage["eliminator"]["cache_hits"] == len(judged) - len(pairs)
    equal = Counter(
        (s["parent_instruction"], s["instruction"])
        for s in view.steps("rule = 'no_information_gain'")
    )
    assert len(equal) == faults["equal"] == stats.content_faults_distinct["equal"]
    assert rules["no_information_gain"] == sum(equal.values()) >= faults["equal"]

    # -- rule 4 and the copy_prompt leaks: every leak accounted for, per leak form ---------------
    forms = {s["step_id"]: leak_form(s["raw_text"]) for s in evolved}
    leaks = [s for s in evolved if forms[s["step_id"]] is not None]
    assert len(leaks) == faults["copy_prompt"]
    # a row that evolves a rejected parent again with the same operation sends the same prompt
    # (only the sampling seed differs): the mock counts such prompts once as "distinct"
    prompts = {(s["operation"], s["parent_instruction"]) for s in leaks}
    assert len(prompts) == stats.content_faults_distinct["copy_prompt"]
    fate: dict[int, Counter[str]] = {i: Counter() for i in range(len(COPY_LEAKS))}
    survived: Counter[str] = Counter()  # leaks still visible after parsing -> their outcome
    stripped: Counter[str] = Counter()  # leaks the parser removed -> their outcome
    for step in leaks:
        form = forms[step["step_id"]]
        assert form is not None
        outcome = step["rule"] or step["status"]
        fate[form][outcome] += 1
        visible = check_prompt_words(step["instruction"], parent=step["parent_instruction"])
        (survived if visible.failed else stripped)[outcome] += 1
    # A leak that is only packaging ("#Rewritten Prompt#:" as a label, "Here is the rewritten
    # prompt …:" as a preamble) is removed by the output parser: the instruction that goes on is
    # clean, so rule 4 can never see it (FINDING: the mock's copy_prompt count is not rule 4's
    # count; the dataset stays clean). Those steps go on to be judged like any other.
    assert "copies_evolving_prompt" not in stripped
    assert "unparseable_evolution" not in rules  # every mock evolution parses
    # A leak that survives parsing is caught by rule 4 at screening, before anything else: exact.
    assert set(survived) == {"copies_evolving_prompt"}
    assert rules["copies_evolving_prompt"] == survived["copies_evolving_prompt"] > 0
    # nothing else trips rule 4, and no accepted instruction carries evolving-prompt words
    for step in view.steps("status = 'accepted' AND round >= 1"):
        assert not check_prompt_words(step["instruction"], parent=step["parent_instruction"]).failed

    # -- every rejection is one of the injected faults: nothing is rejected by accident ----------
    explained = (
        faults["sorry"]
        + faults["stopwords"]
        + rules["no_information_gain"]
        + survived["copies_evolving_prompt"]
    )
    assert sum(rules.values()) == explained
    assert summary["rejected_by_rule"] == rules
    assert summary["rejected_before_answer"] == len(screened_out)
    print(
        f"rules={dict(rules)} mock_faults={faults} "
        f"distinct={stats.content_faults_distinct} leak_fates={fate} "
        f"survived_parsing={dict(survived)} stripped_by_parser={dict(stripped)} "
        f"responses_not_paid_for={len(screened_out)} of {len(evolved)} evolved steps"
    )
