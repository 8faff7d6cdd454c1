"""The run report: a self-contained `report.html` with inline SVG charts.

Fill a `ReportData` and call `render_report(data)` (a string) or `write_report(data, path)`
(atomic). No JavaScript, no network, no plotting library.
"""

from __future__ import annotations

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
from runtime.report.render import SECTIONS, render_report, write_report

__all__ = [
    "SECTIONS",
    "AgentUsage",
    "JudgeTable",
    "LambdaPoint",
    "Lineage",
    "LineageStep",
    "QualitySummary",
    "RatePoint",
    "ReportData",
    "RoundRows",
    "RunSummary",
    "call_rate_series",
    "render_report",
    "write_report",
]
