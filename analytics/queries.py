"""The tiny loader: a DuckDB connection with the datasets as views, and the SQL files run
with bound parameters. Query names come from an allow-list; values are never pasted.

    >>> ws = Workspace.open(Path("data"), roster_table, official=["danang.gov.vn"])
    >>> ws.run("person_month", month_params("2026-11", "Asia/Ho_Chi_Minh"), regular_days=8, ...)
"""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import duckdb
import pyarrow as pa

from analytics.policy import check_month
from contract.datasets import BY_NIGHT, DATASETS, NIGHTLY, dataset_files

SQL_DIR = Path(__file__).parent / "sql"
QUERIES = frozenset(
    {
        "counterpart_addresses",
        "counterparts",
        "coverage",
        "person_month",
        "unit_ranking",
        "violations",
    }
)

VIEWS = ("messages", "mailbox_status", "logins", "run_mailboxes", "forwarding", "contacts")


def sql(name: str) -> str:
    """The text of ``analytics/sql/<name>.sql``; only names on the allow-list."""
    if name not in QUERIES:
        raise ValueError(f"unknown query {name!r}")
    return (SQL_DIR / f"{name}.sql").read_text(encoding="utf-8")


def month_params(month: str, tz: str) -> dict[str, Any]:
    """Bounds of a month in the agency's zone, as bound parameters.

    >>> month_params("2026-11", "Asia/Ho_Chi_Minh")["month_start"]
    datetime.datetime(2026, 11, 1, 0, 0, tzinfo=zoneinfo.ZoneInfo(key='Asia/Ho_Chi_Minh'))
    """
    check_month(month)
    first = date.fromisoformat(f"{month}-01")
    nxt = date(first.year + first.month // 12, first.month % 12 + 1, 1)
    zone = ZoneInfo(tz)
    return {
        "month_start": datetime(first.year, first.month, 1, tzinfo=zone),
        "month_end": datetime(nxt.year, nxt.month, 1, tzinfo=zone),
        "first_day": first,
        "next_day": nxt,
        "tz": tz,
    }


def month_nights(month: str) -> tuple[date, date]:
    """The collection nights a month's evaluation reads: the previous month's first day
    through the night after the month (the night N run covers day N-1).

    >>> month_nights("2026-11")
    (datetime.date(2026, 10, 1), datetime.date(2026, 12, 1))
    """
    first = date.fromisoformat(f"{previous_month(month)}-01")
    return first, month_params(month, "UTC")["next_day"]


def previous_month(month: str) -> str:
    """``"2026-01"`` -> ``"2025-12"``."""
    check_month(month)
    y, m = int(month[:4]), int(month[5:])
    return f"{y - 1}-12" if m == 1 else f"{y}-{m - 1:02d}"


def next_month(month: str) -> str:
    """``"2026-12"`` -> ``"2027-01"``."""
    check_month(month)
    y, m = int(month[:4]), int(month[5:])
    return f"{y + 1}-01" if m == 12 else f"{y}-{m + 1:02d}"


def months_back(month: str, n: int) -> list[str]:
    """The ``n`` months ending with ``month``, oldest first.

    >>> months_back("2026-02", 3)
    ['2025-12', '2026-01', '2026-02']
    """
    out = [month]
    while len(out) < n:
        out.append(previous_month(out[-1]))
    return out[::-1]


def days_in(month: str) -> int:
    """``days_in("2026-11")`` -> ``30``."""
    bounds = month_params(month, "UTC")
    return int((bounds["next_day"] - bounds["first_day"]).days)


class Workspace:
    """One DuckDB connection over the data directory and the evaluation's lookup tables."""

    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        self.con = con

    @classmethod
    def open(
        cls,
        data_dir: Path,
        roster: pa.Table,
        *,
        official: list[str],
        public: list[str],
        registration: list[str],
        nights: tuple[date, date] | None = None,
    ) -> Workspace:
        """Views over the datasets; with ``nights`` (first, last), the datasets keyed by
        collection night read only those nights' files (a month reads what it needs)."""
        con = duckdb.connect()
        con.execute("set TimeZone = 'UTC'")
        ws = cls(con)
        for name in VIEWS:
            first, last = nights if nights is not None and name in BY_NIGHT else (None, None)
            files = dataset_files(data_dir, name, first, last)
            if files:
                # union_by_name only where files of older schemas may remain (one file per
                # run or login source); nightly datasets are rewritten in the current one.
                rel = con.read_parquet(
                    [str(f) for f in files],
                    hive_partitioning=True,
                    union_by_name=name not in NIGHTLY,
                )
                rel.create_view(name)
            else:  # nothing collected yet: an empty table of the same shape
                empty = DATASETS[name].empty_table()
                empty = empty.append_column("night", pa.array([], pa.date32()))
                ws.register(name, empty)
        ws.register("roster", roster)
        for name, values in (
            ("official_domains", official),
            ("public_domains", public),
            ("registration_domains", registration),
        ):
            ws.register(name, pa.table({"domain": pa.array(sorted(set(values)), pa.string())}))
        return ws

    def register(self, name: str, table: pa.Table) -> None:
        self.con.register(name, table)

    def run(self, name: str, **params: Any) -> pa.Table:
        """Run one SQL file; parameters it does not use are not sent."""
        text = sql(name)
        used = {k: v for k, v in params.items() if f"${k}" in text}
        return self.con.sql(text, params=used).to_arrow_table()

    def materialise(self, name: str, **params: Any) -> pa.Table:
        """Run a query and register its result under its own name for the next queries."""
        table = self.run(name, **params)
        self.register(name, table)
        return table
