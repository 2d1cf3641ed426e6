"""A mail log for the fixture agency (tests/analytics/fixture.py), written as the night writes
``mail_log_deliveries/night=YYYY-MM-DD/<source>.parquet``: one row per recipient, the
message's columns repeated, each message in the file of the night after its local day (or
the next night read, when that one's file is missing).

Every November Sent-folder message of the fixture is also in the log (same Message-ID),
and the log adds what no Sent folder kept. ``SUBMISSIONS`` and ``INBOUND`` are the truth
the tests count from; the nights whose file is missing are unknown days.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from contract.mail_logs import MAIL_LOG_DELIVERIES
from tests.analytics.fixture import DOMAIN, ICT, addr, local

SOURCE = "mta"
# the nights read: 2 Nov .. 8 Dec, less two whose read failed (days 12 and 25 unknown)
MISSING_NIGHTS = (date(2026, 11, 13), date(2026, 11, 26))
NIGHTS = [
    date(2026, 11, 2) + timedelta(days=i)
    for i in range(37)
    if date(2026, 11, 2) + timedelta(days=i) not in MISSING_NIGHTS
]
# the days of November whose night was read (night N covers day N-1)
LOGGED_DAYS = {n - timedelta(days=1) for n in NIGHTS if (n - timedelta(days=1)).month == 11}


@dataclass(frozen=True)
class Submission:
    """A message a user submitted: who, when, to whom with which status, its Message-ID."""

    user: str  # sasl_username as logged
    when: datetime
    recipients: tuple[tuple[str, str], ...]  # (recipient, status)
    message_id: str | None = None
    in_sent_folder: bool = False  # the fixture's Sent folder has it (same Message-ID)
    filtered: bool = False  # handed to a content filter and re-injected (Zimbra's amavis)

    @property
    def day(self) -> date:
        return self.when.astimezone(ICT).date()

    @property
    def reached(self) -> bool:
        return any(status == "sent" for _, status in self.recipients)


@dataclass(frozen=True)
class Inbound:
    sender: str
    recipient: str
    when: datetime
    status: str = "sent"
    message_id: str | None = None


def fixture_sent(data_dir: Path) -> list[Submission]:
    """The fixture's November Sent-folder messages as the log saw them (read from the
    messages file: the fixture's own truth, not the evaluation's)."""
    rows = pq.read_table(data_dir / "messages").to_pylist()
    start, end = local(1, 0), local(1, 0, month=12)
    return [
        Submission(
            r["mailbox"],
            r["sent_date"] + timedelta(seconds=2),
            tuple((a.lower(), "sent") for a in r["to_addrs"]),
            r["message_id"],
            in_sent_folder=True,
        )
        for r in rows
        if r["role"] == "sent" and start <= r["sent_date"] < end
    ]


def fixture_inbox_id(data_dir: Path, mailbox: str, sender: str) -> str:
    rows = pq.read_table(data_dir / "messages").to_pylist()
    (mid,) = [r["message_id"] for r in rows if r["mailbox"] == mailbox and r["from_addr"] == sender]
    return str(mid)


EXTRA = [
    # P01 from a phone: no copy in Sent (one to the public address others write to)
    Submission(addr("P01"), local(9), ((addr("P03"), "sent"),), "<p01-phone-9@x>"),
    Submission(addr("P01"), local(10), (("shared.docs@gmail.com", "sent"),), "<p01-phone-10@x>"),
    # P03: one recipient taken, one given up on (expired): one message sent
    Submission(
        addr("P03"),
        local(18, 15),
        ((addr("P01"), "sent"), ("gone@yahoo.com", "expired")),
        "<p03-18@x>",
    ),
    # P04 to the declared personal address from a phone; then one that bounced; then one on
    # a day the log was not read (in the next night's file)
    Submission(addr("P04"), local(16), (("p04.home@gmail.com", "sent"),), "<p04-16@x>"),
    Submission(addr("P04"), local(17), (("p04.home@gmail.com", "bounced"),), "<p04-17@x>"),
    Submission(addr("P04"), local(25), ((addr("P01"), "sent"),), "<p04-25@x>"),
    # P06 (nothing in any folder): a scanner's two messages on day 22
    Submission(addr("P06"), local(22, 8), ((addr("P02"), "sent"),), "<scan-1@x>"),
    Submission(addr("P06"), local(22, 9), ((addr("P02"), "sent"),), "<scan-2@x>"),
    # the unit mailbox, its login name in capitals as some clients send it
    Submission(f"UA@{DOMAIN.upper()}", local(5), ((addr("P01"), "sent"),), "<ua-5@x>"),
    # P09 through a content filter: one message, two queue ids
    Submission(addr("P09"), local(21), ((addr("P10"), "sent"),), "<p09-21@x>", filtered=True),
    # someone not on the roster
    Submission(f"visitor@{DOMAIN}", local(6), (("x@gmail.com", "sent"),), "<v@x>"),
]


def inbound(data_dir: Path) -> list[Inbound]:
    return [
        # the fixture's first facebookmail message to P05, envelope sender a bounce address
        Inbound(
            "bounce-7f3a@facebookmail.com",
            addr("P05"),
            local(3) + timedelta(seconds=1),
            message_id=fixture_inbox_id(data_dir, addr("P05"), "notification@facebookmail.com"),
        ),
        # a bank's mail to P02 that no folder kept (read on a phone, deleted)
        Inbound("alerts@vietcombank.com.vn", addr("P02"), local(7), message_id="<vcb@x>"),
        # refused: it never reached P02
        Inbound("n@facebookmail.com", addr("P02"), local(8), status="bounced", message_id="<f@x>"),
        # not a registration sender
        Inbound("friend@gmail.com", addr("P04"), local(9), message_id="<g@x>"),
    ]


def _row(qid: str, s_when: datetime, **values: object) -> dict[str, object]:
    row: dict[str, object] = dict.fromkeys(MAIL_LOG_DELIVERIES.names)
    row.update(
        log_date=s_when.astimezone(ICT).date(),
        queue_id=qid,
        time=s_when,
        complete=True,
        removed=True,
        status_time=s_when + timedelta(seconds=1),
        deferrals=0,
    )
    row.update(values)
    for key in ("sender", "recipient"):
        if isinstance(row[key], str) and "@" in str(row[key]):
            row[f"{key}_domain"] = str(row[key]).rsplit("@", 1)[1].lower()
    return row


def rows_of(submissions: list[Submission], inbound: list[Inbound]) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    for i, s in enumerate(submissions):
        qid = f"{0xA0000 + i:X}"
        common = {
            "direction": "out",
            "sasl_username": s.user.lower(),
            "sender": s.user.lower(),
            "message_id": s.message_id,
            "nrcpt": len(s.recipients),
            "size": 2048,
        }
        if s.filtered:  # the hop to the filter, then the re-injected message's deliveries
            again = f"{0xB0000 + i:X}"
            for rcpt, _ in s.recipients:
                rows.append(
                    _row(qid, s.when, **common, recipient=rcpt, status="sent", handed_to=again)
                )
            common["via_queue_id"] = qid
            qid = again
        for rcpt, status in s.recipients:
            rows.append(_row(qid, s.when, **common, recipient=rcpt, status=status))
        if any(status == "bounced" for _, status in s.recipients):  # Postfix's notice back
            rows.append(
                _row(
                    f"{0xC0000 + i:X}",
                    s.when + timedelta(seconds=3),
                    direction="local",
                    sender="",
                    notice_of=qid,
                    recipient=s.user.lower(),
                    status="sent",
                )
            )
    for i, m in enumerate(inbound):
        rows.append(
            _row(
                f"{0xD0000 + i:X}",
                m.when,
                direction="in",
                sender=m.sender,
                message_id=m.message_id,
                recipient=m.recipient,
                status=m.status,
                client="mx.example[203.0.113.5]",
            )
        )
    return rows


def write_mail_log(
    data_dir: Path,
    rows: list[dict[str, object]],
    *,
    source: str = SOURCE,
    nights: list[date] = NIGHTS,
) -> None:
    """One file per night read (an empty one on a night with nothing), each message in the
    file of the night that read it."""
    by_night: dict[date, list[dict[str, object]]] = {n: [] for n in nights}
    for row in rows:
        when = row["time"]
        assert isinstance(when, datetime)
        night = when.astimezone(ICT).date() + timedelta(days=1)
        while night not in by_night:
            night += timedelta(days=1)
        by_night[night].append(row)
    for night, night_rows in by_night.items():
        folder = data_dir / "mail_log_deliveries" / f"night={night.isoformat()}"
        folder.mkdir(parents=True, exist_ok=True)
        table = pa.Table.from_pylist(night_rows, schema=MAIL_LOG_DELIVERIES)
        pq.write_table(table, folder / f"{source}.parquet")
