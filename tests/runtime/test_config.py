"""Config loading: every error names the file, the key path and what was expected; exit 2."""

from __future__ import annotations

from pathlib import Path

import pytest

from runtime.cli import main
from runtime.config import load_config
from runtime.errors import ConfigError

GOOD = """
[run]
name = "t"
seed = 3

[agents.source]
impl = "demo.source"
params = { count = 5 }

[agents.sink]
impl = "demo.sink"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "topology.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_valid_config_loads(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, GOOD))
    assert config.run.seed == 3
    assert config.agents["source"].params == {"count": 5}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            GOOD.replace('seed = 3', 'seed = "three"'),
            r"topology.toml:4: run.seed: Input should be a valid integer.*'three'",
            id="wrong-type-with-line",
        ),
        pytest.param(
            GOOD.replace("[agents.sink]", "[agents.sink]\nconcurency = 2"),
            r"topology.toml:11: agents.sink.concurency: unknown key",
            id="unknown-key",
        ),
        pytest.param(
            GOOD.replace("count = 5", "count = -1"),
            r"agents.source.params.count: Input should be greater than or equal to 0",
            id="agent-params-validated-by-impl",
        ),
        pytest.param(
            GOOD.replace('impl = "demo.sink"', 'impl = "demo.snk"'),
            r"agents.sink.impl: no agent implementation named 'demo.snk'; did you mean 'demo.sink'",
            id="unknown-impl-suggests",
        ),
        pytest.param(
            GOOD.replace('impl = "demo.sink"', 'impl = "demo.sink"\nllm = "gpt"'),
            r"agents.sink.llm: LLM backend 'gpt' is not defined under \[llm\]",
            id="undefined-llm",
        ),
        pytest.param(
            GOOD.replace("[run]", "[run\n"),
            r"topology.toml: invalid TOML: .*line 2",
            id="toml-syntax",
        ),
        pytest.param(
            GOOD + '\n[llm.main]\nbackend = "openai-compatible"\nmodel = "m"\n',
            r"llm.main: backend 'openai-compatible' needs at least one URL",
            id="llm-backend-validated",
        ),
    ],
)
def test_config_errors_name_file_key_and_expectation(
    tmp_path: Path, text: str, expected: str
) -> None:
    with pytest.raises(ConfigError, match=expected):
        load_config(write(tmp_path, text))


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nope\.toml: file not found"):
        load_config(tmp_path / "nope.toml")


def test_set_overrides_parse_toml_values(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD)
    config = load_config(
        path,
        [
            "agents.source.params.count=9",
            "agents.sink.concurrency=3",
            "run.name=renamed",
            'run.inputs=["a.jsonl"]',
        ],
    )
    assert config.agents["source"].params["count"] == 9
    assert config.agents["sink"].concurrency == 3
    assert config.run.name == "renamed"
    assert config.run.inputs[0].path == "a.jsonl"


def test_bad_override_is_reported(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD)
    with pytest.raises(ConfigError, match=r"expected dotted\.key=value"):
        load_config(path, ["nonsense"])
    with pytest.raises(ConfigError, match=r"run\.seed: Input should be a valid integer"):
        load_config(path, ["run.seed=abc"])


def test_cli_validate_exits_2_on_error_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    path = write(tmp_path, GOOD.replace("count = 5", "count = 'x'"))
    assert main(["validate", str(path)]) == 2
    assert "agents.source.params.count" in capsys.readouterr().err
    assert main([str(path)]) == 2
    assert not (tmp_path / "runs").exists()
    good = write(tmp_path, GOOD)
    assert main(["validate", str(good)]) == 0


def test_cli_lists_agent_implementations(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["agents"]) == 0
    out = capsys.readouterr().out
    assert "demo.source" in out
    assert "demo.sink" in out
