"""The tiny loader: a DuckDB connection with the datasets as views, and the SQL files run
with bound parameters. Query names come from an allow-list; values are never pasted.

    >>> ws = Workspace.open(Path("data"), roster_table, official=["danang.gov.vn"])
    >>> ws.run("person_month", month_params("2026-11", "Asia/Ho_Chi_Minh"), regular_days=8, ...)
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
from duckdb.func import PythonUDFType
from duckdb.sqltypes import BOOLEAN, VARCHAR

from analytics.policy import check_month
from contract.arrays import empty_table
from contract.datasets import BY_NIGHT, DATASETS, NIGHTLY, dataset_files
from contract.domains import DomainList
from contract.months import closing_night, first_day, month_bounds, next_day, previous_month

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
    start, end = month_bounds(month, tz)
    return {
        "month_start": start,
        "month_end": end,
        "first_day": first_day(month),
        "next_day": next_day(month),
        "tz": tz,
    }


def month_nights(month: str) -> tuple[date, date]:
    """The collection nights a month's evaluation reads: the previous month's first day
    through the night after the month (the night N run covers day N-1).

    >>> month_nights("2026-11")
    (datetime.date(2026, 10, 1), datetime.date(2026, 12, 1))
    """
    return first_day(previous_month(month)), closing_night(month)


DOMAIN_FUNCTIONS = ("is_official_domain", "is_public_domain", "is_registration_domain")


def register_domain_lists(
    con: duckdb.DuckDBPyConnection,
    *,
    official: Iterable[str],
    public: Iterable[str],
    registration: Iterable[str],
) -> None:
    """The SQL's domain tests, ``is_official_domain(domain)`` and the like: each runs
    :meth:`contract.domains.DomainList.match_array`, the rule Python calls too, over each
    vector DuckDB hands it (Arrow kernels, no Python loop; a null domain is null: unknown).
    The queries call them on distinct domains only: ~1 s per 400,000 here.

    >>> con = duckdb.connect()
    >>> register_domain_lists(con, official=["danang.gov.vn"], public=[], registration=[])
    >>> con.sql("select is_official_domain('HN.DaNang.gov.vn.')").fetchall()
    [(True,)]
    """
    lists = (official, public, registration)
    for name, values in zip(DOMAIN_FUNCTIONS, lists, strict=True):
        con.create_function(
            name,
            DomainList.of(values).match_array,
            [VARCHAR],
            BOOLEAN,
            type=PythonUDFType.ARROW,
            side_effects=False,
        )


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
                empty = empty_table(DATASETS[name])
                empty = empty.append_column("night", pa.nulls(0, pa.date32()))
                ws.register(name, empty)
        ws.register("roster", roster)
        register_domain_lists(con, official=official, public=public, registration=registration)
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
