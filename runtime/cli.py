"""``python -m runtime``: run, validate and inspect topologies.

    python -m runtime CONFIG [--set key=value ...] [--run-dir DIR] [--no-progress]
    python -m runtime run CONFIG ...            (the same, spelled out)
    python -m runtime resume RUN_DIR [--retry-failed] [--set ...]
    python -m runtime validate CONFIG [--set ...]
    python -m runtime agents                    (list agent implementations)
    python -m runtime report RUN_DIR            (re)write RUN_DIR/report.html
    python -m runtime export RUN_DIR [--format F ...] [--sample N] [--min-round K] [--out DIR]
                                     [--drop-near-duplicates] [--drop-contaminated]
    python -m runtime quality RUN_DIR|DATASET [--llm CONFIG_OR_URL] [--benchmark FILE ...] [...]
    python -m runtime screen FILE --out OUT.jsonl [--config CONFIG] [--field ROLE=COLUMN ...]
                                                (the eliminator over a file of evolutions)
    python -m runtime mock-llm [...]            (the mock OpenAI/Anthropic server)
    python -m runtime coordinator CONFIG [--run-dir DIR] [--set ...]   (run.bus.kind = "nats")
    python -m runtime coordinator --resume RUN_DIR [--set ...]
    python -m runtime worker CONFIG [--roles a,b] [--replicas N] [--exit-when-done] [--set ...]

With ``run.bus.kind = "nats"``, ``run``/``resume`` run every agent in this one process over NATS;
``coordinator`` and ``worker`` split them over processes and machines (docs/distributed.md).

Exit codes: 0 success; 1 the run failed, ended with dead letters, or lost rows (more failed than
``run.max_failed_fraction`` allows, or rows left unfinished — e.g. a backend's circuit breaker
stopped the run: ``resume`` continues it); 2 bad config, bad input or bad usage, a failed
preflight, or a run directory held by another process (``run``/``resume``/``export`` lock it);
130 interrupted (Ctrl+C / SIGTERM).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import anyio

from bus.errors import EvolagentsError
from runtime.config import TopologyConfig, load_config
from runtime.errors import ConfigError, InputDataError, PreflightError, RunLockedError

__all__ = ["main"]

SUBCOMMANDS = (
    "run", "resume", "validate", "agents", "mock-llm", "coordinator", "worker", "report", "quality",
    "export", "screen",
)


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

    resume = sub.add_parser("resume", help="complete the remaining work of an earlier run")
    resume.add_argument("run_dir", type=Path)
    resume.add_argument("--retry-failed", action="store_true",
                        help="also retry rows that failed (e.g. LLM retries exhausted)")
    resume.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE", help="override a value of the stored config")
    resume.add_argument("--no-progress", action="store_true")
    resume.add_argument("--log-console", choices=("pretty", "json", "off"))

    validate = sub.add_parser("validate", help="validate a topology config and exit")
    validate.add_argument("config", type=Path)
    validate.add_argument("--set", dest="overrides", action="append", default=[],
                          metavar="KEY=VALUE")

    sub.add_parser("agents", help="list the agent implementations a config can name")

    report = sub.add_parser("report", help="(re)write RUN_DIR/report.html and print its path")
    report.add_argument("run_dir", type=Path)
    report.add_argument("--lineages", type=int, default=3, help="example lineages to show")

    export = sub.add_parser("export", help="(re)export the dataset of a run: other formats, a "
                            "sample, later rounds only — no LLM call")
    export.add_argument("run_dir", type=Path)
    export.add_argument("--format", dest="formats", action="append",
                        choices=("alpaca", "chat", "parquet", "hf"),
                        help="repeat for several (default: the run's run.export.formats)")
    export.add_argument("--sample", type=int, metavar="N", help="a random N of all rows "
                        "(deterministic from the run seed)")
    export.add_argument("--all", action="store_true", help="every row, ignoring the run's sample")
    export.add_argument("--min-round", type=int, metavar="K", help="drop rounds below K")
    export.add_argument("--out", type=Path, help="output directory (default: RUN_DIR)")
    export.add_argument("--name", help="hf: the dataset card's title")
    export.add_argument("--license", help="hf: a Hub license id for the card")
    export.add_argument("--rows-per-shard", type=int, help="hf: rows per Parquet shard")
    export.add_argument("--drop-near-duplicates", action="store_true",
                        help="keep one row per group of near-duplicates found by `quality`")
    export.add_argument("--drop-contaminated", action="store_true",
                        help="leave out rows `quality --benchmark` found sharing n-grams with "
                        "benchmark items")

    quality = sub.add_parser("quality", help="data-quality metrics of a run (difficulty, tags, "
                             "diversity, contamination), stored and added to its report")
    quality.add_argument("run_dir", type=Path, metavar="RUN_DIR_OR_DATASET",
                         help="a run directory, or a dataset file (.jsonl/.json)")
    quality.add_argument("--out", type=Path,
                         help="with a dataset file: where records and report go "
                         "(default: <file stem>.quality/ next to it)")
    quality.add_argument("--llm", metavar="CONFIG_OR_URL",
                         help="judge backend: a TOML file with [llm.judge], or an "
                         "OpenAI-compatible base URL (default: the run's [llm.judge], if any)")
    quality.add_argument("--model", default="judge", help="model name with --llm URL")
    quality.add_argument("--benchmark", dest="benchmarks", action="append", default=[],
                         type=Path, metavar="FILE",
                         help="benchmark question file for the 13-gram contamination check")
    quality.add_argument("--embedder", choices=("auto", "minilm", "hashed"), default="auto")
    quality.add_argument("--threshold", type=float, default=0.9,
                         help="cosine similarity of a near-duplicate pair")
    quality.add_argument("--ngram", type=int, default=13)
    quality.add_argument("--concurrency", type=int, default=8)
    quality.add_argument("--limit", type=int, help="at most N instructions per round")
    quality.add_argument("--templates", type=Path, help="judge template override directory")
    quality.add_argument("--no-progress", action="store_true", help="no progress bars")

    screen = sub.add_parser("screen", help="the eliminator's rules over a file of evolutions "
                            "(parent, evolved[, response]): each row back with its verdict")
    screen.add_argument("file", type=Path, help="JSONL, JSON, CSV, TSV or Parquet")
    screen.add_argument("--out", type=Path, required=True, help="output JSONL (written whole "
                        "at the end, never half)")
    screen.add_argument("--config", type=Path, help="a topology whose eliminator (params and "
                        "LLM) to use (default: the embedded model, the quickstart's rules)")
    screen.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE", help="override a value of --config")
    screen.add_argument("--field", dest="fields", action="append", default=[],
                        metavar="ROLE=COLUMN", help="the column of parent, evolved, response, "
                        "operation or ancestors (default: parent, evolved, response, ...)")
    screen.add_argument("--cache", type=Path, help="response cache (default: OUT.cache.sqlite); "
                        "running again resumes from it")
    screen.add_argument("--no-progress", action="store_true")

    coord = sub.add_parser("coordinator", help="run the coordinator of a topology over NATS "
                           "(store, seeds, pool; workers run the other agents)")
    coord.add_argument("config", type=Path, nargs="?")
    coord.add_argument("--resume", type=Path, metavar="RUN_DIR",
                       help="resume the run in RUN_DIR (its stored config) instead")
    coord.add_argument("--retry-failed", action="store_true", help="with --resume")
    coord.add_argument("--set", dest="overrides", action="append", default=[],
                       metavar="KEY=VALUE")
    coord.add_argument("--run-dir", type=Path)
    coord.add_argument("--no-progress", action="store_true")
    coord.add_argument("--log-console", choices=("pretty", "json", "off"))

    worker = sub.add_parser("worker", help="serve agents of a topology from its NATS stream")
    worker.add_argument("config", type=Path)
    worker.add_argument("--roles", default="",
                        help="comma-separated agent names or roles (default: every agent the "
                        "coordinator does not run)")
    worker.add_argument("--replicas", type=int, default=1,
                        help="worker processes to start (each serves every chosen agent)")
    worker.add_argument("--work-dir", type=Path,
                        help="logs and LLM cache (default: <output_dir>/workers/<host>-<pid>)")
    worker.add_argument("--exit-when-done", action="store_true",
                        help="exit when the coordinator announces the run complete")
    worker.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE")
    worker.add_argument("--log-console", choices=("pretty", "json", "off"))
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
        if args.command == "report":
            return _report(args)
        if args.command == "quality":
            return _quality(args)
        if args.command == "export":
            return _export(args)
        if args.command == "screen":
            return _screen(args)
        if args.command == "resume":
            return _resume(args)
        if args.command == "worker":
            return _worker(args, args_list[1:])
        if args.command == "coordinator" and args.resume is not None:
            return _resume(args, mode="coordinator")
        if args.command == "coordinator" and args.config is None:
            raise ConfigError("coordinator needs CONFIG or --resume RUN_DIR")
        config = load_config(args.config, args.overrides)
        if args.command == "validate":
            print(f"{args.config}: valid ({len(config.agents)} agents, {len(config.llm)} LLM "
                  "backends)")
            return 0
        return _run(config, args, mode="coordinator" if args.command == "coordinator" else "run")
    except (ConfigError, InputDataError, PreflightError, RunLockedError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _list_agents() -> int:
    from agents.registry import available

    for name, cls in available().items():
        doc = (cls.__doc__ or "").strip().splitlines()
        print(f"{name:<28} role={cls.role:<12} {doc[0] if doc else ''}")
    return 0


def _report(args: argparse.Namespace) -> int:
    from runtime.report.build import write_run_report

    try:
        path = write_run_report(args.run_dir, lineage_examples=args.lineages)
    except FileNotFoundError as exc:
        raise ConfigError(str(exc)) from None
    print(path)
    return 0


def _export(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from runtime.curation import exclusions_from_quality
    from runtime.export import ExportSettings, export_dataset, summarize
    from runtime.lock import RunLock
    from runtime.run import RESOLVED_CONFIG
    from runtime.store import STORE_FILE, RunStore

    resolved_path = args.run_dir / RESOLVED_CONFIG
    if not (args.run_dir / STORE_FILE).is_file() or not resolved_path.is_file():
        raise ConfigError(f"{args.run_dir}: not a run directory (no {STORE_FILE} or "
                          f"{RESOLVED_CONFIG})")
    resolved = json.loads(resolved_path.read_text(encoding="utf-8"))
    run = resolved.get("run", {})
    settings = dict(run.get("export", {}))
    if args.formats:
        settings["formats"] = list(dict.fromkeys(args.formats))
    if args.all:
        settings["sample"] = None
    if args.sample is not None:
        settings["sample"] = args.sample
    if args.min_round is not None:
        settings["min_round"] = args.min_round
    card = dict(settings.get("hf", {}))
    for key, value in (("pretty_name", args.name), ("license", args.license),
                       ("rows_per_shard", args.rows_per_shard)):
        if value is not None:
            card[key] = value
    settings["hf"] = card
    try:
        export = ExportSettings.model_validate(settings)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        raise ConfigError(f"export settings: {problems}") from None
    lock = RunLock(args.run_dir, "export")
    lock.acquire()  # never read a store that a run is writing
    store = RunStore(args.run_dir / STORE_FILE)
    try:
        summary = summarize(store)
        exclusions = None
        if args.drop_near_duplicates or args.drop_contaminated:
            exclusions = exclusions_from_quality(
                store, near_duplicates=args.drop_near_duplicates,
                contaminated=args.drop_contaminated,
            )
        try:
            files = export_dataset(store, args.out or args.run_dir, export,
                                   seed=int(run.get("seed", 0)), resolved_config=resolved,
                                   summary=summary, exclusions=exclusions)
        except RuntimeError as exc:  # a missing optional package, named
            raise ConfigError(str(exc)) from None
    finally:
        store.close()
        lock.release()
    for line in exclusions.describe() if exclusions else []:
        print(f"removed: {line}")
    for fmt, path in files.items():
        print(f"{fmt}: {path}")
    return 0


def _screen(args: argparse.Namespace) -> int:
    from agents.llm.errors import LLMError
    from runtime.progress import ProgressDisplay, StageBars
    from runtime.screen import screen_file

    fields: dict[str, str] = {}
    for item in args.fields:
        role, sep, column = item.partition("=")
        if not sep or not role or not column:
            raise ConfigError(f"--field {item!r}: expected ROLE=COLUMN, e.g. parent=original")
        fields[role.strip()] = column.strip()
    config = load_config(args.config, args.overrides) if args.config is not None else None
    with StageBars(enabled=ProgressDisplay.wanted(not args.no_progress)) as bars:
        try:
            result = screen_file(
                args.file,
                args.out,
                config=config,
                fields=fields,
                cache_path=args.cache,
                progress=lambda done, total: bars("screening", done, total),
            )
        except LLMError as exc:
            print(f"error: the judge LLM failed ({exc.kind}): {exc}; {args.out} was not "
                  "written; run the same command again to resume from the cache", file=sys.stderr)
            return 1
    for line in result.lines():
        print(line, file=sys.stderr)
    print(result.out)
    return 0


def _quality(args: argparse.Namespace) -> int:
    from runtime.evaluate import QualityOptions, compute_quality, dataset_items, judge_backend
    from runtime.progress import ProgressDisplay, StageBars
    from runtime.run import RESOLVED_CONFIG

    stored = args.run_dir / RESOLVED_CONFIG
    run_config = json.loads(stored.read_text(encoding="utf-8")) if stored.is_file() else None
    options = QualityOptions(
        judge=judge_backend(args.llm, model=args.model, run_config=run_config),
        benchmarks=tuple(args.benchmarks),
        embedder=args.embedder,
        duplicate_threshold=args.threshold,
        ngram=args.ngram,
        concurrency=args.concurrency,
        limit=args.limit,
        template_dir=args.templates,
    )
    if options.judge is None:
        print("no judge LLM (--llm, or [llm.judge] in the run's config): difficulty and tags "
              "skipped", file=sys.stderr)
    target, items = args.run_dir, None
    if args.run_dir.is_file():
        items = dataset_items(args.run_dir, options.limit)
        target = args.out or args.run_dir.with_name(args.run_dir.stem + ".quality")
    with StageBars(enabled=ProgressDisplay.wanted(not args.no_progress)) as bars:
        result = anyio.run(lambda: compute_quality(target, options, items=items, progress=bars))
    print(f"{result.items} instructions: {', '.join(result.computed) or 'nothing computed'}",
          file=sys.stderr)
    for line in result.lines:
        print(line, file=sys.stderr)
    print(result.report)
    return 0


def _resume(args: argparse.Namespace, mode: str = "run") -> int:
    from runtime.config import apply_overrides, validate_config
    from runtime.run import RESOLVED_CONFIG
    from runtime.store import STORE_FILE

    run_dir: Path = args.resume if mode == "coordinator" else args.run_dir
    stored = run_dir / RESOLVED_CONFIG
    if not (run_dir / STORE_FILE).is_file() or not stored.is_file():
        raise ConfigError(f"no run to resume here (missing {STORE_FILE} or {RESOLVED_CONFIG})",
                          file=run_dir)
    raw = json.loads(stored.read_text(encoding="utf-8"))
    overrides = list(args.overrides)
    if args.retry_failed:
        overrides += [f"agents.{name}.params.retry_failed=true"
                      for name, agent in raw.get("agents", {}).items()
                      if agent.get("impl") == "pool.rounds"]
    config = validate_config(apply_overrides(raw, overrides, file=stored), file=stored)
    _require_unmasked_endpoints(config, stored)
    return _run(config, args, run_dir=run_dir, resuming=True, mode=mode)


def _require_unmasked_endpoints(config: TopologyConfig, stored: Path) -> None:
    """An endpoint URL whose credentials were masked when stored must be given again."""
    from agents.llm.redact import MASK

    for name, backend in config.llm.items():
        if any(MASK in url for url in backend.endpoints):
            raise ConfigError(
                "an endpoint URL held credentials, which are never written to the run "
                f"directory; give it again: --set 'llm.{name}.endpoints=[\"https://...\"]' "
                "(or put the key in an environment variable named by api_key_env)",
                file=stored, key=f"llm.{name}.endpoints",
            )


def _run(
    config: TopologyConfig,
    args: argparse.Namespace,
    *,
    run_dir: Path | None = None,
    resuming: bool = False,
    mode: str = "run",
) -> int:
    from runtime.lock import RunLock
    from runtime.run import new_run_dir
    from runtime.store import STORE_FILE

    if mode == "coordinator":
        from runtime.distributed import require_nats_bus

        require_nats_bus(config, "coordinator")
    if args.log_console:
        log = config.run.log.model_copy(update={"console": args.log_console})
        config = config.model_copy(update={"run": config.run.model_copy(update={"log": log})})
    run_dir = run_dir or getattr(args, "run_dir", None) or new_run_dir(config)
    how = "coordinator --resume" if mode == "coordinator" else "resume"
    if not resuming and (run_dir / STORE_FILE).exists():
        raise ConfigError(
            f"already holds a run; continue it with `python -m runtime {how} {run_dir}`",
            file=run_dir,
        )
    with RunLock(run_dir, "coordinator" if mode == "coordinator" else args.command):
        return _run_locked(config, args, run_dir, resuming, mode, f"python -m runtime {how} "
                           f"{run_dir}")  # fmt: skip


def _run_locked(
    config: TopologyConfig,
    args: argparse.Namespace,
    run_dir: Path,
    resuming: bool,
    mode: str,
    resume_hint: str,
) -> int:
    from runtime.logging import close_logging, configure_logging
    from runtime.run import execute

    config_dir = None if resuming else Path(args.config).resolve().parent
    log = config.run.log
    configure_logging(
        run_dir=run_dir, level=log.level, console=log.console, console_level=log.console_level
    )
    print(f"run directory: {run_dir}", file=sys.stderr)
    show_progress = False if args.no_progress else None
    try:
        if mode == "coordinator" or config.run.bus.kind == "nats":
            from runtime.distributed import nats_bus_factory, run_coordinator

            if mode == "coordinator":
                outcome = anyio.run(lambda: run_coordinator(
                    config, run_dir, show_progress=show_progress, config_dir=config_dir))
            else:  # every agent here, over NATS
                factory = nats_bus_factory(config, monitor=True, client_name="run")
                outcome = anyio.run(lambda: execute(
                    config, run_dir, show_progress=show_progress, config_dir=config_dir,
                    bus_factory=factory))
        else:
            outcome = anyio.run(
                lambda: execute(
                    config,
                    run_dir,
                    show_progress=show_progress,
                    config_dir=config_dir,
                )
            )
    except (ConfigError, InputDataError, PreflightError):
        raise
    except EvolagentsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        close_logging()
    _print_result(outcome.status, outcome.dead_letters, outcome.wall_s, run_dir)
    for error in outcome.errors:
        print(f"error: {error}", file=sys.stderr)
    if outcome.verdict is not None:  # the last lines: which rows were lost, and why
        for line in outcome.verdict.lines(resume_hint):
            print(line, file=sys.stderr)
    return outcome.exit_code


def _worker(args: argparse.Namespace, argv: Sequence[str]) -> int:
    import os
    import socket

    from runtime.distributed import require_nats_bus, run_worker, spawn_workers, worker_agents
    from runtime.logging import close_logging, configure_logging

    if args.replicas < 1:
        raise ConfigError("--replicas must be >= 1")
    config = load_config(args.config, args.overrides)
    require_nats_bus(config, "worker")
    roles = [role.strip() for role in args.roles.split(",") if role.strip()]
    agents = worker_agents(config, roles)
    if args.replicas > 1:
        rest = list(argv)
        if "--replicas" in rest:  # the children get --replicas 1
            index = rest.index("--replicas")
            del rest[index : index + 2]
        rest = [item for item in rest if not item.startswith("--replicas=")]
        return spawn_workers(rest, args.replicas)
    work_dir = args.work_dir or (
        Path(config.run.output_dir) / "workers" / f"{socket.gethostname()}-{os.getpid()}"
    )
    log = config.run.log
    configure_logging(run_dir=work_dir, level=log.level,
                      console=args.log_console or log.console, console_level=log.console_level)
    print(f"worker serving {', '.join(sorted(agents))} (work dir {work_dir})", file=sys.stderr)
    try:
        outcome = anyio.run(lambda: run_worker(config, work_dir, agents,
                                               exit_when_done=args.exit_when_done))
    except EvolagentsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        close_logging()
    print(f"worker {outcome.status} after {outcome.wall_s:.1f}s", file=sys.stderr)
    for error in outcome.errors:
        print(f"error: {error}", file=sys.stderr)
    return outcome.exit_code


def _eval_lines(run_dir: Path) -> list[tuple[str, str]]:
    """The benchmark harness's result lines (records of kind ``eval``), if any."""
    import sqlite3
    from contextlib import closing

    from runtime.store import STORE_FILE

    path = run_dir / STORE_FILE
    if not path.is_file():
        return []
    try:
        with closing(sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)) as db:
            rows = db.execute("SELECT key, payload FROM records WHERE kind = 'eval'").fetchall()
    except sqlite3.Error:
        return []
    return [(key, str(json.loads(payload).get("summary_line", ""))) for key, payload in rows]


def _print_result(status: str, dead_letters: int, wall_s: float, run_dir: Path) -> None:
    from runtime.run import SUMMARY_FILE

    print(f"run {status} in {wall_s:.1f}s, {dead_letters} dead letters", file=sys.stderr)
    summary_path = run_dir / SUMMARY_FILE
    if summary_path.is_file():
        summary = json.loads(summary_path.read_text(encoding="utf-8"))
        rows = ", ".join(f"{n} {status}" for status, n in summary.get("rows", {}).items())
        if rows:
            print(f"rows: {rows}", file=sys.stderr)
        for fmt, name in summary.get("exports", {}).items():
            print(f"dataset ({fmt}): {run_dir / name}", file=sys.stderr)
        report = run_dir / "report.html"
        if report.is_file():
            print(f"report: {report}", file=sys.stderr)
    for key, line in _eval_lines(run_dir):
        print(f"eval {key}: {line}", file=sys.stderr)
    print(f"run directory: {run_dir}", file=sys.stderr)
