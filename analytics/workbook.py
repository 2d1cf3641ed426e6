"""`hr_ratings.xlsx`: the HR file as a workbook HR opens without an import wizard, and prints.

    >>> data = hr_workbook(table, headers, (("Xếp loại", [...]), ("Chi tiết", [...])),
    ...                    title="Xếp loại tháng 10/2026")
    >>> data[:2]
    b'PK'

Why a workbook beside the CSV: LibreOffice's default CSV import reads UTF-8 as Latin-1
("VÃµ Há»¯u An"), and Excel turns "0012" into 12; here every column has its type, the
header is frozen with filters on it, and each sheet prints on A4 landscape at a size one can
read. Text is written as text, never as a formula, so it needs no apostrophe (the CSV does).

Printing: thirteen columns across one page came out at ~5 pt, so the columns are split over
sheets (the rating and its reason; the details), each with fixed widths that fit the page
width at >= MIN_SCALE. Neither Excel nor LibreOffice grows a row to wrapped text written by
a library (openpyxl/xlsxwriter cannot measure text either), so each row's height is set from
the lines its longest cell wraps to, estimated from Arial's character widths (LibreOffice
prints Arial as the metric-compatible Liberation Sans).
"""

from __future__ import annotations

import functools
import io
import math
import re
import unicodedata
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

import pyarrow as pa
import xlsxwriter

CREATED = datetime(2000, 1, 1, tzinfo=UTC)
FONT, FONT_PT = "Arial", 10  # the workbook's default font: its digit is 7 px, as Calibri 11's
LINE_PT = 12.75  # Excel's row height for one line of Arial 10 (LibreOffice needs ~11.5)
PAD_PT = 2.0
# Column widths in characters (Excel's unit: the default font's digit width, 7 px). Chosen
# so each sheet's columns fit A4 landscape at >= MIN_SCALE; a column not listed here gets
# the width of its content, up to MAX_WIDTH.
WIDTHS = {
    "employee_id": 10,
    "full_name": 16,
    "unit": 18,
    "month": 9,
    "usage_class": 15,
    "days_collected": 10,
    "violation_codes": 30,
    "violations": 36,
    "max_rating": 16,
    "reason": 52,
    "evidence_count": 10,
    "waiver": 34,
    "exemption": 13,
}
MAX_WIDTH = 40
DIGIT_PX, CELL_PAD_PX = 7, 5  # px of a column = width * 7 + 5
TEXT_INSET_PX = 8  # the cell's inner margins, both sides, rounded up: text wraps before the grid
PAGE_WIDTH_PT = 841.9  # A4 landscape
MARGIN_IN = 0.4  # left and right
MIN_SCALE = 0.85  # below this, 10 pt prints under 8.5 pt
# Arial/Liberation Sans advance widths in em, by class of character (rounded up from the
# fonts' metrics; an accent takes no width, a horn some): an estimate that errs on the wide
# side, so a row is never shorter than its text.
_NARROW = dict.fromkeys("ijl.,:;'!|", 0.28) | dict.fromkeys(" ftrI()[]-/", 0.34)
_WIDE = dict.fromkeys("mwMW%@—", 1.02)
_CAPITAL, _OTHER, _HORN, _BOLD = 0.78, 0.56, 0.13, 1.1


def column_px(width: float) -> int:
    """A column's width in pixels, as Excel draws it: ``column_px(10)`` -> ``75``."""
    return int(width * DIGIT_PX + 0.5) + CELL_PAD_PX


def _char_em(ch: str) -> float:
    return _NARROW.get(ch) or _WIDE.get(ch) or (_CAPITAL if ch.isupper() else _OTHER)


@functools.lru_cache(maxsize=65536)  # words repeat from row to row: measured once each
def text_px(text: str, *, bold: bool = False) -> float:
    """The estimated width of ``text`` in Arial 10 at 96 dpi, in pixels.

    >>> round(text_px("Mã cán bộ"))
    67
    """
    em = 0.0
    for ch in unicodedata.normalize("NFD", text):
        # accents sit above or below a letter; the horn of ư, ơ widens it
        em += (_HORN if ch == "\u031b" else 0.0) if unicodedata.combining(ch) else _char_em(ch)
    return em * FONT_PT * 96 / 72 * (_BOLD if bold else 1.0)


def wrapped_lines(text: str, width: float, *, bold: bool = False) -> int:
    """Lines ``text`` takes in a wrapping column ``width`` characters wide: words move to
    the next line whole, a word wider than the column is broken between its letters.

    >>> wrapped_lines("Không sử dụng hộp thư công vụ", 16)
    2
    """
    room = column_px(width) - TEXT_INSET_PX
    space = text_px(" ", bold=bold)
    lines = 0
    for paragraph in text.split("\n"):
        lines += 1
        used = 0.0
        for word in paragraph.split(" "):
            size = text_px(word, bold=bold)
            if used and used + space + size <= room:
                used += space + size
                continue
            if used:
                lines += 1
            used = 0.0
            if size <= room:
                used = size
                continue
            for ch in unicodedata.normalize("NFC", word):  # broken where it reaches the edge
                size = text_px(ch, bold=bold)
                if used and used + size > room:
                    lines, used = lines + 1, 0.0
                used += size
    return lines


def row_height(texts: Sequence[tuple[str, float]], *, bold: bool = False) -> float:
    """Points a row needs for its cells, given as (text, column width) pairs."""
    lines = max((wrapped_lines(t, w, bold=bold) for t, w in texts if t), default=1)
    return math.ceil((lines * LINE_PT + PAD_PT) * 4) / 4


def fit_scale(widths: Sequence[float]) -> float:
    """The print scale that fits columns this wide across A4 landscape (1.0 at most)."""
    needed = sum(column_px(w) for w in widths) * 72 / 96
    return min(1.0, (PAGE_WIDTH_PT - 2 * MARGIN_IN * 72) / needed)


def hr_workbook(
    table: pa.Table,
    headers: Mapping[str, str],
    sheets: Sequence[tuple[str, Sequence[str]]],
    *,
    title: str,
) -> bytes:
    """One sheet per (name, columns): ``headers[c]`` over ``table``'s column ``c``; integer
    columns as numbers, everything else as wrapping text; frozen header with filters,
    repeated on every printed page; A4 landscape, one page wide, each row as tall as its
    text."""
    out = io.BytesIO()
    book = xlsxwriter.Workbook(
        out,
        {
            "in_memory": True,
            "strings_to_formulas": False,
            "default_format_properties": {"font_name": FONT, "font_size": FONT_PT},
            "default_row_height": 17,  # px: Arial 10's line
        },
    )
    # a fixed creation time: the same month gives the same bytes
    book.set_properties({"title": title, "author": "mailusage", "created": CREATED})
    head = book.add_format(
        {"bold": True, "bg_color": "#F4F6F4", "border": 1, "text_wrap": True, "valign": "top"}
    )
    plain = book.add_format({"valign": "top"})
    wrap = book.add_format({"valign": "top", "text_wrap": True})
    values = {name: table[name].to_pylist() for name in table.column_names}
    for sheet_name, columns in sheets:
        # a sheet name may not hold []:*?/\
        sheet = book.add_worksheet(re.sub(r"[\[\]:*?/\\]", "-", sheet_name)[:31])
        widths = [_width(c, headers[c], values[c]) for c in columns]
        for col, (name, width) in enumerate(zip(columns, widths, strict=True)):
            number = pa.types.is_integer(table.schema.field(name).type)
            sheet.set_column(col, col, width, plain if number else wrap)
            sheet.write_string(0, col, headers[name], head)
            for row, value in enumerate(values[name], start=1):
                if value is None:
                    continue
                if number:
                    sheet.write_number(row, col, value)
                else:
                    sheet.write_string(row, col, str(value))
        header_texts = [(headers[c], w) for c, w in zip(columns, widths, strict=True)]
        sheet.set_row(0, row_height(header_texts, bold=True))
        for row in range(table.num_rows):
            texts = [
                (str(values[c][row] or ""), w)
                for c, w in zip(columns, widths, strict=True)
                if not pa.types.is_integer(table.schema.field(c).type)
            ]
            sheet.set_row(row + 1, row_height(texts))
        sheet.freeze_panes(1, 0)
        sheet.autofilter(0, 0, table.num_rows, len(columns) - 1)
        sheet.set_paper(9)  # A4
        sheet.set_landscape()
        sheet.set_margins(left=MARGIN_IN, right=MARGIN_IN, top=0.7, bottom=0.7)
        # one page wide: the widths above make that >= MIN_SCALE; as many pages tall as it takes
        sheet.fit_to_pages(1, 0)
        sheet.repeat_rows(0)
        sheet.set_header("&C" + title.replace("&", "&&"))
        sheet.set_footer("&C&P / &N")
    book.close()
    return out.getvalue()


def _width(name: str, header: str, values: Sequence[object]) -> float:
    if name in WIDTHS:
        return WIDTHS[name]
    longest = max([len(header) // 2, *(len(str(v or "")) for v in values)])
    return min(longest + 2, MAX_WIDTH)
