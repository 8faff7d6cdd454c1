from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from agents.judge.humaneval import (
    HumanEvalProblem,
    HumanEvalRunner,
    build_program,
    extract_code,
    load_humaneval,
)
from agents.judge.sandbox import (
    ExecutionStatus,
    SandboxLimits,
    network_isolation_prefix,
    run_python,
)

FAST = SandboxLimits(timeout_s=2.0, memory_bytes=512 << 20)


@pytest.fixture
def problems(data_file: Callable[[str], Path]) -> list[HumanEvalProblem]:
    return load_humaneval(data_file("HumanEval.jsonl.gz"))


async def test_canonical_solutions_pass(problems: list[HumanEvalProblem]) -> None:
    sample = problems[:6] + [p for p in problems if p.task_id == "HumanEval/163"]
    runner = HumanEvalRunner(FAST, concurrency=2)
    report = await runner.evaluate(sample, {p.task_id: p.canonical_solution for p in sample})
    assert report.pass_at_1 == 1.0, [r.detail for r in report.results if not r.passed]
    assert [r.task_id for r in report.results] == [p.task_id for p in sample]
    assert runner.statistics().borrowed_tokens == 0


async def test_wrong_and_missing_completions_fail(problems: list[HumanEvalProblem]) -> None:
    first, second = problems[0], problems[1]
    report = await HumanEvalRunner(FAST).evaluate(
        [first, second], {first.task_id: "    return not True\n"}
    )
    assert report.passed == 0
    assert report.by_status == {"failed": 2}
    assert "AssertionError" in report.results[0].detail
    assert report.results[1].detail == "no completion"


async def test_full_function_answer_in_a_fence_passes(problems: list[HumanEvalProblem]) -> None:
    p = problems[0]
    answer = f"Here you go:\n```python\n{p.prompt}{p.canonical_solution}```\nDone."
    result = await HumanEvalRunner(FAST).check(p, extract_code(answer))
    assert result.passed, result.detail


async def test_infinite_loop_times_out(problems: list[HumanEvalProblem]) -> None:
    result = await HumanEvalRunner(FAST).check(problems[0], "    while True:\n        pass\n")
    assert result.status is ExecutionStatus.TIMEOUT
    assert result.duration_s < FAST.timeout_s + 2


@pytest.mark.parametrize(
    ("source", "event"),
    [
        pytest.param("import os\nos.system('echo hi')\n", "os.system", id="os-system"),
        pytest.param(
            "import subprocess\nsubprocess.run(['echo', 'hi'])\n", "subprocess", id="popen"
        ),
        pytest.param("import os\nos.execv('/bin/echo', ['echo', 'hi'])\n", "os.exec", id="exec"),
        pytest.param("import os\nos.fork()\n", "os.fork", id="fork"),
        pytest.param("import socket\nsocket.socket()\n", "socket", id="socket"),
        pytest.param("import os\nos.kill(os.getppid(), 9)\n", "os.kill", id="kill-parent"),
        pytest.param("import ctypes\n", "ctypes", id="ctypes"),
        pytest.param(
            "import resource\nresource.setrlimit(resource.RLIMIT_AS, (-1, -1))\n",
            "resource",
            id="raise-limits",
        ),
    ],
)
async def test_escapes_are_blocked(source: str, event: str) -> None:
    result = await run_python(source, FAST)
    assert result.status is ExecutionStatus.FAILED
    assert "sandbox:" in result.stderr
    assert event in result.stderr
    assert "hi" not in result.stdout


async def test_os_system_in_a_completion_is_contained(problems: list[HumanEvalProblem]) -> None:
    p = problems[0]
    completion = "    import os\n    os.system('echo hi')\n" + p.canonical_solution
    result = await HumanEvalRunner(FAST).check(p, completion)
    assert result.status is ExecutionStatus.FAILED
    assert "os.system is not allowed" in result.detail


@pytest.mark.parametrize(
    "source",
    [
        pytest.param("x = bytearray(10**10)\n", id="one-big-allocation"),
        pytest.param("xs = []\nwhile True:\n    xs.append(' ' * 10**6)\n", id="growing-list"),
    ],
)
async def test_memory_bomb_is_contained(source: str) -> None:
    limits = SandboxLimits(timeout_s=20.0, memory_bytes=256 << 20)
    result = await run_python(source, limits)
    assert result.status in (ExecutionStatus.FAILED, ExecutionStatus.KILLED)
    assert "MemoryError" in result.stderr or result.status is ExecutionStatus.KILLED
    assert result.duration_s < 20.0


async def test_output_flood_is_capped() -> None:
    result = await run_python("while True:\n    print('x' * 1000)\n", FAST)
    assert result.status is not ExecutionStatus.PASSED
    assert len(result.stdout) <= 4000


async def test_early_exit_zero_is_not_a_pass() -> None:
    result = await run_python("import sys\nsys.exit(0)\n", FAST)
    assert result.status is ExecutionStatus.FAILED
    assert "before the code ran to its end" in result.stderr


async def test_child_gets_fresh_cwd_and_stripped_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EVOLAGENTS_TEST_SECRET", "s3cret")
    source = (
        "import os, sys\n"
        "assert 'EVOLAGENTS_TEST_SECRET' not in os.environ, 'env leaked'\n"
        "files = sorted(os.listdir('.'))\n"
        "assert files == ['.stderr', '.stdout', 'candidate.py'], files\n"
        "assert sys.flags.isolated == 1\n"
    )
    result = await run_python(source, FAST)
    assert result.passed, result.stderr


async def test_network_namespace_has_only_loopback() -> None:
    if network_isolation_prefix() is None:
        pytest.skip("'unshare -n' is not permitted here; only the audit hook blocks sockets")
    source = (
        "lines = open('/proc/net/dev').read().splitlines()[2:]\n"
        "names = [line.split(':')[0].strip() for line in lines]\n"
        "assert names == ['lo'], names\n"
    )
    result = await run_python(source, FAST.model_copy(update={"network": "namespace"}))
    assert result.passed, result.stderr
    assert result.network_isolation == "namespace"


async def test_audit_only_mode_still_blocks_sockets() -> None:
    result = await run_python(
        "import socket\nsocket.create_connection(('127.0.0.1', 9))\n",
        FAST.model_copy(update={"network": "audit"}),
    )
    assert result.network_isolation == "audit"
    assert "sandbox:" in result.stderr


def test_build_program_matches_the_original_harness() -> None:
    p = HumanEvalProblem(
        task_id="t",
        prompt="def f():\n",
        canonical_solution="",
        test="def check(c): pass",
        entry_point="f",
    )
    program = build_program(p, "    return 1\n")
    assert program.startswith("def f():\n    return 1\n")
    assert program.rstrip().endswith("check(f)")


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        pytest.param("```python\ndef f():\n    return 1\n```", "def f():\n    return 1\n", id="py"),
        pytest.param(
            "text\n```\nx = 1\n```\n```py\nimport os\n```", "import os\n", id="prefers-def"
        ),
        pytest.param("    return 1\n", "    return 1\n", id="no-fence"),
    ],
)
def test_extract_code(answer: str, expected: str) -> None:
    assert extract_code(answer) == expected


@pytest.mark.slow
async def test_all_164_canonical_solutions_pass(problems: list[HumanEvalProblem]) -> None:
    report = await HumanEvalRunner(SandboxLimits(timeout_s=20.0), concurrency=2).evaluate(
        problems, {p.task_id: p.canonical_solution for p in problems}
    )
    assert report.n == 164
    assert report.pass_at_1 == 1.0, [r.task_id for r in report.results if not r.passed]
