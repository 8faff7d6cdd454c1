"""The topology config: a TOML file declaring LLM backends, agents and run settings.

::

    [run]
    name = "demo"
    output_dir = "runs"          # each run gets output_dir/<name>-<timestamp> unless --run-dir
    seed = 1234

    [llm.main]                   # see agents/llm/config.py for every key
    backend = "scripted"

    [agents.source]              # the table name is the agent's unique name
    impl = "demo.source"         # registered name or "package.module:Class"
    concurrency = 1              # handlers at once (1 keeps FIFO order)
    mailbox = 1024               # bounded mailbox size (publishers wait when full)
    llm = "main"                 # or llms = { default = "main", optimizer = "big" }
    params = { count = 100 }     # validated by the implementation's params model

`load_config` parses, applies ``--set dotted.key=value`` overrides, validates the whole tree
(agent params included) and raises `ConfigError` naming the file, the key path, the line when it
can be found, and what was expected. Nothing is written while loading.
"""

from __future__ import annotations

import difflib
import re
import tomllib
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from agents.base import handles_any
from agents.llm.config import BackendConfig
from agents.llm.options import BACKEND_OPTIONS, SecretInOptionsError, check_options
from agents.llm.redact import looks_like_secret
from agents.registry import UnknownImplementationError, resolve
from runtime.errors import ConfigError
from runtime.export import ExportSettings
from runtime.inputs import Container, InputFormat

__all__ = [
    "AgentConfig",
    "BusSettings",
    "InputSpec",
    "LogSettings",
    "RunSettings",
    "TopologyConfig",
    "apply_overrides",
    "load_config",
    "validate_config",
]

_NAME = r"^[A-Za-z][A-Za-z0-9_.-]*$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class InputSpec(_Strict):
    """One input file. ``format = "auto"`` detects it from the extension and content."""

    path: str
    format: InputFormat = "auto"
    container: Container = "auto"
    mapping: dict[str, str] = Field(
        default_factory=dict, description="our field -> the file's field, e.g. instruction=question"
    )
    on_bad_record: Literal["fail", "skip"] = "fail"
    limit: int | None = Field(default=None, ge=1, description="read at most this many records")


class LogSettings(_Strict):
    """Where structured logs go. The run directory always gets a JSON-lines ``run.log``."""

    level: Literal["debug", "info", "warning", "error"] = "info"
    console: Literal["pretty", "json", "off"] = "pretty"
    console_level: Literal["debug", "info", "warning", "error"] = "warning"


class BusSettings(_Strict):
    """``[run.bus]``: which bus carries the messages. See docs/distributed.md.

    ``inprocess`` (the default) runs everything in one process. ``nats`` uses a NATS JetStream
    stream: ``python -m runtime coordinator`` and ``python -m runtime worker`` run the agents in
    separate processes (or machines); plain ``run`` runs them all in one process over NATS.
    """

    kind: Literal["inprocess", "nats"] = "inprocess"
    url: str | list[str] = Field(
        default="nats://127.0.0.1:4222", description="NATS URL, or several for a cluster"
    )
    stream: str | None = Field(
        default=None, pattern=r"^[A-Za-z0-9_-]+$",
        description="JetStream stream of this run; default evolagents-<run.name>",
    )
    ack_wait_s: float = Field(default=30.0, gt=0, description="redelivery after a silent crash")
    max_deliveries: int = Field(default=5, ge=1, description="then the message is dead-lettered")
    max_ack_pending: int = Field(
        default=1024, ge=1, description="messages in flight per agent, over all its replicas"
    )
    max_messages: int = Field(default=100_000, ge=1, description="stream bound: publish waits")
    duplicate_window_s: float = Field(default=600.0, gt=0, description="publish de-duplication")
    replicas: int = Field(default=1, ge=1, le=5, description="stream replicas in a NATS cluster")
    storage: Literal["file", "memory"] = "file"
    publish_timeout_s: float = Field(default=60.0, gt=0, description="broker outage tolerated")
    coordinator_agents: list[str] = Field(
        default_factory=list,
        description="agents (names or roles) the coordinator runs besides those with a main task",
    )
    shared_llm_cache: bool = Field(
        default=True,
        description="every process layers the bucket <stream>-llm-cache under its local LLM "
        "cache, so work redone by another worker repeats no LLM call",
    )

    def stream_for(self, run_name: str) -> str:
        return self.stream or f"evolagents-{run_name}".replace(".", "_")

    def cache_bucket_for(self, run_name: str) -> str:
        """The JetStream key-value bucket of the run's shared LLM cache."""
        return f"{self.stream_for(run_name)}-llm-cache"


class RunSettings(_Strict):
    name: str = Field(default="run", pattern=_NAME)
    output_dir: str = "runs"
    seed: int = 0
    inputs: list[InputSpec] = Field(default_factory=list)
    progress: bool = True
    log: LogSettings = Field(default_factory=LogSettings)
    llm_cache: str | None = Field(
        default=None, description="SQLite response cache path; default: <run_dir>/llm_cache.sqlite"
    )
    stop_grace_s: float = Field(default=30.0, gt=0, description="time allowed for a graceful stop")
    export: ExportSettings = Field(default_factory=ExportSettings)
    message_payloads: bool = Field(
        default=False, description="store every message's full JSON in run.sqlite (large)"
    )
    bus: BusSettings = Field(default_factory=BusSettings)
    max_failed_fraction: float = Field(
        default=0.0, ge=0, le=1,
        description="rows that may fail (of those started) before the run exits 1",
    )  # fmt: skip
    preflight: bool = Field(
        default=False,
        description="one cheap request per HTTP endpoint before any row starts; a backend "
        "fault (unreachable, 401/403, 404) stops the run before anything is written (exit 2)",
    )

    @field_validator("inputs", mode="before")
    @classmethod
    def _paths_as_specs(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [{"path": v} if isinstance(v, str) else v for v in value]
        return value


class AgentConfig(_Strict):
    impl: str
    role: str | None = None
    enabled: bool = True
    concurrency: int = Field(default=1, ge=1)
    mailbox: int = Field(default=1024, ge=1)
    llm: str | None = None
    llms: dict[str, str] = Field(default_factory=dict)
    params: dict[str, Any] = Field(default_factory=dict)

    def llm_bindings(self) -> dict[str, str]:
        """Slot name -> backend name. ``llm = "x"`` is shorthand for ``llms = {default = "x"}``."""
        bindings = dict(self.llms)
        if self.llm is not None:
            bindings.setdefault("default", self.llm)
        return bindings


class TopologyConfig(_Strict):
    run: RunSettings = Field(default_factory=RunSettings)
    llm: dict[str, BackendConfig] = Field(default_factory=dict)
    agents: dict[str, AgentConfig]

    @field_validator("agents")
    @classmethod
    def _agent_names(cls, value: dict[str, AgentConfig]) -> dict[str, AgentConfig]:
        for name in value:
            if not re.match(_NAME, name):
                raise ValueError(f"agent name {name!r} must match {_NAME}")
        if not any(agent.enabled for agent in value.values()):
            raise ValueError("at least one agent must be enabled")
        return value


# -- loading ----------------------------------------------------------------------------------
def load_config(path: Path | str, overrides: Sequence[str] = ()) -> TopologyConfig:
    """Read, override and validate a topology file. Raises ConfigError (never half-loads)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError("file not found", file=path) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read: {exc}", file=path) from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"invalid TOML: {exc}", file=path) from None
    raw = apply_overrides(raw, overrides, file=path)
    return validate_config(raw, file=path, source_text=text)


def apply_overrides(
    raw: Mapping[str, Any], overrides: Sequence[str], *, file: Path | str | None = None
) -> dict[str, Any]:
    """Apply ``dotted.key=value`` overrides; values parse as TOML (``8``, ``true``, ``"x"``,
    ``[1, 2]``, ``{a = 1}``) and fall back to a plain string."""
    result: dict[str, Any] = _deep_copy(raw)
    for item in overrides:
        key, sep, value_text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"--set {item!r}: expected dotted.key=value", file=file)
        try:
            value: Any = tomllib.loads(f"v = {value_text}")["v"]
        except tomllib.TOMLDecodeError:
            value = value_text
        parts = key.split(".")
        node = result
        for depth, part in enumerate(parts[:-1]):
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                where = ".".join(parts[: depth + 1])
                raise ConfigError(f"--set {item!r}: {where} is not a table", file=file, key=key)
            node = child
        node[parts[-1]] = value
    return result


def validate_config(
    raw: Mapping[str, Any], *, file: Path | str | None = None, source_text: str | None = None
) -> TopologyConfig:
    """Validate a parsed config, agent params and LLM references included."""
    _check_backend_options(raw, file, source_text)
    try:
        config = TopologyConfig.model_validate(raw)
    except ValidationError as exc:
        raise _config_error(exc, (), file, source_text) from None
    for name, agent in config.agents.items():
        if not agent.enabled:
            continue
        try:
            cls = resolve(agent.impl)
        except UnknownImplementationError as exc:
            raise _located(str(exc), ("agents", name, "impl"), file, source_text) from None
        try:
            cls.Params.model_validate(agent.params)
        except ValidationError as exc:
            raise _config_error(exc, ("agents", name, "params"), file, source_text) from None
        for slot, backend in agent.llm_bindings().items():
            if backend not in config.llm:
                known = ", ".join(sorted(config.llm)) or "none defined"
                key = ("agents", name, "llm" if slot == "default" and agent.llm else "llms")
                raise _located(
                    f"LLM backend {backend!r} is not defined under [llm] (defined: {known})",
                    key,
                    file,
                    source_text,
                )
    if config.run.bus.kind == "inprocess":  # over NATS the stream holds the messages
        _check_cycles(config, file, source_text)
    return config


def _check_backend_options(
    raw: Mapping[str, Any], file: Path | str | None, source_text: str | None
) -> None:
    """Each ``[llm.<name>.options]`` against its backend's schema (`agents.llm.options`), so
    an unknown key or a credential there is reported at its own line and key path."""
    tables = raw.get("llm")
    if not isinstance(tables, Mapping):
        return
    for name, table in tables.items():
        if not isinstance(table, Mapping) or not isinstance(table.get("options"), Mapping):
            continue
        loc = ("llm", str(name), "options")
        try:
            check_options(str(table.get("backend", "")), table["options"])
        except SecretInOptionsError as exc:
            raise _located(str(exc), (*loc, *exc.path), file, source_text) from None
        except ValidationError as exc:
            raise _config_error(exc, loc, file, source_text) from None


def _check_cycles(
    config: TopologyConfig, file: Path | str | None, source_text: str | None
) -> None:
    """An agent driving messages round loops must keep fewer in flight than the members of its
    tightest loop can hold (Σ mailbox + concurrency); otherwise they can all fill up and hang."""
    enabled = {name: agent for name, agent in config.agents.items() if agent.enabled}
    classes = {name: resolve(agent.impl) for name, agent in enabled.items()}
    for name, agent in enabled.items():
        cycle = classes[name].message_cycle(classes[name].Params.model_validate(agent.params))
        if cycle is None:
            continue
        for kinds in cycle.loops:
            members = [other for other in enabled if handles_any(classes[other], kinds)]
            if len(members) < 2:
                continue  # not a loop in this topology
            capacity = sum(enabled[m].mailbox + enabled[m].concurrency for m in members)
            if cycle.limit >= capacity:
                raise _located(
                    f"{cycle.param} = {cycle.limit} must stay below what the agents on a loop "
                    f"of its messages can hold ({capacity}: mailbox + concurrency of "
                    f"{' + '.join(members)}); raise their `mailbox` or lower {cycle.param} — "
                    "a full loop hangs",
                    ("agents", name, "params", cycle.param),
                    file,
                    source_text,
                )


def _config_error(
    exc: ValidationError, prefix: tuple[str, ...], file: Path | str | None, text: str | None
) -> ConfigError:
    first = exc.errors()[0]
    loc = prefix + tuple(str(part) for part in first["loc"])
    message = first["msg"].removeprefix("Value error, ")
    value = first.get("input")
    shown = not isinstance(value, dict | list) and loc[-1:] != ("api_key_env",) and not (
        isinstance(value, str) and looks_like_secret(value)
    )  # a pasted key is never echoed
    if first["type"] not in ("missing", "extra_forbidden") and "input" in first and shown:
        message = f"{message} (got {value!r})"
    if first["type"] == "extra_forbidden":
        message = f"unknown key (check its spelling{_suggestion(exc, first)})"
    more = len(exc.errors()) - 1
    if more:
        message = f"{message} [and {more} more error{'s' if more > 1 else ''}]"
    return _located(message, loc, file, text)


def _suggestion(exc: ValidationError, error: Any) -> str:
    """``; did you mean 'temperature'?`` for a misspelt key, when a known one is close."""
    models: list[type[BaseModel]] = [TopologyConfig, *BACKEND_OPTIONS.values()]
    roots = {m.__name__: m for m in models}
    node: Any = roots.get(exc.title)
    for part in error["loc"][:-1]:
        node = _step(node, part)
    if not (isinstance(node, type) and issubclass(node, BaseModel)):
        return ""
    close = difflib.get_close_matches(str(error["loc"][-1]), list(node.model_fields), n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def _step(node: Any, part: Any) -> Any:
    """The annotation one key below ``node``: a model's field, a dict's or list's values, the
    model inside an optional."""
    if isinstance(node, type) and issubclass(node, BaseModel):
        field = node.model_fields.get(str(part))
        return field.annotation if field is not None else None
    origin, args = typing.get_origin(node), typing.get_args(node)
    if origin in (dict, list) and args:  # dict[str, V] / list[V]: V
        return args[-1]
    models = [a for a in args if isinstance(a, type) and issubclass(a, BaseModel)]
    return _step(models[0], part) if models else None  # M | None: into M


def _located(
    message: str, loc: tuple[str, ...], file: Path | str | None, text: str | None
) -> ConfigError:
    key = ".".join(loc)
    line = _find_line(text, loc) if text else None
    where = f"{file}:{line}" if line is not None and file is not None else file
    return ConfigError(message, file=where, key=key)


def _find_line(text: str, loc: tuple[str, ...]) -> int | None:
    """Best effort: the line of the deepest part of ``loc`` found under its table header."""
    lines = text.splitlines()
    best: int | None = None
    start = 0
    # Find the longest table header that is a prefix of loc, then the key below it.
    for size in range(len(loc), 0, -1):
        header = re.compile(r"^\s*\[+\s*" + re.escape(".".join(loc[:size])) + r"\s*\]+\s*$")
        for number, line in enumerate(lines):
            if header.match(line):
                best, start = number + 1, number + 1
                rest = loc[size:]
                if rest:
                    key_re = re.compile(r"^\s*" + re.escape(rest[0]) + r"\s*=")
                    for offset, candidate in enumerate(lines[start:]):
                        if candidate.lstrip().startswith("["):
                            break
                        if key_re.match(candidate):
                            return start + offset + 1
                return best
    return best


def _deep_copy(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _deep_copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_deep_copy(v) for v in value]
    return value
