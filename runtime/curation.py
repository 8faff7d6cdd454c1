"""What an export leaves out on request: near-duplicates and benchmark-contaminated rows.

`python -m runtime quality RUN_DIR` finds them (near-duplicate pairs by embedding cosine, 13-gram
overlaps with benchmark questions) and stores the findings as ``quality`` records;
`python -m runtime export RUN_DIR --drop-near-duplicates --drop-contaminated` reads them here:

- **near-duplicates**: in export order (seed position, then round), a row is dropped when one of
  its near-duplicate partners was kept before it — one row survives per group of near-duplicates,
  the earliest (seeds before their evolutions);
- **contaminated**: every row that shared an n-gram run with a benchmark item.

Only rows the quality pass checked can be dropped: rows added after it (a resumed run), or left
out by its ``--limit``, are exported as they are — `Exclusions.checked` says how many were seen
(and `describe()` says it too).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from pydantic import BaseModel, ConfigDict

from runtime.errors import ConfigError
from runtime.store import RunStore

__all__ = ["Exclusions", "exclusions_from_quality"]

_CHUNK = 500


class Exclusions(BaseModel):
    """Step ids to leave out of an export, and why (counts per reason, for the card)."""

    model_config = ConfigDict(frozen=True)

    step_ids: frozenset[str] = frozenset()
    near_duplicates: int = 0
    contaminated: int = 0
    threshold: float | None = None
    embedder: str | None = None
    ngram: int | None = None
    benchmarks: tuple[str, ...] = ()
    checked: int | None = None

    def describe(self) -> list[str]:
        """One line per reason, e.g. ``12 near-duplicates (cosine ≥ 0.9, minilm)``."""
        lines = []
        seen = f", of {self.checked} rows checked" if self.checked is not None else ""
        if self.threshold is not None:
            lines.append(
                f"{self.near_duplicates} near-duplicates (cosine ≥ {self.threshold}, "
                f"{self.embedder or 'embedder'}; the earliest of each group kept{seen})"
            )
        if self.ngram is not None:
            named = ", ".join(self.benchmarks) or "the benchmarks"
            rows = "row" if self.contaminated == 1 else "rows"
            lines.append(
                f"{self.contaminated} {rows} sharing a {self.ngram}-gram with {named}{seen}"
            )
        return lines


def exclusions_from_quality(
    store: RunStore, *, near_duplicates: bool, contaminated: bool
) -> Exclusions:
    """The rows to drop, from the run's ``quality`` records. Raises ConfigError naming the
    command to run when a record that is asked for does not exist."""
    records = dict(store.records("quality"))
    dropped: set[str] = set()
    fields: dict[str, Any] = {}
    if near_duplicates:
        diversity = records.get("diversity")
        if not isinstance(diversity, dict):
            raise ConfigError(
                "no near-duplicate record in this run: run `python -m runtime quality RUN_DIR` "
                "first"
            )
        pairs = [(str(p["a"]), str(p["b"])) for p in diversity.get("near_duplicates", [])]
        later = _later_duplicates(store, pairs)
        dropped |= later
        report = diversity.get("report", {})
        fields.update(
            near_duplicates=len(later),
            threshold=float(diversity.get("threshold", 0.0)),
            embedder=str(report.get("embedder", "")) or None,
            checked=report.get("n"),
        )
    if contaminated:
        contamination = records.get("contamination")
        if not isinstance(contamination, dict):
            raise ConfigError(
                "no contamination record in this run: run `python -m runtime quality RUN_DIR "
                "--benchmark FILE` first"
            )
        hit_ids = {str(hit["text_id"]) for hit in contamination.get("hits", [])}
        dropped |= hit_ids
        fields.update(
            contaminated=len(hit_ids),
            ngram=int(contamination.get("ngram") or contamination.get("n") or 13),
            benchmarks=tuple(sorted(contamination.get("by_benchmark", {}))),
        )
        fields.setdefault("checked", contamination.get("checked"))
    return Exclusions(step_ids=frozenset(dropped), **fields)


def _later_duplicates(store: RunStore, pairs: list[tuple[str, str]]) -> set[str]:
    """Greedy in export order: drop a row when a near-duplicate of it was kept earlier."""
    neighbours: dict[str, set[str]] = defaultdict(set)
    for a, b in pairs:
        if a != b:
            neighbours[a].add(b)
            neighbours[b].add(a)
    order = _export_order(store, list(neighbours))
    kept: set[str] = set()
    dropped: set[str] = set()
    for step_id in sorted(neighbours, key=lambda s: order.get(s, (1 << 62, 0, s))):
        if neighbours[step_id] & kept:
            dropped.add(step_id)
        else:
            kept.add(step_id)
    return dropped


def _export_order(store: RunStore, step_ids: list[str]) -> dict[str, tuple[int, int, str]]:
    order: dict[str, tuple[int, int, str]] = {}
    for start in range(0, len(step_ids), _CHUNK):
        chunk = step_ids[start : start + _CHUNK]
        marks = ",".join("?" * len(chunk))
        for row in store.query(
            "SELECT s.step_id, d.position, s.round FROM steps s JOIN seeds d "
            f"ON d.seed_id = s.seed_id WHERE s.step_id IN ({marks})",
            tuple(chunk),
        ):
            order[str(row["step_id"])] = (int(row["position"]), int(row["round"]), row["step_id"])
    return order
