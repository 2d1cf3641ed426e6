"""The evaluation with the mail log (issue 25.2) on the fixture agency and the log of
tests/analytics/mail_log_fixture.py: sent counts and active days from submissions on the
days the log was read, the Sent folder on the others; evidence from the log with its queue
id; the report's agreement of the two sources; and, without the log, the same bytes."""

from __future__ import annotations

import csv
import shutil
from collections import Counter, defaultdict
from dataclasses import replace
from datetime import date, timedelta
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest

from analytics.evaluate import evaluate_month
from analytics.queries import register_mail_logs
from contract.mail_logs import MAIL_LOG_DELIVERIES
from tests.analytics.fixture import ROSTER, addr, build, local
from tests.analytics.mail_log_fixture import (
    EXTRA,
    LOGGED_DAYS,
    NIGHTS,
    Submission,
    fixture_sent,
    inbound,
    rows_of,
    write_mail_log,
)
from tests.analytics.test_evaluate import MEASURES_ALL, MONTH, inputs
from tests.analytics.test_report import _text

LOGGED = replace(MEASURES_ALL, submissions=True)


def _store(root: Path) -> Path:
    build(root / "data")
    return root


@pytest.fixture(scope="module")
def logged(tmp_path_factory) -> tuple[Path, list[Submission]]:
    root = _store(tmp_path_factory.mktemp("mail-log"))
    submissions = fixture_sent(root / "data") + EXTRA
    write_mail_log(root / "data", rows_of(submissions, inbound(root / "data")))
    return root, submissions


@pytest.fixture(scope="module")
def result(logged):
    root, _ = logged
    return evaluate_month(
        inputs(root, signals={"fixture": LOGGED}), MONTH, out_dir=root / "reports", lang="en"
    )


def expected(submissions: list[Submission]) -> dict[str, dict[str, object]]:
    """Per roster mailbox, counted here from the truth the log was written from: on a day
    the log was read, the messages submitted that reached someone; on the other days, the
    Sent folder's; active sending days, any submission or Sent-folder message."""
    november = {date(2026, 11, 1) + timedelta(days=i) for i in range(30)}
    folder: dict[str, Counter[date]] = defaultdict(Counter)
    reached: dict[str, Counter[date]] = defaultdict(Counter)
    days: dict[str, set[date]] = defaultdict(set)
    for s in submissions:
        who = s.user.lower()
        if s.day not in november:
            continue
        days[who].add(s.day)
        if s.in_sent_folder:
            folder[who][s.day] += 1
        if s.reached:
            reached[who][s.day] += 1
    out = {}
    for row in ROSTER:
        mbx = row[4]
        if not mbx:
            continue
        logged_sent = sum(n for d, n in reached[mbx].items() if d in LOGGED_DAYS)
        logged_folder = sum(n for d, n in folder[mbx].items() if d in LOGGED_DAYS)
        out[row[0]] = {
            "sent": logged_sent + sum(n for d, n in folder[mbx].items() if d not in LOGGED_DAYS),
            "sent_folder": sum(folder[mbx].values()),
            "sent_submitted": logged_sent,
            "sent_folder_logged": logged_folder,
            "send_days": len(days[mbx]),
        }
    return out


def test_sent_and_active_days_come_from_submissions(result, logged):
    _, submissions = logged
    pm = {r["employee_id"]: r for r in result.person_month.to_pylist()}
    cols = ("sent", "sent_folder", "sent_submitted", "sent_folder_logged", "active_days")
    got = {e: tuple(pm[e][c] for c in cols) for e in ("P01", "P03", "P04", "P06", "P09", "UA")}
    assert got == {
        # 8 in Sent (days 1-8) and 2 from a phone (days 9, 10): 10 days now
        "P01": (10, 8, 10, 8, 10),
        # day 12 was not logged: its message counts from the Sent folder; day 18 adds one
        # message whose other recipient expired
        "P03": (11, 10, 10, 9, 10),
        # days 15 (in Sent too) and 16; day 17 bounced (not sent, but active); day 25 not
        # logged and not in Sent: active, not counted
        "P04": (2, 1, 2, 1, 4),
        "P06": (2, 0, 2, 0, 1),  # a scanner: nothing in any folder
        "P09": (3, 2, 3, 2, 2),  # one message through a content filter counts once
        "UA": (1, 0, 1, 0, 1),  # the unit mailbox's login in capitals
    }
    truth = expected(submissions)
    for e, want in truth.items():
        row = pm[e]
        assert (row["sent"], row["sent_folder"], row["sent_submitted"]) == (
            want["sent"],
            want["sent_folder"],
            want["sent_submitted"],
        ), e
        assert row["sent_folder_logged"] == want["sent_folder_logged"], e
    assert {pm[e]["submission_days"] for e in truth} == {len(LOGGED_DAYS)} == {28}
    # no mailbox: the log speaks for no one
    assert (pm["P11"]["sent_submitted"], pm["P11"]["submission_days"]) == (None, 0)
    # the classes follow: P06 and P04 are occasional by their submissions
    assert (pm["P06"]["usage_class"], pm["P04"]["usage_class"]) == ("occasional", "occasional")


def test_a_submission_that_reaches_no_one_is_activity_not_sent_mail(result):
    pm = {r["employee_id"]: r for r in result.person_month.to_pylist()}
    # P04's day-17 message bounced: day 17 is active, the message is not in sent
    assert pm["P04"]["active_days"] == 4 and pm["P04"]["sent_submitted"] == 2
    assert str(pm["P04"]["last_activity"]) == "2026-11-25"


def test_a_day_the_log_was_not_read_is_unknown_not_zero(tmp_path):
    """Only the nights 2-6 Nov were read: days 1-5 count from the log, every other day
    from the Sent folder, and a day without the log is never "none sent"."""
    root = _store(tmp_path)
    submissions = fixture_sent(root / "data") + EXTRA
    nights = [date(2026, 11, 2) + timedelta(days=i) for i in range(5)]
    # what was in the log of the nights read; the rest was never read
    read = [s for s in submissions if s.day + timedelta(days=1) in nights]
    write_mail_log(root / "data", rows_of(read, []), nights=nights)
    result = evaluate_month(inputs(root, signals={"fixture": LOGGED}), MONTH)
    pm = {r["employee_id"]: r for r in result.person_month.to_pylist()}
    # P01: days 1-5 from the log (5), days 6-8 from Sent (3); P03 and P04 from Sent alone
    assert (pm["P01"]["sent"], pm["P01"]["sent_submitted"], pm["P01"]["submission_days"]) == (
        8,
        5,
        5,
    )
    assert (pm["P03"]["sent"], pm["P04"]["sent"], pm["P06"]["sent"]) == (10, 1, 0)
    assert pm["UA"]["sent_submitted"] == 1  # day 5: logged


def test_a_day_is_logged_only_when_every_log_source_of_the_month_was_read(tmp_path):
    root = _store(tmp_path)
    submissions = fixture_sent(root / "data") + EXTRA
    write_mail_log(root / "data", rows_of(submissions, []))
    # a second MTA, read on every night but the one covering day 3
    write_mail_log(
        root / "data", [], source="mta2", nights=[n for n in NIGHTS if n != date(2026, 11, 4)]
    )
    # a third, set up in December: read with November (a week past it), no day of it
    december = [date(2026, 12, 3) + timedelta(days=i) for i in range(6)]
    write_mail_log(root / "data", [], source="mta3", nights=december)
    result = evaluate_month(inputs(root, signals={"fixture": LOGGED}), MONTH)
    pm = {r["employee_id"]: r for r in result.person_month.to_pylist()}
    assert pm["P01"]["submission_days"] == 27
    # P01's day-3 message counts from the Sent folder: the same total, one less compared
    assert (pm["P01"]["sent"], pm["P01"]["sent_submitted"], pm["P01"]["sent_folder_logged"]) == (
        10,
        9,
        7,
    )


def test_a_source_that_does_not_submit_through_the_logged_mta_keeps_its_sent_folder(logged):
    """P01 and P04 on an Exchange server beside it: the log speaks for neither (their mail
    there would be someone else's), so their counts and evidence are the Sent folder's."""
    root, _ = logged
    base = inputs(root, signals={"fixture": LOGGED, "exchange": MEASURES_ALL})
    moved = [
        replace(p, source="exchange") if p.employee_id in ("P01", "P04") else p for p in base.people
    ]
    result = evaluate_month(replace(base, people=moved), MONTH)
    pm = {r["employee_id"]: r for r in result.person_month.to_pylist()}
    cols = ("sent", "sent_folder", "sent_submitted", "submission_days", "active_days")
    assert tuple(pm["P01"][c] for c in cols) == (8, 8, None, 0, 8)
    assert tuple(pm["P04"][c] for c in cols) == (1, 1, None, 0, 1)
    assert pm["P06"]["sent_submitted"] == 2  # the others still from the log
    p04 = [r for r in result.violations.to_pylist() if r["employee_id"] == "P04"]
    assert [(r["evidence_source"], r["queue_id"]) for r in p04] == [("mailbox", None)]


def test_evidence_from_the_log_carries_its_queue_id_and_source(result):
    rows = result.violations.to_pylist()
    confirmed = Counter(
        (r["employee_id"], r["code"], r["evidence_source"])
        for r in rows
        if r["confidence"] == "confirmed"
    )
    assert confirmed == {
        # day 15: the Sent folder's message, and the log's (one row); day 16: the log's only
        ("P04", "PUBLIC_MAIL_FOR_WORK", "mailbox+mail_log"): 1,
        ("P04", "PUBLIC_MAIL_FOR_WORK", "mail_log"): 1,
        # the first facebookmail message in the inbox and in the log; the second inbox only
        ("P05", "OFFICIAL_ADDRESS_REGISTERED", "mailbox+mail_log"): 1,
        ("P05", "OFFICIAL_ADDRESS_REGISTERED", "mailbox"): 1,
        # the bank's mail no folder kept; the bounced facebookmail one is not evidence
        ("P02", "OFFICIAL_ADDRESS_REGISTERED", "mail_log"): 1,
        # P06 sent from a scanner: not inactive; the unit mailbox sent: attended
    }
    p04 = sorted(
        (r for r in rows if r["employee_id"] == "P04" and r["confidence"] == "confirmed"),
        key=lambda r: r["evidence_date"],
    )
    assert p04[0]["folder"] == "Sent" and p04[0]["uid"] is not None and p04[0]["queue_id"]
    assert p04[1]["folder"] is None and p04[1]["message_id"] == "<p04-16@x>"
    assert p04[1]["evidence_date"] == local(16) and p04[1]["counterpart"] == "p04.home@gmail.com"
    p02 = next(r for r in rows if r["employee_id"] == "P02")
    assert (p02["counterpart"], p02["evidence_date"]) == ("alerts@vietcombank.com.vn", local(7))
    suspected = Counter(
        (r["employee_id"], r["evidence_source"]) for r in rows if r["confidence"] == "suspected"
    )
    assert suspected == {
        ("P01", "mail_log"): 1,  # the phone's message to the shared address
        ("P03", "mailbox+mail_log"): 1,
        # the first in both; the second, written "Shared.Docs@" in its header, is the same
        # address in the envelope (Postfix logs it lower-case)
        ("P09", "mailbox+mail_log"): 1,
        ("P09", "mail_log"): 1,
        ("P10", "mailbox"): 1,  # received: the log's submissions say nothing of it
    }


def test_hr_file_counts_each_message_once(result):
    p04 = next(r for r in result.hr_rows if r["employee_id"] == "P04")
    assert p04["evidence_count"] == 2
    assert "2 messages with the declared personal address p04.home@gmail.com" in p04["reason"]
    assert {r["employee_id"] for r in result.hr_rows if r["capped"]} == {"P04"}


def test_the_evidence_files_name_the_source(result):
    with result.paths["violations"].open(encoding="utf-8-sig") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0])[7:12] == [
        "Detection rule",
        "Evidence source",
        "Folder",
        "UID",
        "Queue ID (mail log)",
    ]
    sources = sorted(r["Evidence source"] for r in rows if r["Employee ID"] == "P04")
    assert sources == ["mail_log", "mailbox+mail_log"]
    assert all(r["Queue ID (mail log)"] for r in rows if r["Employee ID"] == "P04")


def test_the_report_says_how_far_the_two_sources_agree(result, logged):
    _, submissions = logged
    html = result.paths["report"].read_text(encoding="utf-8")
    truth = expected(submissions)
    # compared: a mailbox collected this month (P08's never was; P11 has none)
    compared = {e: t for e, t in truth.items() if e != "P08"}
    diffs = {e: t["sent_submitted"] - t["sent_folder_logged"] for e, t in compared.items()}  # type: ignore[operator]
    agree = sum(1 for d in diffs.values() if d == 0)
    assert (len(compared), agree, sum(diffs.values())) == (10, 4, 8)
    assert "read for 28 of 30 days of the month" in html
    assert (
        f"of the 10 people with both sources: {agree} agree; where the log counts more, it "
        "counts 8 more messages in all" in html
    )
    assert "where the Sent folder counts more, 0 more" in html
    assert "the total difference is +8 messages" in html
    assert "Confirmed evidence: 2 found in both the mailbox and the log, 2 in the log only" in html
    # the people who differ, largest first
    table = html[html.index('id="mail-log-differ"') :]
    assert table.index(addr("P01")) < table.index(addr("P03"))


def test_the_report_in_vietnamese(logged, tmp_path):
    root, _ = logged
    vi = evaluate_month(inputs(root, signals={"fixture": LOGGED}), MONTH, out_dir=tmp_path)
    html = vi.paths["report"].read_text(encoding="utf-8")
    assert "Nhật ký máy chủ thư được đọc đủ 28 trên 30 ngày của tháng" in html
    assert "với 10 người có cả hai: 4 người khớp số thư" in html
    assert "chênh lệch tổng cộng +8 thư" in html
    # the PDF is the same report: its text has the sentence and the table's people
    pdf = " ".join(_text(vi.paths["report_pdf"]).split())
    assert "4 người khớp số thư" in pdf and addr("P06") in pdf
    with vi.paths["violations"].open(encoding="utf-8-sig") as fh:
        sources = {r["Nguồn bằng chứng"] for r in csv.DictReader(fh)}
    assert sources == {"hộp thư", "nhật ký máy chủ thư", "hộp thư và nhật ký máy chủ thư"}


@pytest.fixture(scope="module")
def plain(tmp_path_factory) -> dict[str, bytes]:
    """The outputs of the fixture store evaluated without any mail log."""
    root = _store(tmp_path_factory.mktemp("plain"))
    r = evaluate_month(inputs(root), MONTH, out_dir=root / "reports")
    return {k: p.read_bytes() for k, p in r.paths.items()}


@pytest.mark.parametrize(
    "case", ["log_but_no_source_submits_through_it", "source_but_no_log", "log_of_another_month"]
)
def test_without_the_mail_log_every_output_is_byte_identical(plain, tmp_path, case):
    root = _store(tmp_path)
    signals = {"fixture": LOGGED}
    if case == "log_but_no_source_submits_through_it":
        submissions = fixture_sent(root / "data") + EXTRA
        write_mail_log(root / "data", rows_of(submissions, inbound(root / "data")))
        signals = {"fixture": MEASURES_ALL}
    elif case == "log_of_another_month":
        january = [date(2027, 1, 2) + timedelta(days=i) for i in range(5)]
        write_mail_log(root / "data", rows_of(EXTRA, []), nights=january)
    r = evaluate_month(inputs(root, signals=signals), MONTH, out_dir=root / "reports")
    assert not r.mail_logs
    assert {k: p.read_bytes() for k, p in r.paths.items()} == plain
    shutil.rmtree(root)


def test_the_mail_log_block_adds_nothing_to_a_report_without_it(tmp_path, monkeypatch):
    """Not a byte, not a line break: the report without the log is the template without
    the block (tests above compare whole outputs; this one pins the template's part)."""
    import analytics.report as report

    root = _store(tmp_path)
    ins = inputs(root)
    plain = evaluate_month(ins, MONTH)
    text = (report.TEMPLATES / "report.html.j2").read_text(encoding="utf-8")
    # the template before the log: the lower-bound line, then a blank line and section 5
    lower_bound = '<p id="lower-bound">{{ lower_bound }}</p>{% endif %}'
    start = text.index(lower_bound) + len(lower_bound)
    end = text.index("\n\n<h3>5.", start)
    assert "{% if mail_log %}" in text[start:end]
    (tmp_path / "report.html.j2").write_text(text[:start] + text[end:], encoding="utf-8")
    before = report.render_report(plain, ins, "vi")
    monkeypatch.setattr(report, "TEMPLATES", tmp_path)
    assert report.render_report(plain, ins, "vi") == before


def test_without_a_log_file_the_sql_sees_an_empty_log_of_the_contracts_shape():
    con = duckdb.connect()
    con.execute("set TimeZone = 'UTC'")
    register_mail_logs(con, [])
    table = con.sql("select * from mail_log_deliveries").to_arrow_table()
    assert [(f.name, f.type) for f in table.schema] == [
        *((f.name, f.type) for f in MAIL_LOG_DELIVERIES),
        ("night", pa.date32()),
    ]
    assert table.num_rows == 0
    assert con.sql("select count(*) from mail_log_nights").fetchall() == [(0,)]
