"""An Evol-Instruct topology run as a coordinator + worker processes over NATS gives the dataset of
the single-process run — also when a worker is killed -9, when the coordinator is killed and
resumed, and when the stream leader of a 3-node NATS cluster is killed.

Every process is a real ``python -m runtime`` subprocess against the mock LLM (L = 100 ms, fully
deterministic per request, so equal requests give equal rows). Waits read log lines; no sleeps.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sqlite3
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest

from tests.distributed._support import (
    Processes,
    dataset_lines,
    evol_config,
    nats_overrides,
    require_nats,
    wait_for_event,
)

require_nats()

from bus.nats import NatsBus, NatsServer, free_ports  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

PY = sys.executable
JSON_LOGS = ["--log-console", "json", "--set", 'run.log.console_level="info"']


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory, mock_llm_url: str) -> dict[str, object]:
    """The single-process run (in-process bus) of the same topology."""
    base = tmp_path_factory.mktemp("reference")
    config = evol_config(base / "evol.toml", mock_llm_url)
    run_dir = base / "run"
    before = mock_requests(mock_llm_url)
    done = subprocess.run(
        [PY, "-m", "runtime", str(config), "--run-dir", str(run_dir), "--no-progress",
         "--log-console", "off"],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert done.returncode == 0, done.stderr
    return {
        "lines": dataset_lines(run_dir),
        "counts": message_counts(run_dir),
        "requests": mock_requests(mock_llm_url) - before,  # every call, each made once
    }


def mock_requests(mock_llm_url: str) -> int:
    """Requests the mock LLM server received so far (its `/mock/stats` counter)."""
    url = mock_llm_url.removesuffix("/v1") + "/mock/stats"
    with urllib.request.urlopen(url, timeout=10) as reply:
        return int(json.loads(reply.read())["requests"])


def message_counts(run_dir: Path) -> dict[str, int]:
    """Messages of each pipeline kind in the run store (a duplicate would show up here)."""
    with sqlite3.connect(run_dir / "run.sqlite") as db:
        rows = db.execute("SELECT kind, COUNT(*) FROM messages GROUP BY kind").fetchall()
    return {kind: count for kind, count in rows if kind.startswith("evol.")}


def rows_by_status(run_dir: Path) -> dict[str, int]:
    summary = json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))
    return dict(summary["rows"])


def start_worker(
    processes: Processes, config: Path, overrides: list[str], log: Path, replicas: int = 1
) -> subprocess.Popen[str]:
    work_dir = [] if replicas > 1 else ["--work-dir", str(log.parent / log.stem)]
    return processes.start(
        [PY, "-m", "runtime", "worker", str(config), *overrides, "--exit-when-done", *JSON_LOGS,
         "--replicas", str(replicas), *work_dir],
        log=log,
    )


def start_coordinator(
    processes: Processes, args: list[str], overrides: list[str]
) -> subprocess.Popen[str]:
    return processes.start(
        [PY, "-m", "runtime", "coordinator", *args, *overrides, "--no-progress", *JSON_LOGS],
        stderr=subprocess.PIPE,
    )


def finish(process: subprocess.Popen[str], timeout: float = 120) -> str:
    _, err = process.communicate(timeout=timeout)
    assert process.returncode == 0, err[-4000:]
    return err


def worker_reports(log: Path) -> list[dict[str, Any]]:
    """The ``worker_finished`` events of the worker processes that logged to ``log``."""
    reports = [
        json.loads(line)
        for line in log.read_text(encoding="utf-8").splitlines()
        if line.startswith("{") and json.loads(line).get("event") == "worker_finished"
    ]
    assert reports, f"no worker_finished in {log}:\n{log.read_text()[-3000:]}"
    return reports


def test_workers_in_separate_processes_produce_the_single_process_dataset(
    tmp_path: Path, nats_server: NatsServer, mock_llm_url: str, processes: Processes,
    reference: dict[str, object],
) -> None:
    config = evol_config(tmp_path / "evol.toml", mock_llm_url)
    overrides = nats_overrides(nats_server.url)
    log = tmp_path / "workers.log"
    workers = start_worker(processes, config, overrides, log, replicas=2)  # 2 processes
    run_dir = tmp_path / "run"
    coordinator = start_coordinator(processes, [str(config), "--run-dir", str(run_dir)],
                                    overrides)
    finish(coordinator)
    assert workers.wait(timeout=60) == 0  # the coordinator's `done` stops both
    assert dataset_lines(run_dir) == reference["lines"]
    assert message_counts(run_dir) == reference["counts"]
    assert rows_by_status(run_dir) == {"done": 30}
    reports = worker_reports(log)
    assert len(reports) == 2
    assert all(sum(report["delivered"].values()) > 0 for report in reports)  # both worked


def test_a_killed_worker_loses_nothing_and_duplicates_nothing(
    tmp_path: Path, nats_server: NatsServer, mock_llm_url: str, processes: Processes,
    reference: dict[str, object],
) -> None:
    config = evol_config(tmp_path / "evol.toml", mock_llm_url)
    overrides = nats_overrides(nats_server.url, ack_wait_s=2.0)
    before = mock_requests(mock_llm_url)
    doomed = start_worker(processes, config, overrides, tmp_path / "doomed.log")
    survivor = start_worker(processes, config, overrides, tmp_path / "survivor.log")
    run_dir = tmp_path / "run"
    coordinator = start_coordinator(processes, [str(config), "--run-dir", str(run_dir)],
                                    overrides)
    wait_for_event(coordinator, "row_finished")  # the pipeline is full of messages in flight
    doomed.send_signal(signal.SIGKILL)
    doomed.wait(timeout=10)
    finish(coordinator)
    assert survivor.wait(timeout=60) == 0
    assert dataset_lines(run_dir) == reference["lines"]
    assert message_counts(run_dir) == reference["counts"]  # no step published twice
    assert rows_by_status(run_dir) == {"done": 30}
    [survivor_report] = worker_reports(tmp_path / "survivor.log")
    assert survivor_report["broker"]["redelivered"] > 0  # what the dead one held
    # paid twice: only the calls the dead worker had in flight, unanswered (at most its 3 agents
    # x 8 handlers); what it had answered, the survivor got from the shared cache
    repeats = mock_requests(mock_llm_url) - before - cast(int, reference["requests"])
    assert 0 <= repeats <= 3 * 8


def test_a_restarted_coordinator_resumes_the_run(
    tmp_path: Path, nats_server: NatsServer, mock_llm_url: str, processes: Processes,
    reference: dict[str, object],
) -> None:
    config = evol_config(tmp_path / "evol.toml", mock_llm_url)
    overrides = nats_overrides(nats_server.url, ack_wait_s=2.0)
    before = mock_requests(mock_llm_url)
    workers = [
        start_worker(processes, config, overrides, tmp_path / f"worker{i}.log") for i in range(2)
    ]
    run_dir = tmp_path / "run"
    first = start_coordinator(processes, [str(config), "--run-dir", str(run_dir)], overrides)
    wait_for_event(first, "row_finished")
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=10)
    second = start_coordinator(processes, ["--resume", str(run_dir)], [])
    finish(second)
    for worker in workers:
        assert worker.wait(timeout=60) == 0
    assert dataset_lines(run_dir) == reference["lines"]
    assert rows_by_status(run_dir) == {"done": 30}
    with sqlite3.connect(run_dir / "run.sqlite") as db:
        attempts = db.execute("SELECT COUNT(*) FROM attempts").fetchone()[0]
        steps = db.execute("SELECT COUNT(*), COUNT(DISTINCT step_id) FROM steps").fetchone()
    assert attempts == 2
    assert steps[0] == steps[1]
    # the resumed coordinator restarts its active rows; whichever worker redoes a step finds the
    # answers in the shared cache: not one LLM call is paid twice (16-32 were without it)
    assert mock_requests(mock_llm_url) - before == reference["requests"]
    caches = [worker_reports(tmp_path / f"worker{i}.log")[0]["llm_cache"] for i in range(2)]
    # the redone steps were answered from a cache: the other worker's (shared) or, when the
    # same worker redoes its own step, its local one — which worker gets it is up to the broker
    assert sum(cache["hits"] for cache in caches) > 0
    assert sum(cache["shared_errors"] for cache in caches) == 0


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[list[NatsServer]]:
    """Three JetStream nodes routed to each other (route ports from free_ports)."""
    ports = free_ports(3)
    routes = [f"nats://127.0.0.1:{port}" for port in ports]
    nodes: list[NatsServer] = []
    try:
        for index, port in enumerate(ports):
            node = NatsServer(tmp_path / f"node{index}", name=f"node{index}", cluster="evol",
                              cluster_port=port, routes=routes)
            nodes.append(node.start())
        yield nodes
    finally:
        for node in nodes:
            node.kill()


async def stream_leader(urls: list[str], stream: str) -> str:
    async with NatsBus(urls, stream=stream, replicas=3, publish_timeout_s=30) as bus:
        js = bus._js
        assert js is not None
        info = await js.stream_info(stream)
        assert info.cluster is not None
        assert info.cluster.leader is not None
        return str(info.cluster.leader)


def test_the_run_completes_when_the_stream_leader_of_a_cluster_dies(
    tmp_path: Path, cluster: list[NatsServer], mock_llm_url: str, processes: Processes,
    reference: dict[str, object],
) -> None:
    urls = [node.url for node in cluster]
    config = evol_config(tmp_path / "evol.toml", mock_llm_url)
    overrides = nats_overrides(urls, replicas=3)
    workers = [
        start_worker(processes, config, overrides, tmp_path / f"worker{i}.log") for i in range(2)
    ]
    run_dir = tmp_path / "run"
    coordinator = start_coordinator(processes, [str(config), "--run-dir", str(run_dir)],
                                    overrides)
    wait_for_event(coordinator, "row_finished")
    leader = asyncio.run(stream_leader(urls, "evoltest"))
    victim = next(node for node in cluster if node.name == leader)
    victim.kill()
    finish(coordinator, timeout=150)
    for worker in workers:
        assert worker.wait(timeout=60) == 0
    assert dataset_lines(run_dir) == reference["lines"]
    assert rows_by_status(run_dir) == {"done": 30}


def test_a_worker_stops_gracefully_on_sigterm(
    tmp_path: Path, nats_server: NatsServer, mock_llm_url: str, processes: Processes
) -> None:
    config = evol_config(tmp_path / "evol.toml", mock_llm_url)
    worker = processes.start(
        [PY, "-m", "runtime", "worker", str(config), *nats_overrides(nats_server.url),
         *JSON_LOGS, "--work-dir", str(tmp_path / "worker")],
        stderr=subprocess.PIPE,
    )
    wait_for_event(worker, "worker_serving")
    worker.send_signal(signal.SIGTERM)
    _, err = worker.communicate(timeout=60)
    assert worker.returncode == 130, err[-3000:]
    finished = [json.loads(line) for line in err.splitlines()
                if line.startswith("{") and '"worker_finished"' in line]
    assert [event["status"] for event in finished] == ["interrupted"]
