"""The report's SVG charts: well-formed XML, bars that measure the figures, text escaped."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from analytics.charts import BAD, GOOD, PALETTE, class_chart, ranking_chart

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
