"""Charts as inline SVG, drawn here (no chart library, no script): the HTML report opens with no
network and prints as it looks.

Every function returns a complete ``<svg>`` element as a :class:`markupsafe.Markup` string; every
text that comes from data is escaped.  Sizes are in CSS pixels with a ``viewBox`` so the charts
scale with the page.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from html import escape

from markupsafe import Markup

from bench.report.sequence import Diagram

__all__ = ["stage_overview", "distribution", "cdf", "sequence"]

FONT = "font-family:system-ui,-apple-system,'Segoe UI',Roboto,Helvetica,Arial,sans-serif"
COLORS = {"comet": "#2563eb", "cometql": "#7c3aed", "sip": "#059669", "media": "#d97706", "fault": "#dc2626",
          "mark": "#475569", "callback": "#0f766e", "failure": "#dc2626", "": "#334155"}


def _e(text: object) -> str:
    return escape(str(text), quote=True)


def _fmt_ms(ms: float) -> str:
    if ms >= 10_000:
        return f"{ms / 1000:.0f} s"
    if ms >= 1000:
        return f"{ms / 1000:.1f} s"
    if ms >= 10:
        return f"{ms:.0f} ms"
    if ms >= 1:
        return f"{ms:.1f} ms"
    return f"{ms:.2f} ms"


def _log_ticks(lo: float, hi: float) -> list[float]:
    ticks = []
    for e in range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1):
        for m in (1, 2, 5):
            v = m * 10 ** e
            if lo <= v <= hi:
                ticks.append(v)
    return ticks


def stage_overview(stages: dict[str, dict], order: Sequence[str]) -> Markup:
    """One row per stage on a shared log axis: min-max line, p50-p90 box, whisker to p99, p50 tick."""
    rows = [s for s in order if stages.get(s, {}).get("count")]
    if not rows:
        return Markup("")
    left, right, row_h, top = 150, 30, 24, 28
    width = 860
    plot_w = width - left - right
    positive = [stages[s]["min"] for s in rows if stages[s]["min"] > 0] + [stages[s]["p50"] for s in rows
                                                                          if stages[s]["p50"] > 0]
    lo = max(0.1, min(positive) / 2) if positive else 0.1
    hi = max(stages[s]["max"] for s in rows)
    hi = max(hi, lo * 10)
    llo, lhi = math.log10(lo), math.log10(hi)

    def x(v: float) -> float:
        v = max(v, lo)
        return left + (math.log10(v) - llo) / (lhi - llo) * plot_w

    height = top + row_h * len(rows) + 30
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" viewBox="0 0 {width} {height}" '
             f'width="{width}" height="{height}" role="img" aria-label="latency per stage" style="{FONT}">']
    for tick in _log_ticks(lo, hi):
        tx = x(tick)
        parts.append(f'<line x1="{tx:.1f}" y1="{top - 6}" x2="{tx:.1f}" y2="{height - 26}" stroke="#e2e8f0"/>')
        parts.append(f'<text x="{tx:.1f}" y="{height - 10}" font-size="11" text-anchor="middle" '
                     f'fill="#64748b">{_e(_fmt_ms(tick))}</text>')
    parts.append(f'<text x="{left}" y="14" font-size="11" fill="#64748b">min–max line, box p50–p90, whisker to '
                 f'p99, log scale</text>')
    for i, name in enumerate(rows):
        s = stages[name]
        cy = top + i * row_h + row_h / 2
        parts.append(f'<text x="{left - 8}" y="{cy + 4:.1f}" font-size="12" text-anchor="end" '
                     f'fill="#0f172a">{_e(name)}</text>')
        parts.append(f'<line x1="{x(s["min"]):.1f}" y1="{cy:.1f}" x2="{x(s["max"]):.1f}" y2="{cy:.1f}" '
                     f'stroke="#94a3b8"/>')
        parts.append(f'<line x1="{x(s["p90"]):.1f}" y1="{cy:.1f}" x2="{x(s["p99"]):.1f}" y2="{cy:.1f}" '
                     f'stroke="#1e40af" stroke-width="2"/>')
        bx, bw = x(s["p50"]), max(2.0, x(s["p90"]) - x(s["p50"]))
        parts.append(f'<rect x="{bx:.1f}" y="{cy - 7:.1f}" width="{bw:.1f}" height="14" fill="#93c5fd" '
                     f'stroke="#1e40af"><title>{_e(name)}: p50 {_e(_fmt_ms(s["p50"]))}, p90 '
                     f'{_e(_fmt_ms(s["p90"]))}, p99 {_e(_fmt_ms(s["p99"]))}, max {_e(_fmt_ms(s["max"]))} '
                     f'({s["count"]} values)</title></rect>')
        parts.append(f'<line x1="{bx:.1f}" y1="{cy - 7:.1f}" x2="{bx:.1f}" y2="{cy + 7:.1f}" stroke="#0f172a" '
                     f'stroke-width="2"/>')
    parts.append("</svg>")
    return Markup("".join(parts))


def distribution(buckets: list[tuple[float, float, int]], *, width: int = 260, height: int = 70) -> Markup:
    """A small histogram (log-spaced buckets of :func:`bench.report.stats.log_buckets`)."""
    if not buckets:
        return Markup("")
    peak = max(c for _, _, c in buckets) or 1
    bw = width / len(buckets)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="spark" viewBox="0 0 {width} {height + 14}" '
             f'width="{width}" height="{height + 14}" style="{FONT}">']
    for i, (a, b, c) in enumerate(buckets):
        if not c:
            continue
        h = max(1.0, c / peak * height)
        parts.append(f'<rect x="{i * bw:.1f}" y="{height - h:.1f}" width="{max(bw - 1, 1):.1f}" height="{h:.1f}" '
                     f'fill="#60a5fa"><title>{_e(_fmt_ms(a))}–{_e(_fmt_ms(b))}: {c}</title></rect>')
    parts.append(f'<text x="0" y="{height + 12}" font-size="10" fill="#64748b">{_e(_fmt_ms(buckets[0][0]))}</text>')
    parts.append(f'<text x="{width}" y="{height + 12}" font-size="10" text-anchor="end" '
                 f'fill="#64748b">{_e(_fmt_ms(buckets[-1][1]))}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))


def cdf(series: Iterable[tuple[str, list[tuple[int, int]], str]], *, marks: Sequence[float] = (50, 90, 99)
        ) -> Markup:
    """Cumulative distribution (share of joins at or below a latency) of one or more sorted-bin
    series ``(label, bins_us, colour)``; the first series' percentiles are marked."""
    series = [(label, b, colour) for label, b, colour in series if b]
    if not series:
        return Markup("")
    width, height, left, bottom, top, right = 860, 300, 56, 34, 30, 90
    plot_w, plot_h = width - left - right, height - top - bottom
    hi = max(b[-1][0] for _, b, _ in series) / 1000.0
    first = min(b[0][0] for _, b, _ in series) / 1000.0
    hi = hi if hi > 0 else 1.0
    # start the axis near the fastest join (a nice round number below it): the interesting part is
    # the spread, not the empty stretch from zero
    step0 = _nice_step(max(hi - first, hi * 0.05) / 6)
    lo = max(0.0, math.floor(first * 0.95 / step0) * step0)
    if hi - lo < 1e-9:
        hi = lo + step0

    def x(ms: float) -> float:
        return left + (ms - lo) / (hi - lo) * plot_w

    def y(share: float) -> float:
        return top + (1 - share) * plot_h

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" id="cdf-join-total" viewBox="0 0 {width} '
             f'{height}" width="{width}" height="{height}" role="img" aria-label="cumulative join_total" '
             f'style="{FONT}">']
    for share in (0, 0.25, 0.5, 0.75, 0.9, 1.0):
        parts.append(f'<line x1="{left}" y1="{y(share):.1f}" x2="{width - right}" y2="{y(share):.1f}" '
                     f'stroke="#e2e8f0"/><text x="{left - 6}" y="{y(share) + 4:.1f}" font-size="10" '
                     f'text-anchor="end" fill="#64748b">{share * 100:g}%</text>')
    step = _nice_step((hi - lo) / 6)
    v = lo
    while v <= hi + 1e-9:
        parts.append(f'<line x1="{x(v):.1f}" y1="{top}" x2="{x(v):.1f}" y2="{height - bottom}" stroke="#f1f5f9"/>'
                     f'<text x="{x(v):.1f}" y="{height - bottom + 16}" font-size="10" text-anchor="middle" '
                     f'fill="#64748b">{_e(_fmt_ms(v) if v else "0")}</text>')
        v += step
    for n, (label, b, colour) in enumerate(series):
        total = sum(c for _, c in b)
        running, pts = 0, [f"{x(lo):.1f},{y(0):.1f}"]
        for value, count in b:
            ms = value / 1000.0
            pts.append(f"{x(ms):.1f},{y(running / total):.1f}")
            running += count
            pts.append(f"{x(ms):.1f},{y(running / total):.1f}")
        parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{" ".join(pts)}">'
                     f'<title>{_e(label)} ({total} joins)</title></polyline>')
        parts.append(f'<text x="{left + 6}" y="{top - 16 + n * 13}" font-size="11" '
                     f'fill="{colour}">{_e(label)} ({total})</text>')
    label, b, colour = series[0]
    total = sum(c for _, c in b)
    for p in marks:
        rank = max(1, min(total, int(p * total / 100 + 0.5)))
        running = 0
        for value, count in b:
            running += count
            if running >= rank:
                ms = value / 1000.0
                parts.append(f'<circle cx="{x(ms):.1f}" cy="{y(p / 100):.1f}" r="3.5" fill="{colour}"/>'
                             f'<text x="{x(ms) + 6:.1f}" y="{y(p / 100) + 12:.1f}" font-size="11" '
                             f'fill="#0f172a">p{p:g} {_e(_fmt_ms(ms))}</text>')
                break
    parts.append("</svg>")
    return Markup("".join(parts))


def _nice_step(raw: float) -> float:
    if raw <= 0:
        return 1.0
    e = 10 ** math.floor(math.log10(raw))
    for m in (1, 2, 5, 10):
        if m * e >= raw:
            return m * e
    return 10 * e


def sequence(diagram: Diagram) -> Markup:
    """The diagram: a column per lane, a row per message (arrow), note or step (separator)."""
    lanes = diagram.lanes
    if not lanes:
        return Markup('<p class="muted">no messages of this call in the journal</p>')
    lane_w, left, head, row_h = 190, 70, 34, 17
    width = left + lane_w * len(lanes) + 10
    height = head + row_h * (len(diagram.rows) + 1) + 8
    cx = {lane: left + lane_w * i + lane_w / 2 for i, lane in enumerate(lanes)}
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="sequence" viewBox="0 0 {width} {height}" '
             f'width="{width}" height="{height}" style="{FONT}"><defs><marker id="ah" viewBox="0 0 10 10" '
             f'refX="10" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse"><path '
             f'd="M0,0 L10,5 L0,10 z" fill="context-stroke"/></marker></defs>']
    for lane in lanes:
        parts.append(f'<rect x="{cx[lane] - lane_w / 2 + 6:.1f}" y="4" width="{lane_w - 12}" height="22" rx="4" '
                     f'fill="#f1f5f9" stroke="#cbd5e1"/><text x="{cx[lane]:.1f}" y="19" font-size="12" '
                     f'text-anchor="middle" font-weight="600" fill="#0f172a">{_e(lane)}</text>'
                     f'<line x1="{cx[lane]:.1f}" y1="26" x2="{cx[lane]:.1f}" y2="{height - 4}" stroke="#cbd5e1" '
                     f'stroke-dasharray="3 3"/>')
    for i, row in enumerate(diagram.rows):
        yy = head + row_h * i + row_h / 2 + 4
        colour = COLORS.get(row.style, COLORS[""])
        title = f"<title>{_e(row.detail or row.label)}</title>" if (row.detail or row.label) else ""
        parts.append(f'<text x="4" y="{yy + 4:.1f}" font-size="10" fill="#64748b">{row.t * 1000:.0f} ms</text>')
        if row.kind == "step":
            box = min(width - left - 12, 10 + 6.6 * len(row.label))
            parts.append(f'<g><line x1="{left}" y1="{yy:.1f}" x2="{width - 6}" y2="{yy:.1f}" stroke="{colour}" '
                         f'stroke-width="0.6"/><rect x="{left + 4}" y="{yy - 7:.1f}" width="{box:.0f}" '
                         f'height="14" fill="#fff"/><text x="{left + 8}" y="{yy + 4:.1f}" font-size="11" '
                         f'font-style="italic" fill="{colour}">{_e(row.label)}</text>{title}</g>')
        elif row.kind == "note" and row.src in cx:
            text_w = min(lane_w - 10, 10 + 6.0 * len(row.label))
            parts.append(f'<g><rect x="{cx[row.src] - text_w / 2:.1f}" y="{yy - 7:.1f}" width="{text_w:.1f}" '
                         f'height="14" rx="3" fill="#fefce8" stroke="{colour}" stroke-width="0.6"/><text '
                         f'x="{cx[row.src]:.1f}" y="{yy + 4:.1f}" font-size="10" text-anchor="middle" '
                         f'fill="{colour}">{_e(row.label)}</text>{title}</g>')
        elif row.kind == "arrow" and row.src in cx and row.dst in cx:
            x1, x2 = cx[row.src], cx[row.dst]
            mid = (x1 + x2) / 2
            room = max(6, int((abs(x2 - x1) - 10) / 5.7))
            label = row.label if len(row.label) <= room else row.label[: room - 1] + "…"
            parts.append(f'<g><line x1="{x1:.1f}" y1="{yy:.1f}" x2="{x2:.1f}" y2="{yy:.1f}" stroke="{colour}" '
                         f'stroke-width="1.2" marker-end="url(#ah)"/><text x="{mid:.1f}" y="{yy - 2:.1f}" '
                         f'font-size="10" text-anchor="middle" fill="{colour}">{_e(label)}</text>{title}</g>')
    if diagram.omitted:
        yy = head + row_h * len(diagram.rows) + 12
        parts.append(f'<text x="{left}" y="{yy:.1f}" font-size="11" fill="#64748b">… {diagram.omitted} more '
                     f'messages of this call not drawn (cometbench journal --run {_e(diagram.run_id)} lists '
                     f'them)</text>')
    parts.append("</svg>")
    return Markup("".join(parts))
