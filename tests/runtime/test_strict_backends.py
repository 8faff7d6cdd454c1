"""Strict `[llm.<name>]` tables: unknown keys in `defaults`/`options` are errors at their line,
credentials are refused where they do not belong and never echoed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from agents.llm.config import BackendConfig
from runtime.config import load_config
from runtime.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]

HEAD = """[run]
name = "strict"

[agents.sink]
impl = "demo.sink"
llm = "main"

"""


def write(tmp_path: Path, llm: str) -> Path:
    path = tmp_path / "topology.toml"
    path.write_text(HEAD + llm, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("llm", "expected"),
    [
        pytest.param(
            '[llm.main]\nbackend = "scripted"\n\n[llm.main.defaults]\ntemprature = 0.1\n',
            r"topology.toml:12: llm.main.defaults.temprature: unknown key \(check its "
            r"spelling; did you mean 'temperature'\?\)",
            id="defaults-table",
        ),
        pytest.param(
            '[llm.main]\nbackend = "scripted"\ndefaults = { top_p = 0.9, max_token = 5 }\n',
            r"topology.toml:10: llm.main.defaults.max_token: unknown key .*'max_tokens'",
            id="defaults-inline",
        ),
        pytest.param(
            '[llm.main]\nbackend = "openai-compatible"\nmodel = "m"\n'
            'endpoints = ["http://h/v1"]\n\n[llm.main.options]\nrepeat_penalty_feild = "x"\n',
            r"topology.toml:14: llm.main.options.repeat_penalty_feild: unknown key .*"
            r"'repeat_penalty_field'",
            id="options-table",
        ),
        pytest.param(
            '[llm.main]\nbackend = "openai"\nmodel = "m"\n'
            'options = { max_tokens_field = "max_output_tokens" }\n',
            r"topology.toml:11: llm.main.options.max_tokens_field: Input should be "
            r"'max_tokens' or 'max_completion_tokens'",
            id="options-bad-value",
        ),
        pytest.param(
            '[llm.main]\nbackend = "scripted"\n'
            'options = { failures = [{ error = "auth", tims = 2 }] }\n',
            r"topology.toml:10: llm.main.options.failures.0.tims: unknown key .*'times'",
            id="options-nested",
        ),
        pytest.param(
            '[llm.main]\nbackend = "anthropic-batch"\nmodel = "m"\noptions = { poll = 5 }\n',
            r"llm.main.options.poll: unknown key .*'poll_s'",
            id="options-batch",
        ),
    ],
)
def test_unknown_keys_in_defaults_and_options_are_errors_at_their_line(
    tmp_path: Path, llm: str, expected: str
) -> None:
    with pytest.raises(ConfigError, match=expected):
        load_config(write(tmp_path, llm))


SECRET = "sk-proj-Abc123Def456Ghi789Jkl012Mno345"


@pytest.mark.parametrize(
    ("llm", "key"),
    [
        pytest.param(
            f'[llm.main]\nbackend = "openai"\nmodel = "m"\noptions = {{ api_key = "{SECRET}" }}\n',
            "llm.main.options.api_key",
            id="api_key",
        ),
        pytest.param(
            f'[llm.main]\nbackend = "vllm"\nmodel = "m"\n\n[llm.main.options.engine_args]\n'
            f'hf_token = "{SECRET}"\n',
            "llm.main.options.engine_args.hf_token",
            id="nested-token",
        ),
        pytest.param(
            f'[llm.main]\nbackend = "scripted"\noptions = {{ default = "{SECRET}" }}\n',
            "llm.main.options.default",
            id="key-shaped-value",
        ),
    ],
)
def test_secrets_in_options_are_refused_without_echoing_them(
    tmp_path: Path, llm: str, key: str
) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, llm))
    message = str(info.value)
    assert f"{key}: looks like a credential (not shown)" in message
    assert "api_key_env" in message
    assert SECRET not in message


def test_options_that_merely_mention_tokens_are_fine() -> None:
    BackendConfig(backend="anthropic", model="m", options={"default_max_tokens": 64})
    BackendConfig(backend="embedded", options={"max_tokens": 64, "model_path": "/m/a.gguf"})
    BackendConfig(backend="openai", model="m", options={"max_tokens_field": "max_tokens"})


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(SECRET, id="openai-key"),
        pytest.param("gsk_" + "aB3dE5fG7hJ9kL1mN3pQ5rS7tU9vW1xY3zA5bC7dE9f", id="underscored-key"),
        pytest.param("MY-KEY", id="not-a-name"),
    ],
)
def test_api_key_env_must_be_a_variable_name_and_a_pasted_key_is_never_echoed(
    tmp_path: Path, value: str
) -> None:
    llm = f'[llm.main]\nbackend = "openai"\nmodel = "m"\napi_key_env = "{value}"\n'
    path = write(tmp_path, llm)
    done = subprocess.run(
        [sys.executable, "-m", "runtime", "validate", str(path)],
        cwd=REPO, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2
    assert "topology.toml:11: llm.main.api_key_env: must be the NAME of an environment" in (
        done.stderr
    )
    assert value not in done.stderr + done.stdout
    with pytest.raises(ValueError, match="NAME of an environment") as info:  # the API neither
        BackendConfig(backend="openai", model="m", api_key_env=value)
    assert value not in str(info.value)


def test_a_variable_name_is_accepted() -> None:
    assert BackendConfig(backend="openai", model="m", api_key_env="OPENAI_API_KEY").api_key_env
