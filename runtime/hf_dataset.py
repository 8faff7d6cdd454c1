"""The ``hf`` export: a Hugging Face dataset directory, ready to load or upload.

    dataset_hf/
      README.md                              the dataset card (YAML header + how it was made)
      data/train-00000-of-00001.parquet      Parquet shards, ``rows_per_shard`` rows at most

``datasets.load_dataset("RUN_DIR/dataset_hf", split="train")`` reads it (the card's ``configs``
names the shards), and ``huggingface-cli upload ORG/NAME RUN_DIR/dataset_hf --repo-type dataset``
publishes it as is. Each row has the Alpaca columns, a ``messages`` column (the chat format SFT
trainers read) and the lineage columns.

The card states what the run did — seeds, rounds, per-round counts, rejections per rule, the
agents' models — from the resolved config and the run summary. It never contains endpoints, keys,
key variable names or file paths (only input file names). The data's license is not ours to
decide: it is omitted unless ``license`` is set (the models' terms and the seeds' licenses apply).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from runtime.parquet_sink import ParquetSink, require_pyarrow

__all__ = ["HF_DIR", "HFDatasetWriter", "HFSettings", "card_text", "hf_schema"]

HF_DIR = "dataset_hf"

_STRING_COLUMNS = ("instruction", "input", "output")
_LINEAGE_TYPES: dict[str, str] = {
    "seed_id": "string",
    "round": "int64",
    "operation": "string",
    "method_id": "string",
    "step_id": "string",
    "parent_step_id": "string",
    "prompt_version": "string",
}


class HFSettings(BaseModel):
    """``[run.export.hf]``: how the dataset directory is cut and described."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    rows_per_shard: int = Field(default=100_000, ge=1, description="rows per Parquet shard")
    pretty_name: str | None = Field(default=None, description="card title (default: run name)")
    license: str | None = Field(
        default=None, description="a Hub license id for the card; omitted when unset"
    )
    tags: tuple[str, ...] = Field(default=(), description="extra card tags")


def hf_schema() -> Any:
    """The Arrow schema of a row: Alpaca columns, ``messages``, lineage."""
    pa = require_pyarrow()
    message = pa.struct([("role", pa.string()), ("content", pa.string())])
    fields = [(name, pa.string()) for name in _STRING_COLUMNS]
    fields.append(("messages", pa.list_(message)))
    fields += [
        (name, pa.int64() if kind == "int64" else pa.string())
        for name, kind in _LINEAGE_TYPES.items()
    ]
    return pa.schema(fields)


class HFDatasetWriter:
    """Streams rows into ``<out_dir>/dataset_hf.tmp/data`` and, in `close()`, writes the card and
    swaps the directory into place as ``dataset_hf`` (a previous one is replaced only then)."""

    def __init__(
        self,
        out_dir: Path,
        settings: HFSettings,
        *,
        sample: int | None = None,
        removed: list[str] | None = None,
    ) -> None:
        self.final = out_dir / HF_DIR
        self._sample = sample
        self._removed = removed or []
        self._staging = out_dir / f"{HF_DIR}.tmp"
        shutil.rmtree(self._staging, ignore_errors=True)
        self._settings = settings
        self._sink = ParquetSink(
            self._staging / "data",
            hf_schema(),
            name=lambda index, total: f"train-{index:05d}-of-{total:05d}.parquet",
            rows_per_file=settings.rows_per_shard,
        )

    def add(self, record: dict[str, Any]) -> None:
        self._sink.add(record)

    def close(self, resolved_config: dict[str, Any], summary: dict[str, Any]) -> Path:
        """Finish the shards, write README.md, move the directory into place; returns it."""
        shards = self._sink.close()
        bytes_ = sum(path.stat().st_size for path in shards)
        card = card_text(
            resolved_config,
            summary,
            self._settings,
            rows=self._sink.rows,
            num_bytes=bytes_,
            sample=self._sample,
            removed=self._removed,
        )
        (self._staging / "README.md").write_text(card, encoding="utf-8")
        previous = self.final.with_name(f"{HF_DIR}.old")
        shutil.rmtree(previous, ignore_errors=True)
        if self.final.exists():
            self.final.replace(previous)
        self._staging.replace(self.final)
        shutil.rmtree(previous, ignore_errors=True)
        return self.final

    def abort(self) -> None:
        self._sink.abort()
        shutil.rmtree(self._staging, ignore_errors=True)


# -- the card -------------------------------------------------------------------------------------


def _size_category(rows: int) -> str:
    bounds = [(1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"),
              (1_000_000, "100K<n<1M"), (10_000_000, "1M<n<10M")]  # fmt: skip
    return next((label for bound, label in bounds if rows < bound), "10M<n<100M")


def _yaml_string(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)  # a JSON string is a valid YAML scalar


def _features_yaml() -> list[str]:
    lines = ["  features:"]
    for name in _STRING_COLUMNS:
        lines += [f"  - name: {name}", "    dtype: string"]
    lines += [
        "  - name: messages",
        "    list:",
        "    - name: role",
        "      dtype: string",
        "    - name: content",
        "      dtype: string",
    ]
    for name, kind in _LINEAGE_TYPES.items():
        lines += [f"  - name: {name}", f"    dtype: {kind}"]
    return lines


def _method(config: dict[str, Any]) -> str:
    impls = {str(agent.get("impl", "")) for agent in config.get("agents", {}).values()}
    if any(impl.startswith("autoevol.") for impl in impls):
        return "Auto Evol-Instruct (arXiv 2406.00770)"
    return "Evol-Instruct (WizardLM, arXiv 2304.12244)"


def _models(config: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(agent, backend kind, model) per agent that calls an LLM — no endpoints, no keys."""
    llms: dict[str, Any] = config.get("llm", {})
    rows = []
    for agent, spec in config.get("agents", {}).items():
        names = set(spec.get("llms", {}).values()) if spec.get("llms") else set()
        if spec.get("llm"):
            names.add(spec["llm"])
        for name in sorted(names):
            backend = llms.get(name, {})
            rows.append((agent, str(backend.get("backend", "?")), str(backend.get("model", "?"))))
    return rows


def _rounds_param(config: dict[str, Any]) -> int | None:
    for spec in config.get("agents", {}).values():
        if str(spec.get("impl", "")).startswith("pool."):
            rounds = spec.get("params", {}).get("rounds")
            return int(rounds) if rounds is not None else None
    return None


def card_text(
    config: dict[str, Any],
    summary: dict[str, Any],
    settings: HFSettings,
    *,
    rows: int,
    num_bytes: int,
    sample: int | None = None,
    removed: list[str] | None = None,
) -> str:
    """The dataset card (README.md) for ``rows`` exported rows (a random ``sample`` of the
    accepted steps, if set; without the rows ``removed`` describes) of the run described by the
    resolved ``config`` and its ``summary``."""
    run = config.get("run", {})
    name = settings.pretty_name or str(run.get("name", "evolagents dataset"))
    tags = ["synthetic", "evol-instruct", "evolagents", *settings.tags]
    header = ["---"]
    if settings.license:
        header.append(f"license: {_yaml_string(settings.license)}")
    header += [
        f"pretty_name: {_yaml_string(name)}",
        "task_categories:",
        "- text-generation",
        "tags:",
        *[f"- {_yaml_string(tag)}" for tag in dict.fromkeys(tags)],
        "size_categories:",
        f"- {_size_category(rows)}",
        "configs:",
        "- config_name: default",
        "  data_files:",
        "  - split: train",
        "    path: data/train-*",
        "dataset_info:",
        *_features_yaml(),
        "  splits:",
        "  - name: train",
        f"    num_bytes: {num_bytes}",
        f"    num_examples: {rows}",
        "---",
    ]
    body = [
        f"# {name}",
        "",
        f"Instruction-tuning data made with evolagents by {_method(config)}: "
        f"{summary.get('seeds', 0)} seed instructions were evolved round after round by an LLM,"
        " failed evolutions were eliminated, and the survivors were answered."
        " All rounds are mixed, as in the paper; the `round` column tells them apart (0 = seeds).",
        "",
        "## Contents",
        "",
        f"{rows} rows"
        + (f" (a random sample of the run's accepted steps, `sample = {sample}`)" if sample else "")
        + ".",
        "",
        "| round | accepted | rejected | failed |",
        "|---|---|---|---|",
    ]
    for round_, counts in sorted(summary.get("rounds", {}).items(), key=lambda kv: int(kv[0])):
        body.append(
            f"| {round_} | {counts.get('accepted', 0)} | {counts.get('rejected', 0)} "
            f"| {counts.get('failed', 0)} |"
        )
    if removed:
        body += ["", "Removed before export: " + "; ".join(removed) + "."]
    rejected = summary.get("rejected_by_rule", {})
    if rejected:
        body += ["", "Rejections by rule: "
                 + ", ".join(f"`{rule}` {count}" for rule, count in rejected.items()) + "."]
    body += ["", "## How it was made", ""]
    rounds = _rounds_param(config)
    if rounds is not None:
        body.append(f"- rounds of evolution: {rounds}")
    inputs = [Path(str(spec.get("path", ""))).name for spec in run.get("inputs", [])]
    if inputs:
        body.append("- seed files: " + ", ".join(f"`{n}`" for n in inputs))
    for agent, backend, model in _models(config):
        body.append(f"- `{agent}`: {model} ({backend})")
    body += [
        f"- run seed: {run.get('seed', 0)} (every random choice derives from it)",
        "",
        "## Columns",
        "",
        "- `instruction`, `input`, `output`: the Alpaca format (evolved rows carry their input in"
        " the instruction);",
        "- `messages`: the same as a user/assistant conversation;",
        "- `seed_id`, `round`, `operation`, `method_id`, `step_id`, `parent_step_id`,"
        " `prompt_version`: lineage — each row's parent is the row whose `step_id` is its"
        " `parent_step_id`.",
        "",
        "## Loading",
        "",
        "```python",
        "from datasets import load_dataset",
        "",
        'ds = load_dataset("path/to/dataset_hf", split="train")',
        "```",
        "",
        "## License and terms",
        "",
        "The texts were written by the models listed above from the seed instructions: the"
        " models' terms of use and the seed data's license apply"
        + (f"; the publisher states `{settings.license}`." if settings.license else "."),
        "",
    ]
    return "\n".join(header) + "\n\n" + "\n".join(body)
