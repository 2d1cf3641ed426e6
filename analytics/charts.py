"""The report's charts as SVG text, drawn directly: horizontal bars need no plotting engine.

    >>> svg = ranking_chart([("Phòng Nội vụ", 0.42)], baseline=0.3, axis="%", baseline_label="30%")
    >>> svg.startswith("<svg") and "Phòng Nội vụ" in svg and "42%" in svg
    True

Why not matplotlib: laying out 90 unit names as tick labels took ~0.3-0.5 s a chart here,
about half of a whole month's evaluation; these functions take ~1 ms, give the same bytes
for the same figures, and leave the text as text (searchable, copyable, drawn by the
reader's fonts, Vietnamese included). Sizes are in CSS pixels; the SVG scales to its box.
"""

from __future__ import annotations

from collections.abc import Sequence
from xml.sax.saxutils import escape, quoteattr

GOOD = "#1b7f3b"
BAD = "#c0392b"
GREY = "#555555"
PALETTE = {
    "regular": GOOD,
    "occasional": "#f0ad4e",
    "inactive": BAD,
    "no_mailbox": "#999999",
    "not_collected": "#5d6d7e",
}
WIDTH = 720
# The report's face (Decree 30/2020: Times New Roman; Liberation Serif is its metric twin).
FONT = "font-family=\"'Times New Roman', 'Liberation Serif', serif\""
# An upper bound on a character's advance at 12 px in that face (Vietnamese diacritics sit
# above or below the letter and add no width): enough to size the label column and to keep
# a value label off the baseline.
CHAR_PX = 7.6
MAX_LABEL_CHARS = 42
FONT_PX = 12  # the charts' text size; the trend's month labels are 11 px
CLEAR_PX = 5  # the least gap between a value label and the baseline it would otherwise touch


def _label(text: str) -> str:
    return text if len(text) <= MAX_LABEL_CHARS else text[: MAX_LABEL_CHARS - 1] + "…"


def _svg(height: float, body: list[str], title: str) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height:.0f}" '
        f'viewBox="0 0 {WIDTH} {height:.0f}" role="img" {FONT} font-size="{FONT_PX}">'
        f"<title>{escape(title)}</title>" + "".join(body) + "</svg>"
    )


def ranking_chart(
    rows: Sequence[tuple[str, float]], *, baseline: float, axis: str, baseline_label: str
) -> str:
    """One bar per unit, in the given order (best first), share in 0..1; green at or above
    the baseline, red below; the baseline dashed and labelled, the axis 0-100%."""
    names = [_label(name) for name, _ in rows]
    left = 12 + CHAR_PX * max((len(n) for n in names), default=4)
    right = 44  # room for "100%" after a full bar
    plot = WIDTH - left - right
    bar, gap, top = 16, 6, 26
    height = top + len(rows) * (bar + gap) + 44
    bottom = top + len(rows) * (bar + gap)

    def x(share: float) -> float:
        return left + plot * min(max(share, 0.0), 1.0)

    body = []
    for tick in range(0, 101, 20):
        tx = x(tick / 100)
        body.append(
            f'<line x1="{tx:.1f}" y1="{top - 4}" x2="{tx:.1f}" y2="{bottom}" stroke="#e3e3e3"/>'
            f'<text x="{tx:.1f}" y="{bottom + 16}" text-anchor="middle" fill="{GREY}">'
            f"{tick}%</text>"
        )
    bx = x(baseline)
    for i, ((name, share), shown) in enumerate(zip(rows, names, strict=True)):
        y = top + i * (bar + gap)
        colour = GOOD if share >= baseline else BAD
        value = f"{share:.0%}"
        vx = x(share) + 4
        if vx - CLEAR_PX < bx < vx + CHAR_PX * len(value) + CLEAR_PX:
            vx = bx + CLEAR_PX  # the label would sit on the baseline: set it just past it
        body.append(
            f"<g><title>{escape(name)}: {value}</title>"
            f'<text x="{left - 6:.1f}" y="{y + bar - 4}" text-anchor="end">{escape(shown)}</text>'
            f'<rect x="{left:.1f}" y="{y}" width="{x(share) - left:.1f}" height="{bar}" '
            f'fill="{colour}"/>'
            f'<text x="{vx:.1f}" y="{y + bar - 4}" fill="{GREY}">{value}</text></g>'
        )
    body.append(
        f'<line x1="{bx:.1f}" y1="{top - 8}" x2="{bx:.1f}" y2="{bottom}" stroke="{GREY}" '
        f'stroke-dasharray="5,3"/>'
        f'<text x="{bx + 4:.1f}" y="{top - 12}" fill="{GREY}">{escape(baseline_label)}</text>'
        f'<text x="{left + plot / 2:.1f}" y="{height - 6}" text-anchor="middle">'
        f"{escape(axis)}</text>"
    )
    return _svg(height, body, axis)


def class_chart(segments: Sequence[tuple[str, str, int, float | None]], *, title: str) -> str:
    """One stacked bar and its legend: (class, label, people, share or None) per segment,
    in order; a segment's width is its share of all the people given."""
    total = sum(n for _, _, n, _ in segments) or 1
    shown = [s for s in segments if s[2]]
    top, bar = 4, 30
    height = top + bar + 12 + 20 * ((len(shown) + 1) // 2)
    body, left = [], 0.0
    for i, (cls, label, n, share) in enumerate(shown):
        w = WIDTH * n / total
        text = f"{n}" if share is None else f"{n} ({share:.0%})"
        colour = quoteattr(PALETTE.get(cls, GREY))
        body.append(
            f"<g><title>{escape(label)}: {escape(text)}</title>"
            f'<rect x="{left:.1f}" y="{top}" width="{w:.1f}" height="{bar}" fill={colour}/>'
        )
        if w >= CHAR_PX * len(text) + 8:  # the count inside its segment where it fits
            body.append(
                f'<text x="{left + w / 2:.1f}" y="{top + bar / 2 + 4:.0f}" text-anchor="middle" '
                f'fill="white">{escape(text)}</text>'
            )
        ly = top + bar + 12 + 20 * (i // 2)  # the legend: two entries a line, all of them
        lx = (WIDTH / 2) * (i % 2)
        body.append(
            f'<rect x="{lx:.1f}" y="{ly}" width="12" height="12" fill={colour}/>'
            f'<text x="{lx + 18:.1f}" y="{ly + 11}">{escape(label)}: {escape(text)}</text></g>'
        )
        left += w
    return _svg(height, body, title)


def _serif_px(text: str, size: float) -> float:
    """An upper bound on the advance of ``text`` in Times New Roman / Liberation Serif at
    ``size`` px (their widths, in em: digits 0.5, capitals up to 0.72, m and W wider):
    ``_serif_px("12/2025", 11)`` -> ``40.26``."""
    em = sum(
        0.95 if c in "mwMW" else 0.73 if c.isupper() else 0.3 if c in " /.,:;!|il'" else 0.56
        for c in text
    )
    return round(em * size, 2)


def _month_lines(label: str, room: float) -> list[str]:
    """``_month_lines("Sep 2026", 40)`` -> ``['Sep', '2026']``; a label that fits its room
    (in px at 11 px text) stays one line."""
    if _serif_px(label, 11) <= room:
        return [label]
    for sep in (" ", "/"):
        head, found, tail = label.partition(sep)
        if found:
            return [head + (sep if sep == "/" else ""), tail]
    return [label]


def trend_chart(points: Sequence[tuple[str, float | None]], *, baseline: float, axis: str) -> str:
    """One column per month, oldest first, share in 0..1 or None (not evaluated: a dash,
    no column); the baseline dashed across."""
    left, top, plot_h = 40, 14, 150
    step = (WIDTH - left - 10) / max(len(points), 1)
    bottom = top + plot_h
    # a month label wider than its column goes on two lines ("Sep" over "2026"), never
    # into its neighbour's
    lines = [_month_lines(label, step - 2 * CLEAR_PX) for label, _ in points]
    height = bottom + 40 + 13 * (max((len(x) for x in lines), default=1) - 1)

    def y(share: float) -> float:
        return bottom - plot_h * min(max(share, 0.0), 1.0)

    by = y(baseline)
    body = []
    for tick in range(0, 101, 25):
        ty = y(tick / 100)
        body.append(
            f'<line x1="{left}" y1="{ty:.1f}" x2="{WIDTH - 10}" y2="{ty:.1f}" stroke="#e3e3e3"/>'
            f'<text x="{left - 4}" y="{ty + 4:.1f}" text-anchor="end" fill="{GREY}">{tick}%</text>'
        )
    for i, ((label, share), label_lines) in enumerate(zip(points, lines, strict=True)):
        cx = left + step * (i + 0.5)
        body.append(
            f'<text x="{cx:.1f}" y="{bottom + 16}" text-anchor="middle" font-size="11">'
            + "".join(
                f'<tspan x="{cx:.1f}" dy="{13 * (k > 0)}">{escape(part)}</tspan>'
                for k, part in enumerate(label_lines)
            )
            + "</text>"
        )
        if share is None:
            body.append(f'<text x="{cx:.1f}" y="{bottom - 4}" text-anchor="middle">—</text>')
            continue
        w = step * 0.6
        colour = GOOD if share >= baseline else BAD
        # the value above its column; a column just under the baseline would put it on the
        # dashed line (digits stand on the text's y, FONT_PX tall): lift it clear above
        vy = y(share) - CLEAR_PX
        if vy - FONT_PX - CLEAR_PX < by < vy + CLEAR_PX:
            vy = by - CLEAR_PX
        body.append(
            f"<g><title>{escape(label)}: {share:.0%}</title>"
            f'<rect x="{cx - w / 2:.1f}" y="{y(share):.1f}" width="{w:.1f}" '
            f'height="{bottom - y(share):.1f}" fill="{colour}"/>'
            f'<text x="{cx:.1f}" y="{vy:.1f}" text-anchor="middle" fill="{GREY}">'
            f"{share:.0%}</text></g>"
        )
    body.append(
        f'<line x1="{left}" y1="{by:.1f}" x2="{WIDTH - 10}" y2="{by:.1f}" stroke="{GREY}" '
        f'stroke-dasharray="5,3"/>'
        f'<text x="{WIDTH / 2:.1f}" y="{height - 6}" text-anchor="middle">{escape(axis)}</text>'
    )
    return _svg(height, body, axis)
