"""`mailusage demo`: a local Dovecot, a small synthetic agency, one collection, a summary.

What it does, in order: start a private Dovecot on 127.0.0.1; create the agency's staff
mailboxes (some with a Sent folder by SPECIAL-USE, some "Sent Items", some "Thư đã gửi");
seed two weeks of mail in which about 30% of staff are regular users; write a config and a
roster; run the `collect` flow for tonight; print one line per mailbox from the datasets.
"""

from __future__ import annotations

import csv
import os
import random
import time
from pathlib import Path

import duckdb
from rich.console import Console
from rich.table import Table

from mailusage.devserver import MASTER_USER, LocalDovecot
from mailusage.synth import UNITS, make_message, person_name

DOMAIN = "demo.gov.vn"
PUBLIC = ("gmail.com", "yahoo.com", "yahoo.com.vn", "outlook.com")
SENT_NAMES = ("Sent", "Sent Items", "Thư đã gửi")

console = Console()


def seed_agency(
    server: LocalDovecot, staff: int, rng: random.Random, days: int = 14
) -> list[dict[str, str]]:
    """Create mailboxes and mail; returns roster rows."""
    now = time.time()
    roster: list[dict[str, str]] = []
    used: set[str] = set()
    for i in range(staff):
        full, local = person_name(rng)
        while local in used:
            local += str(rng.randint(1, 9))
        used.add(local)
        unit_code, unit_name = UNITS[i % len(UNITS)]
        roster.append(
            {
                "employee_id": f"NV{i + 1:04d}",
                "full_name": full,
                "email": f"{local}@{DOMAIN}",
                "unit_code": unit_code,
                "unit_name": unit_name,
                "is_unit_mailbox": "no",
            }
        )
    for unit_code, unit_name in UNITS:
        roster.append(
            {
                "employee_id": f"HM-{unit_code}",
                "full_name": f"Hộp thư {unit_name}",
                "email": f"{unit_code.lower()}@{DOMAIN}",
                "unit_code": unit_code,
                "unit_name": unit_name,
                "is_unit_mailbox": "yes",
            }
        )
    addresses = [r["email"] for r in roster]
    n = 0
    for idx, row in enumerate(roster):
        email = row["email"]
        server.add_user(email, "user-secret")
        sent_folder = SENT_NAMES[idx % len(SENT_NAMES)]
        server.create_folder(email, sent_folder)
        regular = rng.random() < 0.3
        per_day = 6 if regular else rng.choice((0, 0, 1))
        for day in range(days):
            for _ in range(rng.randint(0, per_day) if per_day else 0):
                when = now - day * 86400 - rng.randint(0, 80000)
                peer = (
                    rng.choice(addresses)
                    if rng.random() < 0.8
                    else f"contact{rng.randint(1, 50)}@{rng.choice(PUBLIC)}"
                )
                n += 1
                raw = make_message(
                    peer,
                    [email],
                    date=when,
                    message_id=f"<{n}.demo@{DOMAIN}>",
                    from_name=row["full_name"],
                )
                server.deliver(email, "INBOX", raw, when=when, seen=regular or rng.random() < 0.2)
                if regular and rng.random() < 0.5:
                    n += 1
                    raw = make_message(
                        email,
                        [peer],
                        date=when + 60,
                        message_id=f"<{n}.demo@{DOMAIN}>",
                        from_name=row["full_name"],
                    )
                    server.deliver(email, sent_folder, raw, when=when + 60, seen=True)
    server.finish_seeding()
    return roster


def write_config(workdir: Path, server: LocalDovecot) -> Path:
    path = workdir / "mailusage.toml"
    path.write_text(
        f"""\
# Written by `mailusage demo`. The password is read from MAILUSAGE_DEMO_MASTER_PASSWORD.
[agency]
name = "UBND huyện Demo"
timezone = "Asia/Ho_Chi_Minh"
official_domains = ["{DOMAIN}", "gov.vn"]

[storage]
data_dir = "data"

[roster]
path = "roster.csv"

[evaluation]
policy = "lien-chieu-2014"
reports_dir = "reports"

[collect]
concurrency = 2
retries = 1
retry_delay_seconds = [1]

[[sources]]
name = "demo-dovecot"
kind = "imap"
host = "127.0.0.1"
port = {server.imaps_port}
security = "tls"
ca_file = "{server.ca_file}"
auth = "master-sasl"
master_user = "{MASTER_USER}"
password = {{ env = "MAILUSAGE_DEMO_MASTER_PASSWORD" }}
""",
        encoding="utf-8",
    )
    return path


def write_roster(path: Path, rows: list[dict[str, str]]) -> None:
    with path.open("w", encoding="utf-8-sig", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def run_demo(workdir: str, staff: int = 12) -> int:
    root = Path(workdir).resolve()
    if root.exists():
        import shutil

        shutil.rmtree(root)
    root.mkdir(parents=True)
    console.print(f"[bold]mailusage demo[/bold] in {root}")
    with LocalDovecot.start(root / "dovecot", master_password="demo-master") as server:
        console.print(
            f"Dovecot on 127.0.0.1:{server.imaps_port} (IMAPS), master user {MASTER_USER}"
        )
        rows = seed_agency(server, staff, random.Random(2018))
        write_roster(root / "roster.csv", rows)
        config = write_config(root, server)
        os.environ["MAILUSAGE_DEMO_MASTER_PASSWORD"] = "demo-master"
        console.print(f"seeded {len(rows)} mailboxes; collecting…")
        from mailusage.cli import main

        code = main(["collect", "--config", str(config)])
        month = time.strftime("%Y-%m", time.gmtime(time.time() + 7 * 3600))
        console.print(f"evaluating {month} with the lien-chieu-2014 policy…")
        code = main(["evaluate", "--config", str(config), "--month", month]) or code
    summary = (
        duckdb.connect()
        .execute(
            """
        select s.mailbox,
               sum(s.messages) filter (where s.role = 'inbox') as inbox,
               sum(s.messages) filter (where s.role = 'sent') as sent,
               any_value(s.sent_folder) as sent_folder,
               round(any_value(s.quota_used_bytes) / 1024) as used_kib
        from read_parquet($path, hive_partitioning = true) s
        group by s.mailbox order by sent desc nulls last, s.mailbox
        """,
            parameters={"path": str(root / "data" / "mailbox_status" / "*" / "*.parquet")},
        )
        .fetchall()
    )
    table = Table(title="per mailbox, from data/mailbox_status")
    for col in ("mailbox", "inbox", "sent", "sent folder", "used KiB"):
        table.add_column(col)
    for row in summary:
        table.add_row(*(str(v) for v in row))
    console.print(table)
    console.print(f"data: {root / 'data'} (messages, mailbox_status, runs, run_mailboxes)")
    console.print(f"reports: {root / 'reports'}")
    return code
