"""Chaos: the mock injects 10% 429 (Retry-After), 5% 500, 2% hangs past the attempt timeout and 1%
malformed bodies. The run still accounts for every seed; calls that exhausted their retries end
their rows as failed, with the error, in the store; `resume --retry-failed` completes them.

Timeouts and back-off are short (a 1 s attempt timeout, 10-50 ms back-off, Retry-After 50 ms) so
the test stays fast; `max_attempts = 3` makes a few calls (~0.18³ of them) run out of attempts.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from agents.llm.mock import MockConfig
from tests.pipeline.conftest import (
    RunView,
    SpawnMock,
    assert_accounted,
    http_backend,
    pipeline_config,
    run_cli,
    run_pipeline,
)

SEEDS = 200
ROUNDS = 3
FAULTS = {
    "rate_limited": 0.10,
    "server_error": 0.05,
    "hang": 0.02,
    "malformed": 0.01,
    "retry_after_s": 0.05,
    "hang_s": 600.0,
}
CONTENT_FAULTS = {"sorry": 0.05, "equal": 0.1}


@pytest.mark.slow
@pytest.mark.timeout(240)
async def test_chaos_run_accounts_for_every_seed_and_retry_failed_completes_it(
    alpaca: Path, spawn_mock: SpawnMock, tmp_path: Path
) -> None:
    mock = await spawn_mock(seed=5, faults=FAULTS, content_faults=CONTENT_FAULTS)
    backend = http_backend(
        mock.openai_url,
        concurrency=32,
        timeout_s=1.0,
        max_attempts=3,
        backoff={"base_s": 0.01, "max_s": 0.05, "jitter": 0.5},
    )
    raw = pipeline_config(
        [{"path": str(alpaca), "limit": SEEDS}], backend, rounds=ROUNDS, concurrency=32
    )
    run_dir = tmp_path / "run"
    outcome = await run_pipeline(raw, run_dir)
    assert outcome.status == "completed", outcome.errors
    assert outcome.dead_letters == 0
    stats = await mock.stats()
    view = RunView(run_dir)
    summary = view.summary()

    # every fault kind was injected, and every seed is accounted for
    assert set(stats.transport_faults) == {"rate_limited", "server_error", "hang", "malformed"}
    assert_accounted(view, seeds=SEEDS, rounds=ROUNDS)
    rows = view.rows()
    failed = {k: r for k, r in rows.items() if r["status"] == "failed"}
    assert failed, "expected some calls to run out of attempts (0.18^3 per call)"
    # a failed row ends at its failed step; the row's error names the stage and the error kind
    failed_steps = view.steps("status = 'failed'")
    assert {s["seed_id"] for s in failed_steps} == set(failed)
    # the client's error kinds: 429 → rate_limited, 500 → overloaded, hang → timeout
    kinds = {"rate_limited", "overloaded", "timeout", "malformed"}
    for step in failed_steps:
        assert step["stage"] in {"evolve", "respond", "eliminate"}
        assert step["error_type"] in kinds, step["error_type"]
        assert rows[step["seed_id"]]["error"].startswith(f"{step['stage']}: {step['error_type']}")
    by_stage = Counter(f"{s['stage']}:{s['error_type']}" for s in failed_steps)
    assert summary["failed_by_stage"] == dict(by_stage)
    # one exhausted call per failed step (identical concurrent judge calls could share one)
    total = summary["llm_usage"]["total"]
    assert 0 < total["failures"] <= len(failed_steps)
    assert total["retries"] > 0
    assert set(total["errors"]) <= kinds
    done_before = {r["step_id"]: r for r in view.dataset() if r["seed_id"] not in failed}

    # the server recovers; `resume --retry-failed` completes the failed rows, and only those
    await mock.configure(MockConfig(seed=5, content_faults=CONTENT_FAULTS))
    result = await run_cli(
        "resume",
        str(run_dir),
        "--retry-failed",
        "--no-progress",
        "--log-console",
        "off",
        timeout_s=180,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert_accounted(view, seeds=SEEDS, rounds=ROUNDS)
    assert {r["status"] for r in view.rows().values()} == {"done"}
    assert view.steps("status = 'failed'") == []
    after = view.dataset()
    assert {r["step_id"]: r for r in after if r["seed_id"] not in failed} == done_before
    assert {r["seed_id"] for r in after} >= set(failed)
    retried = (await mock.stats()).requests
    # the retried rows redo at most their remaining rounds: 3 calls per round at most
    assert 0 < retried <= 3 * ROUNDS * len(failed)
    print(
        f"failed rows={len(failed)} by stage={dict(by_stage)} "
        f"transport faults={stats.transport_faults} retries={total['retries']} "
        f"requests on retry={retried}"
    )
