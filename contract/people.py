"""The roster's person, as every layer sees it (read by ``contract.roster.load_roster``,
which parses each flag once: the evaluation reads these fields, not the CSV's text)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date


@dataclass(frozen=True)
class Person:
    """One row of the roster.

    >>> Person("NV001", "Nguyễn Văn An", "an.nv@danang.gov.vn", "UB", "Ủy ban").mailbox_issued
    True
    """

    employee_id: str
    full_name: str
    email: str  # lower-case; "" when no mailbox is issued
    unit_code: str
    unit_name: str
    source: str | None = None  # the config's source of the mailbox (None: the first one)
    is_unit_mailbox: bool = False  # a unit's shared mailbox, not a person's
    personal_emails: tuple[str, ...] = ()  # declared personal addresses, lower-case
    on_leave: bool = False
    start_date: date | None = None  # joined the agency on (None: not said)
    mailbox_issued: bool = True  # "no" only when the roster says the mailbox is not issued
