from __future__ import annotations

import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from runtime.report import SECTIONS, ReportData, RunSummary, call_rate_series, render_report
from runtime.report import write_report as write
from runtime.report.svg import (
    LineSeries,
    bar_chart,
    box_plot,
    grouped_bar_chart,
    line_chart,
    nice_ticks,
)

ALL_ANCHORS = [anchor for anchor, *_ in SECTIONS]


def _svgs(html: str) -> list[str]:
    return re.findall(r"<svg .*?</svg>", html, flags=re.DOTALL)


def test_every_section_renders_with_its_charts(full_report: ReportData) -> None:
    html = render_report(full_report)
    assert html.startswith("<!DOCTYPE html>")
    for anchor in ["summary", *ALL_ANCHORS]:
        assert f'<section id="{anchor}">' in html, anchor
    assert 'class="omitted"' not in html
    svgs = _svgs(html)
    # rows, elimination, difficulty, lambda, usage, rate, 2 judge charts, tag complexity
    assert len(svgs) == 9
    for svg in svgs:
        ET.fromstring(svg)  # each chart is well-formed XML
    assert "no data" not in html


def test_page_is_self_contained(full_report: ReportData) -> None:
    html = render_report(full_report)
    assert "<script" not in html.replace("&lt;script&gt;", "")
    assert "http://" not in html.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert "https://" not in html
    assert "<link" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_sections_without_data_get_a_one_line_note() -> None:
    html = render_report(ReportData(summary=RunSummary(config_name="empty.toml")))
    assert '<section id="summary">' in html
    for anchor in ALL_ANCHORS:
        assert f'<section id="{anchor}">' not in html
        assert f'data-section="{anchor}"' in html
    assert _svgs(html) == []


def test_key_numbers_appear(full_report: ReportData) -> None:
    html = render_report(full_report)
    assert "1h 02m 05s" in html  # wall time
    assert "3,412" in html  # rows out
    assert "no_information_gain" in html
    assert "m1.2" in html  # a λ candidate
    assert "$7.6400" in html  # total cost
    assert "full text (" in html  # long lineage text is folded


def test_write_report_is_atomic_and_leaves_no_temp_files(
    tmp_path: Path, full_report: ReportData
) -> None:
    target = tmp_path / "run" / "report.html"
    assert write(full_report, target) == target
    assert target.read_text(encoding="utf-8") == render_report(full_report)
    assert [p.name for p in target.parent.iterdir()] == ["report.html"]


def test_call_rate_series_bins_and_fills_gaps() -> None:
    points = call_rate_series([10.0, 10.2, 10.9, 13.1], bin_s=1.0)
    assert [(p.t_s, p.calls_per_s) for p in points] == [(0, 3), (1, 0), (2, 0), (3, 1)]
    assert call_rate_series([]) == []
    with pytest.raises(ValueError, match="bin_s"):
        call_rate_series([1.0], bin_s=0)


@pytest.mark.parametrize(
    ("lo", "hi"),
    [
        pytest.param(0, 1, id="unit"),
        pytest.param(0, 3412, id="counts"),
        pytest.param(5, 5, id="flat"),
    ],
)
def test_nice_ticks_cover_the_range(lo: float, hi: float) -> None:
    ticks = nice_ticks(lo, hi)
    assert ticks[0] <= lo
    assert ticks[-1] >= hi
    assert ticks == sorted(ticks)


def test_charts_tolerate_empty_input() -> None:
    for svg in (
        bar_chart([], [], title="t"),
        grouped_bar_chart([], {}, title="t"),
        line_chart([LineSeries(name="s", points=[])], title="t"),
        box_plot({"a": []}, title="t"),
    ):
        ET.fromstring(svg)
        assert "no data" in svg


def test_grouped_bars_reject_ragged_series() -> None:
    with pytest.raises(ValueError, match="needs 2 values"):
        grouped_bar_chart(["a", "b"], {"s": [1.0]}, title="t")


def test_chart_text_is_escaped() -> None:
    svg = bar_chart(["<x&y>"], [1.0], title="a < b", horizontal=True)
    ET.fromstring(svg)
    assert "&lt;x&amp;y&gt;" in svg


def test_headless_chromium_screenshot(tmp_path: Path, full_report: ReportData) -> None:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("chromium is not installed (apt-get install chromium) — screenshot not taken")
    page = write(full_report, tmp_path / "report.html")
    png = tmp_path / "report.png"
    cmd = [
        browser,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        f"--user-data-dir={tmp_path / 'profile'}",
        f"--screenshot={png}",
        "--window-size=1280,3000",
        page.as_uri(),
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=90, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert (width, height) == (1280, 3000)
    assert len(data) > 50_000  # a page of charts, not a blank image
