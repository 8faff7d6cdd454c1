"""Build `ReportData` from a run directory, and write its ``report.html``.

Reads only: ``run.sqlite`` (opened read-only, so it works on a finished run, on a run another
process still writes, and inside ``_finish`` after the store flushed), ``summary.json`` and
``config.resolved.json`` when present. Every section is derived from what the store holds:

| section | source |
|---|---|
| summary | ``attempts`` (start, wall time, status, dead letters), ``seeds``, ``steps``, config |
| rows per round | ``steps`` by round and status (failed steps are listed in the summary) |
| elimination reasons | rejected ``steps`` per ``rule`` |
| tokens and cost | ``records`` kind ``usage`` (a `UsageSnapshot` per attempt and per `quality`
  pass), summed per caller |
| calls over time | timestamps of messages produced after an LLM call (`LLM_RESULT_KINDS`) give
  the shape, scaled so that its integral equals the run's calls (usage, cache hits included) |
| lineages | `lineage_examples` seeds with the most rounds (one with a rejection if any) |
| difficulty, quality | ``records`` kind ``quality`` (written by ``python -m runtime quality``) |
| λ | ``records`` kind ``autoevol`` (Auto Evol-Instruct), when present |
| judge tables | ``records`` kind ``eval`` (the benchmark harness) |

Missing pieces make a section empty (the page then says so in one line); a malformed record is
skipped with a warning, never an exception: a report must not fail because one record is odd.
"""

from __future__ import annotations

import json
import math
import sqlite3
from collections import Counter, defaultdict
from collections.abc import Iterator
from contextlib import closing, contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import structlog
from pydantic import ValidationError

from agents.judge.aggregate import CategoryStats
from agents.judge.metrics.contamination import ContaminationReport
from agents.judge.metrics.difficulty import DifficultyRecord, aggregate_difficulty
from agents.judge.metrics.embeddings import DiversityReport
from agents.judge.metrics.tags import Tag, TagMetrics, tag_metrics_by_round
from agents.judge.verdicts import Unparseable
from agents.llm.usage import UsageSnapshot
from runtime.report.model import (
    AgentUsage,
    JudgeTable,
    LambdaPoint,
    Lineage,
    LineageStep,
    QualitySummary,
    RatePoint,
    ReportData,
    RoundRows,
    RunSummary,
    call_rate_series,
)
from runtime.report.render import write_report

__all__ = [
    "LLM_RESULT_KINDS",
    "REPORT_FILE",
    "build_report_data",
    "write_run_report",
]

REPORT_FILE = "report.html"

#: Message kinds that mark one LLM call: published right after it (pipeline, eval) or as the
#: request for it (Auto Evol's request/reply replies are not observed). Their timestamps give the
#: shape of the calls/s curve; ``evol.*`` messages without a cause (the pool's round-0 steps)
#: are not counted.
LLM_RESULT_KINDS: frozenset[str] = frozenset(
    {
        "evol.evolved",
        "evol.screened",
        "evol.answered",
        "evol.accepted",
        "evol.rejected",
        "eval.answer",
        "eval.judged",
        "autoevol.evolve_once",
        "autoevol.answer_once",
        "autoevol.analyze",
    }
)

_log = structlog.get_logger("runtime.report")
_TARGET_BINS = 60


@contextmanager
def _read_only(path: Path) -> Iterator[sqlite3.Connection]:
    with closing(sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)) as db:
        db.row_factory = sqlite3.Row
        yield db


def _json_file(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _records(db: sqlite3.Connection, kind: str) -> list[tuple[str, Any]]:
    rows = db.execute(
        "SELECT key, payload FROM records WHERE kind = ? ORDER BY rowid", (kind,)
    ).fetchall()
    out: list[tuple[str, Any]] = []
    for row in rows:
        try:
            out.append((str(row["key"]), json.loads(row["payload"])))
        except ValueError:
            _log.warning("report_record_unreadable", kind=kind, key=row["key"])
    return out


def _parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None


# -- sections ---------------------------------------------------------------------------------


def _summary(
    db: sqlite3.Connection, run_dir: Path, config: dict[str, Any], summary: dict[str, Any]
) -> RunSummary:
    attempts = db.execute("SELECT * FROM attempts ORDER BY attempt").fetchall()
    started = _parse_time(attempts[0]["started_at"]) if attempts else None
    wall = sum(float(a["wall_s"] or 0.0) for a in attempts) if attempts else None
    last = attempts[-1] if attempts else None
    status = "no run recorded" if last is None else (last["status"] or "unfinished")
    dead = int(db.execute("SELECT COUNT(*) FROM dead_letters").fetchone()[0])
    seeds = int(db.execute("SELECT COUNT(*) FROM seeds").fetchone()[0])
    out = int(db.execute("SELECT COUNT(*) FROM steps WHERE status = 'accepted'").fetchone()[0])
    run = config.get("run", {}) if isinstance(config.get("run"), dict) else {}
    agents = config.get("agents", {}) if isinstance(config.get("agents"), dict) else {}
    impls = sorted({str(a.get("impl", "")) for a in agents.values() if isinstance(a, dict)})
    extra: dict[str, str] = {}
    if len(attempts) > 1:
        extra["attempts"] = str(len(attempts))
    failed = db.execute(
        "SELECT round, COUNT(*) AS n FROM steps WHERE status = 'failed' GROUP BY round "
        "ORDER BY round"
    ).fetchall()
    if failed:
        extra["failed steps"] = ", ".join(f"round {r['round']}: {r['n']}" for r in failed)
    rows = summary.get("rows")
    if isinstance(rows, dict) and rows:
        extra["rows"] = ", ".join(f"{n} {s}" for s, n in sorted(rows.items()))
    saved = summary.get("rejected_before_answer")
    if isinstance(saved, int) and saved:
        extra["rejected before answering"] = f"{saved} (no response paid for)"
    for key, payload in _records(db, "eval"):
        line = payload.get("summary_line") if isinstance(payload, dict) else None
        if isinstance(line, str):
            extra[f"eval {key}"] = line
    return RunSummary(
        config_name=str(run.get("name") or run_dir.name),
        run_id=run_dir.name,
        method=", ".join(i for i in impls if i) or "",
        started_at=started,
        wall_time_s=wall,
        rows_in=seeds if seeds else None,
        rows_out=out if seeds else None,
        exit_status=str(status),
        dead_letters=dead,
        extra=extra,
    )


def _rows_per_round(db: sqlite3.Connection) -> tuple[list[RoundRows], dict[str, int]]:
    counts: dict[int, Counter[str]] = defaultdict(Counter)
    for row in db.execute("SELECT round, status, COUNT(*) AS n FROM steps GROUP BY round, status"):
        counts[int(row["round"])][str(row["status"])] += int(row["n"])
    rows = [
        RoundRows(
            round=rnd,
            produced=sum(c.values()),
            accepted=c["accepted"],
            rejected=c["rejected"],
        )
        for rnd, c in sorted(counts.items())
    ]
    reasons = {
        str(r["rule"] or "unknown"): int(r["n"])
        for r in db.execute(
            "SELECT rule, COUNT(*) AS n FROM steps WHERE status = 'rejected' GROUP BY rule"
        )
    }
    return rows, reasons


def _usage(db: sqlite3.Connection) -> tuple[list[AgentUsage], int]:
    totals: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    run_calls = 0
    for key, payload in _records(db, "usage"):
        try:
            snapshot = UsageSnapshot.model_validate(payload)
        except ValidationError:
            _log.warning("report_usage_record_invalid", key=key)
            continue
        if key.startswith("attempt-"):  # the run's own calls (not a later `quality` pass)
            run_calls += snapshot.total.calls + snapshot.total.cache_hits
        for caller, stats in snapshot.callers.items():
            acc = totals[caller]
            acc["calls"] += stats.calls
            acc["prompt"] += stats.tokens_in
            acc["completion"] += stats.tokens_out
            acc["cost"] += stats.cost_usd
            acc["errors"] += stats.failures
    usage = [
        AgentUsage(
            agent=caller,
            calls=int(acc["calls"]),
            prompt_tokens=int(acc["prompt"]),
            completion_tokens=int(acc["completion"]),
            cost_usd=acc["cost"],
            errors=int(acc["errors"]),
        )
        for caller, acc in sorted(totals.items())
    ]
    return usage, run_calls


def _bin_size(span_s: float) -> float:
    """A round bin width giving at most ~60 bins over ``span_s`` (at least 0.1 s)."""
    raw = max(span_s / _TARGET_BINS, 0.1)
    magnitude = 10 ** math.floor(math.log10(raw))
    for step in (1, 2, 5, 10):
        if raw <= step * magnitude:
            return float(step * magnitude)
    return float(10 * magnitude)  # pragma: no cover - the loop always returns


def _call_rate(db: sqlite3.Connection, total_calls: int) -> list[RatePoint]:
    marks = ",".join("?" * len(LLM_RESULT_KINDS))
    stamps: list[float] = []
    for row in db.execute(
        f"SELECT created_at FROM messages WHERE kind IN ({marks}) "
        "AND (causation_id IS NOT NULL OR kind NOT LIKE 'evol.%')",
        sorted(LLM_RESULT_KINDS),
    ):
        moment = _parse_time(row["created_at"])
        if moment is not None:
            stamps.append(moment.timestamp())
    if not stamps:
        return []
    points = call_rate_series(stamps, bin_s=_bin_size(max(stamps) - min(stamps)))
    if total_calls <= 0:
        return points
    # The messages give the shape; the usage counters the true number of calls.
    scale = total_calls / len(stamps)
    return [RatePoint(t_s=p.t_s, calls_per_s=p.calls_per_s * scale) for p in points]


def _lineages(db: sqlite3.Connection, limit: int) -> list[Lineage]:
    if limit <= 0:
        return []
    ranked = (
        "SELECT s.seed_id FROM steps s JOIN seeds d ON d.seed_id = s.seed_id GROUP BY s.seed_id "
        "{having} ORDER BY COUNT(*) DESC, SUM(s.status = 'accepted') DESC, MIN(d.position) "
        "LIMIT ?"
    )
    chosen = [str(r[0]) for r in db.execute(ranked.format(having=""), (limit,))]
    # show how a rejection looks too: the best lineage with a rejected step replaces the last
    rejected = db.execute(
        ranked.format(having="HAVING SUM(s.status = 'rejected') > 0"), (1,)
    ).fetchone()
    if rejected is not None and str(rejected[0]) not in chosen:
        chosen = [*chosen[: limit - 1], str(rejected[0])]
    out: list[Lineage] = []
    for seed_id in chosen:
        steps = []
        for s in db.execute("SELECT * FROM steps WHERE seed_id = ? ORDER BY round", (seed_id,)):
            status = str(s["status"])
            if s["round"] == 0 and status == "accepted":
                status = "seed"
            reason = s["rule"] or ""
            if status == "failed":
                reason = f"{s['stage']}: {s['error_type']}"
            steps.append(
                LineageStep(
                    round=int(s["round"]),
                    instruction=str(s["instruction"] or s["parent_instruction"] or ""),
                    operation="" if s["round"] == 0 else str(s["operation"] or ""),
                    status=status,
                    reason=str(reason),
                    response=str(s["response"] or ""),
                )
            )
        out.append(Lineage(seed_id=seed_id, steps=steps))
    return out


def _quality(db: sqlite3.Connection) -> tuple[list[DifficultyRecord], QualitySummary | None]:
    records = dict(_records(db, "quality"))
    if not records:
        return [], None
    difficulty: list[DifficultyRecord] = []
    tags_by_round: dict[int, TagMetrics] = {}
    diversity: DiversityReport | None = None
    near: int | None = None
    threshold: float | None = None
    contamination: ContaminationReport | None = None
    try:
        payload = records.get("difficulty")
        if isinstance(payload, dict):
            difficulty = [DifficultyRecord.model_validate(r) for r in payload.get("records", [])]
        payload = records.get("tags")
        if isinstance(payload, dict):
            items: list[tuple[int, list[Tag] | Unparseable]] = []
            for r in payload.get("records", []):
                raw = r["tags"]
                result: list[Tag] | Unparseable = (
                    [Tag.model_validate(t) for t in raw]
                    if isinstance(raw, list)
                    else Unparseable.model_validate(raw)
                )
                items.append((int(r["round"]), result))
            tags_by_round = tag_metrics_by_round(items)
        payload = records.get("diversity")
        if isinstance(payload, dict):
            diversity = DiversityReport.model_validate(payload["report"])
            near = len(payload.get("near_duplicates", []))
            threshold = float(payload["threshold"])
        payload = records.get("contamination")
        if isinstance(payload, dict):
            contamination = ContaminationReport.model_validate(payload)
    except (ValidationError, KeyError, TypeError, ValueError) as exc:
        _log.warning("report_quality_record_invalid", error=str(exc))
    quality = QualitySummary(
        tags_by_round=tags_by_round,
        diversity=diversity,
        near_duplicate_pairs=near,
        near_duplicate_threshold=threshold,
        contamination=contamination,
    )
    empty = not (tags_by_round or diversity or contamination)
    return difficulty, None if empty else quality


def _lambda_points(key: str, payload: Any) -> Iterator[LambdaPoint]:
    """λ points of one ``autoevol`` record, as the OptimizerAgent writes them (``initial``:
    ``{method_id, failure_rate}`` at step 0; ``step-NNN``: ``{step, candidates: [{method_id,
    failure_rate}], chosen: {method_id} | None, improved, previous: {method_id, failure_rate}}``);
    also one point ``{step, candidate|method_id, failure_rate|lambda, chosen}`` or a list of
    them. Other records (``split``, ``final``) give none. When a step kept the previous method,
    that method is drawn as the step's chosen point, so the chosen line is unbroken."""
    if isinstance(payload, list):
        for item in payload:
            yield from _lambda_points(key, item)
        return
    if not isinstance(payload, dict):
        return
    if key == "initial" and "failure_rate" in payload:
        name = str(payload.get("method_id", "initial"))
        yield LambdaPoint(
            step=0, candidate=name, failure_rate=float(payload["failure_rate"]), chosen=True
        )
        return
    if isinstance(payload.get("candidates"), list):
        step = payload.get("step")
        chosen = payload.get("chosen")
        chosen_id = chosen.get("method_id") if isinstance(chosen, dict) else chosen
        if payload.get("improved") is False:
            chosen_id = None
        for cand in payload["candidates"]:
            if isinstance(cand, dict) and cand.get("failure_rate") is not None:
                cand_id = cand.get("candidate", cand.get("method_id"))
                point = {"chosen": cand_id == chosen_id, **cand, "step": step}
                yield from _lambda_points(key, point)
        previous = payload.get("previous")
        if chosen_id is None and isinstance(previous, dict) and step is not None:
            yield LambdaPoint(
                step=int(step),
                candidate=f"{previous.get('method_id', '?')} (kept)",
                failure_rate=float(previous["failure_rate"]),
                chosen=True,
            )
        return
    rate = payload.get("failure_rate", payload.get("lambda"))
    step = payload.get("step")
    candidate = payload.get("candidate", payload.get("method_id"))
    if rate is None or step is None or candidate is None:
        return
    yield LambdaPoint(
        step=int(step),
        candidate=str(candidate),
        failure_rate=float(rate),
        chosen=bool(payload.get("chosen", False)),
    )


def _lambda(db: sqlite3.Connection) -> list[LambdaPoint]:
    points: list[LambdaPoint] = []
    for key, payload in _records(db, "autoevol"):
        try:
            points.extend(_lambda_points(key, payload))
        except (ValidationError, TypeError, ValueError):
            _log.warning("report_autoevol_record_skipped", key=key)
    return points


def _judge(db: sqlite3.Connection) -> list[JudgeTable]:
    tables: list[JudgeTable] = []
    for key, payload in _records(db, "eval"):
        if not isinstance(payload, dict) or "rows" not in payload:
            continue
        try:
            tables.append(
                JudgeTable(
                    title=str(payload.get("title", key)),
                    kind=str(payload.get("kind", "pairwise")),
                    rows=[CategoryStats.model_validate(r) for r in payload["rows"]],
                )
            )
        except (ValidationError, TypeError):
            _log.warning("report_eval_record_invalid", key=key)
    return tables


# -- entry points -----------------------------------------------------------------------------


def build_report_data(run_dir: Path, *, lineage_examples: int = 3) -> ReportData:
    """Everything the report shows, read from ``run_dir``. Raises FileNotFoundError when the
    directory holds no ``run.sqlite``."""
    store = run_dir / "run.sqlite"
    if not store.is_file():
        raise FileNotFoundError(f"{run_dir}: no run.sqlite (not a run directory)")
    config = _json_file(run_dir / "config.resolved.json")
    summary_file = _json_file(run_dir / "summary.json")
    with _read_only(store) as db:
        summary = _summary(db, run_dir, config, summary_file)
        rows, reasons = _rows_per_round(db)
        usage, total_calls = _usage(db)
        difficulty, quality = _quality(db)
        return ReportData(
            summary=summary,
            rows_per_round=rows,
            elimination_reasons=reasons,
            difficulty_by_round=aggregate_difficulty(difficulty),
            lambda_steps=_lambda(db),
            agent_usage=usage,
            call_rate=_call_rate(db, total_calls),
            judge=_judge(db),
            quality=quality,
            lineages=_lineages(db, lineage_examples),
        )


def write_run_report(run_dir: Path, *, lineage_examples: int = 3) -> Path:
    """(Re)write ``run_dir/report.html`` atomically; returns its path."""
    data = build_report_data(run_dir, lineage_examples=lineage_examples)
    return write_report(data, run_dir / REPORT_FILE)
