"""Dataset exports and the run summary, read from the run store.

- ``dataset.alpaca.jsonl``: ``{instruction, input, output}`` + lineage columns
  (``seed_id, round, operation, method_id, step_id, parent_step_id, prompt_version``);
- ``dataset.chat.jsonl``: ``{messages: [user, assistant]}`` + the same lineage columns;
- ``dataset.parquet``: the Alpaca columns + lineage (needs pyarrow, the ``export`` extra);
- ``dataset_hf/``: a Hugging Face dataset directory — Parquet shards with the Alpaca columns,
  ``messages`` and lineage, and a dataset card (`runtime.hf_dataset`; needs pyarrow).

Rows are every accepted step of every round, mixed (the paper's recipe), in seed order then round.
``sample = N`` keeps a uniform random N of them (reservoir sampling with the run seed: memory
O(N), deterministic). Rows are streamed (Parquet in row groups of 2,048): memory does not grow with
the dataset. Files are written to a temp name and renamed: never half written.
"""

from __future__ import annotations

import json
import random
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from runtime.curation import Exclusions
from runtime.hf_dataset import HFDatasetWriter, HFSettings
from runtime.parquet_sink import ParquetSink, require_pyarrow
from runtime.store import RunStore

__all__ = ["ExportSettings", "export_dataset", "summarize"]

Format = Literal["alpaca", "chat", "parquet", "hf"]

_LINEAGE = ("seed_id", "round", "operation", "method_id", "step_id", "parent_step_id",
            "prompt_version")


class ExportSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    formats: tuple[Format, ...] = ("alpaca", "chat")
    sample: int | None = Field(default=None, ge=1, description="keep a random N of all rows")
    min_round: int = Field(default=0, ge=0, description="drop rounds below this (0 keeps seeds)")
    hf: HFSettings = Field(default_factory=HFSettings, description="the `hf` directory's shards "
                           "and card")


def _accepted(store: RunStore, min_round: int) -> Iterator[dict[str, Any]]:
    for row in store.query(
        "SELECT s.* FROM steps s JOIN seeds d ON d.seed_id = s.seed_id "
        "WHERE s.status = 'accepted' AND s.round >= ? ORDER BY d.position, s.round",
        (min_round,),
    ):
        yield dict(row)


def _rows(
    store: RunStore, settings: ExportSettings, seed: int, exclude: frozenset[str]
) -> Iterator[dict[str, Any]]:
    rows = (row for row in _accepted(store, settings.min_round) if row["step_id"] not in exclude)
    if settings.sample is None:
        yield from rows
        return
    rng = random.Random(seed)
    reservoir: list[tuple[int, dict[str, Any]]] = []
    for index, row in enumerate(rows):
        if index < settings.sample:
            reservoir.append((index, row))
        else:
            slot = rng.randint(0, index)
            if slot < settings.sample:
                reservoir[slot] = (index, row)
    yield from (row for _, row in sorted(reservoir, key=lambda item: item[0]))


def export_dataset(
    store: RunStore,
    out_dir: Path,
    settings: ExportSettings,
    *,
    seed: int = 0,
    resolved_config: dict[str, Any] | None = None,
    summary: dict[str, Any] | None = None,
    exclusions: Exclusions | None = None,
) -> dict[str, Path]:
    """Write the requested formats into ``out_dir``; returns format -> path.

    ``exclusions`` (`runtime.curation`) are left out before sampling. ``resolved_config`` and
    ``summary`` describe the run in the `hf` dataset card (with what was excluded and why). Raises
    RuntimeError (naming the extra) when a Parquet format is asked for without pyarrow — before
    anything is written; on any error, nothing half written is left behind.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    if "parquet" in settings.formats or "hf" in settings.formats:
        require_pyarrow()
    targets: dict[str, Path] = {}
    handles: dict[str, Any] = {}
    parquet: ParquetSink | None = None
    hf: HFDatasetWriter | None = None
    try:
        for fmt in settings.formats:
            if fmt == "parquet":
                parquet = ParquetSink(
                    out_dir, _alpaca_schema(), name=lambda _i, _n: "dataset.parquet"
                )
            elif fmt == "hf":
                hf = HFDatasetWriter(
                    out_dir,
                    settings.hf,
                    sample=settings.sample,
                    removed=exclusions.describe() if exclusions else [],
                )
            else:
                path = out_dir / f"dataset.{fmt}.jsonl"
                targets[fmt] = path
                handles[fmt] = path.with_name(path.name + ".tmp").open("w", encoding="utf-8")
        exclude = exclusions.step_ids if exclusions else frozenset()
        for row in _rows(store, settings, seed, exclude):
            lineage = {key: row[key] for key in _LINEAGE}
            output = row["response"] or ""
            alpaca = {"instruction": row["instruction"], "input": row["input"] or "",
                      "output": output}
            user = row["instruction"] if not row["input"] else (
                f"{row['instruction']}\n\n{row['input']}")
            messages = [{"role": "user", "content": user},
                        {"role": "assistant", "content": output}]
            if "alpaca" in handles:
                record = {**alpaca, **lineage}
                handles["alpaca"].write(json.dumps(record, ensure_ascii=False) + "\n")
            if "chat" in handles:
                record = {"messages": messages, **lineage}
                handles["chat"].write(json.dumps(record, ensure_ascii=False) + "\n")
            if parquet is not None:
                parquet.add({**alpaca, **lineage})
            if hf is not None:
                hf.add({**alpaca, "messages": messages, **lineage})
        for handle in handles.values():
            handle.close()
        for path in targets.values():
            path.with_name(path.name + ".tmp").replace(path)
        if parquet is not None:
            [targets["parquet"]] = parquet.close()
        if hf is not None:
            targets["hf"] = hf.close(resolved_config or {}, summary or {})
    except BaseException:
        for handle in handles.values():
            handle.close()
        for path in targets.values():
            path.with_name(path.name + ".tmp").unlink(missing_ok=True)
        if parquet is not None:
            parquet.abort()
        if hf is not None:
            hf.abort()
        raise
    return targets


def _alpaca_schema() -> Any:
    pa = require_pyarrow()
    fields = [(name, pa.string()) for name in ("instruction", "input", "output")]
    fields += [(name, pa.int64() if name == "round" else pa.string()) for name in _LINEAGE]
    return pa.schema(fields)


def summarize(store: RunStore) -> dict[str, Any]:
    """Rows by status, steps by round and status, rejections per rule, evolutions rejected at
    screening (no response paid for), failures per stage."""
    rows = {r["status"]: r["n"] for r in store.query(
        "SELECT status, COUNT(*) AS n FROM rows GROUP BY status")}
    per_round: dict[int, Counter[str]] = defaultdict(Counter)
    for r in store.query("SELECT round, status, COUNT(*) AS n FROM steps GROUP BY round, status"):
        per_round[int(r["round"])][r["status"]] += int(r["n"])
    rules = {r["rule"]: r["n"] for r in store.query(
        "SELECT rule, COUNT(*) AS n FROM steps WHERE status = 'rejected' GROUP BY rule "
        "ORDER BY n DESC")}
    failures = {f"{r['stage']}:{r['error_type']}": r["n"] for r in store.query(
        "SELECT stage, error_type, COUNT(*) AS n FROM steps WHERE status = 'failed' "
        "GROUP BY stage, error_type")}
    unanswered = next(iter(store.query(
        "SELECT COUNT(*) AS n FROM steps WHERE status = 'rejected' AND round >= 1 "
        "AND response IS NULL AND rule != 'unparseable_evolution'")))["n"]
    dead = next(iter(store.query("SELECT COUNT(*) AS n FROM dead_letters")))["n"]
    seeds = next(iter(store.query("SELECT COUNT(*) AS n FROM seeds")))["n"]
    return {
        "seeds": seeds,
        "rows": rows,
        "rounds": {str(k): dict(v) for k, v in sorted(per_round.items())},
        "rejected_by_rule": rules,
        "rejected_before_answer": unanswered,
        "failed_by_stage": failures,
        "dead_letters": dead,
    }


def export_method_history(store: RunStore, out_dir: Path) -> dict[str, Any] | None:
    """Auto Evol-Instruct: ``methods.json`` (every step's candidates with λ and the choices) and
    ``final_method.txt`` — ``methods.<cluster>.json``/``final_method.<cluster>.txt`` per domain
    cluster. Returns the λ curves for the summary, or None when no optimization ran."""
    kinds = [row["kind"] for row in store.query(
        "SELECT DISTINCT kind FROM records WHERE kind = 'autoevol' OR kind LIKE 'autoevol:%' "
        "ORDER BY kind")]
    result: dict[str, Any] = {}
    for kind in kinds:
        suffix = "" if kind == "autoevol" else "." + kind.partition(":")[2]
        exported = _export_history(dict(store.records(kind)), out_dir, suffix)
        if exported is not None:
            result[kind] = exported
    if not result:
        return None
    return result.get("autoevol", result) if len(result) == 1 else result


def _export_history(records: dict[str, Any], out_dir: Path, suffix: str) -> dict[str, Any] | None:
    if "initial" not in records:
        return None
    steps = [records[key] for key in sorted(records) if key.startswith("step-")]
    history = {
        "split": {name: len(ids) for name, ids in records.get("split", {}).items()},
        "initial": records["initial"],
        "steps": steps,
        "final": records.get("final"),
    }
    curve = [{"step": 0, "method_id": "initial",
              "failure_rate": records["initial"]["failure_rate"]}]
    for step in steps:
        rates = [c["failure_rate"] for c in step["candidates"]]
        curve.append({
            "step": step["step"],
            "best_candidate": min(rates) if rates else None,
            "candidates": rates,
            "improved": step["improved"],
            "method_id": step["chosen"]["method_id"] if step["improved"] else
            step["previous"]["method_id"],
        })
    tmp = out_dir / f"methods{suffix}.json.tmp"
    tmp.write_text(json.dumps(history, indent=2), encoding="utf-8")
    tmp.replace(out_dir / f"methods{suffix}.json")
    final = records.get("final")
    if final is not None:
        (out_dir / f"final_method{suffix}.txt").write_text(
            final["method_text"] + "\n", encoding="utf-8"
        )
    return {"lambda_curve": curve, "final_method": final and final["method_id"]}
