"""The fault suite's world: a private Dovecot with a night of mailboxes, configs that reach
it directly or through a FaultProxy, and the truth about what a night must store.

The truth is read from the seeded Maildir files and Dovecot's own ``dovecot-uidlist``
(which holds each folder's UIDVALIDITY and every file's UID) with the standard library's
``email`` parser — nothing of connectors/ or pipelines/ — by the tests' one truth reader,
tests/groundtruth.py's ``maildir_messages``.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb

from devkit.dovecot import MASTER_USER, LocalDovecot
from devkit.synth import make_message
from pipelines.collect import RunSummary, run_collection
from tests.groundtruth import maildir_messages

DOMAIN = "faults.gov.vn"
FOLDERS = ("INBOX", "Sent", "Dự án")
PASSWORD_ENV = "MU_FAULTS_MASTER_PASSWORD"
USER_PASSWORD = "user-pw-Ztq81"
START = 1_793_500_000
PEERS = ("b.tt@danang.gov.vn", "friend@gmail.com", "x@yahoo.com.vn", "Phong.KH@binhduong.gov.vn")

# Every column of `messages`, in the order rows are compared.
COLUMNS = (
    "mailbox",
    "folder",
    "uidvalidity",
    "uid",
    "source",
    "role",
    "internal_date",
    "sent_date",
    "date_source",
    "size",
    "seen",
    "from_addr",
    "to_addrs",
    "cc_addrs",
    "message_id",
    "address_invalid",
)
# The columns the independent truth knows: all but the collector's own labels.
TRUTH_COLUMNS = tuple(
    c for c in COLUMNS if c not in ("source", "role", "date_source", "address_invalid")
)


def seed_mail(
    server: LocalDovecot,
    mailboxes: Iterable[str],
    rng: random.Random,
    night: int,
    most: int = 8,
    folders: tuple[str, ...] = FOLDERS,
) -> int:
    """1 to ``most`` messages per mailbox, spread over ``folders``. Returns how many."""
    n = 0
    for mbx in mailboxes:
        for i in range(rng.randint(1, most)):
            folder = rng.choice(folders)
            when = START + night * 86_400 + i * 600 + rng.randint(0, 300)
            peer = rng.choice(PEERS)
            outgoing = folder == "Sent"
            raw = make_message(
                mbx if outgoing else peer,
                [peer if outgoing else mbx],
                cc=[rng.choice(PEERS)] if rng.random() < 0.3 else (),
                date=when + rng.choice([0, 30, -3600]),
                message_id=f"<n{night}.{i}.{rng.randrange(10**9)}@{DOMAIN}>",
                from_name="Trần Thị Bình" if rng.random() < 0.5 else None,
            )
            server.deliver(mbx, folder, raw, when=when, seen=rng.random() < 0.5)
            n += 1
    return n


def add_mailboxes(server: LocalDovecot, names: Iterable[str]) -> list[str]:
    mailboxes = [f"{name}@{DOMAIN}" for name in names]
    server.add_users(dict.fromkeys(mailboxes, USER_PASSWORD))
    for mbx in mailboxes:
        for folder in FOLDERS:
            server.create_folder(mbx, folder)
    return mailboxes


# -- the truth ------------------------------------------------------------------------------


def truth(server: LocalDovecot, mailboxes: Iterable[str]) -> set[tuple[Any, ...]]:
    """TRUTH_COLUMNS of every message now on the server (after Dovecot has seen it), read
    by the tests' one truth reader (tests/groundtruth.py)."""
    rows = set()
    for mbx in mailboxes:
        for m in maildir_messages(server, mbx):
            # every seeded message has a UID by now, and a Date, From and Message-ID
            assert m.uid is not None and m.sent_date is not None, (mbx, m)
            assert m.from_addr is not None and m.message_id is not None, (mbx, m)
            rows.add(
                (
                    mbx,
                    m.folder,
                    m.uidvalidity,
                    m.uid,
                    m.internal_date,
                    m.sent_date,
                    m.size,
                    m.seen,
                    m.from_addr,
                    m.to_addrs,
                    m.cc_addrs,
                    m.message_id,
                )
            )
    return rows


# -- configs and runs -----------------------------------------------------------------------


@dataclass
class Setup:
    """One config + roster + data directory aimed at the world's Dovecot."""

    root: Path
    server: LocalDovecot
    mailboxes: list[str]
    port: int | None = None  # a FaultProxy's port; None = straight to Dovecot (IMAPS)
    auth: str = "master-sasl"
    timeout: float = 10.0
    retries: int = 0
    concurrency: int = 2
    extra: str = ""
    ca: bool = True  # name the test server's CA in the config
    rows: list[str] | None = None  # roster rows after the header; default one per mailbox
    header: str = "employee_id,full_name,email,unit_code,unit_name"
    config: Path = field(init=False)

    def __post_init__(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        rows = [self.header]
        rows += self.rows or [
            f"E{i:04d},Cán bộ {i},{m},UB,Ủy ban" for i, m in enumerate(self.mailboxes)
        ]
        (self.root / "roster.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
        if self.port is None:
            transport = f'port = {self.server.imaps_port}\nsecurity = "tls"'
            if self.ca:
                transport += f'\nca_file = "{self.server.ca_file}"'
        else:
            transport = f'port = {self.port}\nsecurity = "plain"'
        if self.auth == "user":
            login = 'auth = "user"\npassword = { env_prefix = "MU_FAULTS_PW_" }'
        else:
            login = (
                f'auth = "master-sasl"\nmaster_user = "{MASTER_USER}"\n'
                f'password = {{ env = "{PASSWORD_ENV}" }}'
            )
        self.config = self.root / "mailusage.toml"
        self.config.write_text(
            f"""\
[agency]
name = "Fault suite"
timezone = "Asia/Ho_Chi_Minh"
official_domains = ["{DOMAIN}"]

[storage]
data_dir = "data"

[roster]
path = "roster.csv"

[collect]
concurrency = {self.concurrency}
retries = {self.retries}
retry_delay_seconds = [1]

[[sources]]
name = "dovecot"
host = "127.0.0.1"
{transport}
{login}
timeout = {self.timeout}
batch_size = 7
{self.extra}
""",
            encoding="utf-8",
        )

    @property
    def data(self) -> Path:
        return self.root / "data"

    def collect(self, night: str, plain: bool = True) -> RunSummary:
        return run_collection(str(self.config), night, plain=plain)


def user_password_env(mailboxes: Iterable[str]) -> dict[str, str]:
    return {
        f"MU_FAULTS_PW_{m.split('@')[0].replace('-', '_').upper()}": USER_PASSWORD
        for m in mailboxes
    }


def messages(data: Path) -> list[tuple[Any, ...]]:
    """Every row of the `messages` dataset, every column, sorted — read with DuckDB."""
    files = list(data.glob("messages/night=*/*.parquet"))
    if not files:
        return []
    cols = ", ".join(COLUMNS).replace("internal_date", "epoch(internal_date)::BIGINT")
    cols = cols.replace("sent_date", "epoch(sent_date)::BIGINT")
    rows = duckdb.sql(
        f"SELECT {cols} FROM read_parquet('{data}/messages/*/*.parquet', hive_partitioning=false)"
    ).fetchall()
    return sorted(tuple(tuple(v) if isinstance(v, list) else v for v in r) for r in rows)


def as_truth(rows: list[tuple[Any, ...]]) -> set[tuple[Any, ...]]:
    idx = [COLUMNS.index(c) for c in TRUTH_COLUMNS]
    return {tuple(r[i] for i in idx) for r in rows}


def run_rows(data: Path, night: str) -> list[dict[str, Any]]:
    """run_mailboxes rows of a night, as dicts."""
    rel = duckdb.sql(f"SELECT * FROM read_parquet('{data}/run_mailboxes/night={night}/*.parquet')")
    names = rel.columns
    return [dict(zip(names, r, strict=True)) for r in rel.fetchall()]
