"""`[[mail_logs]]` nights on a Postfix log written line by line (as Postfix 3.7 writes them,
see tests/connectors/test_postfix_log.py): re-run nights, a kill before the commit, forget-night,
a failing source, stale queue ids, the year of syslog stamps. The real-Postfix round trip
through the night is tests/pipelines/test_mail_logs_live.py."""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from contract.mail_logs import MAIL_LOG_DELIVERIES
from pipelines.config import ConfigError, MailLogConfig, load_config
from pipelines.mail_logs import MailLogError, collect_mail_log
from pipelines.storage import DataDir, NightConflict

TZ = "Asia/Ho_Chi_Minh"


def message(qid: str, user: str, rcpts: list[str], day: str = "Dec  6", hh: str = "20") -> str:
    """An authenticated submission, every recipient sent, removed."""
    out = [
        f"{day} {hh}:13:01 mail postfix/submission/smtpd[5631]: {qid}: client=unknown[10.1.2.3], "
        f"sasl_method=PLAIN, sasl_username={user}",
        f"{day} {hh}:13:01 mail postfix/cleanup[5639]: {qid}: message-id=<{qid}@demo.gov.vn>",
        f"{day} {hh}:13:01 mail postfix/qmgr[5628]: {qid}: from=<{user}>, size=900, "
        f"nrcpt={len(rcpts)} (queue active)",
    ]
    out += [
        f"{day} {hh}:13:02 mail postfix/smtp[5649]: {qid}: to=<{r}>, relay=mx[1.2.3.4]:25, "
        "delay=0.2, delays=0.01/0.01/0.1/0.1, dsn=2.0.0, status=sent (250 2.0.0 Ok)"
        for r in rcpts
    ]
    out.append(f"{day} {hh}:13:03 mail postfix/qmgr[5628]: {qid}: removed")
    return "".join(line + "\n" for line in out)


def append(log: Path, text: str) -> None:
    with log.open("a") as fh:
        fh.write(text)


def rows(data: DataDir, night: str) -> list[dict]:
    table = pq.read_table(data.night_file("mail_log_deliveries", night, "postfix"))
    assert table.schema.equals(MAIL_LOG_DELIVERIES)
    return table.to_pylist()


def sent(data: DataDir, night: str) -> list[tuple[str, str]]:
    return sorted((r["queue_id"], r["recipient"]) for r in rows(data, night))


@pytest.fixture
def setup(tmp_path):
    log = tmp_path / "mail.log"
    log.write_text("")
    os.utime(log, (datetime(2026, 12, 7).timestamp(),) * 2)
    src = MailLogConfig("postfix", "postfix", log, timezone=TZ)
    return log, src, DataDir(tmp_path / "data")


def night(src: MailLogConfig, n: str, data: DataDir, **kw):
    return collect_mail_log(src, n, data, TZ, **kw)


def test_nights_read_on_rerun_reads_the_same_lines_and_a_message_split_across_nights(setup):
    log, src, data = setup
    append(log, message("A0000000001", "an.nv@demo.gov.vn", ["x@gmail.com", "y@demo.gov.vn"]))
    split = message("B0000000002", "binh.tt@demo.gov.vn", ["z@yahoo.com"]).splitlines(True)
    append(log, "".join(split[:3]))  # submitted tonight, delivered tomorrow
    first = night(src, "2026-12-06", data)
    assert first.rows == 2 and first.still_open == 1
    assert sent(data, "2026-12-06") == [
        ("A0000000001", "x@gmail.com"),
        ("A0000000001", "y@demo.gov.vn"),
    ]
    row = rows(data, "2026-12-06")[0]
    assert (row["direction"], row["sasl_username"], str(row["log_date"])) == (
        "out", "an.nv@demo.gov.vn", "2026-12-06",
    )  # fmt: skip
    assert row["time"].isoformat() == "2026-12-06T13:13:01+00:00"  # 20:13:01 +07:00
    append(log, "".join(split[3:]) + message("C0000000003", "chi.lt@demo.gov.vn", ["w@x.vn"]))
    # the same night again: the same lines and the new ones, once each
    again = night(src, "2026-12-06", data)
    assert again.rows == 4 and again.still_open == 0
    assert sent(data, "2026-12-06") == [
        ("A0000000001", "x@gmail.com"), ("A0000000001", "y@demo.gov.vn"),
        ("B0000000002", "z@yahoo.com"), ("C0000000003", "w@x.vn"),
    ]  # fmt: skip
    # the next night: nothing new is nothing, and the file says so (not a missing file)
    assert night(src, "2026-12-07", data).rows == 0
    assert rows(data, "2026-12-07") == []
    with pytest.raises(NightConflict):
        night(src, "2026-12-05", data)


def test_a_message_split_across_nights_is_assembled_once_from_the_carried_state(setup):
    log, src, data = setup
    split = message("B0000000002", "binh.tt@demo.gov.vn", ["z@yahoo.com"]).splitlines(True)
    append(log, "".join(split[:3]))
    assert night(src, "2026-12-06", data).rows == 0
    append(log, "".join(split[3:]))
    assert night(src, "2026-12-07", data).rows == 1
    (row,) = rows(data, "2026-12-07")
    # the user and size come from the first night's lines, carried in the store
    assert (row["sasl_username"], row["size"], row["status"], row["complete"]) == (
        "binh.tt@demo.gov.vn", 900, "sent", True,
    )  # fmt: skip


def test_a_run_killed_before_its_commit_loses_and_duplicates_nothing(setup):
    log, src, data = setup
    append(log, message("A0000000001", "an.nv@demo.gov.vn", ["x@gmail.com"]))
    night(src, "2026-12-06", data)
    append(log, message("B0000000002", "an.nv@demo.gov.vn", ["y@gmail.com"]))
    committed = data.log_state("mail_logs:postfix")
    night(src, "2026-12-07", data)
    # as if killed after the file was written and before the commit: the record is back
    data.commit_log("mail_logs:postfix", committed)
    with data.db() as con, con:
        con.execute("delete from log_cursor_history where night = '2026-12-07'")
    append(log, message("C0000000003", "an.nv@demo.gov.vn", ["z@gmail.com"]))
    night(src, "2026-12-08", data)
    assert not data.night_file("mail_log_deliveries", "2026-12-07", "postfix").exists()
    assert sent(data, "2026-12-08") == [
        ("B0000000002", "y@gmail.com"),
        ("C0000000003", "z@gmail.com"),
    ]


def test_forget_night_undoes_a_mail_log_night(setup):
    log, src, data = setup
    append(log, message("A0000000001", "an.nv@demo.gov.vn", ["x@gmail.com"]))
    night(src, "2026-12-06", data)
    split = message("B0000000002", "an.nv@demo.gov.vn", ["y@gmail.com"]).splitlines(True)
    append(log, "".join(split[:3]))
    night(src, "2026-12-07", data)
    append(log, "".join(split[3:]))
    night(src, "2026-12-08", data)
    plan = data.plan_forget("2026-12-07")
    assert "mail_logs:postfix" in plan.later  # the later night first
    data.forget(data.plan_forget("2026-12-08"))
    assert not data.night_file("mail_log_deliveries", "2026-12-08", "postfix").exists()
    data.forget(data.plan_forget("2026-12-07"))
    # read again from where night 6 stopped, with night 6's open queue ids: B once, whole
    night(src, "2026-12-07", data)
    (row,) = rows(data, "2026-12-07")
    assert (row["queue_id"], row["sasl_username"], row["complete"]) == (
        "B0000000002", "an.nv@demo.gov.vn", True,
    )  # fmt: skip


def test_a_failing_source_writes_nothing_and_commits_nothing(setup):
    log, src, data = setup
    append(log, message("A0000000001", "an.nv@demo.gov.vn", ["x@gmail.com"]))
    night(src, "2026-12-06", data)
    before = data.log_state("mail_logs:postfix")
    os.rename(log, log.with_name("moved-away"))
    with pytest.raises(MailLogError, match=r"mail\.log not found"):
        night(src, "2026-12-07", data)
    assert not data.night_file("mail_log_deliveries", "2026-12-07", "postfix").exists()
    assert data.log_state("mail_logs:postfix") == before


def test_stale_queue_ids_are_written_incomplete_and_the_collectors_test_mail_is_not(setup):
    log, src, data = setup
    src = MailLogConfig(
        "postfix", "postfix", log, timezone=TZ, stale_after_days=3,
        ignore_senders=("probe@demo.gov.vn",), ignore_accounts=("mailusage@demo.gov.vn",),
    )  # fmt: skip
    lost = message("D0000000004", "an.nv@demo.gov.vn", ["q@gmail.com"], day="Dec  1")
    append(log, "".join(lost.splitlines(True)[:-1]))  # its `removed` line never came
    append(log, message("E0000000005", "mailusage@demo.gov.vn", ["probe@demo.gov.vn"]))
    append(log, message("F0000000006", "binh.tt@demo.gov.vn", ["r@gmail.com"]))
    read = night(src, "2026-12-06", data, now=datetime.fromisoformat("2026-12-06T21:00:00+07:00"))
    assert (read.rows, read.stale, read.ignored) == (2, 1, 1)
    assert "given up" in read.notes()
    by_id = {r["queue_id"]: r for r in rows(data, "2026-12-06")}
    assert set(by_id) == {"D0000000004", "F0000000006"}
    assert (by_id["D0000000004"]["removed"], by_id["D0000000004"]["status"]) == (False, "sent")


def test_the_year_of_syslog_stamps_is_the_files_across_new_year(setup):
    log, src, data = setup
    append(log, message("A0000000001", "an.nv@demo.gov.vn", ["x@gmail.com"], day="Dec 31", hh="23"))
    append(log, message("B0000000002", "an.nv@demo.gov.vn", ["y@gmail.com"], day="Jan  1", hh="08"))
    os.utime(log, (datetime(2027, 1, 1, 9).timestamp(),) * 2)  # written to in January
    night(src, "2027-01-01", data)
    got = {r["queue_id"]: str(r["log_date"]) for r in rows(data, "2027-01-01")}
    assert got == {"A0000000001": "2026-12-31", "B0000000002": "2027-01-01"}


def test_mail_logs_config_keys_and_errors_name_the_key(tmp_path):
    head = '[roster]\npath = "r.csv"\n[[sources]]\nhost = "h"\nmaster_user = "m"\npassword = { env = "X" }\n'
    cfg = tmp_path / "m.toml"
    cfg.write_text(head + '[[mail_logs]]\nkind = "postfix"\npath = "/var/log/mail.log"\n'
                   'ignore_accounts = ["MailUsage@demo.gov.vn"]\n')  # fmt: skip
    (src,) = load_config(cfg).mail_logs
    assert (src.name, src.path, src.timezone, src.stale_after_days) == (
        "postfix", Path("/var/log/mail.log"), TZ, 7,
    )  # fmt: skip
    assert src.ignore_accounts == ("mailusage@demo.gov.vn",)
    for bad, error in [
        ('kind = "exim"\npath = "x"', r"mail_logs\[0\]\.kind must be one of postfix"),
        ('kind = "postfix"', r"mail_logs\[0\]\.path is required"),
        ('kind = "postfix"\npath = "x"\ntimezone = "Mars/Base"', r"timezone 'Mars/Base'"),
        ('kind = "postfix"\npath = "x"\nignore_sender = []', r"did you mean 'ignore_senders'"),
        ('kind = "postfix"\npath = "x"\nstale_after_days = 0', r"stale_after_days must be 1"),
    ]:
        cfg.write_text(head + "[[mail_logs]]\n" + bad + "\n")
        with pytest.raises(ConfigError, match=error):
            load_config(cfg)


def test_doctor_reads_the_logs_tail_and_says_whose_lines_it_holds(setup):
    from mailusage.doctor import mail_log_check

    log, src, _ = setup
    append(log, "x" * 100 + "\n")  # a line cut in half by the 1 MiB tail when longer
    append(log, message("A0000000001", "an.nv@demo.gov.vn", ["x@gmail.com"]) * 2000)
    check = mail_log_check(src, TZ)
    assert check.status == "ok" and "readable" in check.detail, check
    other = log.with_name("auth.log")
    other.write_text("Dec  6 20:00:00 host sshd[1]: Accepted publickey for root\n")
    check = mail_log_check(MailLogConfig("other", "postfix", other), TZ)
    assert check.status == "warn" and "is it the mail log" in check.detail
    check = mail_log_check(MailLogConfig("gone", "postfix", log.with_name("gone.log")), TZ)
    assert (check.subject, check.status) == ("mail_logs:gone", "fail")
    assert "gone.log not found" in check.detail


def test_the_nights_summary_counts_mail_log_sources_apart():
    from pipelines.night import summary_line

    outcomes = [
        {"mailbox": "a@x.vn", "status": "ok"},
        {"mailbox": "logins:dovecot", "status": "ok"},
        {"mailbox": "mail_logs:postfix", "status": "failed"},
    ]
    line = summary_line({"night": "2026-12-06", "outcomes": outcomes, "messages_new": 4})
    assert line == (
        "night 2026-12-06: ok 1, failed 0, skipped 0 of 1 mailboxes; login sources: ok 1 of 1; "
        "mail log sources: ok 0, failed 1 of 1; 4 new messages"
    )


def test_the_flow_reads_a_mail_log_as_a_prefect_task(
    dovecot, tmp_path, monkeypatch, prefect_harness
):
    from pipelines.collect import collect
    from tests.conftest import MASTER_PASSWORD
    from tests.groundtruth import seed_regular
    from tests.pipelines.test_flow_and_cli import write_setup

    monkeypatch.setenv("MU_TEST_MASTER", MASTER_PASSWORD)
    mailbox = "mail.log.flow@danang.gov.vn"
    seed_regular(dovecot, mailbox, 2, seed=251)
    log = tmp_path / "mail.log"
    log.write_text(message("A0000000001", mailbox, ["x@gmail.com", "y@danang.gov.vn"]))
    extra = f'[[mail_logs]]\nkind = "postfix"\npath = "{log}"\ntimezone = "{TZ}"\n'
    cfg = write_setup(tmp_path, dovecot, f"NV1,An,{mailbox},VP,Văn phòng,no\n", extra=extra)
    result = collect(config_path=cfg, night="2026-12-06")
    outcome = next(o for o in result["outcomes"] if o["mailbox"] == "mail_logs:postfix")
    assert (outcome["status"], outcome["messages_new"]) == ("ok", 2)  # two recipients' rows
    assert result["messages_new"] == 2  # the mailbox's two messages; log rows are not messages
    data = DataDir(tmp_path / "data")
    assert sent(data, "2026-12-06") == [
        ("A0000000001", "x@gmail.com"),
        ("A0000000001", "y@danang.gov.vn"),
    ]


def test_a_rotation_not_found_is_said_in_the_nights_outcome(setup):
    log, src, data = setup
    append(log, message("A0000000001", "an.nv@demo.gov.vn", ["x@gmail.com"]))
    night(src, "2026-12-06", data)
    append(log, message("B0000000002", "an.nv@demo.gov.vn", ["y@gmail.com"]))  # never read
    os.rename(log, log.with_name("archived-elsewhere"))  # rotated out of the reader's sight
    append(log, message("C0000000003", "an.nv@demo.gov.vn", ["z@gmail.com"]))
    read = night(src, "2026-12-07", data)
    assert sent(data, "2026-12-07") == [("C0000000003", "z@gmail.com")]
    assert read.rotation_lost and "lines between may be missing" in read.notes()
