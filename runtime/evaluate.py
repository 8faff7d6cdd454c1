"""Data-quality metrics of a run or a dataset: ``python -m runtime quality RUN_DIR|FILE ...``.

A dataset file (an export, or any Alpaca/chat JSONL) is measured the same way; its records,
cache and report go to ``--out`` (default ``<file stem>.quality/`` next to it).

`compute_quality` reads the run's accepted steps (every round, seeds included), computes

- **difficulty** 1-10 per instruction with the judge LLM (`difficulty` template),
- **InsTag-style tags** per instruction with the judge LLM (`tags` template) — complexity (tags
  per instruction) and diversity (distinct tags) by round,
- **near-duplicates and diversity** with an offline embedder (MiniLM when installed, else the
  hashed n-gram embedder),
- **13-gram contamination** against benchmark question files,

stores each as a ``records`` row of kind ``quality`` (keys ``difficulty``, ``tags``,
``diversity``, ``contamination``; a part not computed this time keeps its earlier record), stores
the judge's LLM usage as a ``usage`` record (key ``quality-<time>``) and re-renders
``report.html``. LLM calls go through the run's response cache (``llm_cache.sqlite``), so running
it again costs nothing. The LLM parts are skipped when no judge backend is given.

The judge backend: ``--llm FILE.toml`` (its ``[llm.judge]`` table, or its only ``[llm.*]``
table), ``--llm URL`` (an ``openai-compatible`` server; ``--model`` names the model), or, with
no ``--llm``, the run's own ``[llm.judge]`` when its config has one.
"""

from __future__ import annotations

import json
import time
import tomllib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import anyio
import structlog

from agents.evol.operations import compose_instruction
from agents.judge.calls import rate_difficulty, tag_instruction
from agents.judge.metrics.contamination import ContaminationIndex, load_benchmark_items
from agents.judge.metrics.difficulty import DifficultyRecord
from agents.judge.metrics.embeddings import (
    Embedder,
    diversity,
    load_embedder,
    near_duplicates,
)
from agents.judge.metrics.tags import Tag
from agents.judge.templates import load_templates
from agents.judge.verdicts import Unparseable
from agents.llm.cache import ResponseCache
from agents.llm.config import BackendConfig
from agents.llm.errors import LLMError
from agents.llm.factory import build_client
from agents.llm.types import LLMClient
from agents.llm.usage import UsageRecorder
from runtime.errors import ConfigError, InputDataError
from runtime.report.build import write_run_report
from runtime.store import STORE_FILE, RunStore

__all__ = [
    "QualityOptions",
    "QualityResult",
    "StageProgress",
    "compute_quality",
    "dataset_items",
    "judge_backend",
]

_log = structlog.get_logger("runtime.quality")
JUDGE_CALLER = "quality.judge"


StageProgress = Callable[[str, int, int], None]
"""``(stage, done, total)``: how far `compute_quality` is in a stage (``judge``,
``near-duplicates``, ``clusters``). Called from the event loop's thread; must not block."""


@dataclass(frozen=True)
class QualityOptions:
    """What `compute_quality` computes. ``judge`` None skips the two LLM metrics."""

    judge: BackendConfig | None = None
    benchmarks: Sequence[Path] = ()
    embedder: Literal["auto", "minilm", "hashed"] = "auto"
    duplicate_threshold: float = 0.9
    ngram: int = 13
    concurrency: int = 8
    limit: int | None = None  # at most this many instructions per round
    template_dir: Path | None = None


@dataclass
class QualityResult:
    """What was computed, for the CLI's summary lines."""

    items: int = 0
    computed: list[str] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)
    report: Path | None = None


def judge_backend(
    spec: str | None, *, model: str = "judge", run_config: dict[str, Any] | None = None
) -> BackendConfig | None:
    """The judge `BackendConfig` from ``--llm`` (see the module docstring). Raises ConfigError."""
    if spec is None:
        llms = (run_config or {}).get("llm", {})
        judge = llms.get("judge") if isinstance(llms, dict) else None
        return BackendConfig.model_validate(judge) if isinstance(judge, dict) else None
    if spec.startswith(("http://", "https://")):
        return BackendConfig(backend="openai-compatible", model=model, endpoints=[spec])
    path = Path(spec)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read the judge config: {exc}", file=path) from None
    llms = raw.get("llm", {})
    if not isinstance(llms, dict) or not llms:
        raise ConfigError("needs an [llm.judge] table", file=path)
    if "judge" in llms:
        table = llms["judge"]
    elif len(llms) == 1:
        table = next(iter(llms.values()))
    else:
        raise ConfigError(
            f"several [llm.*] tables ({', '.join(sorted(llms))}); name one [llm.judge]", file=path
        )
    try:
        return BackendConfig.model_validate(table)
    except ValueError as exc:
        raise ConfigError(f"[llm.judge]: {exc}", file=path) from None


class _MemoEmbedder:
    """Embeds each distinct text once (diversity and near-duplicates embed the same texts)."""

    def __init__(self, inner: Embedder) -> None:
        self.inner = inner
        self.name = inner.name
        self._vectors: dict[str, list[float]] = {}
        self._matrix: tuple[tuple[str, ...], Any] | None = None

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        missing = list(dict.fromkeys(t for t in texts if t not in self._vectors))
        if missing:
            self._vectors.update(zip(missing, self.inner.embed(missing), strict=True))
        return [self._vectors[t] for t in texts]

    def embed_array(self, texts: Sequence[str]) -> Any:
        """The inner embedder's matrix for ``texts``, computed once per list of texts (the
        metrics ask twice for the same list)."""
        key = tuple(texts)
        if self._matrix is None or self._matrix[0] != key:
            inner = getattr(self.inner, "embed_array", None)
            matrix = inner(texts) if inner is not None else self.inner.embed(texts)
            self._matrix = (key, matrix)
        return self._matrix[1]


def _accepted(store: RunStore, limit: int | None) -> list[tuple[str, int, str]]:
    rows = store.query(
        "SELECT s.step_id, s.round, s.instruction, s.input FROM steps s "
        "JOIN seeds d ON d.seed_id = s.seed_id WHERE s.status = 'accepted' "
        "ORDER BY s.round, d.position"
    )
    items: list[tuple[str, int, str]] = []
    per_round: dict[int, int] = {}
    for r in rows:
        rnd = int(r["round"])
        if limit is not None and per_round.get(rnd, 0) >= limit:
            continue
        per_round[rnd] = per_round.get(rnd, 0) + 1
        text = compose_instruction(r["instruction"], r["input"] or "")
        items.append((str(r["step_id"]), rnd, text))
    return items


def _stage(progress: StageProgress | None, stage: str) -> Callable[[int, int], None] | None:
    if progress is None:
        return None
    return lambda done, total: progress(stage, done, total)


async def _judge_items(
    client: LLMClient,
    items: list[tuple[str, int, str]],
    options: QualityOptions,
    progress: StageProgress | None = None,
) -> tuple[list[DifficultyRecord], list[dict[str, Any]], int]:
    templates = load_templates(options.template_dir)
    difficulty_t, tags_t = templates["difficulty"], templates["tags"]
    limiter = anyio.CapacityLimiter(options.concurrency)
    scores: list[DifficultyRecord | None] = [None] * len(items)
    tagged: list[dict[str, Any] | None] = [None] * len(items)
    errors = 0
    finished = 0

    def advance() -> None:
        nonlocal finished
        finished += 1
        if progress is not None:
            progress("judge", finished, len(items))

    async def one(index: int, item_id: str, rnd: int, text: str) -> None:
        nonlocal errors
        async with limiter:
            try:
                score = await rate_difficulty(client, difficulty_t, text, caller=JUDGE_CALLER)
                tags: list[Tag] | Unparseable = await tag_instruction(
                    client, tags_t, text, caller=JUDGE_CALLER
                )
            except LLMError as exc:  # failed after its retries: count it, keep going
                errors += 1
                _log.warning("quality_judge_failed", item_id=item_id, error=str(exc))
                advance()
                return
        advance()
        scores[index] = DifficultyRecord(item_id=item_id, round=rnd, score=score)
        tagged[index] = {
            "item_id": item_id,
            "round": rnd,
            "tags": (
                tags.model_dump(mode="json")
                if isinstance(tags, Unparseable)
                else [t.model_dump(mode="json") for t in tags]
            ),
        }

    async with anyio.create_task_group() as tg:
        for index, (item_id, rnd, text) in enumerate(items):
            tg.start_soon(one, index, item_id, rnd, text)
    return (
        [s for s in scores if s is not None],
        [t for t in tagged if t is not None],
        errors,
    )


def dataset_items(path: Path, limit: int | None = None) -> list[tuple[str, int, str]]:
    """``(item id, round, instruction text)`` of a dataset file: our exports (Alpaca or chat,
    with the ``round`` and ``step_id`` lineage columns), any Alpaca-style ``.jsonl``/``.json``
    (``instruction`` + ``input``), or chat records (the first user message). Records without a
    round count as round 0; ``limit`` applies per round. Raises InputDataError when a record has
    no instruction or the file is not JSON."""
    try:
        text = path.read_text(encoding="utf-8")
        is_list = path.suffix == ".json"
        records = (
            json.loads(text)
            if is_list
            else [json.loads(line) for line in text.splitlines() if line.strip()]
        )
    except (OSError, ValueError) as exc:
        raise InputDataError(f"cannot read the dataset: {exc}", file=path) from None
    items: list[tuple[str, int, str]] = []
    per_round: dict[int, int] = {}
    for index, rec in enumerate(records if isinstance(records, list) else []):
        body: str | None = None
        if isinstance(rec, dict) and isinstance(rec.get("instruction"), str):
            body = compose_instruction(rec["instruction"], str(rec.get("input") or ""))
        elif isinstance(rec, dict) and isinstance(rec.get("messages"), list):
            body = next(
                (
                    str(m.get("content", ""))
                    for m in rec["messages"]
                    if isinstance(m, dict) and m.get("role") == "user"
                ),
                None,
            )
        if body is None:
            raise InputDataError(
                f"record {index + 1} has no instruction or user message", file=path
            )
        rnd = int(rec.get("round") or 0)
        if limit is not None and per_round.get(rnd, 0) >= limit:
            continue
        per_round[rnd] = per_round.get(rnd, 0) + 1
        items.append((str(rec.get("step_id") or f"row-{index + 1}"), rnd, body))
    return items


async def compute_quality(
    run_dir: Path,
    options: QualityOptions,
    *,
    items: list[tuple[str, int, str]] | None = None,
    progress: StageProgress | None = None,
) -> QualityResult:
    """Compute, store and report the metrics of ``run_dir`` (see the module docstring).

    With ``items`` (e.g. `dataset_items` of a dataset file) those are measured instead of the
    run's accepted steps, and ``run_dir`` (created if needed) only receives the records, the
    cache and the report. Raises ConfigError when ``run_dir`` is not a run (and no items are
    given) or a benchmark file is missing; an LLM call that fails after its retries only drops
    that item (counted in the result's lines).
    """
    if items is None and not (run_dir / STORE_FILE).is_file():
        raise ConfigError(f"not a run directory (no {STORE_FILE})", file=run_dir)
    for bench in options.benchmarks:
        if not bench.is_file():
            raise ConfigError("benchmark file not found", file=bench)
    result = QualityResult()
    store = RunStore(run_dir / STORE_FILE)
    try:
        if items is None:
            items = _accepted(store, options.limit)
        result.items = len(items)
        texts = [text for _, _, text in items]
        if options.judge is not None and items:
            usage = UsageRecorder()
            cache = ResponseCache(run_dir / "llm_cache.sqlite") if options.judge.cache else None
            client = build_client("judge", options.judge, cache=cache, usage=usage)
            try:
                difficulty, tags, errors = await _judge_items(client, items, options, progress)
            finally:
                await client.aclose()
                if cache is not None:
                    cache.close()
            store.put_record(
                "quality",
                "difficulty",
                {
                    "template": "difficulty",
                    "records": [d.model_dump(mode="json") for d in difficulty],
                },
            )
            store.put_record("quality", "tags", {"template": "tags", "records": tags})
            store.put_record(
                "usage", f"quality-{int(time.time())}", usage.snapshot().model_dump(mode="json")
            )
            result.computed += ["difficulty", "tags"]
            parsed = [d.score for d in difficulty if not isinstance(d.score, Unparseable)]
            mean = f"{sum(parsed) / len(parsed):.2f}" if parsed else "-"
            result.lines.append(
                f"difficulty: {len(parsed)} rated, {len(difficulty) - len(parsed)} unparseable, "
                f"{errors} failed calls, mean {mean}"
            )
        if texts:
            embedder = _MemoEmbedder(load_embedder(options.embedder))
            report = diversity(texts, embedder, progress=_stage(progress, "clusters"))
            pairs = near_duplicates(
                texts,
                embedder,
                threshold=options.duplicate_threshold,
                progress=_stage(progress, "near-duplicates"),
            )
            store.put_record(
                "quality",
                "diversity",
                {
                    "report": report.model_dump(mode="json"),
                    "threshold": options.duplicate_threshold,
                    "near_duplicates": [
                        {"a": items[p.i][0], "b": items[p.j][0], "similarity": p.similarity}
                        for p in pairs
                    ],
                },
            )
            result.computed.append("diversity")
            result.lines.append(
                f"diversity ({report.embedder}): mean distance "
                f"{report.mean_pairwise_distance or 0:.3f}, {report.clusters} clusters, "
                f"{len(pairs)} near-duplicate pairs"
            )
        if options.benchmarks:
            bench_items = [i for path in options.benchmarks for i in load_benchmark_items(path)]
            index = ContaminationIndex(bench_items, n=options.ngram)
            contamination = index.check((item_id, text) for item_id, _, text in items)
            store.put_record("quality", "contamination", contamination.model_dump(mode="json"))
            result.computed.append("contamination")
            result.lines.append(
                f"contamination ({options.ngram}-gram): {contamination.contaminated} of "
                f"{contamination.checked} texts overlap {len(bench_items)} benchmark items"
            )
        store.flush()
    finally:
        store.close()
    result.report = write_run_report(run_dir)
    return result
