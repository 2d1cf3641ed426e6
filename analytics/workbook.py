"""`hr_ratings.xlsx`: the HR file as a workbook HR opens without an import wizard.

    >>> data = hr_workbook(table, ["Mã cán bộ", ...], title="Xếp loại tháng 10/2026")
    >>> data[:2]
    b'PK'

Why a workbook beside the CSV: LibreOffice's default CSV import reads UTF-8 as Latin-1
("VÃµ Há»¯u An"), and Excel turns "0012" into 12; here every column has its type, the
header is frozen with filters on it, and it prints across the width of an A4 page.
Text is written as text, never as a formula, so it needs no apostrophe (the CSV does).
"""

from __future__ import annotations

import io
import re
from collections.abc import Sequence
from datetime import UTC, datetime

import pyarrow as pa
import xlsxwriter

CREATED = datetime(2000, 1, 1, tzinfo=UTC)
MAX_WIDTH = 60  # characters; longer cells wrap
WRAP_FROM = 40  # columns wider than this wrap their text


def hr_workbook(table: pa.Table, headers: Sequence[str], *, title: str) -> bytes:
    """One sheet: ``headers`` over ``table``'s columns in order; integer columns as
    numbers, everything else as text; frozen header, filters, A4 landscape, one page wide."""
    out = io.BytesIO()
    book = xlsxwriter.Workbook(out, {"in_memory": True, "strings_to_formulas": False})
    # a fixed creation time: the same month gives the same bytes
    book.set_properties({"title": title, "author": "mailusage", "created": CREATED})
    head = book.add_format({"bold": True, "bg_color": "#F4F6F4", "border": 1, "text_wrap": True})
    plain = book.add_format({"valign": "top"})
    wrap = book.add_format({"valign": "top", "text_wrap": True})
    # a sheet name may not hold []:*?/\ (so "10/2026" is written "10-2026")
    sheet = book.add_worksheet(re.sub(r"[\[\]:*?/\\]", "-", title)[:31])
    columns = [table[name].to_pylist() for name in table.column_names]
    for col, (header, values, field) in enumerate(zip(headers, columns, table.schema, strict=True)):
        width = min(
            max([len(header) // 2 + 2, *(len(str(v or "")) + 2 for v in values)]), MAX_WIDTH
        )
        sheet.set_column(col, col, width, wrap if width > WRAP_FROM else plain)
        sheet.write_string(0, col, header, head)
        number = pa.types.is_integer(field.type)
        for row, value in enumerate(values, start=1):
            if value is None:
                continue
            if number:
                sheet.write_number(row, col, value)
            else:
                sheet.write_string(row, col, str(value))
    sheet.freeze_panes(1, 0)
    sheet.autofilter(0, 0, table.num_rows, len(headers) - 1)
    sheet.set_paper(9)  # A4
    sheet.set_landscape()
    sheet.fit_to_pages(1, 0)  # one page wide, as many tall as it takes
    sheet.repeat_rows(0)
    sheet.set_footer("&C&P / &N")
    book.close()
    return out.getvalue()
