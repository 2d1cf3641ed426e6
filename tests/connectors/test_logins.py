"""Login sources: the real Dovecot's last_login dict and log, and vendor export fixtures."""

from __future__ import annotations

import os
import socket
import time
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from connectors.logins import (
    LoginSourceError,
    parse_export_time,
    parse_log_line,
    read_dovecot_dict,
    read_exchange_export,
    read_log,
    read_zimbra_export,
)
from devkit.dovecot import DOVEADM, LocalDovecot
from tests.conftest import imap_source
from tests.groundtruth import seed_regular

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
UTC_ZONE = ZoneInfo("UTC")


def user_login(server: LocalDovecot, mailbox: str, password: str, source_ip: str) -> None:
    """A user's own IMAP login from another loopback address (a 'different machine')."""
    with socket.create_connection(
        ("127.0.0.1", server.imap_port), timeout=10, source_address=(source_ip, 0)
    ) as sock:
        f = sock.makefile("rb")
        f.readline()
        sock.sendall(f'a LOGIN "{mailbox}" "{password}"\r\n'.encode())
        while not (line := f.readline()).startswith(b"a "):
            pass
        assert line.startswith(b"a OK"), line
        sock.sendall(b"b LOGOUT\r\n")
        f.read()


def dict_logins(server: LocalDovecot) -> dict[str, datetime]:
    got = read_dovecot_dict([DOVEADM, "-c", str(server.config_path)], "proxy::lastlogin", "t")
    return {x.mailbox: x.login_at for x in got}


def collect_once(server: LocalDovecot, mailbox: str) -> None:
    src = imap_source(server)
    with src.open(mailbox) as session:
        for folder in session.folders():
            for _batch in session.messages(folder, 1, folder.uidnext - 1):
                pass


def test_a_night_of_collection_does_not_move_the_users_last_login(dovecot):
    mailbox = "lastlogin@danang.gov.vn"
    seed_regular(dovecot, mailbox, 5, seed=30)
    user_login(dovecot, mailbox, "user-secret", "127.0.0.2")
    time.sleep(0.2)
    before = dict_logins(dovecot)
    assert mailbox in before
    time.sleep(1.1)  # the dict stores seconds: a collector login would show
    collect_once(dovecot, mailbox)
    time.sleep(0.2)
    assert dict_logins(dovecot)[mailbox] == before[mailbox]


def test_log_lines_from_real_logins_incrementally_and_across_rotation(dovecot, tmp_path):
    mailbox = "logreader@danang.gov.vn"
    seed_regular(dovecot, mailbox, 3, seed=31)
    log = dovecot.root / "dovecot.log"
    _, cursor = read_log(log, None, tz=UTC_ZONE, source="log")  # start from "now"
    user_login(dovecot, mailbox, "user-secret", "127.0.0.2")
    collect_once(dovecot, mailbox)  # the collector, from 127.0.0.1
    time.sleep(0.3)
    found, cursor = read_log(log, cursor, tz=UTC_ZONE, source="log", ignore_remote=["127.0.0.1"])
    assert [(x.mailbox, x.protocol, x.remote_addr) for x in found] == [
        (mailbox, "imap", "127.0.0.2")
    ]
    assert abs((found[0].login_at - datetime.now(UTC)).total_seconds()) < 60
    again, cursor = read_log(log, cursor, tz=UTC_ZONE, source="log", ignore_remote=["127.0.0.1"])
    assert again == []  # nothing new, nothing twice

    user_login(dovecot, mailbox, "user-secret", "127.0.0.3")  # lands in the old file
    time.sleep(0.3)
    os.rename(log, log.with_name("dovecot.log.1"))
    dovecot.doveadm("log", "reopen")
    time.sleep(0.3)
    user_login(dovecot, mailbox, "user-secret", "127.0.0.4")  # lands in the new file
    time.sleep(0.3)
    found, _ = read_log(log, cursor, tz=UTC_ZONE, source="log", ignore_remote=["127.0.0.1"])
    assert [x.remote_addr for x in found] == ["127.0.0.3", "127.0.0.4"]


def test_unknown_and_partial_lines_are_skipped(tmp_path):
    log = tmp_path / "mail.log"
    log.write_bytes(
        "Nov 23 08:00:00 auth: Warning: something we do not know\ngarbage \xff\n".encode("latin-1")
        + b"2026-11-23 08:15:02 mail dovecot: pop3-login: Login: user=<b@x.vn>, method=PLAIN, "
        b"rip=10.0.0.9, lip=10.0.0.1, TLS\n"
        + b"Nov 23 08:16:00 imap-login: Info: Login: user=<c@x.vn>, method=PL"
    )
    found, cursor = read_log(log, None, tz=ZoneInfo("Asia/Ho_Chi_Minh"), source="log")
    assert [(x.mailbox, x.protocol, x.login_at.hour) for x in found] == [("b@x.vn", "pop3", 1)]
    with log.open("ab") as fh:
        fh.write(b"AIN, rip=10.0.0.8, lip=10.0.0.1\n")
    found, _ = read_log(log, cursor, tz=UTC_ZONE, source="log")
    assert [x.mailbox for x in found] == ["c@x.vn"]


def test_parse_log_line_ignores_failed_and_empty_users():
    assert (
        parse_log_line(
            "Nov 23 08:00:00 imap-login: Info: Aborted login (auth failed, 1 "
            "attempts): user=<a@x.vn>, method=PLAIN, rip=1.2.3.4",
            year=2026,
            tz=UTC_ZONE,
            source="s",
        )
        is None
    )


def test_exchange_export_by_header_name():
    got = {
        x.mailbox: x.login_at
        for x in read_exchange_export(
            FIXTURES / "exchange-mailboxstatistics.csv",
            tz=ZoneInfo("Asia/Ho_Chi_Minh"),
            source="exchange",
        )
    }
    assert got == {
        "an.nv@danang.gov.vn": datetime(2026, 11, 23, 1, 15, 2, tzinfo=UTC),
        "binh.tt@danang.gov.vn": datetime(2026, 11, 2, 12, 1, tzinfo=UTC),
        "cuong.lv@danang.gov.vn": datetime(2026, 10, 30, 2, 0, tzinfo=UTC),  # LastUserActionTime
    }


def test_exchange_export_day_first_dates_and_bad_rows(tmp_path):
    path = tmp_path / "vi.csv"
    path.write_text(
        "LastLogonTime,PrimarySmtpAddress\n23/11/2026 08:15:02,a@x.vn\n", encoding="utf-8"
    )
    (login,) = read_exchange_export(path, tz=UTC_ZONE, source="x", day_first=True)
    assert login.login_at == datetime(2026, 11, 23, 8, 15, 2, tzinfo=UTC)
    path.write_text("LastLogonTime,PrimarySmtpAddress\nyesterday,a@x.vn\n", encoding="utf-8")
    with pytest.raises(LoginSourceError, match="line 2: lastlogontime 'yesterday' is not a date"):
        read_exchange_export(path, tz=UTC_ZONE, source="x")
    path.write_text("LastLogonTime,Owner\n11/23/2026 8:15:02 AM,An\n", encoding="utf-8")
    with pytest.raises(LoginSourceError, match="no address column"):
        read_exchange_export(path, tz=UTC_ZONE, source="x")


def test_export_time_formats():
    tz = ZoneInfo("Asia/Ho_Chi_Minh")
    assert parse_export_time("2026-11-23T08:15:02Z", tz=tz) == datetime(
        2026, 11, 23, 8, 15, 2, tzinfo=UTC
    )
    assert parse_export_time("11/23/2026 12:05:00 AM", tz=UTC_ZONE) == datetime(
        2026, 11, 23, 0, 5, tzinfo=UTC
    )
    assert parse_export_time("", tz=tz) is None


@pytest.mark.parametrize("name", ["zimbra-accounts.txt", "zimbra-accounts.csv"])
def test_zimbra_exports(name):
    got = {x.mailbox: x.login_at for x in read_zimbra_export(FIXTURES / name, source="z")}
    assert got["an.nv@tiengiang.gov.vn"] == datetime(2026, 11, 23, 1, 15, 2, tzinfo=UTC)
    assert "binh.tt@tiengiang.gov.vn" not in got  # never logged in: no row, not a guess
    if name.endswith(".txt"):
        assert got["cuong.lv@tiengiang.gov.vn"] == datetime(2026, 11, 1, 23, 0, tzinfo=UTC)
