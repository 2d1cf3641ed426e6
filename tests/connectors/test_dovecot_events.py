"""Dovecot's own log names the mailboxes that changed: LMTP deliveries and the mail_log
plugin's events, read from a real Dovecot's log after real changes (issue 25.3)."""

from __future__ import annotations

import smtplib
from collections import Counter
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from imapclient import IMAPClient

from connectors.dovecot_events import change_events
from devkit.dovecot import MASTER_USER, LocalDovecot

CHANGED, READER, QUIET = "an.nv@danang.gov.vn", "binh.tt@danang.gov.vn", "chi.lt@danang.gov.vn"


@pytest.fixture(scope="module")
def logged(tmp_path_factory: pytest.TempPathFactory):
    server = LocalDovecot.start(
        tmp_path_factory.mktemp("events"), master_password="m", mail_log=True, mta=True
    )
    try:
        server.add_users({CHANGED: "s1", READER: "s2", QUIET: "s3"})
        server.finish_seeding()
        lmtp = smtplib.LMTP("127.0.0.1", server.lmtp_port)
        for rcpt in (CHANGED, QUIET):
            lmtp.sendmail("x@gmail.com", [rcpt], b"Subject: t\r\nMessage-ID: <t@g>\r\n\r\nhi\r\n")
        lmtp.quit()
        with IMAPClient("127.0.0.1", server.imap_port, ssl=False) as c:
            c.login(CHANGED, "s1")
            c.create_folder("Trash")
            c.select_folder("INBOX")
            c.add_flags([1], [b"\\Seen"])
            c.copy([1], "Trash")
            c.delete_messages([1])
            c.expunge()
            c.append("Trash", b"Subject: s\r\n\r\nx\r\n")
            c.rename_folder("Trash", "Thùng rác")
        with IMAPClient("127.0.0.1", server.imap_port, ssl=False) as c:
            c.login(READER, "s2")  # a user who only looks
            c.select_folder("INBOX", readonly=True)
            c.search()
        with IMAPClient("127.0.0.1", server.imap_port, ssl=False) as c:
            c.login(f"{QUIET}*{MASTER_USER}", "m")  # the collector: read-only, BODY.PEEK
            c.select_folder("INBOX", readonly=True)
            c.fetch([1], ["BODY.PEEK[HEADER]", "FLAGS", "RFC822.SIZE"])
        yield (server.root / "dovecot.log").read_text()
    finally:
        server.stop()


def test_every_change_is_named_and_reading_is_not(logged):
    now = datetime.now(UTC)
    events = list(change_events(logged.splitlines(), year=now.year, tz=ZoneInfo("UTC")))
    kinds = Counter((e.mailbox, e.what) for e in events)
    assert kinds == Counter(
        {
            (CHANGED, "delivery"): 1,
            (QUIET, "delivery"): 1,
            (CHANGED, "mailbox_create"): 1,
            (CHANGED, "flag_change"): 1,
            (CHANGED, "copy"): 1,
            (CHANGED, "delete"): 1,
            (CHANGED, "expunge"): 1,
            (CHANGED, "save"): 1,
            (CHANGED, "mailbox_rename"): 1,
        }
    )
    assert all(abs(e.at - now) < timedelta(minutes=5) for e in events)  # the zone applied


def test_the_zone_of_a_syslog_stamp_is_the_logs():
    line = "Dec 06 20:13:01 lmtp(a@x.vn)<1><s>: Info: msgid=<m>: saved mail to INBOX"
    (event,) = change_events([line], year=2026, tz=ZoneInfo("Asia/Ho_Chi_Minh"))
    assert event.at == datetime(2026, 12, 6, 13, 13, 1, tzinfo=UTC)
    iso = "2026-12-06T20:13:01.5+07:00 mail dovecot: imap(a@x.vn)<1><s>: expunge: box=INBOX, uid=1"
    (event,) = change_events([iso], year=1999, tz=ZoneInfo("UTC"))
    assert event.at == datetime(2026, 12, 6, 13, 13, 1, 500000, tzinfo=UTC)


def test_a_delegates_change_in_a_shared_folder_is_the_owners_too():
    line = (
        "Dec 06 20:13:01 imap(staff@x.vn)<1><s>: Info: flag_change: "
        "box=shared/vanphong@x.vn/INBOX, uid=4, msgid=<m@x>"
    )
    (event,) = change_events([line], year=2026, tz=ZoneInfo("UTC"))
    assert (event.mailbox, event.owner, event.what) == (
        "staff@x.vn",
        "vanphong@x.vn",
        "flag_change",
    )
    own = "Dec 06 20:13:01 imap(staff@x.vn)<1><s>: Info: expunge: box=INBOX, uid=4"
    assert next(change_events([own], year=2026, tz=ZoneInfo("UTC"))).owner is None
