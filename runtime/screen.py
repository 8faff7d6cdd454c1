"""`python -m runtime screen FILE --out OUT.jsonl`: the eliminator over a file of evolutions.

Cleans an Evol-style dataset with the same rules a run applies. Each input row (JSONL, JSON, CSV,
TSV or Parquet) needs a parent and an evolved instruction, and may carry a response, the
operation and the row's earlier generations (`ancestors`, a list or a JSON list). Every row is
written back, in input order, with three more fields: `verdict` (`accepted` / `rejected`), `rule`
(the first rule that failed, or null) and `reason`.

Contract:
- every row is read and checked (fields present, texts are strings) before any LLM call and
  before OUT is touched; a problem raises `InputDataError` naming the file, line and field;
- OUT is written to a temporary file beside it and renamed at the end: never half-written;
- LLM answers go to a response cache beside OUT (`OUT.cache.sqlite`, or `--cache`): a run that was
  killed or failed is resumed by running the same command again, and pays for no answer twice;
- without `--config`, the judge is the embedded default model (offline) with the quickstart's
  eliminator settings; with one, its `[agents.<eliminator>]` params and LLM backend.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio

from agents.eliminator.agent import EliminatorParams
from agents.eliminator.screener import Screener
from agents.llm.cache import ResponseCache
from agents.llm.config import BackendConfig
from agents.llm.factory import build_client
from agents.llm.usage import UsageRecorder
from agents.pipeline.common import profile_of
from runtime.config import TopologyConfig
from runtime.errors import ConfigError, InputDataError
from runtime.inputs import SeedReader

__all__ = ["DEFAULT_FIELDS", "ScreenResult", "ScreenRow", "read_screen_rows", "screen_file"]

#: Column names looked for when `--field` does not name one (first present wins).
DEFAULT_FIELDS: dict[str, tuple[str, ...]] = {
    "parent": ("parent", "parent_instruction", "original", "seed"),
    "evolved": ("evolved", "evolved_instruction", "instruction", "child"),
    "response": ("response", "output", "answer"),
    "operation": ("operation",),
    "ancestors": ("ancestors",),
}
REQUIRED = ("parent", "evolved")

#: The judge without `--config`: the quickstart's model and eliminator settings.
EMBEDDED_DEFAULT = BackendConfig(
    backend="embedded",
    model="qwen2.5-coder-0.5b",
    concurrency=2,
    timeout_s=300,
    prompt_profile="compact",
)


@dataclass(frozen=True)
class ScreenRow:
    """One input row: its original fields and the texts the rules read."""

    line: int
    record: dict[str, Any]
    parent: str
    evolved: str
    response: str | None = None
    operation: str = ""
    ancestors: tuple[str, ...] = ()


@dataclass
class ScreenResult:
    """What a screen produced: counts by rule (`accepted` included) and LLM usage."""

    out: Path
    rows: int
    by_rule: Counter[str] = field(default_factory=Counter)
    llm_calls: int = 0
    cache_hits: int = 0

    @property
    def accepted(self) -> int:
        return self.by_rule["accepted"]

    def lines(self) -> list[str]:
        """The summary by rule, for stderr."""
        rejected = self.rows - self.accepted
        out = [f"{self.rows} rows: {self.accepted} accepted, {rejected} rejected"]
        for rule, count in sorted(self.by_rule.items(), key=lambda kv: (-kv[1], kv[0])):
            if rule != "accepted":
                out.append(f"  {rule:<26} {count:>6}  ({count / max(self.rows, 1):.1%})")
        out.append(f"LLM calls: {self.llm_calls} ({self.cache_hits} from the cache)")
        return out


# ------------------------------------------------------------------ reading


def _records(path: Path) -> list[tuple[int, Any]]:
    if path.suffix.lower() == ".parquet":
        return _parquet_records(path)
    return list(SeedReader(path).raw_records())


def _parquet_records(path: Path) -> list[tuple[int, Any]]:
    if not path.is_file():
        raise InputDataError("input file not found", file=path)
    try:
        import pyarrow.parquet as pq
    except ModuleNotFoundError:
        raise InputDataError(
            "reading Parquet needs pyarrow: pip install 'evolagents[export]'", file=path
        ) from None
    table = pq.read_table(path)
    return [(index + 1, row) for index, row in enumerate(table.to_pylist())]


def _column(record: Mapping[str, Any], role: str, fields: Mapping[str, str]) -> str | None:
    if role in fields:
        return fields[role]
    return next((name for name in DEFAULT_FIELDS[role] if name in record), None)


def _text(record: Mapping[str, Any], column: str, path: Path, line: int) -> str:
    value = record.get(column)
    if value is None or not isinstance(value, str):
        raise InputDataError("missing or not a string", file=path, line=line, field=column)
    return value


def _ancestors(value: Any, path: Path, line: int, column: str) -> tuple[str, ...]:
    if value in (None, ""):
        return ()
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise InputDataError("not a JSON list", file=path, line=line, field=column) from None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InputDataError("must be a list of strings", file=path, line=line, field=column)
    return tuple(value)


def read_screen_rows(path: Path, fields: Mapping[str, str] | None = None) -> list[ScreenRow]:
    """Every row of `path`, checked. `fields` maps a role (parent, evolved, response, operation,
    ancestors) to a column name. Raises `InputDataError` (file, line, field) on the first problem:
    a required column absent, a text that is not a string, an empty file."""
    fields = dict(fields or {})
    unknown = set(fields) - set(DEFAULT_FIELDS)
    if unknown:
        raise ConfigError(
            f"--field: unknown role(s) {sorted(unknown)}; use {sorted(DEFAULT_FIELDS)}"
        )
    rows: list[ScreenRow] = []
    for line, record in _records(path):
        if not isinstance(record, dict):
            raise InputDataError("expected an object with named fields", file=path, line=line)
        texts: dict[str, str] = {}
        for role in REQUIRED:
            column = _column(record, role, fields)
            if column is None:
                hint = f"--field {role}=COLUMN (looked for {', '.join(DEFAULT_FIELDS[role])})"
                raise InputDataError(f"no {role} column; name it with {hint}", file=path,
                                     line=line, field=role)
            texts[role] = _text(record, column, path, line)
        response_col = _column(record, "response", fields)
        response = record.get(response_col) if response_col else None
        if response is not None and not isinstance(response, str):
            raise InputDataError("not a string", file=path, line=line, field=str(response_col))
        operation_col = _column(record, "operation", fields)
        ancestors_col = _column(record, "ancestors", fields)
        rows.append(
            ScreenRow(
                line=line,
                record=dict(record),
                parent=texts["parent"],
                evolved=texts["evolved"],
                response=response,
                operation=str(record.get(operation_col) or "") if operation_col else "",
                ancestors=_ancestors(record.get(ancestors_col), path, line, ancestors_col or "")
                if ancestors_col
                else (),
            )
        )
    if not rows:
        raise InputDataError("no rows to screen", file=path)
    return rows


# ------------------------------------------------------------------ judging


def judge_setup(config: TopologyConfig | None) -> tuple[EliminatorParams, BackendConfig | None]:
    """The eliminator params and judge backend: the config's eliminator, else the default."""
    if config is None:
        return EliminatorParams(), EMBEDDED_DEFAULT
    for name, agent in config.agents.items():
        if agent.impl.startswith("eliminate.") and agent.enabled:
            try:
                params = EliminatorParams.model_validate(agent.params)
            except ValueError as exc:
                raise ConfigError(f"agents.{name}.params: {exc}") from None
            llm_name = agent.llm_bindings().get("default")
            backend = config.llm.get(llm_name) if llm_name else None
            return params, backend
    raise ConfigError("the config has no eliminator agent (impl = \"eliminate.…\")")


async def _judge_all(
    rows: list[ScreenRow],
    params: EliminatorParams,
    backend: BackendConfig | None,
    cache_path: Path,
    progress: Callable[[int, int], None],
) -> tuple[list[tuple[str, str | None, str]], int, int]:
    gain = params.rules.information_gain
    needs_llm = backend is not None and gain.enabled and gain.use_llm
    cache = ResponseCache(cache_path) if needs_llm else None
    usage = UsageRecorder()
    client = (
        build_client("judge", backend, cache=cache, usage=usage)
        if needs_llm and backend is not None
        else None
    )
    screener = Screener(
        params.rules,
        client,
        profile=profile_of(client, params.profile) if client is not None else "full",
        on_unparseable=params.on_unparseable,
        max_tokens=params.max_tokens,
        caller="screen",
    )
    results: list[tuple[str, str | None, str]] = [("", None, "")] * len(rows)
    done = 0
    limiter = anyio.CapacityLimiter(max(1, backend.concurrency if backend else 1) * 2)

    async def one(index: int, row: ScreenRow) -> None:
        nonlocal done
        async with limiter:
            verdict = await screener.judge_instruction(
                row.evolved, row.parent, ancestors=row.ancestors, operation=row.operation
            )
            if verdict is None and row.response is not None:
                verdict = screener.judge_response(row.response)
        if verdict is None:
            results[index] = ("accepted", None, "passed every enabled rule")
        else:
            results[index] = ("rejected", str(verdict.rule), verdict.reason)
        done += 1
        progress(done, len(rows))

    try:
        async with anyio.create_task_group() as tg:
            for index, row in enumerate(rows):
                tg.start_soon(one, index, row)
    finally:
        if client is not None:
            await client.aclose()
        if cache is not None:
            await cache.aclose()
    total = usage.snapshot().total
    return results, total.calls, total.cache_hits


# ------------------------------------------------------------------ writing


def _write_atomically(out: Path, rows: list[ScreenRow], results: list[tuple[str, str | None, str]]
                      ) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            for row, (verdict, rule, reason) in zip(rows, results, strict=True):
                record = {**row.record, "verdict": verdict, "rule": rule, "reason": reason}
                fh.write(json.dumps(record, ensure_ascii=False, default=str) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def screen_file(
    path: Path,
    out: Path,
    *,
    config: TopologyConfig | None = None,
    fields: Mapping[str, str] | None = None,
    cache_path: Path | None = None,
    progress: Callable[[int, int], None] = lambda done, total: None,
) -> ScreenResult:
    """Screen every row of `path` into `out` (see the module contract). Raises `InputDataError`
    or `ConfigError` before anything is written or paid for; `LLMError` when a judge call failed
    for good (OUT untouched; run again to resume from the cache)."""
    rows = read_screen_rows(path, fields)
    params, backend = judge_setup(config)
    cache_path = cache_path or out.with_name(out.name + ".cache.sqlite")
    results, calls, hits = anyio.run(_judge_all, rows, params, backend, cache_path, progress)
    _write_atomically(out, rows, results)
    result = ScreenResult(out=out, rows=len(rows), llm_calls=calls, cache_hits=hits)
    for verdict, rule, _ in results:
        result.by_rule[rule or verdict] += 1
    return result
