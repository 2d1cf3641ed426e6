"""Real mail through a real Postfix (devkit.postfix), its log read by
connectors.postfix_log, compared with what was sent — recipient for recipient.

Postfix on loopback: authenticated submission (SASL through the test Dovecot), LMTP into
that Dovecot for demo.gov.vn, a loopback sink standing for the outside world that refuses
or defers the recipients a test names."""

from __future__ import annotations

import gzip
import os
import smtplib
import ssl
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from connectors.postfix_log import LogState, MailRecord, read_chunk
from devkit.dovecot import LocalDovecot
from devkit.postfix import POSTFIX, LocalPostfix

pytestmark = pytest.mark.skipif(
    not Path(POSTFIX).exists() or os.geteuid() != 0,
    reason="needs Debian's postfix (make setup installs it) and root (Postfix's master runs as root)",
)

HCM = ZoneInfo("Asia/Ho_Chi_Minh")
USERS = {
    "an.nv@demo.gov.vn": "pw-an",
    "binh.tt@demo.gov.vn": "pw-binh",
    "chi.lt@demo.gov.vn": "pw-chi",
}


@pytest.fixture(scope="module")
def mta(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalDovecot, LocalPostfix]]:
    dovecot = LocalDovecot.start(tmp_path_factory.mktemp("mta-dovecot"), mta=True)
    try:
        dovecot.add_users(USERS)
        dovecot.finish_seeding()
        postfix = LocalPostfix.start(
            tmp_path_factory.mktemp("postfix"),
            dovecot,
            domains=["demo.gov.vn"],
            aliases={"vanthu@demo.gov.vn": "binh.tt@demo.gov.vn"},  # the unit's clerk address
        )
        try:
            yield dovecot, postfix
        finally:
            postfix.stop()
    finally:
        dovecot.stop()
    assert not postfix.running(), "postfix left running"


def message(msg_id: str, sender: str, to: str, cc: str = "") -> bytes:
    """Headers as a mail client writes them: Bcc recipients are never in them."""
    cc_line = f"Cc: {cc}\r\n" if cc else ""
    return (
        f"From: {sender}\r\nTo: {to}\r\n{cc_line}Subject: test\r\n"
        f"Message-ID: {msg_id}\r\n\r\nhello\r\n"
    ).encode()


def submit(pf: LocalPostfix, user: str, rcpts: list[str], raw: bytes) -> None:
    with smtplib.SMTP("127.0.0.1", pf.submission_port) as smtp:
        # submission requires STARTTLS before AUTH, as a real one does
        assert "auth" not in smtp.ehlo()[1].decode().lower()
        smtp.starttls(context=ssl.create_default_context(cafile=str(pf.ca_file)))
        smtp.login(user, USERS[user])
        refused = smtp.sendmail(user, rcpts, raw)
    assert refused == {}  # Postfix accepts them all; what becomes of each is in its log


class LogReader:
    """Reads the maillog on from where it stopped, as the night's reader will, keeping
    the state as the JSON it would store."""

    def __init__(self, pf: LocalPostfix) -> None:
        self.pf, self.offset = pf, 0
        self.state_json = LogState(year=datetime.now(HCM).year).to_json()
        self.done: list[MailRecord] = []
        self.lines = 0

    def until(self, ready: Callable[[LogReader], bool], timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            state = LogState.from_json(self.state_json)
            # just after a rotation, postlogd creates the new file with its first line
            data = self.pf.maillog.read_bytes()[self.offset :] if self.pf.maillog.exists() else b""
            r = read_chunk(data, state, tz=HCM, log_tz=ZoneInfo(self.pf.log_tz))
            assert r.stats.damaged == 0, "Postfix wrote a line the parser cannot read"
            self.offset += r.consumed
            self.lines += r.stats.lines
            self.state_json = state.to_json()
            self.done += r.messages
            if ready(self):
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"log not there after {timeout}s: {self.pf.maillog}")
            time.sleep(0.1)

    def after_rotation(self, rotated: Path) -> None:
        """The night after ``postfix logrotate``: the rest of the old file (now gzipped) from
        where the last read stopped, then the new file from its start, one state throughout."""
        state = LogState.from_json(self.state_json)
        with gzip.open(rotated, "rb") as fh:
            fh.seek(self.offset)
            r = read_chunk(fh.read(), state, tz=HCM, log_tz=ZoneInfo(self.pf.log_tz))
        assert r.stats.partial == 0 and r.stats.damaged == 0
        self.lines += r.stats.lines
        self.done += r.messages
        self.state_json = state.to_json()
        self.offset = 0

    def by_id(self, msg_id: str) -> MailRecord:
        (rec,) = [m for m in self.done if m.message_id == msg_id]
        return rec

    def has(self, *msg_ids: str) -> bool:
        return set(msg_ids) <= {m.message_id for m in self.done}


def statuses(rec: MailRecord) -> dict[str, str]:
    return {d.recipient: d.status for d in rec.deliveries}


def test_real_mail_through_postfix_parsed_recipient_for_recipient(mta):
    dovecot, pf = mta
    log = LogReader(pf)
    pf.sink.refuse.add("nobody@gmail.com")
    pf.sink.defer.update({"slow@yahoo.com", "gone@yahoo.com"})
    before = datetime.now(HCM).replace(microsecond=0)

    # 1. To a colleague, Cc a public address, Bcc a colleague and a public address.
    m1 = "<m1@demo.gov.vn>"
    env1 = ["binh.tt@demo.gov.vn", "friend@gmail.com", "chi.lt@demo.gov.vn", "an.nv@yahoo.com"]
    raw1 = message(m1, "an.nv@demo.gov.vn", "binh.tt@demo.gov.vn", cc="friend@gmail.com")
    submit(pf, "an.nv@demo.gov.vn", env1, raw1)
    # 2. To an address the outside refuses: a bounce, and a notice back to the sender.
    m2 = "<m2@demo.gov.vn>"
    submit(
        pf,
        "an.nv@demo.gov.vn",
        ["nobody@gmail.com"],
        message(m2, "an.nv@demo.gov.vn", "nobody@gmail.com"),
    )
    # 3. To an address the outside defers (4xx).
    m3 = "<m3@demo.gov.vn>"
    submit(
        pf,
        "binh.tt@demo.gov.vn",
        ["slow@yahoo.com"],
        message(m3, "binh.tt@demo.gov.vn", "slow@yahoo.com"),
    )
    # 5. One recipient sent, one deferred — which the admin will give up on (expired).
    m5 = "<m5@demo.gov.vn>"
    env5 = ["gone@yahoo.com", "ok.friend@gmail.com"]
    submit(pf, "an.nv@demo.gov.vn", env5, message(m5, "an.nv@demo.gov.vn", "gone@yahoo.com"))
    # 4. From outside, unauthenticated on port 25: delivered in; relaying out is refused.
    m4 = "<m4@facebookmail.com>"
    with smtplib.SMTP("127.0.0.1", pf.smtp_port) as smtp:
        smtp.sendmail(
            "notification@facebookmail.com",
            ["vanthu@demo.gov.vn"],
            message(m4, "notification@facebookmail.com", "vanthu@demo.gov.vn"),
        )
        with pytest.raises(smtplib.SMTPRecipientsRefused):
            smtp.sendmail("x@spam.example", ["someone@gmail.com"], b"Subject: relay?\r\n\r\nx\r\n")
    pf.wait_idle()
    after = datetime.now(HCM) + timedelta(seconds=1)

    def first_part(r: LogReader) -> bool:
        return r.has(m1, m2, m4) and any(m.notice_of for m in r.done)

    log.until(first_part)

    rec1 = log.by_id(m1)
    assert (rec1.direction, rec1.sasl_username, rec1.sender) == (
        "out",
        "an.nv@demo.gov.vn",
        "an.nv@demo.gov.vn",
    )
    assert rec1.nrcpt == len(env1) and rec1.complete and rec1.removed
    assert rec1.size is not None and rec1.size > len(raw1)  # Postfix adds Received:, Date:
    assert statuses(rec1) == dict.fromkeys(env1, "sent")  # the Bcc ones too
    assert rec1.time is not None and before <= rec1.time <= after and rec1.time.tzinfo == HCM
    by_rcpt = {d.recipient: d for d in rec1.deliveries}
    assert by_rcpt["chi.lt@demo.gov.vn"].relay == f"127.0.0.1[127.0.0.1]:{dovecot.lmtp_port}"
    assert by_rcpt["friend@gmail.com"].relay == f"127.0.0.1[127.0.0.1]:{pf.sink.port}"
    # ... and that is what happened: chi.lt has it (Bcc) though no header names her
    chi_new = list((dovecot.home("chi.lt@demo.gov.vn") / "Maildir" / "new").iterdir())
    assert [p.read_bytes().count(b"<m1@demo.gov.vn>") for p in chi_new] == [1]
    assert b"chi.lt" not in raw1
    outside = {r for msg in pf.sink.received for r in msg.recipients}
    assert {"friend@gmail.com", "an.nv@yahoo.com"} <= outside

    rec2 = log.by_id(m2)
    assert statuses(rec2) == {"nobody@gmail.com": "bounced"}
    assert rec2.deliveries[0].dsn == "5.1.1"
    (notice,) = [m for m in log.done if m.notice_of == rec2.queue_id]
    assert (notice.direction, notice.sender, notice.sasl_username) == ("local", "", None)
    assert statuses(notice) == {"an.nv@demo.gov.vn": "sent"}

    rec4 = log.by_id(m4)
    assert (rec4.direction, rec4.sasl_username) == ("in", None)
    assert rec4.sender_domain == "facebookmail.com"
    assert statuses(rec4) == {"binh.tt@demo.gov.vn": "sent"}
    assert rec4.deliveries[0].orig_recipient == "vanthu@demo.gov.vn"  # the alias it was sent to
    assert all(d.recipient != "someone@gmail.com" for m in log.done for d in m.deliveries)

    # 3 and 5 are still queued: deferred, not sent, and not in the finished records yet.
    assert not log.has(m3) and not log.has(m5)
    pending = {m.message_id: m for m in LogState.from_json(log.state_json).open_messages()}
    assert statuses(pending[m3]) == {"slow@yahoo.com": "deferred"}
    assert statuses(pending[m5]) == {"gone@yahoo.com": "deferred", "ok.friend@gmail.com": "sent"}
    assert "slow@yahoo.com" not in outside and "gone@yahoo.com" not in outside

    # The log is rotated while 3 waits; the outside accepts it now; Postfix retries; the
    # reader finishes the old file from its offset and reads the new one: 3 is joined across.
    # The admin gives up on 5 (`postsuper -e`): at its next attempt it is returned, expired.
    rotated = pf.rotate()
    log.after_rotation(rotated)
    pf.expire(pending[m5].queue_id)
    pf.sink.defer.discard("slow@yahoo.com")
    pf.flush()
    log.until(lambda r: r.has(m3, m5) and sum(1 for m in r.done if m.notice_of) == 2)
    rec3 = log.by_id(m3)
    assert (rec3.sasl_username, rec3.direction, rec3.nrcpt) == ("binh.tt@demo.gov.vn", "out", 1)
    assert statuses(rec3) == {"slow@yahoo.com": "sent"}
    assert rec3.deliveries[0].deferrals >= 1
    assert rec3.time is not None and rec3.time <= rec3.deliveries[0].time
    rec5 = log.by_id(m5)
    assert statuses(rec5) == {"gone@yahoo.com": "expired", "ok.friend@gmail.com": "sent"}
    assert rec5.deliveries[0].dsn == "4.2.1"  # the last deferral's: why it never went
    (notice5,) = [m for m in log.done if m.notice_of == rec5.queue_id]
    assert statuses(notice5) == {"an.nv@demo.gov.vn": "sent"}
    assert LogState.from_json(log.state_json).open == {}
    # every message sent is there exactly once (and the notices), nothing else
    assert sorted(m.message_id or "" for m in log.done if not m.notice_of) == sorted(
        [m1, m2, m3, m4, m5]
    )
    assert log.lines == len(gzip.decompress(rotated.read_bytes()).splitlines()) + len(
        pf.maillog.read_bytes().splitlines()
    )
    assert rec3.queue_id in gzip.decompress(rotated.read_bytes()).decode()  # it did straddle
    assert f"{rec3.queue_id}: removed" in pf.maillog.read_text()
