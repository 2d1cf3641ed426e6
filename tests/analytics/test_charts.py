"""The report's SVG charts: well-formed XML, bars that measure the figures, text escaped,
no label on the baseline or on its neighbour (widths measured in the face itself)."""

from __future__ import annotations

import calendar
import itertools
import subprocess
import xml.etree.ElementTree as ET

from PIL import ImageFont

from analytics.charts import BAD, GOOD, PALETTE, class_chart, ranking_chart, trend_chart

SVG = "{http://www.w3.org/2000/svg}"


def _bars(svg: str) -> list[ET.Element]:
    return [g.find(f"{SVG}rect") for g in ET.fromstring(svg).iter(f"{SVG}g")]  # type: ignore[misc]


def test_ranking_bars_measure_the_shares_and_the_baseline_colours_them():
    rows = [("Phòng Nội vụ", 0.8), ("UBND phường <Hòa Khánh> & Bắc", 0.3), ("Ban C", 0.1)]
    svg = ranking_chart(rows, baseline=0.3, axis="Tỷ lệ (%)", baseline_label="mốc 30%")
    bars = _bars(svg)  # parses: a name with < and & is escaped
    widths = [float(b.get("width", "")) for b in bars]
    assert len(widths) == 3
    assert abs(widths[0] / widths[2] - 8) < 0.01  # 80% is eight times 10%
    assert [b.get("fill") for b in bars] == [GOOD, GOOD, BAD]  # 30% is at the baseline
    texts = [t.text for t in ET.fromstring(svg).iter(f"{SVG}text")]
    assert "UBND phường <Hòa Khánh> & Bắc" in texts and "mốc 30%" in texts
    assert [t for t in texts if t in {"80%", "30%", "10%"}][-3:] == ["80%", "30%", "10%"]
    assert svg == ranking_chart(rows, baseline=0.3, axis="Tỷ lệ (%)", baseline_label="mốc 30%")


def test_class_chart_segments_are_shares_of_everyone_and_each_has_a_legend_entry():
    segments = [
        ("regular", "Thường xuyên", 30, 0.3),
        ("occasional", "Thỉnh thoảng", 0, 0.0),  # nobody: no segment, no legend entry
        ("inactive", "Không sử dụng", 70, 0.7),
        ("no_mailbox", "Chưa có hộp thư", 100, None),
    ]
    svg = class_chart(segments, title="Phân loại")
    rects = [r for r in ET.fromstring(svg).iter(f"{SVG}rect") if r.get("height") != "12"]
    widths = {r.get("fill"): float(r.get("width", "")) for r in rects}
    assert set(widths) == {PALETTE["regular"], PALETTE["inactive"], PALETTE["no_mailbox"]}
    assert abs(widths[PALETTE["no_mailbox"]] / widths[PALETTE["regular"]] - 100 / 30) < 0.01
    texts = [t.text for t in ET.fromstring(svg).iter(f"{SVG}text")]
    assert "Thường xuyên: 30 (30%)" in texts and "Chưa có hộp thư: 100" in texts
    assert not any("Thỉnh thoảng" in (t or "") for t in texts)


def _serif(size: int) -> ImageFont.FreeTypeFont:
    """The charts' face as the reader's machine draws it (fontconfig's pick for Times New
    Roman); its advances are the ground truth for the overlap checks."""
    path = subprocess.run(
        ["fc-match", "-f", "%{file}", "Times New Roman"], capture_output=True, text=True
    ).stdout
    assert "Liberation" in path or "Times" in path, f"{path}: apt-get install fonts-liberation2"
    return ImageFont.truetype(path, size)


def _texts(svg: str) -> list[ET.Element]:
    return list(ET.fromstring(svg).iter(f"{SVG}text"))


def _baseline(svg: str) -> ET.Element:
    return next(e for e in ET.fromstring(svg).iter(f"{SVG}line") if e.get("stroke-dasharray"))


def test_ranking_value_labels_keep_off_the_baseline():
    shares = [0.22, 0.25, 0.26, 0.27, 0.28, 0.29, 0.30, 0.31, 0.5]
    svg = ranking_chart(
        [(f"Đơn vị {i}", v) for i, v in enumerate(shares)],
        baseline=0.3, axis="%", baseline_label="mốc 30%",
    )  # fmt: skip
    bx = float(_baseline(svg).get("x1", ""))
    font = _serif(12)
    values = [t for t in _texts(svg) if (t.text or "").endswith("%") and t.text[0].isdigit()]
    values = values[-len(shares) :]  # after the axis ticks
    assert [t.text for t in values] == [f"{v:.0%}" for v in shares]
    for t in values:
        x0 = float(t.get("x", ""))
        x1 = x0 + font.getlength(t.text or "")
        assert not (x0 - 2 < bx < x1 + 2), (t.text, x0, x1, bx)  # the "28%" on the 30% line


def test_trend_value_labels_keep_off_the_baseline_and_month_labels_apart():
    months = ["December 2025"] + [f"{calendar.month_name[m]} 2026" for m in range(1, 12)]
    shares = [0.28, 0.29, 0.295, 0.30, 0.31, 0.27, 0.26, None, 0.1, 0.9, 0.3, 0.28]
    for labels in (months, [f"{m}/2026" for m in range(1, 13)]):
        svg = trend_chart(list(zip(labels, shares, strict=True)), baseline=0.3, axis="Tỷ lệ")
        by = float(_baseline(svg).get("y1", ""))
        for t in _texts(svg):
            if (t.text or "").endswith("%") and t.get("text-anchor") == "middle":
                y = float(t.get("y", ""))  # digits stand on y and rise ~0.7 em above it
                assert not (y - 12 - 2 < by < y + 2), (t.text, y, by)
        font = _serif(11)
        rows: dict[int, list[tuple[float, float]]] = {}  # line of a label -> its boxes
        for t in _texts(svg):
            for k, span in enumerate(t.iter(f"{SVG}tspan")):
                cx, w = float(span.get("x", "")), font.getlength(span.text or "")
                rows.setdefault(k, []).append((cx - w / 2, cx + w / 2))
        assert len(rows[0]) == 12
        for boxes in rows.values():
            boxes.sort()
            for (_, right), (left, _) in itertools.pairwise(boxes):
                assert right + 2 < left, (labels, right, left)  # "12/20251/2026" no more
