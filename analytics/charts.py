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
FONT = 'font-family="Noto Sans, DejaVu Sans, Arial, sans-serif"'
# Average advance of a character at 12 px in the sans fonts above (Vietnamese diacritics
# sit above or below the letter and add no width): enough to size the label column.
CHAR_PX = 7.6
MAX_LABEL_CHARS = 42


def _label(text: str) -> str:
    return text if len(text) <= MAX_LABEL_CHARS else text[: MAX_LABEL_CHARS - 1] + "…"


def _svg(height: float, body: list[str], title: str) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height:.0f}" '
        f'viewBox="0 0 {WIDTH} {height:.0f}" role="img" {FONT} font-size="12">'
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
    for i, ((name, share), shown) in enumerate(zip(rows, names, strict=True)):
        y = top + i * (bar + gap)
        colour = GOOD if share >= baseline else BAD
        body.append(
            f"<g><title>{escape(name)}: {share:.0%}</title>"
            f'<text x="{left - 6:.1f}" y="{y + bar - 4}" text-anchor="end">{escape(shown)}</text>'
            f'<rect x="{left:.1f}" y="{y}" width="{x(share) - left:.1f}" height="{bar}" '
            f'fill="{colour}"/>'
            f'<text x="{x(share) + 4:.1f}" y="{y + bar - 4}" fill="{GREY}">{share:.0%}</text></g>'
        )
    bx = x(baseline)
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


def trend_chart(points: Sequence[tuple[str, float | None]], *, baseline: float, axis: str) -> str:
    """One column per month, oldest first, share in 0..1 or None (not evaluated: a dash,
    no column); the baseline dashed across."""
    left, top, plot_h = 40, 14, 150
    step = (WIDTH - left - 10) / max(len(points), 1)
    bottom = top + plot_h
    height = bottom + 40

    def y(share: float) -> float:
        return bottom - plot_h * min(max(share, 0.0), 1.0)

    body = []
    for tick in range(0, 101, 25):
        ty = y(tick / 100)
        body.append(
            f'<line x1="{left}" y1="{ty:.1f}" x2="{WIDTH - 10}" y2="{ty:.1f}" stroke="#e3e3e3"/>'
            f'<text x="{left - 4}" y="{ty + 4:.1f}" text-anchor="end" fill="{GREY}">{tick}%</text>'
        )
    for i, (label, share) in enumerate(points):
        cx = left + step * (i + 0.5)
        body.append(
            f'<text x="{cx:.1f}" y="{bottom + 16}" text-anchor="middle" font-size="11">'
            f"{escape(label)}</text>"
        )
        if share is None:
            body.append(f'<text x="{cx:.1f}" y="{bottom - 4}" text-anchor="middle">—</text>')
            continue
        w = step * 0.6
        colour = GOOD if share >= baseline else BAD
        body.append(
            f"<g><title>{escape(label)}: {share:.0%}</title>"
            f'<rect x="{cx - w / 2:.1f}" y="{y(share):.1f}" width="{w:.1f}" '
            f'height="{bottom - y(share):.1f}" fill="{colour}"/>'
            f'<text x="{cx:.1f}" y="{y(share) - 4:.1f}" text-anchor="middle" fill="{GREY}">'
            f"{share:.0%}</text></g>"
        )
    by = y(baseline)
    body.append(
        f'<line x1="{left}" y1="{by:.1f}" x2="{WIDTH - 10}" y2="{by:.1f}" stroke="{GREY}" '
        f'stroke-dasharray="5,3"/>'
        f'<text x="{WIDTH / 2:.1f}" y="{height - 6}" text-anchor="middle">{escape(axis)}</text>'
    )
    return _svg(height, body, axis)
