"""Every topology shipped in configs/ validates (implementations, params, LLM references)."""

from __future__ import annotations

from pathlib import Path

import pytest

from runtime.config import load_config

CONFIGS = sorted((Path(__file__).resolve().parents[2] / "configs").glob("*.toml"))


def test_configs_are_shipped() -> None:
    assert len(CONFIGS) >= 8


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_shipped_config_validates(path: Path) -> None:
    config = load_config(path)
    assert any(agent.enabled for agent in config.agents.values())
