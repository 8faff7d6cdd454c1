"""Render `ReportData` into one self-contained `report.html`.

The page has no scripts, no external stylesheets, fonts or images, and makes no network request:
charts are inline SVG from `runtime.report.svg`, styles are one inline `<style>`. Sections with
no data are replaced by a one-line note. All user text (instructions, agent names, reasons) is
HTML-escaped. `write_report` writes atomically (temporary file in the same directory, then
`os.replace`), so a reader never sees a half-written report.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from html import escape
from pathlib import Path

from agents.judge.aggregate import CategoryStats
from runtime.report.model import ReportData
from runtime.report.svg import (
    LineSeries,
    bar_chart,
    box_plot,
    grouped_bar_chart,
    line_chart,
)

__all__ = ["SECTIONS", "render_report", "write_report"]

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:0;
background:#f4f5f7;color:#222}
main{max-width:1080px;margin:0 auto;padding:24px}
h1{font-size:26px;margin:0 0 4px}h2{font-size:19px;margin:0 0 12px}
h3{font-size:15px;margin:16px 0 8px}
.meta{color:#666;font-size:13px;margin-bottom:16px}
nav{font-size:13px;margin-bottom:16px}nav a{margin-right:12px;color:#3b6fb6;text-decoration:none}
section{background:#fff;border:1px solid #e2e4e8;border-radius:8px;padding:18px 22px;
margin:0 0 18px}
p.omitted{color:#777;font-size:13px;margin:0 0 10px;padding:8px 22px}
table{border-collapse:collapse;font-size:13px;margin:10px 0;width:auto}
th,td{border-bottom:1px solid #eee;padding:5px 12px 5px 0;text-align:left;vertical-align:top}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
.cards{display:flex;flex-wrap:wrap;gap:12px}
.card{border:1px solid #e2e4e8;border-radius:6px;padding:10px 14px;min-width:140px}
.card .k{color:#666;font-size:12px}.card .v{font-size:20px;font-weight:600}
.status-ok{color:#2e7d32}.status-bad{color:#c62828}
svg.chart{max-width:100%;height:auto;display:block;margin:6px 0}
ol.lineage{padding-left:20px;margin:6px 0 14px}ol.lineage li{margin:6px 0}
.step-head{font-size:12px;color:#555}.badge{display:inline-block;border-radius:4px;padding:0 6px;
font-size:11px;margin-left:6px;background:#eef}.badge.rejected{background:#fde2e1}
.badge.accepted{background:#e3f4e4}.text{white-space:pre-wrap;font-size:13px;margin-top:2px}
details{font-size:12px;color:#555}
"""

_TEXT_LIMIT = 600
_DASH = "\u2013"  # en dash: "no value"


def _num(value: float | int | None, digits: int = 2) -> str:
    if value is None:
        return _DASH
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:,.{digits}f}"


def _pct(value: float | None) -> str:
    return _DASH if value is None else f"{100 * value:.1f}%"


def _table(head: list[str], rows: list[list[str]], numeric: set[int] | None = None) -> str:
    numeric = numeric or set()
    cls = [' class="num"' if i in numeric else "" for i in range(len(head))]
    out = ["<table><thead><tr>"]
    out += [f"<th{cls[i]}>{escape(h)}</th>" for i, h in enumerate(head)]
    out.append("</tr></thead><tbody>")
    for row in rows:
        out.append("<tr>" + "".join(f"<td{cls[i]}>{c}</td>" for i, c in enumerate(row)) + "</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return _DASH
    h, rem = divmod(round(seconds), 3600)
    m, s = divmod(rem, 60)
    return f"{h}h {m:02d}m {s:02d}s" if h else f"{m}m {s:02d}s"


def _summary(d: ReportData) -> str:
    s = d.summary
    ok = s.exit_status.lower() in ("ok", "success", "completed", "0")
    cards = [
        ("config", escape(s.config_name)),
        ("method", escape(s.method or _DASH)),
        ("wall time", _duration(s.wall_time_s)),
        ("rows in", _num(s.rows_in)),
        ("rows out", _num(s.rows_out)),
        (
            "exit status",
            f'<span class="{"status-ok" if ok else "status-bad"}">{escape(s.exit_status)}</span>',
        ),
        ("dead letters", _num(s.dead_letters)),
    ]
    html = '<div class="cards">' + "".join(
        f'<div class="card"><div class="k">{k}</div><div class="v">{v}</div></div>'
        for k, v in cards
    )
    html += "</div>"
    extra = [["run id", escape(s.run_id)]] if s.run_id else []
    if s.started_at is not None:
        extra.append(["started", escape(s.started_at.isoformat(timespec="seconds"))])
    extra += [[escape(k), escape(v)] for k, v in sorted(s.extra.items())]
    if extra:
        html += _table(["", ""], extra)
    return html


def _rows(d: ReportData) -> str | None:
    if not d.rows_per_round:
        return None
    rows = sorted(d.rows_per_round, key=lambda r: r.round)
    labels = [f"round {r.round}" for r in rows]
    series: dict[str, list[float]] = {"produced": [float(r.produced) for r in rows]}
    if any(r.accepted is not None for r in rows):
        series["accepted"] = [float(r.accepted or 0) for r in rows]
    if any(r.rejected is not None for r in rows):
        series["rejected"] = [float(r.rejected or 0) for r in rows]
    chart = grouped_bar_chart(labels, series, title="Rows per round", y_label="rows")
    table = _table(
        ["round", "produced", "accepted", "rejected"],
        [[str(r.round), _num(r.produced), _num(r.accepted), _num(r.rejected)] for r in rows],
        {1, 2, 3},
    )
    return chart + table


def _elimination(d: ReportData) -> str | None:
    if not d.elimination_reasons:
        return None
    items = sorted(d.elimination_reasons.items(), key=lambda kv: (-kv[1], kv[0]))
    return bar_chart(
        [k for k, _ in items],
        [float(v) for _, v in items],
        title="Eliminated rows per rule",
        x_label="rows",
        horizontal=True,
        color="#c2453d",
    )


def _difficulty(d: ReportData) -> str | None:
    rounds = [r for r in sorted(d.difficulty_by_round, key=lambda r: r.round) if r.n]
    if not rounds:
        return None
    chart = box_plot(
        {f"round {r.round}": r.scores for r in rounds},
        title="LLM difficulty score by round (box: quartiles; diamond: mean)",
        y_label="difficulty (1-10)",
        y_min=0,
        y_max=10,
    )
    table = _table(
        ["round", "rated", "unparseable", "mean", "median", "stdev"],
        [
            [
                str(r.round),
                _num(r.n - r.unparseable),
                _num(r.unparseable),
                _num(r.mean),
                _num(r.median),
                _num(r.stdev),
            ]
            for r in rounds
        ],
        {1, 2, 3, 4, 5},
    )
    return chart + table


def _lambda(d: ReportData) -> str | None:
    if not d.lambda_steps:
        return None
    chosen = sorted((p.step, p.failure_rate) for p in d.lambda_steps if p.chosen)
    series = [
        LineSeries(
            name="candidates",
            points=[(float(p.step), p.failure_rate) for p in d.lambda_steps],
            line=False,
        ),
    ]
    if chosen:
        series.append(LineSeries(name="chosen method", points=[(float(s), v) for s, v in chosen]))
    chart = line_chart(
        series,
        title="Failure rate λ per optimization step",
        x_label="optimization step",
        y_label="λ (failure rate)",
        y_min=0.0,
        y_max=1.0,
        integer_x=True,
    )
    rows = [
        [str(p.step), escape(p.candidate), _pct(p.failure_rate), "✓" if p.chosen else ""]
        for p in sorted(d.lambda_steps, key=lambda p: (p.step, p.failure_rate, p.candidate))
    ]
    return chart + _table(["step", "candidate", "λ", "chosen"], rows, {2})


def _usage(d: ReportData) -> str | None:
    if not d.agent_usage:
        return None
    usage = sorted(d.agent_usage, key=lambda u: u.agent)
    chart = grouped_bar_chart(
        [u.agent for u in usage],
        {
            "prompt tokens": [float(u.prompt_tokens) for u in usage],
            "completion tokens": [float(u.completion_tokens) for u in usage],
        },
        title="Tokens per agent",
        y_label="tokens",
        stacked=True,
    )
    costs = [u.cost_usd for u in usage if u.cost_usd is not None]
    rows = [
        [
            escape(u.agent),
            _num(u.calls),
            _num(u.prompt_tokens),
            _num(u.completion_tokens),
            _num(u.errors),
            _DASH if u.cost_usd is None else f"${u.cost_usd:,.4f}",
        ]
        for u in usage
    ]
    rows.append(
        [
            "<b>total</b>",
            _num(sum(u.calls for u in usage)),
            _num(sum(u.prompt_tokens for u in usage)),
            _num(sum(u.completion_tokens for u in usage)),
            _num(sum(u.errors for u in usage)),
            f"${sum(costs):,.4f}" if costs else _DASH,
        ]
    )
    head = ["agent", "calls", "prompt tokens", "completion tokens", "errors", "cost"]
    return chart + _table(head, rows, {1, 2, 3, 4, 5})


def _rate(d: ReportData) -> str | None:
    if not d.call_rate:
        return None
    points = [(p.t_s, p.calls_per_s) for p in sorted(d.call_rate, key=lambda p: p.t_s)]
    peak = max(v for _, v in points)
    mean = sum(v for _, v in points) / len(points)
    chart = line_chart(
        [LineSeries(name="calls/s", points=points, dots=len(points) <= 60)],
        title="LLM calls per second",
        x_label="seconds since start",
        y_label="calls/s",
    )
    return chart + f"<p>mean {_num(mean)} calls/s, peak {_num(peak)} calls/s</p>"


def _judge_table(rows: list[CategoryStats], kind: str) -> str:
    if kind == "single":
        return _table(
            ["category", "n", "mean rating", "unparseable"],
            [
                [escape(r.category), _num(r.n), _num(r.mean_rating), _num(r.unparseable)]
                for r in rows
            ],
            {1, 2, 3},
        )
    return _table(
        [
            "category",
            "n",
            "win",
            "tie",
            "loss",
            "win rate",
            "adj. win rate",
            "model",
            "baseline",
            "unparseable",
        ],
        [
            [
                escape(r.category),
                _num(r.n),
                _num(r.wins),
                _num(r.ties),
                _num(r.losses),
                _pct(r.win_rate),
                _pct(r.adjusted_win_rate),
                _num(r.mean_model_score),
                _num(r.mean_baseline_score),
                _num(r.unparseable),
            ]
            for r in rows
        ],
        {1, 2, 3, 4, 5, 6, 7, 8, 9},
    )


def _judge(d: ReportData) -> str | None:
    if not d.judge:
        return None
    parts: list[str] = []
    for table in d.judge:
        cats = [r for r in table.rows if r.category != "overall"] or table.rows
        parts.append(f"<h3>{escape(table.title)}</h3>")
        if table.kind == "single":
            parts.append(
                bar_chart(
                    [r.category for r in cats],
                    [r.mean_rating or 0.0 for r in cats],
                    title=f"{table.title}: mean rating per category",
                    y_label="rating (1-10)",
                )
            )
        else:
            parts.append(
                grouped_bar_chart(
                    [r.category for r in cats],
                    {
                        "win": [float(r.wins) for r in cats],
                        "tie": [float(r.ties) for r in cats],
                        "loss": [float(r.losses) for r in cats],
                    },
                    title=f"{table.title}: win / tie / loss per category",
                    y_label="questions",
                    stacked=True,
                    colors=("#4f9d5d", "#b8b8b8", "#c2453d"),
                )
            )
        parts.append(_judge_table(table.rows, table.kind))
    return "".join(parts)


def _quality(d: ReportData) -> str | None:
    q = d.quality
    if q is None:
        return None
    parts: list[str] = []
    if q.tags_by_round:
        rounds = sorted(q.tags_by_round)
        parts.append("<h3>Intent tags (InsTag-style)</h3>")
        if len(rounds) > 1:
            parts.append(
                grouped_bar_chart(
                    [f"round {r}" for r in rounds],
                    {
                        "tags per instruction": [
                            q.tags_by_round[r].complexity or 0.0 for r in rounds
                        ]
                    },
                    title="Complexity: tags per instruction by round",
                    y_label="tags per instruction",
                    legend=False,
                )
            )
        parts.append(
            _table(
                ["round", "tagged", "unparseable", "complexity", "diversity", "top tags"],
                [
                    [
                        str(r),
                        _num(m.parsed),
                        _num(m.unparseable),
                        _num(m.complexity),
                        _num(m.diversity),
                        escape(", ".join(t for t, _ in m.top[:6])),
                    ]
                    for r in rounds
                    for m in [q.tags_by_round[r]]
                ],
                {1, 2, 3, 4},
            )
        )
    if q.diversity is not None or q.near_duplicate_pairs is not None:
        parts.append("<h3>Embedding diversity</h3>")
        rows: list[list[str]] = []
        if q.diversity is not None:
            dv = q.diversity
            rows += [
                ["embedder", escape(dv.embedder)],
                ["texts", _num(dv.n)],
                ["mean pairwise cosine distance", _num(dv.mean_pairwise_distance, 3)],
                [f"clusters (similarity ≥ {dv.cluster_threshold:g})", _num(dv.clusters)],
            ]
        if q.near_duplicate_pairs is not None:
            thr = (
                "" if q.near_duplicate_threshold is None else f" (≥ {q.near_duplicate_threshold:g})"
            )
            rows.append([f"near-duplicate pairs{thr}", _num(q.near_duplicate_pairs)])
        parts.append(_table(["metric", "value"], rows, {1}))
    if q.contamination is not None:
        c = q.contamination
        parts.append(f"<h3>Benchmark contamination ({c.ngram}-gram overlap)</h3>")
        rows = [["checked", _num(c.checked)], ["contaminated", _num(c.contaminated)]]
        rows += [[f"… with {escape(b)}", _num(n)] for b, n in sorted(c.by_benchmark.items())]
        parts.append(_table(["", "texts"], rows, {1}))
        if c.hits:
            parts.append(
                _table(
                    ["text", "benchmark", "item", "shared n-grams"],
                    [
                        [
                            escape(h.text_id),
                            escape(h.benchmark),
                            escape(h.item_id),
                            _num(h.overlapping_ngrams),
                        ]
                        for h in c.hits[:20]
                    ],
                    {3},
                )
            )
    return "".join(parts) or None


def _clip(text: str) -> str:
    if len(text) <= _TEXT_LIMIT:
        return f'<div class="text">{escape(text)}</div>'
    return (
        f'<div class="text">{escape(text[:_TEXT_LIMIT])}…</div>'
        f"<details><summary>full text ({len(text):,} characters)</summary>"
        f'<div class="text">{escape(text)}</div></details>'
    )


def _lineages(d: ReportData) -> str | None:
    if not d.lineages:
        return None
    parts: list[str] = []
    for lineage in d.lineages:
        parts.append(f'<h3>seed {escape(lineage.seed_id)}</h3><ol class="lineage" start="0">')
        for step in sorted(lineage.steps, key=lambda s: s.round):
            label = "seed" if step.round == 0 else f"round {step.round}"
            op = f" · {escape(step.operation)}" if step.operation else ""
            status = escape(step.status)
            badge = f'<span class="badge {status}">{status}</span>' if step.round else ""
            reason = f" — {escape(step.reason)}" if step.reason else ""
            parts.append(
                f'<li><div class="step-head">{label}{op}{badge}{reason}</div>'
                f"{_clip(step.instruction)}</li>"
            )
        parts.append("</ol>")
    return "".join(parts)


# (anchor, heading, renderer, note when there is no data)
SECTIONS: tuple[tuple[str, str, Callable[[ReportData], str | None], str], ...] = (
    ("rows", "Rows per round", _rows, "no per-round row counts were recorded"),
    ("elimination", "Elimination reasons", _elimination, "no row was eliminated"),
    ("difficulty", "Difficulty by round", _difficulty, "difficulty was not rated in this run"),
    ("lambda", "Auto Evol: λ per step and candidate", _lambda, "no method optimization ran"),
    ("usage", "Tokens and cost per agent", _usage, "no LLM usage was recorded"),
    ("rate", "LLM calls over time", _rate, "no LLM call times were recorded"),
    ("judge", "Judge results per category", _judge, "no judging ran"),
    ("quality", "Data quality", _quality, "no data-quality metrics were computed"),
    ("lineages", "Example lineages", _lineages, "no lineage examples were recorded"),
)


def render_report(data: ReportData) -> str:
    """The complete HTML page for `data` (one string, no external resources)."""
    body: list[str] = []
    nav: list[str] = ['<a href="#summary">Summary</a>']
    body.append(f'<section id="summary"><h2>Run summary</h2>{_summary(data)}</section>')
    for anchor, heading, renderer, note in SECTIONS:
        html = renderer(data)
        if html is None:
            body.append(
                f'<p class="omitted" id="{anchor}" data-section="{anchor}">'
                f"<b>{escape(heading)}</b>: not shown — {escape(note)}.</p>"
            )
            continue
        nav.append(f'<a href="#{anchor}">{escape(heading)}</a>')
        body.append(f'<section id="{anchor}"><h2>{escape(heading)}</h2>{html}</section>')
    generated = data.generated_at.isoformat(timespec="seconds")
    title = escape(data.title)
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{title} — {escape(data.summary.config_name)}</title>"
        f"<style>{_CSS}</style></head><body><main>"
        f"<h1>{title}</h1>"
        f'<div class="meta">{escape(data.summary.config_name)} · '
        f"generated {escape(generated)}</div>"
        f"<nav>{''.join(nav)}</nav>"
        f"{''.join(body)}"
        "</main></body></html>\n"
    )


def write_report(data: ReportData, path: Path | str) -> Path:
    """Render and write atomically to `path` (parents created); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    html = render_report(data)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(html)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
