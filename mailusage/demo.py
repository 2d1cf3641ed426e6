"""`mailusage demo`: a believable agency on a local Dovecot, a month of nights, the evaluation,
and a self-check against what was planted.

In order: start a private Dovecot (IMAPS, master user, ManageSieve); create the agency —
units "UBND xã …" and "Phòng …", staff with Vietnamese names, unit mailboxes, declared
personal Gmail addresses for some staff; then for every day of last month deliver that day's
mail, let readers read it (their own IMAP logins), and run the nightly `collect` flow for the
next night. Behaviour follows the Bình Dương check: about 30% regular users, 70% rare or never.
Planted violations of every code: official mail with a declared personal Gmail, forwarding to
Gmail, registration mail from social-network and bank senders, a document giving a Gmail
contact, inactive staff, unattended unit mailboxes. Finally the `evaluate` flow runs and the
demo prints the ranking, the output files, and found / missed / false-confirmed.

``--province`` makes the agency a small province (:data:`PROVINCE`): a units.csv of three
levels — the UBND tỉnh, two sở and two UBND huyện, each huyện with its offices and communes
— with each unit's head, and ``[[scopes]]`` for the province, each department and each
district; after the evaluation every scope's bundle is shown and checked on its own
(:func:`scope_check`: its people exactly its subtree's, its findings those of the whole
evaluation and of the planted truth for them).

``--months N`` lives through the last N months in turn (each evaluated, so the report's
trend has N points); ``--serve`` keeps the Dovecot up afterwards for the operator commands,
with the master password in ``master-password`` (0600) beside the config.
"""

from __future__ import annotations

import contextlib
import csv
import email as email_lib
import email.policy as email_policy
import importlib.util
import json
import os
import random
import re
import secrets
import shlex
import shutil
import signal
import sys
import threading
import time
import zipfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from imapclient import IMAPClient
from rich.console import Console
from rich.table import Table

from contract.months import days_of, first_day, last_ended_month, month_of, months_back
from devkit.dovecot import DOVEADM, MASTER_USER, LocalDovecot
from devkit.graph import CLIENT_ID, TENANT, GMessage, GraphWorld, graph_endpoint
from devkit.synth import make_docx, make_message, person_name

ICT = ZoneInfo("Asia/Ho_Chi_Minh")
DOMAIN = "demo.gov.vn"
PASSWORD = "user-secret"
DEMO_MARK = ".mailusage-demo"  # the demo deletes only a directory that carries this
MASTER_FILE = "master-password"  # beside mailusage.toml, 0600: read by the printed commands
GRAPH_SECRET_FILE = "graph-secret"
CHECKOUT = Path(__file__).resolve().parents[1]
UNITS = (
    ("VP", "Văn phòng HĐND và UBND huyện"),
    ("TCKH", "Phòng Tài chính - Kế hoạch"),
    ("NV", "Phòng Nội vụ"),
    ("VHTT", "Phòng Văn hóa và Thông tin"),
    ("XAN", "UBND xã An Bình"),
    ("XTL", "UBND xã Tân Long"),
    ("XPH", "UBND xã Phước Hòa"),
    ("XVT", "UBND xã Vĩnh Tân"),
)
# `--province`: (code, name, parent, kind) parents first; staff work in every unit but the
# districts' own, whose heads and staff sit in their Văn phòng (an office of the district)
PROVINCE = (
    ("TINH", "UBND tỉnh Demo", "", "UBND tỉnh"),
    ("STTTT", "Sở Thông tin và Truyền thông", "TINH", "sở"),
    ("SNV", "Sở Nội vụ", "TINH", "sở"),
    ("BAC", "UBND huyện Demo Bắc", "TINH", "UBND huyện"),
    ("BAC-VP", "Văn phòng HĐND và UBND huyện Demo Bắc", "BAC", "văn phòng"),
    ("BAC-VHTT", "Phòng Văn hóa và Thông tin huyện Demo Bắc", "BAC", "phòng"),
    ("BAC-XAB", "UBND xã An Bình", "BAC", "UBND xã"),
    ("BAC-XTL", "UBND xã Tân Long", "BAC", "UBND xã"),
    ("NAM", "UBND huyện Demo Nam", "TINH", "UBND huyện"),
    ("NAM-VP", "Văn phòng HĐND và UBND huyện Demo Nam", "NAM", "văn phòng"),
    ("NAM-TCKH", "Phòng Tài chính - Kế hoạch huyện Demo Nam", "NAM", "phòng"),
    ("NAM-XPH", "UBND xã Phước Hòa", "NAM", "UBND xã"),
    ("NAM-XVT", "UBND xã Vĩnh Tân", "NAM", "UBND xã"),
)
PROVINCE_STAFFED = tuple((c, n) for c, n, _, _ in PROVINCE if c not in ("BAC", "NAM"))
PROVINCE_STAFF = 240  # `--province` without --staff: 240 staff + 11 unit mailboxes
# the province's scopes: (name, root or "" for the whole tree, letterhead); each bundle goes
# to its root's head (the province's also to the clerical office, vanthu@)
PROVINCE_SCOPES = (
    ("tinh", "", 'parent_body = "UBND TỈNH DEMO", issuing_body = "SỞ THÔNG TIN VÀ TRUYỀN THÔNG"'),
    (
        "so-tttt",
        "STTTT",
        'parent_body = "UBND TỈNH DEMO", issuing_body = "SỞ THÔNG TIN VÀ '
        'TRUYỀN THÔNG", signer_title = "GIÁM ĐỐC"',
    ),
    (
        "so-noi-vu",
        "SNV",
        'parent_body = "UBND TỈNH DEMO", issuing_body = "SỞ NỘI VỤ", signer_title = "GIÁM ĐỐC"',
    ),
    (
        "demo-bac",
        "BAC",
        'parent_body = "UBND TỈNH DEMO", issuing_body = "UBND HUYỆN DEMO BẮC", '
        'place = "Demo Bắc", signer_title = "CHỦ TỊCH"',
    ),
    (
        "demo-nam",
        "NAM",
        'parent_body = "UBND TỈNH DEMO", issuing_body = "UBND HUYỆN DEMO NAM", '
        'place = "Demo Nam", signer_title = "CHỦ TỊCH"',
    ),
)
DISTRICT_REPORT = """\
[report]
parent_body = "UBND HUYỆN DEMO"
issuing_body = "PHÒNG VĂN HÓA VÀ THÔNG TIN"
number = "/BC-VHTT"
place = "Demo"
signer_title = "TRƯỞNG PHÒNG"
recipients = ["Chủ tịch UBND huyện", "Lưu: VT, VHTT"]
"""
PROVINCE_REPORT = """\
[report]
parent_body = "UBND TỈNH DEMO"
issuing_body = "SỞ THÔNG TIN VÀ TRUYỀN THÔNG"
number = "/BC-STTTT"
place = "Demo"
signer_title = "GIÁM ĐỐC"
recipients = ["Chủ tịch UBND tỉnh", "Lưu: VT, STTTT"]
"""
SENT_NAMES = ("Sent", "Sent Items", "Thư đã gửi")
GRAPH_UNIT = "VHTT"  # the unit whose mailboxes `--graph` puts on Exchange Online
GRAPH_UNIT_PROVINCE = "BAC-VHTT"  # the same office, in the province
PUBLIC = ("gmail.com", "yahoo.com", "yahoo.com.vn", "outlook.com")
REGISTRATION = ("notification@facebookmail.com", "no-reply@vietcombank.com.vn", "noreply@zalo.me")

# Piped to a log, lines are not wrapped at 80 columns (commands to paste stay whole).
console = Console() if Console().is_terminal else Console(width=200)


@dataclass
class Person:
    employee_id: str
    full_name: str
    email: str
    unit_code: str
    unit_name: str
    behaviour: str  # regular | occasional | inactive | unit-attended | unit-unattended
    is_unit_mailbox: bool = False
    personal_email: str = ""
    on_leave: bool = False
    sent_folder: str = "Sent"


@dataclass
class Agency:
    people: list[Person]
    planted: set[tuple[str, str]] = field(default_factory=set)  # (employee_id, code)
    # who used their mailbox (sent or read) so far: an "occasional" user must, at least once
    active: set[str] = field(default_factory=set)


def build_agency(
    staff: int, rng: random.Random, units: tuple[tuple[str, str], ...] = UNITS
) -> Agency:
    """``staff`` people spread over ``units`` in turn, and each unit's own mailbox."""
    people: list[Person] = []
    used: set[str] = set()
    for i in range(staff):
        full, local = person_name(rng)
        while local in used:
            local = f"{local}{rng.randint(1, 99)}"
        used.add(local)
        code, name = units[i % len(units)]
        roll = rng.random()
        behaviour = "regular" if roll < 0.30 else "occasional" if roll < 0.62 else "inactive"
        people.append(
            Person(
                f"NV{i + 1:04d}",
                full,
                f"{local}@{DOMAIN}",
                code,
                name,
                behaviour,
                sent_folder=SENT_NAMES[i % 3],
            )
        )
    for j, (code, name) in enumerate(units):
        people.append(
            Person(
                f"HT-{code}",
                f"Hộp thư {name}",
                f"{code.lower()}@{DOMAIN}",
                code,
                name,
                "unit-unattended" if j in (2, 6) else "unit-attended",
                is_unit_mailbox=True,
            )
        )
    agency = Agency(people)
    staffers = [p for p in people if not p.is_unit_mailbox]
    active = [p for p in staffers if p.behaviour != "inactive"]
    # Declared personal Gmail, used for official mail by two of them.
    for p in rng.sample(active, min(6, len(active))):
        p.personal_email = f"{p.email.split('@')[0].replace('.', '')}.home@gmail.com"
    declared = [p for p in active if p.personal_email]
    for p in declared[:2]:
        agency.planted.add((p.employee_id, "PUBLIC_MAIL_FOR_WORK"))
    inactive = [p for p in staffers if p.behaviour == "inactive"]
    if inactive:
        inactive[0].on_leave = True  # exempt: never charged
    for p in inactive[1:]:
        agency.planted.add((p.employee_id, "NOT_USING_OFFICIAL_MAIL"))
    for p in people:
        if p.behaviour == "unit-unattended":
            agency.planted.add((p.employee_id, "UNIT_MAILBOX_UNATTENDED"))
    return agency


def plant_special(agency: Agency, rng: random.Random) -> dict[str, list[Person]]:
    """Who forwards to Gmail, who gets registration mail, who sends a Gmail contact."""
    active = [
        p
        for p in agency.people
        if p.behaviour in ("regular", "occasional") and not p.personal_email
    ]
    picks = rng.sample(active, min(4, len(active)))
    roles = {"forward": picks[:1], "registered": picks[1:3], "document": picks[3:4]}
    for p in roles["forward"]:
        agency.planted.add((p.employee_id, "PUBLIC_MAIL_FOR_WORK"))
    for p in roles["registered"]:
        agency.planted.add((p.employee_id, "OFFICIAL_ADDRESS_REGISTERED"))
    for p in roles["document"]:
        agency.planted.add((p.employee_id, "PUBLIC_CONTACT_IN_DOCUMENT"))
    return roles


class Mailboxes:
    """Where each person's mailbox lives: the demo's Dovecot, or (``--graph``) the local
    Graph tenant for one unit, as an agency part-way to Exchange Online would have it."""

    def __init__(self, server: LocalDovecot, world: GraphWorld | None = None) -> None:
        self.server = server
        self.world = world
        self.online: set[str] = set()  # addresses served by the Graph tenant

    def deliver(
        self, email: str, folder: str, raw: bytes, *, when: float, seen: bool = False
    ) -> None:
        if email not in self.online:
            self.server.deliver(email, folder, raw, when=when, seen=seen)
            return
        assert self.world is not None
        msg = email_lib.message_from_bytes(raw, policy=email_policy.default)
        arrived = datetime.fromtimestamp(when, ZoneInfo("UTC"))

        def addrs(header: str) -> list[str]:
            return [a.addr_spec.lower() for a in getattr(msg[header], "addresses", ())]

        sender = addrs("From")
        self.world.deliver(
            email,
            "Inbox" if folder == "INBOX" else "Sent Items",
            GMessage(
                id="",
                created=arrived,
                received=arrived,
                sent=msg["Date"].datetime if msg["Date"] else arrived,
                sender=sender[0] if sender else None,
                to=addrs("To"),
                cc=addrs("Cc"),
                is_read=seen,
                message_id=msg["Message-ID"],
                size=len(raw),
            ),
        )

    def finish_seeding(self) -> None:
        self.server.finish_seeding()

    def read(self, p: Person, when: datetime) -> None:
        """The person opens their mail: an IMAP login, or an Outlook sign-in to Exchange
        Online (Graph's signInActivity) that marks the inbox read."""
        if p.email not in self.online:
            client = IMAPClient("127.0.0.1", port=self.server.imap_port, ssl=False)
            client.login(p.email, PASSWORD)
            client.select_folder("INBOX")
            unseen = client.search(["UNSEEN"])
            if unseen:
                client.add_flags(unseen, [b"\\Seen"])
            client.logout()
            return
        assert self.world is not None
        inbox = self.world.folder(p.email, "Inbox")
        for i, m in enumerate(inbox.messages):
            if not m.is_read:
                self.world.mark_read(p.email, "Inbox", i)
        stamp = when.astimezone(ZoneInfo("UTC")).strftime("%Y-%m-%dT%H:%M:%SZ")
        self.world.user(p.email).sign_in = {
            "lastSignInDateTime": stamp,
            "lastSuccessfulSignInDateTime": stamp,
        }

    def forward(self, p: Person, target: str) -> None:
        if p.email not in self.online:
            self.server.set_sieve(
                p.email, "roundcube", f'require "copy";\nredirect :copy "{target}";\n'
            )
            return
        assert self.world is not None
        self.world.user(p.email).rules.append(
            {
                "id": "1",
                "displayName": "Chuyển tiếp",
                "sequence": 1,
                "isEnabled": True,
                "conditions": {},
                "actions": {"forwardTo": [{"emailAddress": {"address": target}}]},
            }
        )


def document_message(sender: Person, to: str, when: float, mid: str) -> bytes:
    from email.message import EmailMessage
    from email.utils import format_datetime

    msg = EmailMessage()
    msg["From"], msg["To"], msg["Message-ID"] = sender.email, to, mid
    msg["Date"] = format_datetime(datetime.fromtimestamp(when, ICT))
    msg["Subject"] = "Thông báo tuyển dụng viên chức"
    msg.set_content("Kính gửi các đơn vị, xin gửi thông báo đính kèm.")
    msg.add_attachment(
        make_docx(
            f"Hồ sơ gửi về {sender.unit_name}, liên hệ: tuyendung.{sender.unit_code.lower()}"
            "@gmail.com"
        ),
        maintype="application",
        subtype="vnd.openxmlformats-officedocument.wordprocessingml.document",
        filename="thong-bao.docx",
    )
    return msg.as_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def simulate_day(
    server: Mailboxes,
    agency: Agency,
    roles: dict[str, list[Person]],
    day: date,
    rng: random.Random,
    counter: list[int],
    first: bool = False,
) -> None:
    """Deliver one day's mail, as the people of the agency would have sent and received it."""
    everyone = [p for p in agency.people]
    official = [p.email for p in everyone]
    workday = day.weekday() < 5

    def when(hour_from: int = 7, hour_to: int = 17) -> float:
        local = datetime(
            day.year,
            day.month,
            day.day,
            rng.randint(hour_from, hour_to),
            rng.randint(0, 59),
            tzinfo=ICT,
        )
        return local.timestamp()

    def mid() -> str:
        counter[0] += 1
        return f"<{counter[0]}.demo@{DOMAIN}>"

    for p in everyone:
        # incoming official mail for everybody, every workday
        for _ in range(rng.randint(1, 3) if workday else 0):
            t = when()
            sender = rng.choice(official)
            raw = make_message(sender, [p.email], date=t, message_id=mid())
            server.deliver(p.email, "INBOX", raw, when=t)
        sends = {"regular": 0.65, "occasional": 0.08, "unit-attended": 0.3}.get(p.behaviour, 0)
        if workday and rng.random() < sends:
            for _ in range(rng.randint(1, 3)):
                t = when()
                to = [rng.choice(official)]
                if rng.random() < 0.1:
                    to.append(f"congdan{rng.randint(1, 500)}@{rng.choice(PUBLIC)}")
                raw = make_message(p.email, to, date=t, message_id=mid(), from_name=p.full_name)
                server.deliver(p.email, p.sent_folder, raw, when=t, seen=True)
            agency.active.add(p.employee_id)
    planted_declared = [
        p
        for p in everyone
        if (p.employee_id, "PUBLIC_MAIL_FOR_WORK") in agency.planted and p.personal_email
    ]
    # Planted events: on the first simulated day (so a short --nights run has them too) and
    # again later in the month.
    if first or day.day in (6, 20):
        for p in planted_declared:  # official documents sent to one's own Gmail
            t = when(20, 22)
            raw = make_message(
                p.email,
                [p.personal_email],
                date=t,
                message_id=mid(),
                subject="Tài liệu họp giao ban",
            )
            server.deliver(p.email, p.sent_folder, raw, when=t, seen=True)
        for p in roles["registered"]:
            t = when()
            raw = make_message(
                rng.choice(REGISTRATION),
                [p.email],
                date=t,
                message_id=mid(),
                subject="Xác nhận đăng ký tài khoản",
            )
            server.deliver(p.email, "INBOX", raw, when=t)
    if first or day.day == 12:
        for p in roles["document"]:
            t = when()
            server.deliver(
                p.email,
                p.sent_folder,
                document_message(p, rng.choice(official), t, mid()),
                when=t,
                seen=True,
            )
    server.finish_seeding()


def read_mail(
    server: Mailboxes, agency: Agency, day: date, rng: random.Random, last: bool = False
) -> None:
    """Readers open their mail with their own client: real logins, real flag changes. On
    the ``last`` workday an occasional user who has not yet used the mailbox reads it: by
    chance alone one in ~80 would stay idle all month, be rated inactive and be charged
    with a violation the demo did not plant."""
    for p in agency.people:
        chance = {"regular": 0.8, "occasional": 0.12, "unit-attended": 0.7}.get(p.behaviour, 0)
        if last and p.behaviour == "occasional" and p.employee_id not in agency.active:
            chance = 1.0
        if day.weekday() >= 5 or rng.random() >= chance:
            continue
        agency.active.add(p.employee_id)
        server.read(p, datetime(day.year, day.month, day.day, rng.randint(7, 17), tzinfo=ICT))


def unit_heads(agency: Agency) -> dict[str, str]:
    """Each unit's head in ``--province``: the first staff member of the unit, a district
    (no staff of its own) its Văn phòng's first — the chairman sits there."""
    first: dict[str, str] = {}
    for p in agency.people:
        if not p.is_unit_mailbox:
            first.setdefault(p.unit_code, p.email)
    return {code: first.get(code) or first.get(f"{code}-VP", "") for code, _, _, _ in PROVINCE}


def province_files(root: Path, agency: Agency) -> str:
    """``--province``: units.csv beside the roster, and the config's lines for it (the
    tree and one ``[[scopes]]`` entry per :data:`PROVINCE_SCOPES`)."""
    heads = unit_heads(agency)
    with (root / "units.csv").open("w", encoding="utf-8-sig", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["unit_code", "unit_name", "parent_code", "kind", "head_email"])
        for code, name, parent, kind in PROVINCE:
            w.writerow([code, name, parent, kind, heads[code]])
    scopes = []
    for name, unit, report in PROVINCE_SCOPES:
        recipients = [heads[unit or "TINH"]] + ([f"vanthu@{DOMAIN}"] if not unit else [])
        scopes.append(
            f'\n[[scopes]]\nname = "{name}"\n'
            + (f'root = "{unit}"\n' if unit else "")
            + f"recipients = {json.dumps(recipients)}\nreport = {{ {report} }}\n"
        )
    return "".join(scopes)


def write_files(
    root: Path,
    server: LocalDovecot,
    agency: Agency,
    graph: tuple[str, Path] | None = None,
    online: set[str] | None = None,
    province: bool = False,
) -> Path:
    with (root / "roster.csv").open("w", encoding="utf-8-sig", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(
            [
                "employee_id",
                "full_name",
                "email",
                "unit_code",
                "unit_name",
                "is_unit_mailbox",
                "personal_email",
                "on_leave",
                "source",
            ]
        )
        for p in agency.people:
            w.writerow(
                [
                    p.employee_id,
                    p.full_name,
                    p.email,
                    p.unit_code,
                    p.unit_name,
                    "yes" if p.is_unit_mailbox else "no",
                    p.personal_email,
                    "yes" if p.on_leave else "no",
                    "demo-m365" if p.email in (online or set()) else "demo-dovecot",
                ]
            )
    policy = (
        Path(__file__).resolve().parents[1] / "analytics" / "policies" / "lien-chieu-2014.toml"
    ).read_text(encoding="utf-8")
    policy = policy.replace('name = "lien-chieu-2014"', 'name = "demo (lien-chieu-2014 + scan)"')
    policy = policy.replace("[contact_scan]\n", "[contact_scan]\n", 1).replace(
        "enabled = false", "enabled = true", 1
    )
    (root / "policy.toml").write_text(policy, encoding="utf-8")
    scopes = province_files(root, agency) if province else ""
    config = root / "mailusage.toml"
    config.write_text(
        f"""\
# Written by `mailusage demo`. The password is read from MAILUSAGE_DEMO_MASTER_PASSWORD
# (unless given one, the demo keeps it in master-password beside this file, 0600).
[agency]
name = "{"UBND tỉnh Demo" if province else "UBND huyện Demo"}"
timezone = "Asia/Ho_Chi_Minh"
official_domains = ["{DOMAIN}", "gov.vn"]

[storage]
data_dir = "data"

[roster]
path = "roster.csv"
{'units = "units.csv"' + chr(10) if province else ""}
[evaluation]
policy = "policy.toml"
reports_dir = "reports"

{PROVINCE_REPORT if province else DISTRICT_REPORT}
[collect]
concurrency = 2
retries = 1
retry_delay_seconds = [1]

[[sources]]
name = "demo-dovecot"
host = "127.0.0.1"
port = {server.imaps_port}
security = "tls"
ca_file = "{server.ca_file}"
auth = "master-sasl"
master_user = "{MASTER_USER}"
password = {{ env = "MAILUSAGE_DEMO_MASTER_PASSWORD" }}
sieve = {{ port = {server.sieve_port}, security = "starttls" }}

[[logins]]
name = "dovecot-lastlogin"
kind = "dovecot-dict"
dict_uri = "proxy::lastlogin"
doveadm = ["{DOVEADM}", "-c", "{server.config_path}"]
"""
        + (_graph_config(*graph) if graph else "")
        + scopes,
        encoding="utf-8",
    )
    return config


def _graph_config(base: str, ca: Path) -> str:
    """The `--graph` demo's Exchange Online source: the local Graph tenant, as a real one
    would be configured apart from its URLs and CA."""
    return f"""
# One unit's mailboxes are on Exchange Online, read through Microsoft Graph (here the
# local test tenant; drop authority, graph_url and ca_file for the real one). The client
# secret is read from MAILUSAGE_DEMO_GRAPH_SECRET.
[[sources]]
name = "demo-m365"
kind = "graph"
tenant_id = "{TENANT}"
client_id = "{CLIENT_ID}"
client_secret = {{ env = "MAILUSAGE_DEMO_GRAPH_SECRET" }}
authority = "{base}"
graph_url = "{base}/v1.0"
ca_file = "{ca}"
retry_wait = 0.5

[[logins]]
name = "entra-signin"
kind = "graph-signin"
source = "demo-m365"
"""


def self_check(
    planted: set[tuple[str, str]], violations_csv: Path, month: str = ""
) -> tuple[int, int, int]:
    """Found / missed / false-confirmed against the planted truth; prints the table."""
    with violations_csv.open(encoding="utf-8-sig") as fh:
        rows = list(csv.reader(fh))[1:]
    confirmed = {(r[0], r[4]) for r in rows}  # employee_id, code
    found, missed = planted & confirmed, planted - confirmed
    false = confirmed - planted
    table = Table(title=f"self-check against the planted truth {month}".rstrip())
    for col in ("code", "planted", "found", "missed", "false-confirmed"):
        table.add_column(col)
    for code in sorted({c for _, c in planted | confirmed}):
        table.add_row(
            code,
            *(str(sum(1 for _, c in s if c == code)) for s in (planted, found, missed, false)),
        )
    console.print(table)
    return len(found), len(missed), len(false)


def subtree(root: str) -> set[str]:
    """The unit codes of :data:`PROVINCE` at and below ``root`` ("": all), read from the
    table itself: the truth a scope's bundle is checked against."""
    if not root:
        return {c for c, _, _, _ in PROVINCE}
    units = {root}
    for code, _, parent, _ in PROVINCE:  # parents come first
        if parent in units:
            units.add(code)
    return units


def _file_text(path: Path) -> str:
    """What a bundle file says, as its reader sees it: a workbook's strings (xlsx is a
    zip of XML), a PDF's extracted text, an HTML or CSV file's characters."""
    if path.suffix == ".xlsx":
        with zipfile.ZipFile(path) as book:
            return "\n".join(
                book.read(name).decode("utf-8")
                for name in book.namelist()
                if name.startswith("xl/") and name.endswith(".xml")
            )
    if path.suffix == ".pdf":
        from pypdf import PdfReader

        return "\n".join(page.extract_text() for page in PdfReader(path).pages)
    return path.read_text(encoding="utf-8-sig")


def _csv_rows(path: Path) -> list[list[str]]:
    with path.open(encoding="utf-8-sig") as fh:
        return list(csv.reader(fh))[1:]  # headers in the report's language: by position


def scope_check(
    reports: Path, agency: Agency, planted: set[tuple[str, str]]
) -> tuple[int, int, int, int]:
    """Each ``--province`` scope's bundle against the truth: its HR workbooks hold exactly
    the staff of the scope's subtree, each person once; no file names anyone outside it
    (employee id or address); its violations and review rows are the whole evaluation's
    rows for those people, no more, no fewer; and its confirmed findings against what was
    planted for them. Prints one row per scope; (scopes failed, found, missed, false)."""
    whole = {
        name: Counter((r[0], r[4]) for r in _csv_rows(reports / name))
        for name in ("violations.csv", "review.csv")
    }
    rated = {r[0] for r in _csv_rows(reports / "hr_ratings.csv")}
    table = Table(title="each scope's bundle against the truth")
    for col in (
        "scope",
        "units",
        "staff",
        "workbooks",
        "confirmed",
        "suspected",
        "found",
        "missed",
        "false",
        "outsiders",
        "check",
    ):
        table.add_column(col)
    failed, totals = 0, [0, 0, 0]
    for name, root, _ in PROVINCE_SCOPES:
        units = subtree(root)
        inside = [p for p in agency.people if p.unit_code in units]
        staff = {p.employee_id for p in inside if not p.is_unit_mailbox}
        outside = [p for p in agency.people if p.unit_code not in units]
        folder = reports / name
        problems: list[str] = []
        held: Counter[str] = Counter()
        strangers: set[str] = set()
        files = sorted(f for f in folder.iterdir() if f.is_file())
        for f in files:
            text = _file_text(f)
            ids = set(re.findall(r"\b(?:NV\d{4}|HT-[A-Z]+(?:-[A-Z]+)*)\b", text))
            # whole addresses: an.lm@ is not named by quan.lm@
            addresses = set(re.findall(r"[\w.%+-]+@[\w.-]+", text.lower()))
            named = {p.employee_id for p in outside if p.employee_id in ids or p.email in addresses}
            if named:
                problems.append(f"{f.name} names {len(named)} people outside the scope")
            strangers |= named
            if f.suffix == ".xlsx":
                held.update(ids)
        if set(held) != staff or not staff <= rated or any(n != 1 for n in held.values()):
            problems.append(f"the workbooks hold {len(held)} people, the subtree {len(staff)}")
        mine = {p.employee_id for p in inside}
        counts = {}
        for csv_name in ("violations.csv", "review.csv"):
            got = Counter((r[0], r[4]) for r in _csv_rows(folder / csv_name))
            want = Counter({k: n for k, n in whole[csv_name].items() if k[0] in mine})
            if got != want:
                problems.append(
                    f"{csv_name}: {sum(got.values())} rows, the whole's {sum(want.values())}"
                )
            counts[csv_name] = got
        confirmed = set(counts["violations.csv"])
        truth = {(e, c) for e, c in planted if e in mine}
        found, missed, false = truth & confirmed, truth - confirmed, confirmed - truth
        totals = [totals[0] + len(found), totals[1] + len(missed), totals[2] + len(false)]
        if missed or false:
            problems.append(f"{len(missed)} planted missed, {len(false)} false-confirmed")
        failed += bool(problems)
        table.add_row(
            name,
            str(len(units)),
            str(len(staff)),
            str(sum(1 for f in files if f.suffix == ".xlsx")),
            str(sum(counts["violations.csv"].values())),
            str(sum(counts["review.csv"].values())),
            str(len(found)),
            str(len(missed)),
            str(len(false)),
            str(len(strangers)),
            "ok" if not problems else "; ".join(problems),
        )
    console.print(table)
    return failed, totals[0], totals[1], totals[2]


def _write_secret(path: Path, value: str) -> None:
    """A secret file its owner alone can read (created so, never widened)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(value + "\n")
    os.chmod(path, 0o600)


def demo_months(today: date, months: int) -> list[date]:
    """The first days of the last ``months`` months before ``today``'s, oldest first.

    >>> demo_months(date(2026, 12, 5), 3)
    [datetime.date(2026, 9, 1), datetime.date(2026, 10, 1), datetime.date(2026, 11, 1)]
    """
    if months < 1:
        return []
    return [first_day(m) for m in months_back(last_ended_month(today), months)]


def mailusage_command() -> str:
    """How to run this installation's CLI from any shell: the ``mailusage`` script beside
    the running interpreter (what ``make setup`` installs in .venv/bin), else ``-m``."""
    script = Path(sys.executable).parent / "mailusage"
    if script.exists():
        return shlex.quote(str(script))
    return f"{shlex.quote(sys.executable)} -m mailusage.cli"


def notebook_hint(config: Path) -> str:
    """The command that opens the notebooks on ``config``, as this installation stands:
    JupyterLab comes with the ``analyst`` extra, which ``make setup`` does not install.

    >>> notebook_hint(Path("/srv/demo-data/mailusage.toml"))    # without the extra
    "notebooks: install JupyterLab first: /opt/mailusage/.venv/bin/python -m pip install
    -e '/opt/mailusage[analyst]' (or `make notebooks`, which also opens them); then: ..."
    """
    python = shlex.quote(sys.executable)
    notebooks = CHECKOUT / "notebooks"
    where = notebooks if notebooks.is_dir() else Path("notebooks")
    run = (
        f"MAILUSAGE_CONFIG={shlex.quote(str(config))} {python} -m jupyter lab "
        f"{shlex.quote(str(where))}"
    )
    if importlib.util.find_spec("jupyterlab") is not None:
        return f"notebooks: {run}"
    extra = shlex.quote(f"{CHECKOUT}[analyst]")
    return (
        f"notebooks: install JupyterLab first: {python} -m pip install -e {extra} "
        f"(or `make notebooks`, which also opens them); then: {run}"
    )


def serve_instructions(root: Path, month: str, graph: bool) -> str:
    """The operator commands to paste in another shell while ``--serve`` runs. The master
    password is never printed: the commands read it from its 0600 file into the variable
    the config names, so it stays out of the terminal, the shell history and ``ps``."""
    mu = mailusage_command()
    config = shlex.quote(str(root / "mailusage.toml"))
    secret = root / MASTER_FILE
    lines = [
        f"export MAILUSAGE_CONFIG={config}",
        'export MAILUSAGE_DEMO_MASTER_PASSWORD="$(cat ' + shlex.quote(str(secret)) + ')"'
        if secret.exists()
        else "# MAILUSAGE_DEMO_MASTER_PASSWORD: export the password you gave the demo",
    ]
    if graph:
        lines.append(
            'export MAILUSAGE_DEMO_GRAPH_SECRET="$(cat '
            + shlex.quote(str(root / GRAPH_SECRET_FILE))
            + ')"'
        )
    lines += [f"{mu} doctor", f"{mu} collect", f"{mu} evaluate --month {month}"]
    return "\n".join(f"  {line}" for line in lines)


def wait_for_stop() -> None:
    """Block until Ctrl-C (SIGINT) or SIGTERM."""
    stop = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)


def run_demo(
    workdir: str,
    *,
    cli: Callable[[list[str]], int],
    staff: int | None = None,
    nights: int | None = None,
    graph: bool = False,
    months: int = 1,
    serve: bool = False,
    province: bool = False,
) -> int:
    """The demo in ``workdir``; 0 when every planted violation is found and nothing else.

    ``cli`` runs one ``mailusage`` command line (the CLI's ``main``, handed in by
    ``mailusage demo``): the last night's collect and the last month's evaluate go through
    it as an operator's would, without the demo importing the CLI back. ``staff`` defaults
    to 40, with ``province`` (:data:`PROVINCE`) to :data:`PROVINCE_STAFF`.
    """
    started = time.monotonic()
    staff = staff or (PROVINCE_STAFF if province else 40)
    root = Path(workdir).resolve()
    if root.exists() and any(root.iterdir()):
        if not (root / DEMO_MARK).exists():
            console.print(
                f"[red]error:[/red] {root} holds files that an earlier demo did not write; "
                "the demo replaces its whole directory, so give it a new or empty one"
            )
            return 2
        shutil.rmtree(root)  # an earlier demo's directory: replaced whole
    root.mkdir(parents=True, exist_ok=True)
    (root / DEMO_MARK).write_text("written by `mailusage demo`; replaced by the next one\n")
    firsts = demo_months(datetime.now(ICT).date(), months)
    month_days: list[list[date]] = []
    month_names = [month_of(first) for first in firsts]
    for month in month_names:
        days = days_of(month)
        month_days.append(days[:nights] if nights is not None else days)
    rng = random.Random(2018)
    console.print(
        f"[bold]mailusage demo[/bold]: {staff} staff"
        + (f" in {len(PROVINCE)} units of a province, " if province else ", ")
        + (month_names[0] if months == 1 else f"{month_names[0]} to {month_names[-1]}")
        + f", in {root}"
    )
    # A fresh master password per demo unless one is given; the config names only the
    # variable, and the file beside it (its owner's alone) is what the operator commands read.
    # A password the user gave by reference is never written anywhere of ours.
    given = os.environ.get("MAILUSAGE_DEMO_MASTER_PASSWORD")
    master = given or secrets.token_urlsafe(16)
    os.environ["MAILUSAGE_DEMO_MASTER_PASSWORD"] = master
    if not given:
        _write_secret(root / MASTER_FILE, master)
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")  # one line a night is enough
    from pipelines.collect import run_collection
    from pipelines.evaluate import run_evaluation
    from pipelines.night import summary_dict, summary_line

    totals = [0, 0, 0]  # found, missed, false-confirmed over every month
    scopes_failed = 0  # `--province`: bundles that disagree with the truth, every month
    code = 0
    with contextlib.ExitStack() as stack:
        server = stack.enter_context(LocalDovecot.start(root / "dovecot", master_password=master))
        agency = build_agency(staff, rng, PROVINCE_STAFFED if province else UNITS)
        roles = plant_special(agency, rng)
        boxes = Mailboxes(server)
        endpoint = None
        if graph:
            (root / "graph").mkdir()
            base, world, ca = stack.enter_context(graph_endpoint(root / "graph"))
            os.environ["MAILUSAGE_DEMO_GRAPH_SECRET"] = world.secret
            _write_secret(root / GRAPH_SECRET_FILE, world.secret)
            boxes.world, endpoint = world, (base, ca)
            # One unit moved to Exchange Online; the contact scan reads IMAP bodies only,
            # so the one planted document stays on Dovecot.
            boxes.online = {
                p.email
                for p in agency.people
                if p.unit_code == (GRAPH_UNIT_PROVINCE if province else GRAPH_UNIT)
                and p not in roles["document"]
            }
            for p in agency.people:
                if p.email in boxes.online:
                    p.sent_folder = "Sent Items"
                    world.user(p.email)
        server.add_users({p.email: PASSWORD for p in agency.people})
        for p in agency.people:
            server.create_folder(p.email, p.sent_folder)
        for p in roles["forward"]:
            boxes.forward(p, f"{p.email.split('@')[0]}.fwd@gmail.com")
        config = write_files(root, server, agency, endpoint, boxes.online, province)
        console.print(
            f"Dovecot on 127.0.0.1:{server.imaps_port}; {len(agency.people)} mailboxes"
            + (f" ({len(boxes.online)} on the local Graph tenant)" if graph else "")
            + f"; simulating {sum(len(d) for d in month_days)} days and nights…"
        )
        counter = [0]
        for m, (month, days) in enumerate(zip(month_names, month_days, strict=True)):
            final = m == len(month_names) - 1
            agency.active = set()  # "occasional" is a month's verdict: each month anew
            last_workday = max((d for d in days if d.weekday() < 5), default=None)
            for i, day in enumerate(days):
                simulate_day(boxes, agency, roles, day, rng, counter, first=i == 0)
                read_mail(boxes, agency, day, rng, last=day == last_workday)
                night = (day + timedelta(days=1)).isoformat()
                if not final or i < len(days) - 1:  # the same collection, no Prefect
                    summary = run_collection(str(config), night, plain=True)
                    console.print(summary_line(summary_dict(summary)), highlight=False)
                    code = code or (1 if summary.count("failed") else 0)
                else:  # the last night goes through the Prefect flow, as the deployment does
                    last = ["collect", "--config", str(config), "--date", night, "--quiet"]
                    code = cli([*last, "--prefect"]) or code
            console.print(
                f"collected {len(days)} nights of {month}, {counter[0]} messages so far "
                f"({time.monotonic() - started:.0f} s); evaluating {month}…"
            )
            if final:  # the flow the monthly deployment runs
                evaluate = ["evaluate", "--config", str(config), "--month", month, "--prefect"]
                code = cli(evaluate) or code
            else:  # an earlier month: evaluated so that the next report has its trend
                result = run_evaluation(str(config), month)
                share = result["regular_share"]
                console.print(
                    f"{month}: regular users {share:.0%}, {result['capped']} people capped; "
                    f"files in {Path(result['paths']['report']).parent}"
                )
            planted = agency.planted
            if len(days) < 15:  # the policy charges inactivity only on >= 15 collected nights
                undetectable = {"NOT_USING_OFFICIAL_MAIL", "UNIT_MAILBOX_UNATTENDED"}
                planted = {(e, c) for e, c in planted if c not in undetectable}
                console.print(
                    f"{len(days)} nights: inactivity is not charged on fewer than 15 "
                    "collected nights, so it is left out of the self-check"
                )
            found, missed, false = self_check(
                planted, root / "reports" / month / "violations.csv", month
            )
            totals = [totals[0] + found, totals[1] + missed, totals[2] + false]
            if province:  # every scope's bundle, each held to the same truth
                failed, *_ = scope_check(root / "reports" / month, agency, planted)
                scopes_failed += failed
        console.print(f"found {totals[0]}, missed {totals[1]}, false-confirmed {totals[2]}")
        if province:
            console.print(
                f"scopes' bundles: {len(PROVINCE_SCOPES) * months - scopes_failed} of "
                f"{len(PROVINCE_SCOPES) * months} agree with the truth; in "
                f"{root / 'reports' / month_names[-1]}/<scope>/",
                markup=False,
                highlight=False,
                soft_wrap=True,
            )
        last_month = month_names[-1]
        console.print(
            f"open {root / 'reports' / last_month / 'report.pdf'} for the chairman's report "
            f"(or report.html beside it); {notebook_hint(config)}",
            markup=False,
            highlight=False,
            soft_wrap=True,  # a command to paste: never broken over lines
        )
        console.print(f"demo finished in {time.monotonic() - started:.0f} s")
        if serve:
            console.print(
                f"\nDovecot stays up on 127.0.0.1:{server.imaps_port} (IMAPS) until Ctrl-C "
                f"here or `kill {os.getpid()}`. In another shell:\n"
                + serve_instructions(root, last_month, graph),
                markup=False,
                highlight=False,
                soft_wrap=True,
            )
            sys.stdout.flush()
            wait_for_stop()
            console.print("stopping the demo's Dovecot")
    return code or (1 if totals[1] or totals[2] or scopes_failed else 0)
