"""A small agency written as fixture Parquet with the collector's own schemas.

November 2026, Asia/Ho_Chi_Minh (UTC+7). Two units; ten staff with mailboxes, one without,
one unit mailbox. Built so every expected number in the tests can be counted by hand:

  id   unit  behaviour in November                                      class
  P01  A     sends 1/day on local days 1-8 (day 1 at 03:00 local =       regular (8 days)
             31 Oct UTC); one more on 1 Dec 01:00 local (not Nov)
  P02  A     never sends; reads: nights 2-11 Nov, 2 changes each         regular (10 days)
  P03  B     sends on days 10-19; one of them to shared.docs@gmail.com   regular (10 days)
  P04  B     one mail on day 15 to own declared p04.home@gmail.com       occasional (1)
  P05  A     gets 2 facebookmail.com mails; reads on night 20 Nov        occasional (1)
  P06  B     nothing; collected every night                              inactive
  P07  A     nothing; on leave                                           inactive, exempt
  P08  B     nothing; never collected (all nights failed)                not_collected: no class
  P09  A     sends 2 mails to shared.docs@gmail.com on day 20            occasional (1)
  P10  B     receives one from shared.docs@gmail.com on day 21           occasional (0 sent,
                                                                          reads night 22)
  P11  B     no mailbox                                                  no_mailbox
  UA   A     unit mailbox: collected, nothing read or sent               (unit mailbox)

October: only P01 is regular (unit A 1/5 = 0.2, unit B 0/4 = 0; P08 not rated).
"""

from __future__ import annotations

import csv
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pyarrow as pa

from contract.datasets import MAILBOX_STATUS, MESSAGES, RUN_MAILBOXES
from contract.roster import load_roster
from pipelines.storage import DataDir

ICT = timezone(timedelta(hours=7))
DOMAIN = "lienchieu.danang.gov.vn"


def addr(pid: str) -> str:
    return f"{pid.lower()}@{DOMAIN}"


ROSTER = [
    # employee_id, full_name, unit_code, unit_name, email, is_unit_mailbox, personal_email, on_leave
    ("P01", "Nguyễn Văn An", "A", "UBND phường Hòa Minh", addr("P01"), "no", "", "no"),
    ("P02", "Trần Thị Bình", "A", "UBND phường Hòa Minh", addr("P02"), "no", "", "no"),
    ("P03", "Lê Văn Cường", "B", "Phòng Tài chính - Kế hoạch", addr("P03"), "no", "", "no"),
    (
        "P04",
        "Phạm Thị Dung",
        "B",
        "Phòng Tài chính - Kế hoạch",
        addr("P04"),
        "no",
        "p04.home@gmail.com",
        "no",
    ),
    ("P05", "Hoàng Văn Em", "A", "UBND phường Hòa Minh", addr("P05"), "no", "", "no"),
    ("P06", "Huỳnh Thị Giang", "B", "Phòng Tài chính - Kế hoạch", addr("P06"), "no", "", "no"),
    ("P07", "Phan Văn Hải", "A", "UBND phường Hòa Minh", addr("P07"), "no", "", "yes"),
    ("P08", "Vũ Thị Lan", "B", "Phòng Tài chính - Kế hoạch", addr("P08"), "no", "", "no"),
    ("P09", "Võ Văn Minh", "A", "UBND phường Hòa Minh", addr("P09"), "no", "", "no"),
    ("P10", "Đặng Thị Ngọc", "B", "Phòng Tài chính - Kế hoạch", addr("P10"), "no", "", "no"),
    ("P11", "Bùi Văn Phúc", "B", "Phòng Tài chính - Kế hoạch", "", "no", "", "no"),
    (
        "UA",
        "Hộp thư UBND phường Hòa Minh",
        "A",
        "UBND phường Hòa Minh",
        addr("UA"),
        "yes",
        "",
        "no",
    ),
]


def write_roster(path: Path, rows=ROSTER) -> None:
    with path.open("w", encoding="utf-8-sig", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(
            [
                "employee_id",
                "full_name",
                "unit_code",
                "unit_name",
                "email",
                "is_unit_mailbox",
                "personal_email",
                "on_leave",
            ]
        )
        w.writerows(rows)


def local(day: int, hour: int = 9, month: int = 11) -> datetime:
    return datetime(2026, month, day, hour, tzinfo=ICT).astimezone(UTC)


class Builder:
    def __init__(self) -> None:
        self.messages: list[dict] = []
        self.uid = 0

    def msg(self, mailbox: str, role: str, when: datetime, frm: str, to: list[str]) -> None:
        self.uid += 1
        folder = {"sent": "Sent", "inbox": "INBOX"}[role]
        self.messages.append(
            {
                "source": "fixture",
                "mailbox": mailbox,
                "folder": folder,
                "role": role,
                "uidvalidity": 1,
                "uid": self.uid,
                "internal_date": when,
                "sent_date": when,
                "date_source": "header",
                "size": 2048,
                "seen": True,
                "from_addr": frm,
                "to_addrs": to,
                "cc_addrs": [],
                "message_id": f"<{self.uid}@fixture>",
                "address_invalid": False,
            }
        )


def build(data_dir: Path, *, reads_counted: bool = True) -> None:
    """The agency above; with ``reads_counted=False`` its server counts no reading (IMAP
    without CONDSTORE, EWS before sync states): every read_activity is null."""
    b = Builder()
    # P01: days 1..8, the first at 03:00 local (still 31 Oct in UTC); then 1 Dec 01:00 local.
    for day in range(1, 9):
        b.msg(addr("P01"), "sent", local(day, 3 if day == 1 else 9), addr("P01"), [addr("P03")])
    b.msg(addr("P01"), "sent", local(1, 1, month=12), addr("P01"), [addr("P03")])
    # October: P01 regular there too (8 days).
    for day in range(1, 9):
        b.msg(addr("P01"), "sent", local(day, 10, month=10), addr("P01"), [addr("P02")])
    # P03: days 10..19, day 12 to the shared public address.
    for day in range(10, 20):
        to = ["shared.docs@gmail.com"] if day == 12 else [addr("P01")]
        b.msg(addr("P03"), "sent", local(day), addr("P03"), to)
    # P04: one mail to the declared personal address.
    b.msg(addr("P04"), "sent", local(15), addr("P04"), ["p04.home@gmail.com"])
    # P05: two registration mails (received: not activity by themselves).
    b.msg(addr("P05"), "inbox", local(3), "notification@facebookmail.com", [addr("P05")])
    b.msg(addr("P05"), "inbox", local(4), "security@facebookmail.com", [addr("P05")])
    # P09: two mails to the shared public address on day 20.
    b.msg(addr("P09"), "sent", local(20, 9), addr("P09"), ["shared.docs@gmail.com"])
    b.msg(addr("P09"), "sent", local(20, 10), addr("P09"), ["Shared.Docs@gmail.com"])
    # P10: receives from it on day 21.
    b.msg(addr("P10"), "inbox", local(21), "shared.docs@gmail.com", [addr("P10")])
    # Received mail for P02 from an official address (counterpart: official).
    b.msg(addr("P02"), "inbox", local(6), addr("P01"), [addr("P02")])

    data = DataDir(data_dir)
    data.write_table(
        "messages", "2026-12-01", "part-0", pa.Table.from_pylist(b.messages, schema=MESSAGES)
    )

    # Run outcomes: P08's collection failed every November night (a wrong password).
    for n in range(2, 32):
        night = datetime(2026, 11, 1) + timedelta(days=n - 1)  # nights 2 Nov .. 1 Dec
        outcomes = [
            {
                "run_id": f"r{n:02d}",
                "source": "fixture",
                "mailbox": addr("P08"),
                "status": "failed",
                "reason": "login failed (wrong password?)",
                "messages_new": 0,
                "folders": 0,
                "seconds": 0.1,
            },
            {
                "run_id": f"r{n:02d}",
                "source": "fixture",
                "mailbox": addr("P01"),
                "status": "ok",
                "reason": "",
                "messages_new": 1,
                "folders": 2,
                "seconds": 0.1,
            },
        ]
        data.write_table(
            "run_mailboxes",
            night.date().isoformat(),
            f"r{n:02d}",
            pa.Table.from_pylist(outcomes, schema=RUN_MAILBOXES),
        )

    collected = [
        addr(p) for p in ("P01", "P02", "P03", "P04", "P05", "P06", "P07", "P09", "P10", "UA")
    ]
    start = datetime(2026, 10, 2)
    for n in range(62):  # nights 2 Oct .. 2 Dec
        night = (start + timedelta(days=n)).date()
        rows = []
        for mbx in collected:
            activity = 0
            if (
                mbx == addr("P02")
                and datetime(2026, 11, 2).date() <= night <= datetime(2026, 11, 11).date()
            ):
                activity = 2
            if mbx == addr("P05") and night == datetime(2026, 11, 20).date():
                activity = 1
            if mbx == addr("P10") and night == datetime(2026, 11, 22).date():
                activity = 1
            rows.append(
                {
                    "source": "fixture",
                    "mailbox": mbx,
                    "folder": "INBOX",
                    "role": "inbox",
                    "folder_status": "ok",
                    "messages": 10,
                    "unseen": 0,
                    "uidnext": 11,
                    "uidvalidity": 1,
                    "highestmodseq": 5 + n,
                    "last_uid": 10,
                    "fetched": 0,
                    "full_reread": False,
                    "read_activity": None if n == 0 or not reads_counted else activity,
                    "quota_used_bytes": 1024**3 if mbx == addr("P01") else 1024**2,
                    "quota_limit_bytes": 5 * 1024**3,
                    "sent_folder": "Sent",
                }
            )
        data.write_table(
            "mailbox_status",
            night.isoformat(),
            "part-0",
            pa.Table.from_pylist(rows, schema=MAILBOX_STATUS),
        )


def people(tmp: Path, rows=ROSTER):
    path = tmp / "roster.csv"
    write_roster(path, rows)
    return load_roster(path)
