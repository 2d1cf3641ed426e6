"""The roster CSV, read and checked once into typed :class:`~contract.people.Person` rows.
Reading a roster imports no connector, no Prefect and no SQL: every layer may call it.

    >>> import tempfile
    >>> path = Path(tempfile.mkdtemp()) / "roster.csv"
    >>> _ = path.write_text(
    ...     "employee_id,full_name,email,unit_code,unit_name,personal_email,on_leave\\n"
    ...     "NV001,Nguyễn Văn An,An.NV@danang.gov.vn,UB,Ủy ban,An.Home@gmail.com,có\\n",
    ...     encoding="utf-8",
    ... )
    >>> (an,) = load_roster(path)
    >>> an.email, an.personal_emails, an.on_leave, an.is_unit_mailbox
    ('an.nv@danang.gov.vn', ('an.home@gmail.com',), True, False)

Columns: ``employee_id, full_name, email, unit_code, unit_name`` are required;
``is_unit_mailbox, personal_email, on_leave, start_date, mailbox_issued, source`` are read
when present (docs/operator-guide.md says what each holds); other columns are ignored.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from contract.domains import DomainList
from contract.people import Person
from contract.sheets import CODE, CONTROL, MAX_CELL, MAX_SHEET_BYTES, blank, open_sheet

__all__ = [
    "OPTIONAL_COLUMNS",
    "REQUIRED_COLUMNS",
    "RosterError",
    "RosterNotes",
    "load_roster",
]


class RosterError(Exception):
    """The roster has bad rows; the message lists each with its line number and cause."""


REQUIRED_COLUMNS = ("employee_id", "full_name", "email", "unit_code", "unit_name")
OPTIONAL_COLUMNS = (
    "is_unit_mailbox",
    "personal_email",
    "on_leave",
    "start_date",
    "mailbox_issued",
    "source",
)
_EMAIL = re.compile(r"^[^@\s,;<>]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$")
_CODE, _CONTROL = CODE, CONTROL  # the sheet's rules (contract/sheets.py), the tree's too
MAX_ROSTER_BYTES = MAX_SHEET_BYTES
_TRUE = {"1", "true", "yes", "y", "x", "có", "co"}
_FALSE = {"", "0", "false", "no", "n", "không", "khong"}


def _flag(
    values: dict[str, str], column: str, default: bool, problems: list[str], line: int
) -> bool:
    """A yes/no cell as a bool; an empty or absent cell is ``default``.

    >>> _flag({"on_leave": "Có"}, "on_leave", False, [], 2)
    True
    """
    value = values.get(column, "").strip().lower()
    if value not in _TRUE | _FALSE:
        problems.append(f"line {line}: {column} must be yes/no (got {values[column]!r})")
        return default
    return default if not value else value in _TRUE


def _start_date(value: str, problems: list[str], line: int) -> date | None:
    """The start_date cell (YYYY-MM-DD), None when empty."""
    if not value:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        problems.append(f"line {line}: start_date {value!r} is not a date (YYYY-MM-DD)")
        return None


@dataclass
class RosterNotes:
    """What :func:`load_roster` notices that is not an error, filled in when given (for
    `doctor`): official addresses outside ``official_domains``, each person's line."""

    official_domains: tuple[str, ...] = ()
    outside: list[tuple[int, str, str]] = field(default_factory=list)  # line, employee, email
    lines: dict[str, int] = field(default_factory=dict)  # employee_id -> line
    blank_rows: int = 0  # rows of empty cells (";;;;" that Excel leaves), skipped
    delimiter: str = ","


def load_roster(
    path: Path,
    source_names: Callable[[], list[str]] | None = None,
    notes: RosterNotes | None = None,
) -> list[Person]:
    """Read the roster CSV (UTF-8, BOM allowed; ``,``, ``;`` or tab between cells, told
    from the header); rows of empty cells are skipped; every bad row is reported, then
    RosterError.

    >>> load_roster(Path("roster.csv"))[0]  # doctest: +SKIP
    Person(employee_id='NV001', full_name='Nguyễn Văn An', email='an.nv@danang.gov.vn', ...)
    """
    sheet = open_sheet(path, REQUIRED_COLUMNS, "roster", RosterError)
    notes = notes if notes is not None else RosterNotes()
    notes.delimiter = sheet.delimiter
    known_sources = set(source_names()) if source_names else None
    people: list[Person] = []
    addresses: list[tuple[int, str, str]] = []  # line, employee, email: checked at the end
    problems: list[str] = []
    seen_ids: dict[str, int] = {}
    seen_emails: dict[str, int] = {}
    unit_names: dict[str, tuple[str, int]] = {}  # unit_code -> (its name, first line)
    for line, row in sheet.rows():
        if blank(row):
            notes.blank_rows += 1  # a row Excel leaves at the end: not a person, not an error
            continue
        if None in row:
            problems.append(f"line {line}: more cells than columns (a stray comma?)")
            continue
        values = {k: (v or "").strip() for k, v in row.items()}
        hostile = [
            f"line {line}: {col} is {len(v):,} characters long (at most {MAX_CELL})"
            if len(v) > MAX_CELL
            else f"line {line}: {col} holds control characters"
            for col, v in values.items()
            if len(v) > MAX_CELL or _CONTROL.search(v)
        ]
        for col in ("unit_code", "employee_id"):
            v = values[col]
            if v and not hostile and (not _CODE.match(v) or ".." in v):
                hostile.append(
                    f"line {line}: {col} {v!r} may hold only letters, digits, '.', '_' and "
                    "'-' (64 at most; no '/', no '..')"
                )
        if hostile:
            problems.extend(hostile)
            continue
        emp, email = values["employee_id"], values["email"].lower()
        if not emp:
            problems.append(f"line {line}: employee_id is empty")
        elif emp in seen_ids:
            problems.append(f"line {line}: employee_id {emp} repeats line {seen_ids[emp]}")
        else:
            seen_ids[emp] = line
        if not values["full_name"]:
            problems.append(f"line {line}: full_name is empty")
        code, unit = values["unit_code"], values["unit_name"]
        if not code:
            problems.append(f"line {line}: unit_code is empty")
        elif unit_names.setdefault(code, (unit, line))[0] != unit:
            first, at = unit_names[code]
            problems.append(
                f"line {line}: unit_code {code} is named {unit!r} here and {first!r} on line "
                f"{at} (one unit, one name: the ranking would merge them)"
            )
        if email:
            if not _EMAIL.match(email):
                problems.append(f"line {line}: email {values['email']!r} is not an address")
            elif email in seen_emails:
                problems.append(f"line {line}: email {email} repeats line {seen_emails[email]}")
            else:
                seen_emails[email] = line
                addresses.append((line, emp, email))
        personal = values.get("personal_email", "")
        if personal and not all(_EMAIL.match(p.strip()) for p in personal.split(";")):
            problems.append(f"line {line}: personal_email {personal!r} is not an address list")
        unit_mailbox = _flag(values, "is_unit_mailbox", False, problems, line)
        on_leave = _flag(values, "on_leave", False, problems, line)
        issued = _flag(values, "mailbox_issued", True, problems, line)  # unless it says not
        started = _start_date(values.get("start_date", ""), problems, line)
        source = values.get("source") or None
        if source and known_sources is not None and source not in known_sources:
            problems.append(f"line {line}: source {source!r} is not in the config")
        notes.lines.setdefault(emp, line)
        people.append(
            Person(
                emp,
                values["full_name"],
                email,
                values["unit_code"],
                values["unit_name"],
                source,
                is_unit_mailbox=unit_mailbox,
                personal_emails=tuple(a.strip().lower() for a in personal.split(";") if a.strip()),
                on_leave=on_leave,
                start_date=started,
                mailbox_issued=issued,
            )
        )
    if notes.official_domains:  # one pass of the domain rule over every address
        official = DomainList.of(notes.official_domains)
        hits = official.match_addresses([email for _, _, email in addresses])
        notes.outside.extend(a for a, hit in zip(addresses, hits, strict=True) if not hit)
    if problems:
        rows = len({p.split(":", 1)[0] for p in problems})  # each problem is "line N: …"
        raise RosterError(
            f"{path}: {rows} bad row(s), {len(problems)} problem(s):\n  " + "\n  ".join(problems)
        )
    return people
