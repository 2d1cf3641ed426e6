"""The SQL loader (analytics/queries.py): queries only from the allow-list, values only as
bound parameters, a month reads only its nights' files, an empty store is empty, not an
error."""

from __future__ import annotations

import duckdb
import pyarrow as pa
import pytest

from analytics.queries import QUERIES, SQL_DIR, VIEWS, Workspace, month_nights, month_params, sql
from contract.datasets import BY_NIGHT, DATASETS
from tests.analytics.fixture import build

EMPTY_ROSTER = pa.table({"employee_id": pa.array([], pa.string())})
LISTS = {"official": ["danang.gov.vn"], "public": ["gmail.com"], "registration": []}


def test_only_the_allow_listed_files_are_queries():
    on_disk = {p.stem for p in SQL_DIR.glob("*.sql")}
    assert on_disk == QUERIES  # no file outside the list, none listed without its file
    for name in QUERIES:
        text = sql(name)
        assert text.startswith("-- "), f"{name}.sql: a header comment says what it returns"
        assert "from final" in text, f"{name}.sql: CTE steps ending in final"
    for bad in ("person_month; drop view messages", "../policies/lien-chieu-2014", "PERSON_MONTH"):
        with pytest.raises(ValueError, match="unknown query"):
            sql(bad)


def test_a_month_reads_only_its_nights(tmp_path):
    build(tmp_path / "data")
    everything = Workspace.open(tmp_path / "data", EMPTY_ROSTER, **LISTS)
    november = Workspace.open(
        tmp_path / "data", EMPTY_ROSTER, nights=month_nights("2026-11"), **LISTS
    )
    first, last = month_nights("2026-11")
    left_out = 0
    for name in BY_NIGHT:
        if name not in VIEWS:
            continue
        query = f"select min(night), max(night), count(*) from {name}"
        all_nights = everything.con.execute(query).fetchall()[0]
        lo, hi, rows = november.con.execute(query).fetchall()[0]
        if not all_nights[2]:
            continue
        assert first <= lo and hi <= last, name
        # the fixture has nights outside November's window; those rows are not read
        outside = everything.con.execute(
            f"select count(*) from {name} where night not between $a and $b",
            {"a": first, "b": last},
        ).fetchall()[0][0]
        assert rows == all_nights[2] - outside, name
        left_out += outside
    assert left_out > 0  # the fixture has nights after the window: something was left out


def test_an_empty_store_gives_empty_views_of_the_datasets_shape(tmp_path):
    ws = Workspace.open(tmp_path / "nothing-yet", EMPTY_ROSTER, **LISTS)
    for name in VIEWS:
        table = ws.con.sql(f"select * from {name}").to_arrow_table()
        assert table.num_rows == 0
        assert table.column_names == [*DATASETS[name].empty_table().column_names, "night"]


def test_values_are_bound_never_pasted(tmp_path):
    build(tmp_path / "data")
    ws = Workspace.open(tmp_path / "data", EMPTY_ROSTER, **LISTS)
    params = month_params("2026-11", "Asia/Ho_Chi_Minh")
    hostile = "Asia/Ho_Chi_Minh'; drop view messages; --"
    with pytest.raises(duckdb.Error):  # an unknown zone, not a second statement
        ws.run("person_month", **{**params, "tz": hostile}, regular_days=8, occasional_days=1)
    assert ws.con.execute("select count(*) from messages").fetchall()[0][0] > 0  # still there
    # parameters a file does not use are not sent (DuckDB refuses unused named ones)
    ws.materialise("counterpart_addresses", **params, not_a_parameter=1)
    assert ws.con.execute("select count(*) from counterpart_addresses").fetchall()[0][0] > 0
