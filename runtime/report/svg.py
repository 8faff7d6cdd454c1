"""Small, dependency-free SVG charts for the run report.

Every function returns one `<svg>` element as a string, sized by `viewBox` so it scales with the
page, with a `<title>` for accessibility. All text is XML-escaped here; callers pass plain strings.
Charts: `bar_chart` (vertical or horizontal), `grouped_bar_chart` (grouped or stacked),
`line_chart` (lines and/or points per series) and `box_plot` (quartiles, whiskers, mean).
Empty input gives a chart with a "no data" label, never an exception.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from html import escape
from statistics import fmean

from pydantic import BaseModel, ConfigDict

__all__ = [
    "PALETTE",
    "LineSeries",
    "bar_chart",
    "box_plot",
    "grouped_bar_chart",
    "line_chart",
    "nice_ticks",
]

PALETTE = ("#3b6fb6", "#e0813a", "#4f9d5d", "#c2453d", "#8a63b8", "#8c6d4f", "#d47fb7", "#7f7f7f")
_W, _H = 720, 340
_LEFT, _RIGHT, _TOP, _BOTTOM = 64, 24, 58, 64
_FONT = 'font-family="system-ui, sans-serif"'


class LineSeries(BaseModel):
    """One series of a line chart: `(x, y)` points drawn as a line, dots, or both."""

    model_config = ConfigDict(frozen=True)

    name: str
    points: list[tuple[float, float]]
    line: bool = True
    dots: bool = True


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """Round tick values covering `[lo, hi]` (about `count` of them)."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return [0.0, 1.0]
    if hi <= lo:
        hi = lo + (abs(lo) or 1.0)
    raw = (hi - lo) / max(1, count)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    start = math.floor(lo / step) * step
    ticks = [start]
    while ticks[-1] < hi - 1e-9 * step:
        ticks.append(start + len(ticks) * step)
    return [round(t, 10) for t in ticks]


def _fmt(value: float) -> str:
    a = abs(value)
    if a >= 1e9:
        return f"{value / 1e9:g}G"
    if a >= 1e6:
        return f"{value / 1e6:g}M"
    if a >= 1e4:
        return f"{value / 1e3:g}k"
    return f"{value:.4g}"


def _clip(label: str, limit: int = 16) -> str:
    return label if len(label) <= limit else label[: limit - 1] + "…"


def _open(title: str, width: int = _W, height: int = _H) -> list[str]:
    t = escape(title)
    return [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
        f'width="100%" role="img" aria-label="{t}" class="chart" {_FONT}>',
        f"<title>{t}</title>",
        f'<rect x="0" y="0" width="{width}" height="{height}" fill="#ffffff"/>',
        f'<text x="{width / 2:.1f}" y="22" text-anchor="middle" font-size="15" '
        f'font-weight="600" fill="#222">{t}</text>',
    ]


def _no_data(title: str) -> str:
    parts = _open(title, _W, 120)
    parts.append(
        f'<text x="{_W / 2}" y="70" text-anchor="middle" font-size="13" fill="#888">no data</text>'
    )
    parts.append("</svg>")
    return "\n".join(parts)


def _y_axis(
    parts: list[str], ticks: list[float], y_of: Callable[[float], float], label: str, right: float
) -> None:
    for t in ticks:
        y = y_of(t)
        parts.append(
            f'<line x1="{_LEFT}" y1="{y:.1f}" x2="{right:.1f}" y2="{y:.1f}" stroke="#e6e6e6"/>'
        )
        parts.append(
            f'<text x="{_LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="11" '
            f'fill="#555">{escape(_fmt(t))}</text>'
        )
    if label:
        mid = (_TOP + _H - _BOTTOM) / 2
        parts.append(
            f'<text x="14" y="{mid:.1f}" transform="rotate(-90 14 {mid:.1f})" '
            f'text-anchor="middle" font-size="12" fill="#333">{escape(label)}</text>'
        )


def _x_label(parts: list[str], label: str) -> None:
    if label:
        parts.append(
            f'<text x="{(_LEFT + _W - _RIGHT) / 2:.1f}" y="{_H - 8}" text-anchor="middle" '
            f'font-size="12" fill="#333">{escape(label)}</text>'
        )


def _category_labels(parts: list[str], labels: Sequence[str], centers: list[float]) -> None:
    rotate = len(labels) > 8 or (any(len(x) > 10 for x in labels) and len(labels) > 4)
    base = _H - _BOTTOM + 16
    for label, cx in zip(labels, centers, strict=True):
        text = escape(_clip(label))
        if rotate:
            parts.append(
                f'<text x="{cx:.1f}" y="{base:.1f}" text-anchor="end" font-size="11" fill="#444" '
                f'transform="rotate(-35 {cx:.1f} {base:.1f})">{text}</text>'
            )
        else:
            parts.append(
                f'<text x="{cx:.1f}" y="{base:.1f}" text-anchor="middle" font-size="11" '
                f'fill="#444">{text}</text>'
            )


def _legend(parts: list[str], names: Sequence[str], colors: Sequence[str] = PALETTE) -> None:
    x = _LEFT
    for i, name in enumerate(names):
        color = colors[i % len(colors)]
        parts.append(f'<rect x="{x}" y="33" width="10" height="10" fill="{color}"/>')
        parts.append(
            f'<text x="{x + 14}" y="42" font-size="11" fill="#333">{escape(_clip(name, 24))}</text>'
        )
        x += 24 + 7 * min(24, len(name))


def bar_chart(
    labels: Sequence[str],
    values: Sequence[float],
    *,
    title: str,
    x_label: str = "",
    y_label: str = "",
    horizontal: bool = False,
    color: str = PALETTE[0],
) -> str:
    """One bar per label; `horizontal=True` suits long labels (e.g. elimination rules)."""
    if not labels:
        return _no_data(title)
    if horizontal:
        return _hbar_chart(labels, values, title=title, x_label=x_label, color=color)
    return grouped_bar_chart(
        labels, {y_label or "value": list(values)}, title=title, x_label=x_label,
        y_label=y_label, legend=False, colors=(color,),
    )  # fmt: skip


def _hbar_chart(
    labels: Sequence[str], values: Sequence[float], *, title: str, x_label: str, color: str
) -> str:
    row = 26
    height = _TOP + 20 + row * len(labels) + 40
    left = 24 + 7 * min(30, max(len(x) for x in labels))
    right = _W - 70
    top_v = max(max(values, default=0.0), 0.0)
    ticks = nice_ticks(0.0, top_v or 1.0)
    scale = (right - left) / (ticks[-1] or 1.0)
    parts = _open(title, _W, height)
    for t in ticks:
        x = left + t * scale
        parts.append(
            f'<line x1="{x:.1f}" y1="{_TOP + 10}" x2="{x:.1f}" y2="{height - 34}" '
            'stroke="#e6e6e6"/>'
        )
        parts.append(
            f'<text x="{x:.1f}" y="{height - 20}" text-anchor="middle" font-size="11" '
            f'fill="#555">{escape(_fmt(t))}</text>'
        )
    for i, (label, value) in enumerate(zip(labels, values, strict=True)):
        y = _TOP + 14 + i * row
        w = max(0.0, value) * scale
        parts.append(
            f'<text x="{left - 6}" y="{y + 14}" text-anchor="end" font-size="12" fill="#333">'
            f"{escape(_clip(label, 30))}</text>"
        )
        parts.append(
            f'<rect x="{left}" y="{y}" width="{w:.1f}" height="{row - 8}" fill="{color}">'
            f"<title>{escape(label)}: {escape(_fmt(value))}</title></rect>"
        )
        parts.append(
            f'<text x="{left + w + 4:.1f}" y="{y + 14}" font-size="11" fill="#333">'
            f"{escape(_fmt(value))}</text>"
        )
    if x_label:
        parts.append(
            f'<text x="{(left + right) / 2:.1f}" y="{height - 4}" text-anchor="middle" '
            f'font-size="12" fill="#333">{escape(x_label)}</text>'
        )
    parts.append("</svg>")
    return "\n".join(parts)


def grouped_bar_chart(
    categories: Sequence[str],
    series: Mapping[str, Sequence[float]],
    *,
    title: str,
    x_label: str = "",
    y_label: str = "",
    stacked: bool = False,
    legend: bool = True,
    colors: Sequence[str] = PALETTE,
) -> str:
    """Bars per category, one per series side by side (or stacked). Series must have one value
    per category."""
    if not categories or not series:
        return _no_data(title)
    names = list(series)
    for name in names:
        if len(series[name]) != len(categories):
            raise ValueError(f"series {name!r} needs {len(categories)} values")
    if stacked:
        top_v = max(sum(max(0.0, series[n][i]) for n in names) for i in range(len(categories)))
    else:
        top_v = max(max(series[n], default=0.0) for n in names)
    ticks = nice_ticks(0.0, max(top_v, 0.0) or 1.0)
    plot_h = _H - _TOP - _BOTTOM
    right = _W - _RIGHT

    def y_of(v: float) -> float:
        return _H - _BOTTOM - v / (ticks[-1] or 1.0) * plot_h

    parts = _open(title)
    _y_axis(parts, ticks, y_of, y_label, right)
    slot = (right - _LEFT) / len(categories)
    bar_group = slot * 0.75
    centers: list[float] = []
    for i, cat in enumerate(categories):
        x0 = _LEFT + i * slot + (slot - bar_group) / 2
        centers.append(_LEFT + (i + 0.5) * slot)
        base = 0.0
        for k, name in enumerate(names):
            v = max(0.0, float(series[name][i]))
            color = colors[k % len(colors)]
            tip = f"<title>{escape(cat)} · {escape(name)}: {escape(_fmt(v))}</title>"
            if stacked:
                y_top, y_bot = y_of(base + v), y_of(base)
                parts.append(
                    f'<rect x="{x0:.1f}" y="{y_top:.1f}" width="{bar_group:.1f}" '
                    f'height="{y_bot - y_top:.1f}" fill="{color}">{tip}</rect>'
                )
                base += v
            else:
                w = bar_group / len(names)
                y = y_of(v)
                parts.append(
                    f'<rect x="{x0 + k * w:.1f}" y="{y:.1f}" width="{max(1.0, w - 1):.1f}" '
                    f'height="{_H - _BOTTOM - y:.1f}" fill="{color}">{tip}</rect>'
                )
    parts.append(
        f'<line x1="{_LEFT}" y1="{_H - _BOTTOM}" x2="{right}" y2="{_H - _BOTTOM}" stroke="#888"/>'
    )
    _category_labels(parts, categories, centers)
    _x_label(parts, x_label)
    if legend:
        _legend(parts, names, colors)
    parts.append("</svg>")
    return "\n".join(parts)


def line_chart(
    series: Sequence[LineSeries],
    *,
    title: str,
    x_label: str = "",
    y_label: str = "",
    y_min: float | None = None,
    y_max: float | None = None,
    integer_x: bool = False,
) -> str:
    """Series of `(x, y)` points on shared numeric axes, each with its own colour.
    `integer_x` keeps only whole-number x ticks (steps, rounds)."""
    points = [p for s in series for p in s.points if math.isfinite(p[0]) and math.isfinite(p[1])]
    if not points:
        return _no_data(title)
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    x_ticks = nice_ticks(min(xs), max(xs))
    if integer_x:
        x_ticks = [t for t in x_ticks if t == int(t)] or [min(xs), max(xs)]
        if len(x_ticks) < 2:
            x_ticks = [x_ticks[0], x_ticks[0] + 1]
    lo = min(ys) if y_min is None else y_min
    hi = max(ys) if y_max is None else y_max
    y_ticks = nice_ticks(min(lo, 0.0) if y_min is None and lo > 0 else lo, hi)
    right = _W - _RIGHT
    plot_h = _H - _TOP - _BOTTOM

    def x_of(v: float) -> float:
        return _LEFT + (v - x_ticks[0]) / ((x_ticks[-1] - x_ticks[0]) or 1.0) * (right - _LEFT)

    def y_of(v: float) -> float:
        return _H - _BOTTOM - (v - y_ticks[0]) / ((y_ticks[-1] - y_ticks[0]) or 1.0) * plot_h

    parts = _open(title)
    _y_axis(parts, y_ticks, y_of, y_label, right)
    for t in x_ticks:
        parts.append(
            f'<text x="{x_of(t):.1f}" y="{_H - _BOTTOM + 16}" text-anchor="middle" '
            f'font-size="11" fill="#555">{escape(_fmt(t))}</text>'
        )
    parts.append(
        f'<line x1="{_LEFT}" y1="{_H - _BOTTOM}" x2="{right}" y2="{_H - _BOTTOM}" stroke="#888"/>'
    )
    for k, s in enumerate(series):
        color = PALETTE[k % len(PALETTE)]
        pts = sorted(p for p in s.points if math.isfinite(p[0]) and math.isfinite(p[1]))
        if s.line and len(pts) > 1:
            path = " ".join(f"{x_of(x):.1f},{y_of(y):.1f}" for x, y in pts)
            parts.append(
                f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="2"/>'
            )
        if s.dots:
            for x, y in pts:
                parts.append(
                    f'<circle cx="{x_of(x):.1f}" cy="{y_of(y):.1f}" r="3.5" fill="{color}">'
                    f"<title>{escape(s.name)}: ({escape(_fmt(x))}, {escape(_fmt(y))})</title>"
                    "</circle>"
                )
    _x_label(parts, x_label)
    _legend(parts, [s.name for s in series])
    parts.append("</svg>")
    return "\n".join(parts)


def _quantile(sorted_values: list[float], q: float) -> float:
    pos = (len(sorted_values) - 1) * q
    lo, hi = math.floor(pos), math.ceil(pos)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def box_plot(
    groups: Mapping[str, Sequence[float]],
    *,
    title: str,
    x_label: str = "",
    y_label: str = "",
    y_min: float | None = None,
    y_max: float | None = None,
) -> str:
    """One box per group (quartiles, whiskers at min/max, a diamond at the mean, n below)."""
    data = {k: sorted(float(v) for v in vs if math.isfinite(v)) for k, vs in groups.items()}
    data = {k: v for k, v in data.items() if v}
    if not data:
        return _no_data(title)
    all_v = [v for vs in data.values() for v in vs]
    ticks = nice_ticks(
        min(all_v) if y_min is None else y_min, max(all_v) if y_max is None else y_max
    )
    right = _W - _RIGHT
    plot_h = _H - _TOP - _BOTTOM

    def y_of(v: float) -> float:
        return _H - _BOTTOM - (v - ticks[0]) / ((ticks[-1] - ticks[0]) or 1.0) * plot_h

    parts = _open(title)
    _y_axis(parts, ticks, y_of, y_label, right)
    slot = (right - _LEFT) / len(data)
    centers: list[float] = []
    for i, (name, vs) in enumerate(data.items()):
        cx = _LEFT + (i + 0.5) * slot
        centers.append(cx)
        half = min(40.0, slot * 0.3)
        q1, med, q3 = _quantile(vs, 0.25), _quantile(vs, 0.5), _quantile(vs, 0.75)
        mean = fmean(vs)
        color = PALETTE[0]
        tip = (
            f"<title>{escape(name)}: n={len(vs)}, mean={mean:.2f}, median={med:.2f}, "
            f"q1={q1:.2f}, q3={q3:.2f}</title>"
        )
        parts.append(
            f'<line x1="{cx:.1f}" y1="{y_of(vs[0]):.1f}" x2="{cx:.1f}" y2="{y_of(vs[-1]):.1f}" '
            f'stroke="#555"/>'
        )
        parts.append(
            f'<rect x="{cx - half:.1f}" y="{y_of(q3):.1f}" width="{2 * half:.1f}" '
            f'height="{max(1.0, y_of(q1) - y_of(q3)):.1f}" fill="{color}" fill-opacity="0.35" '
            f'stroke="{color}">{tip}</rect>'
        )
        parts.append(
            f'<line x1="{cx - half:.1f}" y1="{y_of(med):.1f}" x2="{cx + half:.1f}" '
            f'y2="{y_of(med):.1f}" stroke="{color}" stroke-width="2.5"/>'
        )
        my = y_of(mean)
        parts.append(
            f'<polygon points="{cx:.1f},{my - 5:.1f} {cx + 5:.1f},{my:.1f} {cx:.1f},{my + 5:.1f} '
            f'{cx - 5:.1f},{my:.1f}" fill="{PALETTE[1]}">{tip}</polygon>'
        )
        parts.append(
            f'<text x="{cx:.1f}" y="{_H - _BOTTOM + 30}" text-anchor="middle" font-size="10" '
            f'fill="#777">n={len(vs)}</text>'
        )
    parts.append(
        f'<line x1="{_LEFT}" y1="{_H - _BOTTOM}" x2="{right}" y2="{_H - _BOTTOM}" stroke="#888"/>'
    )
    _category_labels(parts, list(data), centers)
    _x_label(parts, x_label)
    parts.append("</svg>")
    return "\n".join(parts)
