"""Who runs what: the coordinator takes the agents with a main task, workers the rest or --roles."""

from __future__ import annotations

from pathlib import Path

import pytest

from runtime.cli import main
from runtime.config import TopologyConfig, load_config, validate_config
from runtime.distributed import coordinator_agents, worker_agents
from runtime.errors import ConfigError
from tests.distributed._support import evol_config


@pytest.fixture
def config_path(tmp_path: Path) -> Path:
    return evol_config(tmp_path / "evol.toml", "http://127.0.0.1:9/v1")


def load(path: Path, *overrides: str) -> TopologyConfig:
    return load_config(path, list(overrides))


def test_the_coordinator_runs_the_pool_and_workers_the_rest(config_path: Path) -> None:
    config = load(config_path)
    assert coordinator_agents(config) == {"pool"}
    assert worker_agents(config, None) == {"evol", "respond", "eliminate"}


@pytest.mark.parametrize(
    ("roles", "expected"),
    [
        pytest.param(["evol"], {"evol"}, id="by-name"),
        pytest.param(["responder", "eliminator"], {"respond", "eliminate"}, id="by-role"),
    ],
)
def test_workers_serve_the_agents_named_or_whose_role_is_named(
    config_path: Path, roles: list[str], expected: set[str]
) -> None:
    assert worker_agents(load(config_path), roles) == expected


def test_an_unknown_role_is_a_config_error_listing_the_agents(config_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"matches no enabled agent .*evol \(evol\)"):
        worker_agents(load(config_path), ["evolve"])


def test_a_worker_cannot_take_the_coordinators_agents(config_path: Path) -> None:
    with pytest.raises(ConfigError, match="run in the coordinator"):
        worker_agents(load(config_path), ["pool"])


def test_coordinator_agents_can_be_extended_by_config(config_path: Path) -> None:
    config = load(config_path, 'run.bus.coordinator_agents=["eliminator"]')
    assert coordinator_agents(config) == {"pool", "eliminate"}
    assert worker_agents(config, None) == {"evol", "respond"}


def test_the_bus_defaults_to_in_process_and_a_stream_per_run_name() -> None:
    config = validate_config({"run": {"name": "my.run"}, "agents": {"s": {"impl": "demo.sink"}}})
    assert config.run.bus.kind == "inprocess"
    assert config.run.bus.stream_for(config.run.name) == "evolagents-my_run"


def test_worker_cli_rejects_unknown_roles_with_exit_2(
    config_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    nats = ["--set", 'run.bus.kind="nats"']
    assert main(["worker", str(config_path), *nats, "--roles", "nope"]) == 2
    assert "--roles 'nope' matches no enabled agent" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["coordinator", "worker"])
def test_coordinator_and_worker_need_the_nats_bus(
    config_path: Path, command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([command, str(config_path)]) == 2
    assert "set run.bus.kind = \"nats\"" in capsys.readouterr().err
    assert not (config_path.parent / "runs").exists()  # nothing written
