"""contract.months: the one month module (parse, days, bounds, neighbours, "has it ended")."""

import doctest
import itertools
from datetime import UTC, date, datetime, timedelta

import pytest

import contract.months
from contract.months import (
    MonthError,
    check_month,
    closing_night,
    days_in,
    days_of,
    has_begun,
    has_ended,
    last_ended_month,
    month_bounds,
    month_of_night,
    months_back,
    months_between,
    next_month,
    previous_month,
    today_in,
)


def test_the_docstring_examples_run():
    result = doctest.testmod(contract.months, optionflags=doctest.ELLIPSIS)
    assert result.attempted >= 15 and result.failed == 0


@pytest.mark.parametrize(
    ("month", "before", "after"),
    [
        ("2026-01", "2025-12", "2026-02"),
        ("2026-12", "2026-11", "2027-01"),
        ("2000-03", "2000-02", "2000-04"),
        ("0999-01", "0998-12", "0999-02"),  # four digits always, as the check wants them
    ],
)
def test_neighbours_wrap_the_year(month, before, after):
    assert previous_month(month) == before
    assert next_month(month) == after
    assert next_month(previous_month(month)) == month
    check_month(before)
    check_month(after)


@pytest.mark.parametrize(
    ("month", "days"),
    [
        ("2026-02", 28),
        ("2024-02", 29),  # divisible by 4
        ("2100-02", 28),  # by 100, not by 400
        ("2000-02", 29),  # by 400
        ("2026-04", 30),
        ("2026-12", 31),
    ],
)
def test_days_of_a_month_know_leap_years(month, days):
    assert days_in(month) == days
    listed = days_of(month)
    assert len(listed) == days
    assert listed[0] == date(int(month[:4]), int(month[5:]), 1)
    assert all(b - a == timedelta(days=1) for a, b in itertools.pairwise(listed))
    assert listed[-1] + timedelta(days=1) == closing_night(month)


@pytest.mark.parametrize(
    "bad",
    [
        "2026-13",
        "2026-00",
        "2026-1",
        "26-11",
        "2026/11",
        "2026-11-01",
        " 2026-11",
        "",
        None,
        202611,
    ],
)
def test_a_bad_month_is_refused_saying_what_was_given(bad):
    with pytest.raises(MonthError, match=r"month must be YYYY-MM, not ") as err:
        check_month(bad)
    assert repr(bad) in str(err.value)
    with pytest.raises(MonthError):
        previous_month(bad)  # every helper checks before it counts
    with pytest.raises(MonthError):
        days_in(bad)


def test_bounds_are_local_midnights_across_the_new_year():
    start, end = month_bounds("2026-12", "Asia/Ho_Chi_Minh")
    assert start.astimezone(UTC) == datetime(2026, 11, 30, 17, tzinfo=UTC)
    assert end.astimezone(UTC) == datetime(2026, 12, 31, 17, tzinfo=UTC)
    start, end = month_bounds("2024-02", "UTC")
    assert (end - start) == timedelta(days=29)


def test_months_back_and_between():
    assert months_back("2026-01", 12)[0] == "2025-02"
    assert months_back("2026-01", 1) == ["2026-01"]
    assert months_between("2026-11", "2027-01") == ["2026-11", "2026-12", "2027-01"]
    assert months_between("2026-11", "2026-11") == ["2026-11"]
    assert months_between("2027-01", "2026-12") == []


def test_nights_cover_the_day_before():
    assert month_of_night(date(2027, 1, 1)) == "2026-12"
    assert month_of_night(date(2026, 3, 1)) == "2026-02"
    assert closing_night("2024-02") == date(2024, 3, 1)


def test_ended_and_begun_at_the_agency_midnight():
    # 2026-12-31 17:30 UTC is already 2027-01-01 in Hanoi: December has ended there
    now = datetime(2026, 12, 31, 17, 30, tzinfo=UTC)
    today = today_in("Asia/Ho_Chi_Minh", now)
    assert today == date(2027, 1, 1)
    assert today_in("UTC", now) == date(2026, 12, 31)
    assert has_ended("2026-12", today) and has_begun("2027-01", today)
    assert not has_ended("2027-01", today) and not has_begun("2027-02", today)
    assert last_ended_month(today) == "2026-12"
    assert last_ended_month(date(2026, 12, 31)) == "2026-11"
