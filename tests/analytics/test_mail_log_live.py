"""End to end (issue 25.2): real mail through a private Postfix (devkit.postfix), its log
parsed by connectors.postfix_log into the night's ``mail_log_deliveries`` file, the
mailboxes collected from the Dovecot it delivers into, and the month evaluated — the
counts and evidence compared with what this test sent.

Mail sent over SMTP keeps no copy in any Sent folder (as from a phone or a scanner): the
Sent folders say nothing was sent, the log says what was, Bcc included."""

from __future__ import annotations

import csv
import os
import smtplib
import ssl
import time
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from analytics.evaluate import EvaluationInputs, evaluate_month
from analytics.policy import load_policy
from connectors.postfix_log import LogState, MailRecord, delivery_rows, read_chunk
from contract.mail_logs import MAIL_LOG_DELIVERIES
from contract.months import month_of
from contract.roster import load_roster
from contract.signals import Signals
from devkit.dovecot import LocalDovecot
from devkit.postfix import POSTFIX, LocalPostfix
from pipelines.collect import run_night
from pipelines.storage import DataDir
from tests.collect_one import one_night
from tests.conftest import MASTER_PASSWORD, imap_source

pytestmark = pytest.mark.skipif(
    not Path(POSTFIX).exists() or os.geteuid() != 0,
    reason="needs Debian's postfix (make setup installs it) and root (Postfix's master runs as root)",
)

TZ = "Asia/Ho_Chi_Minh"
HCM = ZoneInfo(TZ)
DOMAIN = "demo.gov.vn"
USERS = {
    f"an.nv@{DOMAIN}": "pw-an",
    f"binh.tt@{DOMAIN}": "pw-binh",
    f"chi.lt@{DOMAIN}": "pw-chi",
    f"vanthu@{DOMAIN}": "pw-vanthu",  # the unit's shared mailbox
}
ROSTER = (
    "employee_id,full_name,email,unit_code,unit_name,is_unit_mailbox,personal_email\n"
    f"NV01,Nguyễn Văn An,an.nv@{DOMAIN},A,Văn phòng,no,an.home@gmail.com\n"
    f"NV02,Trần Thị Bình,binh.tt@{DOMAIN},B,Phòng Tài chính,no,\n"
    f"NV03,Lê Thị Chi,chi.lt@{DOMAIN},A,Văn phòng,no,\n"
    f"UB,Văn thư Phòng Tài chính,vanthu@{DOMAIN},B,Phòng Tài chính,yes,\n"
)
SIGNALS = Signals(
    read_activity=True, quota=True, forwarding=False, folder_sizes=False, logins=True,
    submissions=True,
)  # fmt: skip


def message(msg_id: str, sender: str, to: str) -> bytes:
    """Headers as a client writes them: a Bcc recipient is never in them."""
    return f"From: {sender}\r\nTo: {to}\r\nSubject: t\r\nMessage-ID: {msg_id}\r\n\r\nx\r\n".encode()


def submit(pf: LocalPostfix, user: str, rcpts: list[str], raw: bytes) -> None:
    with smtplib.SMTP("127.0.0.1", pf.submission_port) as smtp:
        smtp.starttls(context=ssl.create_default_context(cafile=str(pf.ca_file)))
        smtp.login(user, USERS[user])
        assert smtp.sendmail(user, rcpts, raw) == {}


def read_log(pf: LocalPostfix, ready, timeout: float = 30.0) -> list[MailRecord]:
    """The messages Postfix was done with, read as the night's reader reads the log."""
    deadline = time.monotonic() + timeout
    state, offset, done = LogState(year=datetime.now(HCM).year), 0, []
    while True:
        data = pf.maillog.read_bytes()[offset:] if pf.maillog.exists() else b""
        r = read_chunk(data, state, tz=HCM, log_tz=ZoneInfo(pf.log_tz))
        offset += r.consumed
        done += r.messages
        if ready(done):
            return done
        assert time.monotonic() < deadline, f"log not there after {timeout}s"
        time.sleep(0.1)


def test_a_month_evaluated_from_real_postfix_logs(tmp_path):
    dovecot = LocalDovecot.start(tmp_path / "dovecot", mta=True, master_password=MASTER_PASSWORD)
    try:
        dovecot.add_users(USERS)
        dovecot.finish_seeding()
        with LocalPostfix.start(tmp_path / "postfix", dovecot, domains=[DOMAIN]) as pf:
            pf.sink.refuse.add("nobody@gmail.com")
            an, binh, chi, vanthu = USERS
            # an.nv to a colleague, Bcc his own declared personal address
            submit(pf, an, [binh, "an.home@gmail.com"], message("<m1@t>", an, binh))
            # an.nv to an address the outside refuses: a bounce, not mail sent
            submit(pf, an, ["nobody@gmail.com"], message("<m2@t>", an, "nobody@gmail.com"))
            # three mailboxes in two units write to one public address
            for i, user in enumerate((binh, chi, vanthu), start=3):
                submit(
                    pf, user, ["shared@gmail.com"], message(f"<m{i}@t>", user, "shared@gmail.com")
                )
            # from outside, a registration sender to chi.lt
            with smtplib.SMTP("127.0.0.1", pf.smtp_port) as smtp:
                fb = "notification@facebookmail.com"
                smtp.sendmail(fb, [chi], message("<fb@t>", fb, chi))
            pf.wait_idle()
            sent_ids = {"<m1@t>", "<m2@t>", "<m3@t>", "<m4@t>", "<m5@t>", "<fb@t>"}
            records = read_log(
                pf,
                lambda done: (
                    sent_ids <= {m.message_id for m in done} and any(m.notice_of for m in done)
                ),
            )
        rows = delivery_rows(records)
        assert {r["message_id"] for r in rows} >= sent_ids
        # the night after the mail's day reads it (night N covers day N-1)
        (day,) = {r["log_date"] for r in rows}
        night = (day + timedelta(days=1)).isoformat()
        folder = tmp_path / "data" / "mail_log_deliveries" / f"night={night}"
        folder.mkdir(parents=True)
        pq.write_table(
            pa.Table.from_pylist(rows, schema=MAIL_LOG_DELIVERIES), folder / "postfix.parquet"
        )
        # and the mailboxes, collected that night
        data = DataDir(tmp_path / "data")
        src = imap_source(dovecot)
        summary = run_night(one_night(src, night, data), [(m, "test") for m in USERS])
        assert {o.status for o in summary.outcomes} == {"ok"}
    finally:
        dovecot.stop()

    (tmp_path / "roster.csv").write_text(ROSTER, encoding="utf-8")
    inputs = EvaluationInputs(
        data_dir=tmp_path / "data",
        people=load_roster(tmp_path / "roster.csv"),
        timezone=TZ,
        official_domains=(DOMAIN,),
        policy=load_policy("lien-chieu-2014"),
        signals={"test": SIGNALS},
    )
    month = month_of(day)
    result = evaluate_month(inputs, month, out_dir=tmp_path / "reports", lang="en")

    # what this test sent, per person: messages that reached someone, and active days
    pm = {r["employee_id"]: r for r in result.person_month.to_pylist()}
    got = {
        e: (r["sent"], r["sent_folder"], r["sent_submitted"], r["active_days"])
        for e, r in pm.items()
    }
    assert got == {
        "NV01": (1, 0, 1, 1),  # <m1@t>; <m2@t> bounced: active, not sent
        "NV02": (1, 0, 1, 1),
        "NV03": (1, 0, 1, 1),
        "UB": (1, 0, 1, 1),  # the unit mailbox sent: attended
    }
    assert {r["submission_days"] for r in pm.values()} == {1}

    by_id = {m.message_id: m for m in records}
    evidence = {
        (r["employee_id"], r["code"], r["confidence"], r["counterpart"]): r
        for r in result.violations.to_pylist()
    }
    # the Bcc to his own personal address: in no header, in the envelope
    bcc = evidence[("NV01", "PUBLIC_MAIL_FOR_WORK", "confirmed", "an.home@gmail.com")]
    assert (bcc["evidence_source"], bcc["queue_id"]) == ("mail_log", by_id["<m1@t>"].queue_id)
    assert bcc["evidence_date"] == by_id["<m1@t>"].time and bcc["folder"] is None
    suspected = {k[0] for k in evidence if k[2] == "suspected"}
    assert suspected == {"NV02", "NV03", "UB"}
    # the registration mail is in chi.lt's inbox and in the log: one piece of evidence
    fb = evidence[
        ("NV03", "OFFICIAL_ADDRESS_REGISTERED", "confirmed", "notification@facebookmail.com")
    ]
    assert (fb["evidence_source"], fb["folder"]) == ("mailbox+mail_log", "INBOX")
    assert fb["queue_id"] == by_id["<fb@t>"].queue_id
    assert sum(1 for k in evidence if k[1] == "OFFICIAL_ADDRESS_REGISTERED") == 1
    assert not any(k[1] == "UNIT_MAILBOX_UNATTENDED" for k in evidence)

    # the report: 4 people with both sources, none agree (no Sent folder kept a copy)
    html = result.paths["report"].read_text(encoding="utf-8")
    assert (
        "of the 4 people with both sources: 0 agree; where the log counts more, it counts 4" in html
    )
    with result.paths["violations"].open(encoding="utf-8-sig") as fh:
        queue_ids = {r["Queue ID (mail log)"] for r in csv.DictReader(fh)}
    assert by_id["<m1@t>"].queue_id in queue_ids
