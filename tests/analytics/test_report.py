"""The chairman's report as filed: letterhead and signature block, Vietnamese names, the
12-month trend from the months evaluated before, and the A4 PDF read back by pypdf."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import replace
from pathlib import Path

import pytest
from pypdf import PdfReader

from analytics.evaluate import evaluate_month
from contract.letterhead import Letterhead
from tests.analytics.fixture import build
from tests.analytics.test_evaluate import MONTH, inputs

A4 = (595.28, 841.89)  # points
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
    trend = html[html.index('id="trend"') :]
    header = re.findall(r'<th class="n">([^<]+)</th>', trend.split("</tr>")[0])
    assert header[0] == "12/2025" and header[-2:] == ["10/2026", "11/2026"]
    # October was evaluated before: unit A 1 of 5 regular; November 2 of 5; months never
    # evaluated are a dash, not 0%.
    row = next(r for r in trend.split("</tr>") if "UBND phường Hòa Minh" in r)
    cells = re.findall(r'<td class="n">([^<]+)</td>', row)
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
