"""The chairman's report as filed: letterhead and signature block, Vietnamese names, the
12-month trend from the months evaluated before, and the A4 PDF read back by pypdf as a
Decree 30/2020 document (Appendix I): its face, page numbers, numbered sections, table
headers on every page, nothing past the margins."""

from __future__ import annotations

import itertools
import re
import unicodedata
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
from pypdf import PdfReader
from pypdf.generic import ContentStream

from analytics.evaluate import evaluate_month
from contract.letterhead import Letterhead
from contract.signals import Signals
from tests.analytics.fixture import DOMAIN, ROSTER, build
from tests.analytics.test_evaluate import MONTH, inputs

A4 = (595.28, 841.89)  # points
MM = 72 / 25.4  # points per millimetre
# Decree 30/2020 Appendix I: margins 20-25 mm top and bottom, 30-35 left, 15-20 right
TOP, RIGHT, LEFT = 20 * MM, 15 * MM, 30 * MM
SECTIONS = ("I. TÌNH HÌNH CHUNG", "II. ĐÁNH GIÁ", "III. ĐỀ XUẤT")
LETTERHEAD = Letterhead(
    parent_body="UBND QUẬN LIÊN CHIỂU",
    issuing_body="PHÒNG VĂN HÓA VÀ THÔNG TIN",
    number="15/BC-VHTT",
    place="Liên Chiểu",
    signer_title="TRƯỞNG PHÒNG",
    signer_name="Nguyễn Thị Hoa",
    recipients=("Chủ tịch UBND quận", "Lưu: VT, VHTT"),
)


@pytest.fixture(scope="module")
def filed(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("report")
    build(root / "data")
    given = replace(inputs(root), letterhead=LETTERHEAD)
    evaluate_month(given, "2026-10", out_dir=root / "reports")  # last month, evaluated first
    return evaluate_month(given, MONTH, out_dir=root / "reports").paths


@pytest.fixture(scope="module")
def many_units(tmp_path_factory) -> Path:
    """The fixture agency and 60 more units (one person each, nothing collected): a
    province's ranking, longer than a page."""
    root = tmp_path_factory.mktemp("many")
    build(root / "data")
    extra = [
        (f"Q{i:02d}", f"Người thử {i}", f"U{i:02d}", f"Đơn vị thử {i:02d}",
         f"q{i:02d}@{DOMAIN}", "no", "", "no")
        for i in range(1, 61)
    ]  # fmt: skip
    given = replace(inputs(root, rows=ROSTER + extra), letterhead=LETTERHEAD)
    return evaluate_month(given, MONTH, out_dir=root / "reports").paths["report_pdf"]


@dataclass(frozen=True)
class Run:
    """One piece of text as the PDF places it: its box from the embedded font's own
    widths (the font's /W array), in points from the page's bottom left."""

    text: str
    x0: float
    x1: float
    y: float
    size: float
    font: str


def _unicode_map(font) -> dict[int, str]:
    """Glyph id -> text, from the font's /ToUnicode CMap (bfchar and bfrange entries)."""
    data = font["/ToUnicode"].get_object().get_data().decode("latin-1")
    out: dict[int, str] = {}
    for block in re.findall(r"beginbfchar(.*?)endbfchar", data, re.S):
        for src, dst in re.findall(r"<([0-9a-fA-F]+)>\s*<([0-9a-fA-F]+)>", block):
            out[int(src, 16)] = bytes.fromhex(dst).decode("utf-16-be")
    for block in re.findall(r"beginbfrange(.*?)endbfrange", data, re.S):
        for a, b, dst in re.findall(r"<(\w+)>\s*<(\w+)>\s*<(\w+)>", block):
            for k, gid in enumerate(range(int(a, 16), int(b, 16) + 1)):
                out[gid] = chr(int(dst, 16) + k)
    return out


def _widths(font) -> tuple[dict[int, float], float]:
    """Glyph id -> advance in 1/1000 em, from the CID font's /W array, and its default."""
    cid = font["/DescendantFonts"][0].get_object()
    w, out, i = list(cid.get("/W", [])), {}, 0
    while i < len(w):
        if isinstance(w[i + 1], list):  # first [w1 w2 ...]
            out.update({int(w[i]) + k: float(v) for k, v in enumerate(w[i + 1])})
            i += 2
        else:  # first last w
            out.update({g: float(w[i + 2]) for g in range(int(w[i]), int(w[i + 1]) + 1)})
            i += 3
    return out, float(cid.get("/DW", 1000))


def _mul(m: list[float], n: list[float]) -> list[float]:
    """The PDF matrix product m x n, each as [a b c d e f]."""
    a, b, c, d, e, f = m
    return [
        a * n[0] + b * n[2],
        a * n[1] + b * n[3],
        c * n[0] + d * n[2],
        c * n[1] + d * n[3],
        e * n[0] + f * n[2] + n[4],
        e * n[1] + f * n[3] + n[5],
    ]


def _runs(page) -> list[Run]:
    """Every text-showing operator of the page's own content stream (the charts, drawn in
    forms, are left out), in drawing order. WeasyPrint writes Identity-H fonts (two bytes
    a glyph) and sets the text matrix before each run."""
    fonts = page["/Resources"]["/Font"]
    known: dict[str, tuple] = {}
    found: list[Run] = []
    ctm, stack = [1.0, 0, 0, 1, 0, 0], []
    tm, font, size = [1.0, 0, 0, 1, 0, 0], "", 0.0
    for args, op in ContentStream(page.get_contents(), page.pdf).operations:
        if op == b"q":
            stack.append(ctm)
        elif op == b"Q":
            ctm = stack.pop()
        elif op == b"cm":
            ctm = _mul([float(x) for x in args], ctm)
        elif op == b"BT":
            tm = [1.0, 0, 0, 1, 0, 0]
        elif op == b"Tm":
            tm = [float(x) for x in args]
        elif op == b"Td":
            tm = _mul([1, 0, 0, 1, float(args[0]), float(args[1])], tm)
        elif op == b"Tf":
            font, size = args[0], float(args[1])
        elif op in (b"TJ", b"Tj"):
            if font not in known:
                obj = fonts[font].get_object()
                known[font] = (_unicode_map(obj), *_widths(obj), str(obj["/BaseFont"]))
            glyphs, widths, default, base = known[font]
            text, advance = "", 0.0
            for part in args[0] if op == b"TJ" else [args[0]]:
                if not hasattr(part, "original_bytes"):
                    advance -= float(part) / 1000  # a TJ kerning adjustment
                    continue
                raw = part.original_bytes
                for j in range(0, len(raw), 2):
                    gid = int.from_bytes(raw[j : j + 2], "big")
                    text += glyphs.get(gid, "\ufffd")
                    advance += widths.get(gid, default) / 1000
            m = _mul(tm, ctm)  # text space -> page
            x0, y = m[4], m[5]
            x1 = x0 + m[0] * advance * size
            found.append(Run(text, min(x0, x1), max(x0, x1), y, size * abs(m[0]), base))
    return [replace(r, font=r.font.split("+")[-1]) for r in found]


def _fonts(reader: PdfReader) -> set[str]:
    """Every font embedded, the charts' forms (XObjects) included, subset tag dropped."""
    names: set[str] = set()

    def walk(resources) -> None:
        for font in (resources.get("/Font") or {}).values():
            names.add(str(font.get_object()["/BaseFont"]).split("+")[-1])
        for xobject in (resources.get("/XObject") or {}).values():
            inner = xobject.get_object().get("/Resources")
            if inner is not None:
                walk(inner.get_object())

    for page in reader.pages:
        walk(page["/Resources"])
    return names


def _text(path: Path) -> str:
    reader = PdfReader(path)
    return unicodedata.normalize("NFC", "\n".join(p.extract_text() for p in reader.pages))


def test_the_report_reads_as_an_administrative_document(filed):
    html = filed["report"].read_text(encoding="utf-8")
    for text in (
        "UBND QUẬN LIÊN CHIỂU",
        "PHÒNG VĂN HÓA VÀ THÔNG TIN",
        "Số: 15/BC-VHTT",
        "CỘNG HÒA XÃ HỘI CHỦ NGHĨA VIỆT NAM",
        "Độc lập - Tự do - Hạnh phúc",
        "Liên Chiểu, ngày      tháng 12 năm 2026",  # the day is left for the signer
        "Tình hình sử dụng hộp thư điện tử công vụ tháng 11/2026",
        "- Chủ tịch UBND quận;",
        "TRƯỞNG PHÒNG",
        "(Ký, ghi rõ họ tên)",
        "Nguyễn Thị Hoa",
        "mốc kiểm tra Bình Dương (30%)",  # the baseline labelled on the chart
        "Dùng thư điện tử công cộng cho công việc",  # a violation by name, not by code
    ):
        assert text in html, text
    assert "2026-11" not in re.sub(r"reports/2026-11/", "", html)  # the month as people write it


def test_the_trend_takes_last_month_from_its_stored_evaluation(filed):
    html = filed["report"].read_text(encoding="utf-8")
    # two tables of six months each: twelve side by side do not fit the page
    tables = [html[html.index(f'id="trend-{n}"') :].split("</table>")[0] for n in (1, 2)]
    header = [m for t in tables for m in re.findall(r'<th class="n">([^<]+)</th>', t)]
    assert header[0] == "12/2025" and header[5:7] == ["5/2026", "6/2026"]
    assert header[-2:] == ["10/2026", "11/2026"] and len(header) == 12
    # October was evaluated before: unit A 1 of 5 regular; November 2 of 5; months never
    # evaluated are a dash, not 0%.
    cells = []
    for table in tables:
        row = next(r for r in table.split("</tr>") if "UBND phường Hòa Minh" in r)
        cells += re.findall(r'<td class="n">([^<]+)</td>', row)
    assert cells[-2:] == ["20%", "40%"] and set(cells[:-2]) == {"—"}


def test_the_pdf_is_a4_with_the_text_and_the_charts(filed):
    pdf = filed["report_pdf"]
    reader = PdfReader(pdf)
    assert len(reader.pages) >= 1
    for page in reader.pages:
        size = (float(page.mediabox.width), float(page.mediabox.height))
        assert abs(size[0] - A4[0]) < 1 and abs(size[1] - A4[1]) < 1, size
    text = _text(pdf)
    for words in (
        "CỘNG HÒA XÃ HỘI CHỦ NGHĨA VIỆT NAM",
        "Phòng Tài chính - Kế hoạch",
        "TRƯỞNG PHÒNG",
    ):
        assert words in text, words
    # the charts are drawn (vector), their own labels extract as text
    assert text.count("Tỷ lệ người dùng thường xuyên") >= 2  # ranking and trend axes
    assert "mốc kiểm tra Bình Dương (30%)" in text
    again = evaluate_month(
        replace(inputs(pdf.parents[2]), letterhead=LETTERHEAD), MONTH, out_dir=pdf.parents[1]
    )
    assert again.paths["report_pdf"].read_bytes() == pdf.read_bytes()  # reproducible


def test_page_numbers_from_page_two_centred_in_the_top_margin(filed, many_units):
    for pdf in (filed["report_pdf"], many_units):
        reader = PdfReader(pdf)
        assert len(reader.pages) >= 3
        centre = (LEFT + A4[0] - RIGHT) / 2  # of the line between the margins
        for number, page in enumerate(reader.pages, start=1):
            in_margin = [r for r in _runs(page) if r.y > A4[1] - TOP]
            if number == 1:
                assert in_margin == [], in_margin  # none on the first page
                continue
            assert [r.text for r in in_margin] == [str(number)]
            run = in_margin[0]
            assert abs((run.x0 + run.x1) / 2 - centre) < 1, run
            assert 12.9 <= run.size <= 14.1 and run.font == "Liberation-Serif"


def test_the_face_is_liberation_serif_at_13_to_14_points(filed):
    reader = PdfReader(filed["report_pdf"])
    # Times New Roman where installed, else its metric twin; no fallback face anywhere
    # (charts included): a missing Vietnamese glyph would pull one in
    fonts = _fonts(reader)
    assert fonts and all(f.startswith(("Liberation-Serif", "TimesNewRoman")) for f in fonts), (
        f"{fonts}: install Debian's fonts-liberation2 (make setup does)"
    )
    prose = [r for p in reader.pages for r in _runs(p) if r.text.startswith("Trong tháng 11")]
    assert prose and all(12.9 <= r.size <= 14.1 for r in prose), prose  # 13 pt, in px


def test_numbered_sections_carry_the_months_figures(filed):
    text = _text(filed["report_pdf"])
    at = [text.index(s) for s in (*SECTIONS, "TRƯỞNG PHÒNG")]
    assert at == sorted(at), at
    situation, assessment, proposals = text[at[0] : at[1]], text[at[1] : at[2]], text[at[2] :]
    flat = lambda part: re.sub(r"\s+", " ", part)  # noqa: E731 - lines wrap anywhere
    # counted by hand from the fixture: 9 rated, P01 P02 P03 regular; October 1 of 9
    for words in (
        "3 người (33%) sử dụng thường xuyên",
        "cao hơn mốc kiểm tra 30% 3 điểm phần trăm",
        "tháng trước là 11%, tăng 22 điểm phần trăm",
        "2 người có vi phạm được xác nhận bị giới hạn mức xếp loại",
    ):
        assert words in flat(situation), words
    for words in (  # unit A 2 of 5 (40%), unit B 1 of 4 (25%; P08 never collected)
        "1 trên 2 đơn vị đạt mốc kiểm tra 30%",
        "Cao nhất: UBND phường Hòa Minh (40%); thấp nhất: Phòng Tài chính - Kế hoạch (25%)",
        "1 hộp thư đơn vị không có người theo dõi",
        "Máy chủ fixture không đo được: dung lượng thư mục",
    ):
        assert words in flat(assessment), words
    for words in (  # proposals drawn from the figures, the unit below 30% named
        "1. Đề nghị thủ trưởng 1 đơn vị có tỷ lệ sử dụng thường xuyên dưới 30% (Phòng Tài "
        "chính - Kế hoạch)",
        "phân công người theo dõi hộp thư đơn vị (ua@lienchieu.danang.gov.vn)",
        "khắc phục lỗi thu thập của 1 hộp thư",
    ):
        assert words in flat(proposals), words


def test_the_ranking_header_repeats_on_every_page_it_spans(many_units):
    reader = PdfReader(many_units)
    pages = [_runs(p) for p in reader.pages]
    first = next(i for i, runs in enumerate(pages) if any(r.text == "Hạng" for r in runs))
    # the ranking lists the units first, down to the last of them
    last = next(i for i, runs in enumerate(pages) if any(r.text == "Đơn vị thử 60" for r in runs))
    assert last > first  # it does span pages
    for runs in pages[first + 1 : last + 1]:
        before_rows = runs[: next(i for i, r in enumerate(runs) if r.text.startswith("Đơn vị thử"))]
        header = {r.text for r in before_rows if r.font == "Liberation-Serif-Bold"}
        assert {"Hạng", "Đơn vị", "Tỷ lệ"} <= header, header


@pytest.mark.parametrize("lang", ["vi", "en"])
def test_nothing_runs_past_the_margins_and_month_labels_stand_apart(tmp_path, many_units, lang):
    if lang == "vi":
        pdf = many_units
    else:
        build(tmp_path / "data")
        given = replace(inputs(tmp_path), letterhead=LETTERHEAD)
        evaluate_month(given, "2026-10", out_dir=tmp_path / "reports", lang="en")
        pdf = evaluate_month(given, MONTH, out_dir=tmp_path / "reports", lang="en").paths[
            "report_pdf"
        ]
    reader = PdfReader(pdf)
    month = re.compile(r"^(\d{1,2}/\d{4}|[A-Z][a-z]{2}|\d{4})$")  # "12/2025"; "Dec" over "2025"
    labels: list[str] = []
    for page in reader.pages:
        runs = _runs(page)
        for r in runs:  # the text block is the page between its margins
            assert r.x0 >= LEFT - 0.5 and r.x1 <= A4[0] - RIGHT + 0.5, r
        header = [r for r in runs if r.font == "Liberation-Serif-Bold" and month.match(r.text)]
        for y in {r.y for r in header}:
            line = sorted((r for r in header if r.y == y), key=lambda r: r.x0)
            for a, b in itertools.pairwise(line):
                assert a.x1 + 3 < b.x0, (a, b)  # a clear gap between neighbouring months
        labels += [r.text for r in sorted(header, key=lambda r: (-r.y, r.x0))]
    if lang == "vi":
        assert labels[:6] == ["12/2025", "1/2026", "2/2026", "3/2026", "4/2026", "5/2026"]
        assert labels[-6:] == ["6/2026", "7/2026", "8/2026", "9/2026", "10/2026", "11/2026"]
    else:
        text = _text(pdf)
        at = [text.index(s) for s in ("I. OVERVIEW", "II. ASSESSMENT", "III. PROPOSALS")]
        assert at == sorted(at)
        assert "Ratings capped this month for confirmed violations: 2 people." in text
        assert "Dec" in labels and "Nov" in labels


def test_a_server_that_counts_no_reading_is_a_proposal_and_a_lower_bound(tmp_path):
    build(tmp_path / "data", reads_counted=False)
    blind = Signals(
        read_activity=False, logins=True, quota=True, forwarding=True, folder_sizes=False
    )
    given = replace(inputs(tmp_path, signals={"fixture": blind}), letterhead=LETTERHEAD)
    pdf = evaluate_month(given, MONTH, out_dir=tmp_path / "reports").paths["report_pdf"]
    text = re.sub(r"\s+", " ", _text(pdf))
    assessment, proposals = text[text.index(SECTIONS[1]) :], text[text.index(SECTIONS[2]) :]
    assert "Máy chủ fixture không đo được: đọc thư, dung lượng thư mục." in assessment
    # 7 rated below regular (P02, P04, P05, P06, P07, P09, P10): a lower bound, said so
    assert "7 người được xếp dưới mức thường xuyên" in assessment
    assert "bổ sung nguồn dữ liệu (đọc thư, dung lượng thư mục) cho máy chủ fixture" in proposals
    assert "Không phát hiện hộp thư đơn vị nào không có người theo dõi." in assessment
