"""The tiny loader: a DuckDB connection with the datasets as views, and the SQL files run
with bound parameters. Query names come from an allow-list; values are never pasted.

    >>> ws = Workspace.open(Path("data"), roster_table, official=["danang.gov.vn"])
    >>> ws.run("person_month", month_params("2026-11", "Asia/Ho_Chi_Minh"), regular_days=8, ...)
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
from duckdb.func import PythonUDFType
from duckdb.sqltypes import BOOLEAN, VARCHAR

from analytics.policy import check_month
from contract.arrays import empty_table
from contract.datasets import BY_NIGHT, DATASETS, NIGHTLY, dataset_files, night_of
from contract.domains import DomainList
from contract.mail_logs import MAIL_LOG_DELIVERIES
from contract.months import closing_night, first_day, month_bounds, next_day, previous_month
from contract.units import UnitTree

SQL_DIR = Path(__file__).parent / "sql"
QUERIES = frozenset(
    {
        "counterpart_addresses",
        "counterparts",
        "coverage",
        "person_month",
        "unit_month",
        "unit_ranking",
        "violations",
    }
)

# The unit tree as unit_month.sql reads it (contract/units.py: position is the tree's order,
# each unit before its children; head_email "" when not given).
UNITS_TABLE = (
    "create or replace table units (unit_code varchar primary key, unit_name varchar, "
    "parent_code varchar, kind varchar, head_email varchar, position integer)"
)

VIEWS = ("messages", "mailbox_status", "logins", "run_mailboxes", "forwarding", "contacts")
MAIL_LOGS = "mail_log_deliveries"
# Postfix's default maximal_queue_lifetime is 5 days: a message of the month's last day is
# in the file of the night Postfix was done with it, up to that long after the month.
QUEUE_LIFETIME_NIGHTS = 7


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


def mail_log_nights(month: str) -> tuple[date, date]:
    """The nights of ``mail_log_deliveries`` a month's evaluation reads: as
    :func:`month_nights`, and a week after, where mail still queued at the month's end lands.

    >>> mail_log_nights("2026-11")
    (datetime.date(2026, 10, 1), datetime.date(2026, 12, 8))
    """
    first, last = month_nights(month)
    return first, last + timedelta(days=QUEUE_LIFETIME_NIGHTS)


def covering_nights(files: Iterable[Path], month: str) -> list[Path]:
    """The files of ``files`` whose night covers a day of ``month`` (night N covers day N-1).

    >>> [p.parent.name for p in covering_nights([Path("d/night=2026-11-01/mta.parquet"),
    ...     Path("d/night=2026-11-02/mta.parquet")], "2026-11")]
    ['night=2026-11-02']
    """
    first, last = first_day(month) + timedelta(days=1), closing_night(month)
    return [f for f in files if first <= date.fromisoformat(night_of(f)) <= last]


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


_DUCKDB_TYPES = {
    "string": "varchar",
    "int64": "bigint",
    "bool": "boolean",
    "date32[day]": "date",
    "timestamp[us, tz=UTC]": "timestamptz",
}


def register_mail_logs(con: duckdb.DuckDBPyConnection, files: list[Path]) -> None:
    """The view ``mail_log_deliveries`` over ``files`` and the table ``mail_log_nights``
    (night, source) listing them — which log source was read on which night: a night
    without its file is a night the log is unknown, even when another night's file holds
    some of its mail. No files: both empty (the evaluation is then as without mail logs).
    The listing is bound as values and built by DuckDB."""
    if files:
        rel = con.read_parquet([str(f) for f in files], hive_partitioning=True, union_by_name=True)
        rel.create_view(MAIL_LOGS)
    else:  # nothing read: an empty table of the same shape, declared to DuckDB
        # (pyarrow's empty_table would import pandas); names from the contract's schema,
        # types from this fixed table: no value reaches the statement
        columns = ", ".join(f"{f.name} {_DUCKDB_TYPES[str(f.type)]}" for f in MAIL_LOG_DELIVERIES)
        con.execute(f"create table {MAIL_LOGS} ({columns}, night date)")
    con.execute(
        "create table mail_log_nights as "
        "select unnest($nights::date[]) as night, unnest($sources::varchar[]) as source",
        {
            "nights": [date.fromisoformat(night_of(f)) for f in files],
            "sources": [f.stem for f in files],
        },
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
        mail_logs: list[Path] | None = None,
    ) -> Workspace:
        """Views over the datasets; with ``nights`` (first, last), the datasets keyed by
        collection night read only those nights' files (a month reads what it needs).

        ``mail_logs``: the ``mail_log_deliveries`` files to read (:func:`register_mail_logs`)."""
        con = duckdb.connect()
        con.execute("set TimeZone = 'UTC'")
        ws = cls(con)
        register_mail_logs(con, mail_logs or [])
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

    def load_units(self, tree: UnitTree) -> None:
        """The unit tree as the table ``units``, each unit before its children (built in
        DuckDB from bound values: a tree has a few hundred rows)."""
        order = [c for root in tree.roots() for c in tree.subtree(root)]
        self.con.execute(UNITS_TABLE)
        rows = [
            (c, u.name, u.parent, u.kind, u.head_email, i)
            for i, (c, u) in enumerate((c, tree.units[c]) for c in order)
        ]
        if rows:
            self.con.executemany("insert into units values (?, ?, ?, ?, ?, ?)", rows)

    def materialise(self, name: str, **params: Any) -> pa.Table:
        """Run a query and register its result under its own name for the next queries."""
        table = self.run(name, **params)
        self.register(name, table)
        return table
