"""Did a run lose rows? The verdict behind exit code 1, and the lines that tell the user why.

A row is *failed* when a stage gave up on it (LLM retries exhausted, a fatal error, a crashed
handler) and *unfinished* when it is still active at the end of a session: its backend failed it
(`StepFailed.resumable`: unreachable, credentials, model, circuit open) or the run stopped
before it ended. A run is ok when no row is unfinished and the failed fraction of the rows it
started is at most ``run.max_failed_fraction`` (0 by default: any failed row fails the run).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, Field

from agents.llm.redact import redact_text
from runtime.store import RunStore

__all__ = ["RowVerdict", "row_verdict"]

#: Distinct row errors listed in the final lines.
TOP_ERRORS = 3
#: Characters of an error that group rows together (the rest is often row-specific).
ERROR_PREFIX = 240


class RowVerdict(BaseModel):
    """The rows of a run by outcome, and whether that is acceptable."""

    rows: int = 0
    done: int = 0
    failed: int = 0
    unfinished: int = 0
    max_failed_fraction: float = 0.0
    failed_by_stage: dict[str, int] = Field(default_factory=dict)
    """Failed steps by ``stage:error kind`` (unfinished rows' steps included)."""
    top_errors: list[tuple[str, int]] = Field(default_factory=list)
    """The most frequent errors of failed rows, with their counts."""

    @property
    def failed_fraction(self) -> float:
        return self.failed / self.rows if self.rows else 0.0

    @property
    def ok(self) -> bool:
        return self.unfinished == 0 and self.failed_fraction <= self.max_failed_fraction

    def lines(self, resume_hint: str = "") -> list[str]:
        """What to print at the end of a run (nothing when no row failed or is unfinished)."""
        out: list[str] = []
        if self.failed:
            within = self.failed_fraction <= self.max_failed_fraction
            out.append(
                f"{'accepted' if within else 'FAILED'}: {self.failed} of {self.rows} rows failed "
                f"({100 * self.failed_fraction:.1f}% {'<=' if within else '>'} "
                f"run.max_failed_fraction = {self.max_failed_fraction:g})"
            )
        if self.unfinished:
            hint = f"; continue with `{resume_hint}`" if resume_hint else ""
            out.append(f"UNFINISHED: {self.unfinished} of {self.rows} rows (their backend failed "
                       f"them or the run stopped){hint}")  # fmt: skip
        if out and self.failed_by_stage:
            by = ", ".join(f"{k} {n}" for k, n in sorted(self.failed_by_stage.items(),
                                                         key=lambda kv: -kv[1]))  # fmt: skip
            out.append(f"  failed steps by stage:error: {by}")
        for error, count in self.top_errors:
            out.append(f"  {count} rows: {error}")
        return out


def row_verdict(
    summary: Mapping[str, Any], store: RunStore, max_failed_fraction: float
) -> RowVerdict:
    """The verdict over every row of the run, from its summary (`runtime.export.summarize`:
    ``rows`` by status, ``failed_by_stage``) and the most frequent row errors in ``store``."""
    by_status: Mapping[str, int] = summary.get("rows", {})
    errors = [
        (redact_text(str(r["e"])), int(r["n"]))
        for r in store.query(
            "SELECT SUBSTR(error, 1, ?) AS e, COUNT(*) AS n FROM rows WHERE status = 'failed' "
            "GROUP BY e ORDER BY n DESC LIMIT ?",
            (ERROR_PREFIX, TOP_ERRORS),
        )
    ]
    return RowVerdict(
        rows=sum(by_status.values()),
        done=by_status.get("done", 0),
        failed=by_status.get("failed", 0),
        unfinished=by_status.get("active", 0),
        max_failed_fraction=max_failed_fraction,
        failed_by_stage=dict(summary.get("failed_by_stage", {})),
        top_errors=errors,
    )
