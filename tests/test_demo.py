"""`mailusage demo` end to end (small): every planted violation found, nothing false."""

from __future__ import annotations

import csv

from analytics.evaluate import OUTPUT_FILES
from mailusage.demo import run_demo


def test_demo_finds_what_it_planted(tmp_path, monkeypatch, prefect_harness):
    monkeypatch.chdir(tmp_path)
    assert run_demo(str(tmp_path / "demo"), staff=16) == 0  # non-zero on missed / false
    reports = next((tmp_path / "demo" / "reports").iterdir())
    for name in OUTPUT_FILES:
        assert (reports / name).exists(), name
    with (reports / "hr_ratings.csv").open(encoding="utf-8-sig") as fh:
        rows = list(csv.reader(fh))
    assert len(rows) == 1 + 16  # one row per person; unit mailboxes are not rated
    # The master password file is its owner's alone.
    assert (tmp_path / "demo" / "dovecot" / "master.passwd").stat().st_mode & 0o077 == 0


def test_demo_never_deletes_a_directory_it_did_not_write(tmp_path):
    mine = tmp_path / "notes.txt"
    mine.write_text("an operator's file")
    assert run_demo(str(tmp_path), staff=4) == 2
    assert mine.read_text() == "an operator's file"


def test_demo_with_one_unit_on_a_graph_tenant(tmp_path, monkeypatch, prefect_harness):
    import duckdb

    monkeypatch.chdir(tmp_path)
    root = tmp_path / "demo"
    assert run_demo(str(root), staff=16, nights=4, graph=True) == 0
    with (root / "roster.csv").open(encoding="utf-8-sig") as fh:
        online = {r["email"] for r in csv.DictReader(fh) if r["source"] == "demo-m365"}
    assert online
    runs = duckdb.sql(
        f"select mailbox, status from read_parquet('{root}/data/run_mailboxes/*/*.parquet') "
        "where source = 'demo-m365'"
    ).fetchall()
    assert {m for m, _ in runs} == online and {s for _, s in runs} == {"ok"}
    assert len(runs) == 4 * len(online)  # every night, every Graph mailbox
    stored = duckdb.sql(
        f"select distinct mailbox from read_parquet('{root}/data/messages/*/*.parquet') "
        "where source = 'demo-m365'"
    ).fetchall()
    assert {m for (m,) in stored} == online  # everyone there receives official mail
