"""``python -m runtime``: run, validate and inspect topologies.

    python -m runtime CONFIG [--set key=value ...] [--run-dir DIR] [--no-progress]
    python -m runtime run CONFIG ...            (the same, spelled out)
    python -m runtime validate CONFIG [--set ...]
    python -m runtime agents                    (list agent implementations)
    python -m runtime mock-llm [...]            (the mock OpenAI/Anthropic server)

Exit codes: 0 success; 1 the run failed or ended with dead letters; 2 bad config, bad input or
bad usage; 130 interrupted (Ctrl+C / SIGTERM).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import anyio

from bus.errors import EvolagentsError
from runtime.config import TopologyConfig, load_config
from runtime.errors import ConfigError, InputDataError

__all__ = ["main"]

SUBCOMMANDS = ("run", "validate", "agents", "mock-llm")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m runtime",
        description="evolagents: evolve instruction datasets with a team of agents.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run a topology config")
    run.add_argument("config", type=Path)
    run.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                     help="override a config value (dotted key; value parsed as TOML)")
    run.add_argument("--run-dir", type=Path, help="run directory (default: a new one in "
                     "run.output_dir)")
    run.add_argument("--no-progress", action="store_true", help="no live progress display")
    run.add_argument("--log-console", choices=("pretty", "json", "off"),
                     help="console log format (default from the config)")

    validate = sub.add_parser("validate", help="validate a topology config and exit")
    validate.add_argument("config", type=Path)
    validate.add_argument("--set", dest="overrides", action="append", default=[],
                          metavar="KEY=VALUE")

    sub.add_parser("agents", help="list the agent implementations a config can name")
    mock = sub.add_parser("mock-llm", help="serve the mock OpenAI/Anthropic-compatible LLM",
                          add_help=False)
    mock.add_argument("rest", nargs=argparse.REMAINDER)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list and args_list[0] not in SUBCOMMANDS and not args_list[0].startswith("-"):
        args_list.insert(0, "run")
    if args_list[:1] == ["mock-llm"]:
        from agents.llm.mock.cli import main as mock_main

        return int(mock_main(args_list[1:]))
    args = _parser().parse_args(args_list)
    try:
        if args.command == "agents":
            return _list_agents()
        config = load_config(args.config, args.overrides)
        if args.command == "validate":
            print(f"{args.config}: valid ({len(config.agents)} agents, {len(config.llm)} LLM "
                  "backends)")
            return 0
        return _run(config, args)
    except (ConfigError, InputDataError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _list_agents() -> int:
    from agents.registry import available

    for name, cls in available().items():
        doc = (cls.__doc__ or "").strip().splitlines()
        print(f"{name:<28} role={cls.role:<12} {doc[0] if doc else ''}")
    return 0


def _run(config: TopologyConfig, args: argparse.Namespace) -> int:
    from runtime.logging import close_logging, configure_logging
    from runtime.run import execute, new_run_dir

    if args.log_console:
        log = config.run.log.model_copy(update={"console": args.log_console})
        config = config.model_copy(update={"run": config.run.model_copy(update={"log": log})})
    run_dir: Path = args.run_dir or new_run_dir(config)
    log = config.run.log
    configure_logging(
        run_dir=run_dir, level=log.level, console=log.console, console_level=log.console_level
    )
    print(f"run directory: {run_dir}", file=sys.stderr)
    try:
        outcome = anyio.run(
            lambda: execute(config, run_dir, show_progress=False if args.no_progress else None)
        )
    except (ConfigError, InputDataError):
        raise
    except EvolagentsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        close_logging()
    print(
        f"run {outcome.status}: {outcome.dead_letters} dead letters, "
        f"{outcome.wall_s:.1f}s — {run_dir}",
        file=sys.stderr,
    )
    for error in outcome.errors:
        print(f"error: {error}", file=sys.stderr)
    return outcome.exit_code
