"""The log-driven quiet night (issue 25.3): a mailbox with no log event is not logged in
to, and the rows carried for it are exactly what reading it would have given."""

from __future__ import annotations

import itertools
import os
import shutil
import smtplib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pytest

from connectors.base import FolderCursor
from connectors.imap import ImapSettings, ImapSource
from devkit.dovecot import MASTER_USER, LocalDovecot
from devkit.synth import make_message
from pipelines.collect import run_night
from pipelines.quiet import (
    Changes,
    LogEvidence,
    carried_rows,
    changes_from,
    read_reason,
    sweep_night,
)
from pipelines.storage import DataDir
from tests.collect_one import one_night
from tests.conftest import MASTER_PASSWORD
from tests.groundtruth import BASE, seed_regular

NOW = datetime(2026, 11, 21, 18, 30, tzinfo=UTC)


def test_any_doubt_is_a_full_night():
    ev = LogEvidence("postfix", frozenset({"a@x.vn"}), True, last_line=NOW - timedelta(hours=1))
    hours = timedelta(hours=12)
    assert changes_from([ev], now=NOW, silence=hours) == Changes(
        frozenset({"a@x.vn"}), "1 mailboxes with an event in postfix"
    )
    assert changes_from([], now=NOW, silence=hours).changed is None
    lost = LogEvidence("postfix", frozenset(), False, "rotation mail.log.1 not found", NOW)
    assert changes_from([ev, lost], now=NOW, silence=hours).why == (
        "postfix: rotation mail.log.1 not found"
    )
    stale = LogEvidence("dovecot", frozenset(), True, last_line=NOW - timedelta(hours=13))
    assert changes_from([ev, stale], now=NOW, silence=hours).changed is None
    assert (
        changes_from([LogEvidence("d", frozenset(), True)], now=NOW, silence=hours).changed is None
    )


def test_read_reason():
    quiet = Changes(frozenset({"a@x.vn"}), "")
    night = "2026-11-21"
    assert read_reason("b@x.vn", night, "2026-11-20", None, 7) == "full night"
    assert read_reason("b@x.vn", night, "2026-11-20", Changes(None, "why"), 7) == "full night"
    assert read_reason("b@x.vn", night, None, quiet, 7) == "never collected"
    assert read_reason("b@x.vn", night, night, quiet, 7) == "re-collection"
    assert read_reason("b@x.vn", night, "2026-11-19", quiet, 7) == "last collected 2026-11-19"
    assert read_reason("A@X.VN", night, "2026-11-20", quiet, 7) == "log event"
    # every mailbox has exactly one sweep night in any seven in a row
    nights = [(datetime(2026, 11, 1) + timedelta(days=d)).date().isoformat() for d in range(70)]
    for mailbox in (f"cb{i}@x.vn" for i in range(50)):
        swept = [n for n in nights if sweep_night(mailbox, n, 7)]
        assert len(swept) == 10
        gaps = {
            (datetime.fromisoformat(b) - datetime.fromisoformat(a)).days
            for a, b in itertools.pairwise(swept)
        }
        assert gaps == {7}
        carried = [n for n in nights[1:] if read_reason(mailbox, n, "x", quiet, 7) is None]
        assert not carried  # "x" is never the night before


def test_rows_that_disagree_with_the_cursor_are_read_not_carried():
    row = {"folder": "INBOX", "folder_status": "ok", "uidvalidity": 7, "last_uid": 8,
           "highestmodseq": 40, "fetched": 3, "full_reread": True, "unreadable": 0,
           "read_activity": 2}  # fmt: skip
    start = {"INBOX": FolderCursor(7, 8, 40)}
    (carried,) = carried_rows([row], start)  # type: ignore[misc]
    assert (carried["fetched"], carried["full_reread"], carried["read_activity"]) == (0, False, 0)
    assert (
        carried_rows([{**row, "highestmodseq": None}], {"INBOX": FolderCursor(7, 8, None)})[0][
            "read_activity"
        ]
        is None
    )  # type: ignore[index]  # the server cannot count reading
    assert carried_rows([row], {"INBOX": FolderCursor(7, 9, 40)}) is None
    assert carried_rows([row], {"INBOX": FolderCursor(7, 8, 41)}) is None
    assert (
        carried_rows([row], {"INBOX": FolderCursor(7, 8, 40), "Sent": FolderCursor(3, 1, None)})
        is None
    )
    assert carried_rows([{**row, "folder_status": "renamed"}], start) is None
    assert carried_rows([], {}) is None


@pytest.fixture
def src(dovecot: LocalDovecot) -> ImapSource:
    return ImapSource(
        ImapSettings(
            host="127.0.0.1", port=dovecot.imaps_port, ca_file=str(dovecot.ca_file),
            master_user=MASTER_USER,
        ),
        password_for=lambda _m: MASTER_PASSWORD,
        name="test",
    )  # fmt: skip


class Counting:
    """The source, counting the mailboxes it opens (logins)."""

    def __init__(self, source: ImapSource, dovecot: LocalDovecot) -> None:
        self.source, self.name, self.opened = source, source.name, []
        self.dovecot = dovecot

    def open(self, mailbox: str):
        self.opened.append(mailbox)
        return self.source.open(mailbox)

    def __getattr__(self, name: str):
        return getattr(self.source, name)


def night_of(source: Counting, night: str, data: DataDir, changes: Changes | None, every: int = 7):
    from connectors.sieve import SieveSettings, SieveSource

    dovecot = source.dovecot
    sieve = SieveSource(
        SieveSettings(
            host="127.0.0.1", port=dovecot.sieve_port, ca_file=str(dovecot.ca_file),
            master_user=MASTER_USER,
        ),
        password_for=lambda _m: MASTER_PASSWORD,
    )  # fmt: skip
    nt = one_night(source, night, data, forwarding=sieve)  # type: ignore[arg-type]
    nt.changes, nt.sweep_every = changes, every
    return nt


def table(data: DataDir, dataset: str, night: str) -> list[tuple]:
    return duckdb.execute(
        "select * exclude (night) from read_parquet($p, hive_partitioning = true) order by all",
        parameters={"p": str(data.night_file(dataset, night))},
    ).fetchall()


def test_a_carried_night_equals_a_full_night(dovecot, src, tmp_path):
    boxes = [f"quiet{i}@danang.gov.vn" for i in range(4)]
    for i, mailbox in enumerate(boxes):
        seed_regular(dovecot, mailbox, 12, seed=40 + i)
    dovecot.set_sieve(boxes[2], "roundcube", 'require "copy"; redirect :copy "ban.tn@gmail.com";')
    counting = Counting(src, dovecot)
    data = DataDir(tmp_path / "logs")
    first = run_night(night_of(counting, "2026-11-20", data, None), [(m, "test") for m in boxes])
    assert first.count("ok") == 4
    full = tmp_path / "full"
    shutil.copytree(data.root, full)

    # Last night ManageSieve did not answer for [1]: its rules are unknown, not "none".
    import pyarrow as pa
    import pyarrow.parquet as pq

    (runs,) = (data.root / "run_mailboxes" / "night=2026-11-20").glob("*.parquet")
    rm = pq.read_table(runs)
    reasons = [
        "forwarding rules not read: timed out" if m == boxes[1] else r
        for m, r in zip(rm["mailbox"].to_pylist(), rm["reason"].to_pylist(), strict=True)
    ]
    rm = rm.set_column(rm.schema.get_field_index("reason"), "reason", pa.array(reasons))
    pq.write_table(rm, runs)

    # Tonight one mailbox got mail; the logs say so. Another's sweep night is tonight.
    raw = make_message("x@gmail.com", [boxes[0]], date=BASE + 86400 * 9, message_id="<n@t>")
    dovecot.deliver(boxes[0], "INBOX", raw, when=BASE + 86400 * 9)
    dovecot.finish_seeding(boxes[0])
    night = "2026-11-21"
    swept = [m for m in boxes if sweep_night(m, night, 2)]
    assert swept == [boxes[0], boxes[3]]  # the hash's spread (a fixed function of the address)
    counting.opened.clear()
    changes = Changes(frozenset({boxes[0]}), "test")
    quiet = run_night(
        night_of(counting, night, data, changes, every=2), [(m, "test") for m in boxes]
    )
    expected = [boxes[0], boxes[1], boxes[3]]  # [1]: its rules were not read last night
    assert sorted(counting.opened) == expected  # logins only where the logs or the sweep say
    assert quiet.count("ok") == 4 and quiet.messages_new == 1
    carried = [o for o in quiet.outcomes if o.reason.startswith("carried")]
    assert [o.mailbox for o in carried] == [boxes[2]]  # with its Sieve rule

    counting.opened.clear()
    reference = DataDir(full)
    run_night(night_of(counting, night, reference, None), [(m, "test") for m in boxes])
    assert sorted(counting.opened) == sorted(boxes)
    # The carried rows are what reading the unchanged mailboxes gave, row for row.
    for dataset in ("mailbox_status", "forwarding", "messages"):
        assert table(data, dataset, night) == table(reference, dataset, night), dataset
    assert data.states() == reference.states()
    assert any(r for r in table(data, "forwarding", night))  # the carried rule is there

    # A re-collection of tonight reads every mailbox (its last rows are tonight's own).
    counting.opened.clear()
    run_night(night_of(counting, night, data, changes, every=2), [(m, "test") for m in boxes])
    assert sorted(counting.opened) == sorted(boxes)
    assert table(data, "mailbox_status", night) == table(reference, "mailbox_status", night)


# -- the whole night from a real Dovecot's own log -----------------------------------------

LOGGED = [f"nhatky{i}@danang.gov.vn" for i in range(6)]


@pytest.fixture
def logged(tmp_path):
    """A Dovecot that logs every change (mail_log plugin) and delivers by LMTP, six seeded
    mailboxes, and a config that logs in only where its log saw a change."""
    server = LocalDovecot.start(tmp_path / "dovecot", master_password="m", mail_log=True, mta=True)
    try:
        for i, mailbox in enumerate(LOGGED):
            seed_regular(server, mailbox, 8, seed=60 + i)
        (tmp_path / "roster.csv").write_text(
            "employee_id,full_name,email,unit_code,unit_name\n"
            + "".join(f"NV{i},Cán bộ {i},{m},U,Văn phòng\n" for i, m in enumerate(LOGGED)),
            encoding="utf-8",
        )
        config = tmp_path / "mailusage.toml"
        config.write_text(
            f"""[agency]
official_domains = ["danang.gov.vn"]
[roster]
path = "roster.csv"
[collect]
changed_only = true
sweep_every = 7
[[sources]]
name = "dovecot"
host = "127.0.0.1"
port = {server.imap_port}
security = "plain"
master_user = "{MASTER_USER}"
password = {{ env = "MU_TEST_QUIET" }}
[[logins]]
name = "dovecot"
kind = "dovecot-log"
path = "{server.root / "dovecot.log"}"
mail_log_plugin = true
""",
            encoding="utf-8",
        )
        yield server, config
    finally:
        server.stop()


def logins_in_log(server: LocalDovecot) -> list[str]:
    """Every mailbox the server logged a login to, in order (its own record of logins)."""
    text = (server.root / "dovecot.log").read_text()
    return [m.split(">", 1)[0] for m in text.split("Login: user=<")[1:]]


def stored(data: Path) -> list[tuple]:
    return duckdb.execute(
        "select mailbox, folder, uid, message_id from read_parquet($p) order by all",
        parameters={"p": str(data / "messages" / "*" / "*.parquet")},
    ).fetchall()


def test_a_night_logs_in_only_where_the_log_saw_a_change(logged, tmp_path, monkeypatch, caplog):
    from imapclient import IMAPClient

    import pipelines.collect as collect_module
    from pipelines.collect import run_collection
    from pipelines.night import summary_dict, summary_line

    server, config = logged
    monkeypatch.setenv("MU_TEST_QUIET", "m")
    data = tmp_path / "data"
    lines: list[str] = []

    def night(date: str) -> list[str]:
        before = len(logins_in_log(server))
        summary = run_collection(config, date, plain=True)
        assert summary.count("failed") == 0, summary.outcomes
        lines.append(summary_line(summary_dict(summary)))
        return sorted(logins_in_log(server)[before:])

    assert night("2026-11-20") == sorted(LOGGED)  # the first night reads every mailbox

    # Tonight: mail delivered to [0] by LMTP; [1] read a message in a client.
    with smtplib.LMTP("127.0.0.1", server.lmtp_port) as lmtp:
        lmtp.sendmail("x@gmail.com", [LOGGED[0]], b"Subject: a\r\nMessage-ID: <a@g>\r\n\r\nhi\r\n")
    with IMAPClient("127.0.0.1", server.imap_port, ssl=False) as c:
        c.login(f"{LOGGED[1]}*{MASTER_USER}", "m")
        c.select_folder("INBOX")
        c.add_flags(c.search("UNSEEN")[:1], [b"\\Seen"])
    swept = {m for m in LOGGED if sweep_night(m, "2026-11-21", 7)}
    assert night("2026-11-21") == sorted({LOGGED[0], LOGGED[1], *swept})
    assert lines[-1].startswith("night 2026-11-21: ok 6 (4 carried: no log event), failed 0")
    # what a full night would have stored: every message of the server, once
    assert stored(data) == truth_rows(server)
    status = duckdb.execute(
        "select mailbox, sum(read_activity) from read_parquet($p) group by all order by 1",
        parameters={"p": str(data / "mailbox_status" / "night=2026-11-21" / "*.parquet")},
    ).fetchall()
    assert dict(status)[LOGGED[1]] == 1 and all(
        n == 0 for m, n in status if m != LOGGED[1]
    )  # the flag change counted; carried and quiet mailboxes read nothing

    # A delivery whose line was lost (written straight into the Maildir): carried, until
    # the mailbox's sweep night reads it — once.
    lost = next(m for m in LOGGED[2:] if m not in swept)
    raw = make_message("x@gmail.com", [lost], date=BASE + 86400 * 12, message_id="<lost@g>")
    server.deliver(lost, "INBOX", raw, when=BASE + 86400 * 12)
    server.finish_seeding(lost)
    nights = [f"2026-11-{d}" for d in range(22, 29)]
    for date in nights:
        read = night(date)
        assert (lost in read) == sweep_night(lost, date, 7)
    assert sum(sweep_night(lost, d, 7) for d in nights) == 1
    assert stored(data) == truth_rows(server)  # 0 lost, 0 duplicated

    # A rotation not found (the file read last is gone): every mailbox is read.
    (server.root / "dovecot.log").rename(server.root / "dovecot.log.old-copy")
    server.doveadm("log", "reopen")
    caplog.set_level("INFO", logger="pipelines.collect")
    assert night("2026-11-29") == sorted(LOGGED)
    assert "changed only: logins:dovecot: the file read last night was not found" in caplog.text
    # A log silent for longer than log_silence_hours: every mailbox is read.
    night("2026-11-30")

    class Later(datetime):  # the night runs 13 hours after the log's newest line
        @classmethod
        def now(cls, tz=None):  # type: ignore[no-untyped-def, override]
            return datetime.now(tz) + timedelta(hours=13)

    monkeypatch.setattr(collect_module, "datetime", Later)
    caplog.clear()
    assert night("2026-12-01") == sorted(LOGGED)
    assert "changed only: logins:dovecot: no line since" in caplog.text
    monkeypatch.undo()
    monkeypatch.setenv("MU_TEST_QUIET", "m")
    assert stored(data) == truth_rows(server)

    # A night run without changed_only read its logs after its mailboxes: the next night
    # with it cannot trust them for what came between, and reads every mailbox once.
    text = config.read_text()
    config.write_text(text.replace("changed_only = true\n", ""))
    assert night("2026-12-02") == sorted(LOGGED)
    config.write_text(text)
    caplog.clear()
    assert night("2026-12-03") == sorted(LOGGED)
    assert "changed only: the first night read from the logs first" in caplog.text
    assert len(night("2026-12-04")) < len(LOGGED)  # and from then on, carried again


def truth_rows(server: LocalDovecot) -> list[tuple]:
    """Every message on the server, read over IMAP as (mailbox, folder, uid, Message-ID)."""
    from imapclient import IMAPClient

    rows = []
    for mailbox in LOGGED:
        with IMAPClient("127.0.0.1", server.imap_port, ssl=False) as c:
            c.login(f"{mailbox}*{MASTER_USER}", "m")
            for _flags, _sep, folder in c.list_folders():
                c.select_folder(folder, readonly=True)
                uids = c.search()
                if not uids:
                    continue
                got = c.fetch(uids, ["BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)]"])
                for uid, item in got.items():
                    header = item[b"BODY[HEADER.FIELDS (MESSAGE-ID)]"].decode()
                    mid = header.split(":", 1)[1].strip() if ":" in header else None
                    rows.append((mailbox, folder, uid, mid or None))
    return sorted(rows)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("", r"needs a login log \(\[\[logins\]\] kind = \"dovecot-log\""),
        (
            '[[logins]]\nname = "z"\nkind = "zimbra-audit"\npath = "audit.log"\n',
            r"needs a delivery log: \[\[mail_logs\]\] \(Postfix\)",
        ),
        (
            '[[sources]]\nname = "ex"\nkind = "ews"\nendpoint = "https://x/EWS/Exchange.asmx"\n'
            'username = "u@x.vn"\npassword = { env = "X" }\n',
            "only IMAP sources can be carried from their logs, not ex",
        ),
        (
            '[[sources]]\nname = "s2"\nhost = "h2"\nmaster_user = "m"\npassword = { env = "X" }\n',
            "one IMAP source only",
        ),
    ],
)
def test_changed_only_is_refused_without_logs_that_see_every_change(tmp_path, extra, message):
    from pipelines.config import ConfigError, load_config

    (tmp_path / "roster.csv").write_text("")
    (tmp_path / "c.toml").write_text(
        '[roster]\npath = "roster.csv"\n[collect]\nchanged_only = true\n[[sources]]\n'
        'name = "s"\nhost = "h"\nmaster_user = "m"\npassword = { env = "X" }\n' + extra
    )
    with pytest.raises(ConfigError, match=message):
        load_config(tmp_path / "c.toml")
    # and with both logs it loads
    (tmp_path / "ok.toml").write_text(
        '[roster]\npath = "roster.csv"\n[collect]\nchanged_only = true\nsweep_every = 5\n'
        '[[sources]]\nname = "s"\nhost = "h"\nmaster_user = "m"\npassword = { env = "X" }\n'
        '[[logins]]\nname = "z"\nkind = "zimbra-audit"\npath = "audit.log"\n'
        '[[mail_logs]]\nname = "p"\nkind = "postfix"\npath = "mail.log"\n'
    )
    cfg = load_config(tmp_path / "ok.toml")
    assert (cfg.changed_only, cfg.sweep_every, cfg.log_silence_hours) == (True, 5, 12.0)


def test_what_the_review_found_is_doubt_or_unknown():
    # a log that names mailboxes by another name than the roster's (a bare user name)
    ev = LogEvidence("logins:d", frozenset(), True, last_line=NOW, named=frozenset({"an.nv"}))
    verdict = changes_from([ev], now=NOW, silence=timedelta(hours=12), roster=frozenset({"a@x"}))
    assert verdict.changed is None and "name no roster mailbox" in verdict.why
    # the first night of a month is read whole: a month never rests on carried rows
    quiet = Changes(frozenset(), "")
    assert read_reason("b@x.vn", "2026-12-01", "2026-11-30", quiet, 7) == (
        "first night of the month"
    )
    row = {"source": "dovecot", "folder": "INBOX", "folder_status": "ok", "uidvalidity": 7,
           "last_uid": 8, "highestmodseq": 40, "fetched": 3, "full_reread": False,
           "unreadable": 0, "read_activity": 2}  # fmt: skip
    start = {"INBOX": FolderCursor(7, 8, 40)}
    assert carried_rows([row], start, "zimbra") is None  # the mailbox moved to another source
    # a login log alone cannot see reading in a session begun before: unknown, not 0
    (unlogged,) = carried_rows([row], start, "dovecot", reading_logged=False)  # type: ignore[misc]
    assert unlogged["read_activity"] is None


def test_pop3_and_managesieve_logins_are_changes_even_with_the_plugin(tmp_path):
    from zoneinfo import ZoneInfo

    from connectors.logfiles import Seen
    from connectors.logins import read_log

    log = tmp_path / "dovecot.log"
    log.write_text(
        "Dec 30 08:00:01 imap-login: Info: Login: user=<a@x.vn>, method=PLAIN, rip=10.0.0.9, x\n"
        "Dec 30 08:00:02 pop3-login: Info: Login: user=<b@x.vn>, method=PLAIN, rip=10.0.0.9, x\n"
        "Dec 31 23:00:03 managesieve-login: Info: Login: user=<c@x.vn>, method=PLAIN, "
        "rip=10.0.0.9, x\n"
        "Dec 31 23:10:00 imap(d@x.vn)<1><s>: Info: flag_change: box=INBOX, uid=1\n"
    )
    written = datetime(2027, 1, 1, 1, 30, tzinfo=UTC).timestamp()  # read on New Year's night
    os.utime(log, (written, written))
    seen = Seen(logins=False)  # the mail_log plugin logs every IMAP change
    logins, _ = read_log(log, None, tz=ZoneInfo("UTC"), source="d", seen=seen)
    assert seen.changed == {"b@x.vn", "c@x.vn", "d@x.vn"}  # not a@: its IMAP session logged none
    assert seen.named == {"a@x.vn", "b@x.vn", "c@x.vn", "d@x.vn"}
    # December's lines read in January are December 2026's, not December 2027's
    assert {x.login_at.year for x in logins} == {2026}
    assert seen.latest == datetime(2026, 12, 31, 23, 10, tzinfo=UTC)
