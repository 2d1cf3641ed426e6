"""The Excel-tolerant CSV reading both of the organisation's sheets share: the roster
(contract/roster.py) and the unit tree (contract/units.py). UTF-8 with or without the BOM
of *CSV UTF-8*; ``,``, ``;`` (Excel with a Vietnamese or European list separator) or a tab
between cells, told from the header line; rows of empty cells (the ``;;;;`` Excel leaves
under a table) skipped by the caller with :func:`blank`.

    >>> import tempfile
    >>> path = Path(tempfile.mkdtemp()) / "units.csv"
    >>> _ = path.write_text("\\ufeffunit_code;unit_name\\nUB;Ủy ban\\n", encoding="utf-8")
    >>> sheet = open_sheet(path, ("unit_code", "unit_name"), "units", ValueError)
    >>> sheet.delimiter, list(sheet.rows())
    (';', [(2, {'unit_code': 'UB', 'unit_name': 'Ủy ban'})])
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["CODE", "CONTROL", "MAX_CELL", "MAX_SHEET_BYTES", "Sheet", "blank", "open_sheet"]

MAX_SHEET_BYTES = 64 * 1024 * 1024
MAX_CELL = 500  # characters; a cell longer than this is a pasted document
# A unit code or employee id: letters (Vietnamese too), digits, '.', '_', '-' — nothing that
# could climb out of a directory if a report or a script ever names a file after it.
CODE = re.compile(r"^\w[\w.-]{0,63}$")
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_SHOWN = {",": "commas", ";": "semicolons", "\t": "tabs"}


def delimiter_of(header: str) -> str:
    """The sheet's separator, from its header line: ``,``, ``;`` or a tab; ``,`` when it
    cannot be told.

    >>> delimiter_of("employee_id;full_name;email;unit_code;unit_name")
    ';'
    """
    try:
        return csv.Sniffer().sniff(header, delimiters=",;\t").delimiter
    except csv.Error:
        return ","


def blank(row: dict[Any, Any]) -> bool:
    """A row whose every cell is empty, extra cells too (``;;;;`` or ``,,,,,,``)."""
    cells = [v for k, v in row.items() if k is not None] + list(row.get(None) or [])
    return not any((v or "").strip() for v in cells)


@dataclass
class Sheet:
    """An opened sheet: its separator, its header (stripped) and its rows."""

    path: Path
    delimiter: str
    header: list[str]
    reader: csv.DictReader[str]
    error: type[Exception]

    def rows(self) -> Iterator[tuple[int, dict[str, Any]]]:
        """(line, row) pairs, the line as an editor counts it (blank lines too); a row csv
        cannot read (a cell over its 128 KiB field limit) is ``error`` naming the line."""
        try:
            for row in self.reader:
                yield self.reader.line_num, row
        except csv.Error as exc:
            raise self.error(f"{self.path}: line {self.reader.line_num}: {exc}") from exc


def open_sheet(path: Path, required: Sequence[str], what: str, error: type[Exception]) -> Sheet:
    """Open ``path`` (``what`` names it in messages: "roster", "units") and check that its
    header has every ``required`` column; any problem is ``error`` naming the file."""
    try:
        if path.stat().st_size > MAX_SHEET_BYTES:
            raise error(
                f"{path} is {path.stat().st_size:,} bytes: not a {what} "
                f"(at most {MAX_SHEET_BYTES:,})"
            )
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError as exc:
        raise error(f"{what} file {path} not found") from exc
    except UnicodeDecodeError as exc:
        raise error(f"{path}: not UTF-8 ({exc}); save the sheet as 'CSV UTF-8'") from exc
    lines = text.splitlines()
    delimiter = delimiter_of(lines[0] if lines else "")
    reader = csv.DictReader(lines, delimiter=delimiter)
    header = [h.strip() for h in reader.fieldnames or []]
    missing = [c for c in required if c not in header]
    if missing:
        raise error(
            f"{path}: missing required column(s) {', '.join(missing)} (header read as "
            f"separated by {_SHOWN[delimiter]}: {', '.join(repr(h) for h in header[:8])})"
        )
    reader.fieldnames = header
    return Sheet(path, delimiter, header, reader, error)
