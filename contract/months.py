"""Months as the evaluation counts them: ``"YYYY-MM"`` strings, checked once, and their
days, bounds and neighbours. Standard library only: every layer may import it.

    >>> previous_month("2026-01"), next_month("2026-12")
    ('2025-12', '2027-01')
    >>> days_in("2028-02")
    29

A collection night covers the day before it (the night of 2026-12-01 reads 2026-11-30),
so a month is complete once its *closing night*, the next month's first day, is collected.
"""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

__all__ = [
    "MonthError",
    "check_month",
    "closing_night",
    "current_month",
    "days_in",
    "days_of",
    "first_day",
    "has_begun",
    "has_ended",
    "is_month",
    "last_ended_month",
    "month_bounds",
    "month_of",
    "month_of_night",
    "months_back",
    "months_between",
    "next_day",
    "next_month",
    "previous_month",
    "today_in",
]

_MONTH = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")


class MonthError(ValueError):
    """Not a ``YYYY-MM`` month; the message shows what was given."""


def is_month(value: object) -> bool:
    """Whether ``value`` is a ``YYYY-MM`` month.

    >>> is_month("2026-11"), is_month("2026-13"), is_month("2026-1"), is_month(202611)
    (True, False, False, False)
    """
    return isinstance(value, str) and _MONTH.match(value) is not None


def check_month(month: object) -> str:
    """``month`` itself, or MonthError: months reach SQL and file names only after this.

    >>> check_month("2026-11")
    '2026-11'
    >>> check_month("11/2026")
    Traceback (most recent call last):
    contract.months.MonthError: month must be YYYY-MM, not '11/2026'
    """
    if not is_month(month):
        raise MonthError(f"month must be YYYY-MM, not {month!r}")
    assert isinstance(month, str)
    return month


def _year_month(month: str) -> tuple[int, int]:
    check_month(month)
    return int(month[:4]), int(month[5:])


def month_of(day: date) -> str:
    """The month a day falls in: ``month_of(date(2026, 11, 30))`` -> ``'2026-11'``."""
    return f"{day.year:04d}-{day.month:02d}"


def first_day(month: str) -> date:
    """``first_day("2026-11")`` -> ``datetime.date(2026, 11, 1)``."""
    year, number = _year_month(month)
    return date(year, number, 1)


def next_month(month: str) -> str:
    """``"2026-12"`` -> ``"2027-01"``.

    >>> next_month("2026-12")
    '2027-01'
    """
    year, number = _year_month(month)
    return f"{year + 1:04d}-01" if number == 12 else f"{year:04d}-{number + 1:02d}"


def previous_month(month: str) -> str:
    """``"2026-01"`` -> ``"2025-12"``.

    >>> previous_month("2026-01")
    '2025-12'
    """
    year, number = _year_month(month)
    return f"{year - 1:04d}-12" if number == 1 else f"{year:04d}-{number - 1:02d}"


def next_day(month: str) -> date:
    """The first day after the month: ``next_day("2026-12")`` -> ``datetime.date(2027, 1, 1)``."""
    return first_day(next_month(month))


def days_in(month: str) -> int:
    """``days_in("2026-11")`` -> ``30``; February has 29 in a leap year.

    >>> days_in("2026-11"), days_in("2026-02"), days_in("2024-02"), days_in("2100-02")
    (30, 28, 29, 28)
    """
    return (next_day(month) - first_day(month)).days


def days_of(month: str) -> list[date]:
    """Every day of the month, in order.

    >>> days = days_of("2026-02")
    >>> days[0], days[-1], len(days)
    (datetime.date(2026, 2, 1), datetime.date(2026, 2, 28), 28)
    """
    start = first_day(month)
    return [start + timedelta(days=i) for i in range(days_in(month))]


def month_bounds(month: str, tz: str | ZoneInfo) -> tuple[datetime, datetime]:
    """The month as an instant range ``[start, end)`` in the agency's zone.

    >>> start, end = month_bounds("2026-12", "Asia/Ho_Chi_Minh")
    >>> start.isoformat(), end.isoformat()
    ('2026-12-01T00:00:00+07:00', '2027-01-01T00:00:00+07:00')
    """
    zone = tz if isinstance(tz, ZoneInfo) else ZoneInfo(tz)
    start, end = first_day(month), next_day(month)
    return (
        datetime(start.year, start.month, 1, tzinfo=zone),
        datetime(end.year, end.month, 1, tzinfo=zone),
    )


def months_back(month: str, n: int) -> list[str]:
    """The ``n`` months ending with ``month``, oldest first.

    >>> months_back("2026-02", 3)
    ['2025-12', '2026-01', '2026-02']
    """
    out = [check_month(month)]
    while len(out) < n:
        out.append(previous_month(out[-1]))
    return out[::-1]


def months_between(first: str, last: str) -> list[str]:
    """Every month from ``first`` to ``last``, both included (none when ``last`` is
    earlier).

    >>> months_between("2025-11", "2026-02")
    ['2025-11', '2025-12', '2026-01', '2026-02']
    """
    check_month(first)
    check_month(last)
    out: list[str] = []
    month = first
    while month <= last:  # "YYYY-MM" strings order as the months do
        out.append(month)
        month = next_month(month)
    return out


def month_of_night(night: date) -> str:
    """The month of the day a collection night covers (the night N run reads day N-1).

    >>> month_of_night(date(2026, 12, 1)), month_of_night(date(2026, 12, 2))
    ('2026-11', '2026-12')
    """
    return month_of(night - timedelta(days=1))


def closing_night(month: str) -> date:
    """The night that covers the month's last day: once it is collected, the month is.

    >>> closing_night("2026-12")
    datetime.date(2027, 1, 1)
    """
    return next_day(month)


def today_in(tz: str | ZoneInfo, now: datetime | None = None) -> date:
    """Today's date in the agency's zone (``now`` for a test; aware)."""
    zone = tz if isinstance(tz, ZoneInfo) else ZoneInfo(tz)
    return (now or datetime.now(zone)).astimezone(zone).date()


def current_month(today: date) -> str:
    """The month ``today`` is in (say :func:`today_in` the agency's zone)."""
    return month_of(today)


def last_ended_month(today: date) -> str:
    """The latest month that has ended: ``'2026-10'`` on any day of November 2026.

    >>> last_ended_month(date(2027, 1, 1))
    '2026-12'
    """
    return previous_month(month_of(today))


def has_begun(month: str, today: date) -> bool:
    """Whether ``today`` is in ``month`` or later.

    >>> has_begun("2026-12", date(2026, 11, 30)), has_begun("2026-12", date(2026, 12, 1))
    (False, True)
    """
    return today >= first_day(month)


def has_ended(month: str, today: date) -> bool:
    """Whether every day of ``month`` is before ``today``.

    >>> has_ended("2026-11", date(2026, 11, 30)), has_ended("2026-11", date(2026, 12, 1))
    (False, True)
    """
    return today >= next_day(month)
