"""Where each person stands in the month so far: the month's usage query
(sql/person_month.sql) over the days before a given day, and who is not yet active.

The reminders before the caps (pipelines/remind.py) read this: on day D, the window is the
month's first day to D-1 (the night of D, collected at 01:30, covers D-1), so a person is
judged by the nights collected by D — no later night, no later message.

"Unknown is not zero": a person with no night collected in the window, or whose zero
activity is a lower bound (reading not counted, or logins not measured for their source:
the query's ``unmeasured``), is ``unknown``, never ``inactive``.

    >>> so_far = month_so_far(inputs, date(2026, 11, 15))
    >>> [(r["employee_id"], r["standing"]) for r in not_yet_active(so_far)]
    [('P04', 'inactive'), ('P05', 'inactive'), ('P06', 'inactive'), ('P08', 'unknown'), ...]
"""

from __future__ import annotations

from datetime import date, datetime, time
from typing import Any
from zoneinfo import ZoneInfo

import pyarrow as pa

from analytics.evaluate import EvaluationInputs, roster_table
from analytics.queries import Workspace, month_params
from contract.domains import public_domains
from contract.months import first_day, previous_month


def month_so_far(inputs: EvaluationInputs, day: date) -> pa.Table:
    """``person_month`` for ``day``'s month over its days before ``day`` (one row per
    roster row, the columns of the data dictionary's ``person_month.parquet``)."""
    month = f"{day.year:04d}-{day.month:02d}"
    policy = inputs.policy
    ws = Workspace.open(
        inputs.data_dir,
        roster_table(inputs.people, inputs.signals_of),
        official=list(inputs.official_domains),
        public=public_domains(inputs.public_domains_extra),
        registration=list(policy.registration_domains),
        # as the month's evaluation reads (last_login looks back a month), up to night D
        nights=(first_day(previous_month(month)), day),
    )
    params = month_params(month, inputs.timezone)
    params["month_end"] = datetime.combine(day, time(), ZoneInfo(inputs.timezone))
    params["next_day"] = day
    return ws.run(
        "person_month",
        **params,
        regular_days=policy.regular_min_active_days,
        occasional_days=policy.occasional_min_active_days,
    )


def standing(row: dict[str, Any]) -> str | None:
    """``inactive`` (measured, below the policy's occasional threshold), ``unknown`` (not
    measured enough to say), or None (active, or not to be reminded: no mailbox, a unit
    mailbox, on leave, joined this month).

    >>> standing({"usage_class": "inactive", "unmeasured": "logins", "exemption": None,
    ...           "is_unit_mailbox": False})
    'unknown'
    """
    if row["is_unit_mailbox"] or row["exemption"] is not None:
        return None
    if row["usage_class"] == "not_collected":
        return "unknown"
    if row["usage_class"] != "inactive":
        return None
    return "unknown" if row["unmeasured"] else "inactive"


def not_yet_active(so_far: pa.Table) -> list[dict[str, Any]]:
    """The rows to remind about, each with its ``standing``, by unit then name."""
    out = []
    for row in so_far.to_pylist():
        state = standing(row)
        if state is not None:
            out.append({**row, "standing": state})
    return sorted(out, key=lambda r: (r["unit_code"], r["full_name"], r["employee_id"]))
