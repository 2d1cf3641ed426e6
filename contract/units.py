"""The unit tree: each unit with its parent, its kind and its head's address, read from
``units.csv`` beside the roster (the config's ``[roster] units``) and checked like the
roster. Without that file the roster's units are a one-level tree: every unit a root.

    >>> tree = UnitTree.of([
    ...     Unit("TINH", "UBND tỉnh", None, "UBND tỉnh"),
    ...     Unit("PG", "UBND huyện Phú Giáo", "TINH", "UBND huyện"),
    ...     Unit("PG-VH", "Phòng Văn hóa - Thông tin", "PG", "phòng"),
    ...     Unit("AB", "UBND xã An Bình", "PG", "UBND xã"),
    ... ])
    >>> tree.ancestors("PG-VH"), tree.descendants("PG"), tree.depth("AB")
    (('PG', 'TINH'), ('PG-VH', 'AB'), 2)
    >>> tree.agency_of("PG-VH"), tree.agency_of("AB")
    ('PG', 'AB')

Why a file of its own rather than roster columns: a unit's parent, kind and head are facts
about the unit, not the person — as roster columns they would repeat on every row of the
unit and could disagree between rows; a unit with no staff of its own (a grouping) could not
be written at all; and the roster is HR's export while the tree is the organisation's.

Columns: ``unit_code, unit_name, parent_code, kind`` are required (``parent_code`` empty for
a root); ``head_email`` is read when present. An *agency* (the unit an HR workbook is made
for) is a unit whose kind is one of :data:`AGENCY_KINDS`, or a root; a unit's agency is the
nearest agency at or above it.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from contract.people import Person
from contract.roster import RosterError
from contract.sheets import CODE, CONTROL, MAX_CELL, blank, open_sheet

__all__ = [
    "AGENCY_KINDS",
    "REQUIRED_COLUMNS",
    "Unit",
    "UnitTree",
    "UnitsError",
    "load_tree",
    "load_units",
]

REQUIRED_COLUMNS = ("unit_code", "unit_name", "parent_code", "kind")
OPTIONAL_COLUMNS = ("head_email",)
# Kinds whose unit keeps its own staff's records: a province's departments and boards, its
# districts' and communes' People's Committees (a phòng belongs to the sở or UBND above it).
AGENCY_KINDS = frozenset(
    {
        "ubnd tỉnh",
        "ubnd thành phố",
        "sở",
        "ban",
        "ubnd huyện",
        "ubnd quận",
        "ubnd thị xã",
        "ubnd xã",
        "ubnd phường",
        "ubnd thị trấn",
    }
)
_EMAIL = re.compile(r"^[^@\s,;<>]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$")


class UnitsError(RosterError):
    """The unit tree is wrong, or the roster names a unit outside it; the message names the
    file and line of each problem. A RosterError: whoever stops on a bad roster stops here."""


@dataclass(frozen=True)
class Unit:
    """One row of units.csv (``line`` 0: a unit of a flat roster, no file behind it)."""

    code: str
    name: str
    parent: str | None = None
    kind: str = ""
    head_email: str = ""  # lower-case; "" when not given
    line: int = 0

    @property
    def is_agency(self) -> bool:
        """Whether the unit's kind is an agency's (:data:`AGENCY_KINDS`, any letter case,
        composed or not: a sheet may hold "ở" as o + U+031B + U+0309).

        >>> Unit("S", "Sở Nội vụ", kind="SỞ").is_agency, Unit("P", "Phòng", kind="phòng").is_agency
        (True, False)
        """
        return unicodedata.normalize("NFC", " ".join(self.kind.split())).lower() in AGENCY_KINDS


@dataclass(frozen=True)
class UnitTree:
    """Units by code, in file order, with their children (built by :meth:`of`)."""

    units: Mapping[str, Unit]
    children_of: Mapping[str | None, tuple[str, ...]] = field(repr=False)
    path: Path | None = None  # units.csv; None for a flat roster's tree

    @classmethod
    def of(cls, units: Iterable[Unit], path: Path | None = None) -> UnitTree:
        """The tree of ``units`` (checked by :func:`load_units`, not here)."""
        by_code = {u.code: u for u in units}
        children: dict[str | None, list[str]] = {}
        for u in by_code.values():
            children.setdefault(u.parent, []).append(u.code)
        return cls(by_code, {k: tuple(v) for k, v in children.items()}, path)

    @classmethod
    def flat(cls, people: Sequence[Person]) -> UnitTree:
        """A flat roster's tree: each unit of the roster a root, in order of first row.

        >>> UnitTree.flat([Person("1", "An", "", "VP", "Văn phòng")]).roots()
        ('VP',)
        """
        units: dict[str, Unit] = {}
        for p in people:
            units.setdefault(p.unit_code, Unit(p.unit_code, p.unit_name))
        return cls.of(units.values())

    @property
    def levels(self) -> int:
        """How many levels deep the tree goes (1 for a flat roster)."""
        return 1 + max((self.depth(c) for c in self.units), default=-1)

    def roots(self) -> tuple[str, ...]:
        return self.children_of.get(None, ())

    def children(self, code: str) -> tuple[str, ...]:
        return self.children_of.get(code, ())

    def ancestors(self, code: str) -> tuple[str, ...]:
        """The parent, its parent … up to the root."""
        out: list[str] = []
        parent = self.units[code].parent
        while parent is not None:
            out.append(parent)
            parent = self.units[parent].parent
        return tuple(out)

    def descendants(self, code: str) -> tuple[str, ...]:
        """Every unit below ``code``, each before its own children (``code`` not included)."""
        out: list[str] = []
        stack = list(reversed(self.children(code)))
        while stack:
            c = stack.pop()
            out.append(c)
            stack.extend(reversed(self.children(c)))
        return tuple(out)

    def subtree(self, code: str) -> tuple[str, ...]:
        """``code`` and its descendants."""
        return (code, *self.descendants(code))

    def depth(self, code: str) -> int:
        """0 for a root, 1 for its children …"""
        return len(self.ancestors(code))

    def agency_of(self, code: str) -> str:
        """The nearest agency at or above ``code``; the root when no unit on the way is one."""
        for c in (code, *self.ancestors(code)):
            if self.units[c].is_agency or self.units[c].parent is None:
                return c
        raise AssertionError("unreachable: a root ends every path")

    def head_of(self, email: str) -> tuple[str, ...]:
        """The units whose head has this address."""
        return tuple(c for c, u in self.units.items() if email and u.head_email == email)


def load_units(path: Path) -> UnitTree:
    """Read units.csv (the roster's CSV reading: BOM, ``,``/``;``/tab); every bad row is
    reported — a bad or repeated code, an unknown parent, a cycle — then UnitsError."""
    sheet = open_sheet(path, REQUIRED_COLUMNS, "units", UnitsError)
    problems: list[str] = []
    units: dict[str, Unit] = {}
    for line, row in sheet.rows():
        if blank(row):
            continue
        if None in row:
            problems.append(f"line {line}: more cells than columns (a stray comma?)")
            continue
        values = {k: (v or "").strip() for k, v in row.items()}
        bad = [
            f"line {line}: {col} is too long or holds control characters"
            for col, v in values.items()
            if len(v) > MAX_CELL or CONTROL.search(v)
        ]
        for col in ("unit_code", "parent_code"):
            v = values[col]
            if v and not bad and (not CODE.match(v) or ".." in v):
                bad.append(
                    f"line {line}: {col} {v!r} may hold only letters, digits, '.', '_' and "
                    "'-' (64 at most; no '/', no '..')"
                )
        if bad:
            problems.extend(bad)
            continue
        code, head = values["unit_code"], values.get("head_email", "").lower()
        if not code:
            problems.append(f"line {line}: unit_code is empty")
            continue
        if code in units:
            problems.append(f"line {line}: unit_code {code} repeats line {units[code].line}")
            continue
        if not values["unit_name"]:
            problems.append(f"line {line}: unit_name is empty")
        if not values["kind"]:
            problems.append(f"line {line}: kind is empty (sở, ban, UBND huyện, phòng, UBND xã …)")
        if head and not _EMAIL.match(head):
            problems.append(f"line {line}: head_email {values['head_email']!r} is not an address")
        parent = values["parent_code"] or None
        if parent == code:
            problems.append(f"line {line}: unit {code} is its own parent")
            parent = None
        units[code] = Unit(code, values["unit_name"], parent, values["kind"], head, line)
    for u in units.values():
        if u.parent is not None and u.parent not in units:
            problems.append(f"line {u.line}: parent_code {u.parent} is not a unit of this file")
    problems.extend(_cycles(units))
    if problems:
        rows = len({p.split(":", 1)[0] for p in problems})
        raise UnitsError(
            f"{path}: {rows} bad row(s), {len(problems)} problem(s):\n  " + "\n  ".join(problems)
        )
    return UnitTree.of(units.values(), path)


def _cycles(units: Mapping[str, Unit]) -> list[str]:
    """Each cycle of parents once, named by its units' lines: a cycle has no root, so its
    units would be counted in their own figures."""
    problems, done = [], set[str]()
    for start in units:
        path: list[str] = []
        code: str | None = start
        while code is not None and code in units and code not in done and code not in path:
            path.append(code)
            code = units[code].parent
        if code is not None and code in path:
            loop = path[path.index(code) :]
            chain = " -> ".join(f"{c} (line {units[c].line})" for c in [*loop, code])
            problems.append(f"line {units[loop[0]].line}: the parents go round: {chain}")
        done.update(path)
    return problems


def load_tree(
    units_path: Path | None,
    people: Sequence[Person],
    roster_path: Path | None = None,
    lines: Mapping[str, int] | None = None,
) -> UnitTree:
    """The tree an evaluation uses: units.csv when configured, checked against the roster
    (a person in a unit not in the tree, a unit named differently: the roster's line
    named), else the roster's units as a one-level tree."""
    if units_path is None:
        return UnitTree.flat(people)
    tree = load_units(units_path)
    problems: list[str] = []
    seen: set[str] = set()  # each unit's problem once, at its first row
    for p in people:
        if p.unit_code in seen:
            continue
        seen.add(p.unit_code)
        line = (lines or {}).get(p.employee_id)
        at = f"line {line}" if line else f"employee {p.employee_id}"
        unit = tree.units.get(p.unit_code)
        if unit is None:
            problems.append(f"{at}: unit_code {p.unit_code} is not in {units_path.name}")
        elif unit.name != p.unit_name:
            problems.append(
                f"{at}: unit {p.unit_code} is named {p.unit_name!r} here and {unit.name!r} "
                f"on {units_path.name} line {unit.line} (one unit, one name)"
            )
    if problems:
        raise UnitsError(
            f"{roster_path or 'roster'}: {len(problems)} problem(s):\n  " + "\n  ".join(problems)
        )
    return tree
