"""The roster's person, as every layer sees it (parsed by ``pipelines.config.load_roster``)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Person:
    """One row of the roster.

    >>> an = Person("NV001", "Nguyễn Văn An", "an.nv@danang.gov.vn", "UB", "Ủy ban", None, {})
    >>> an.unit_code, an.source, an.extra
    ('UB', None, {})
    """

    employee_id: str
    full_name: str
    email: str  # "" when no mailbox is issued
    unit_code: str
    unit_name: str
    source: str | None
    extra: dict[str, str]
