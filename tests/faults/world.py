"""The fault suite's world: a private Dovecot with a night of mailboxes, configs that reach
it directly or through a FaultProxy, and the truth about what a night must store.

The truth is read from the seeded Maildir files and Dovecot's own ``dovecot-uidlist``
(which holds each folder's UIDVALIDITY and every file's UID) with the standard library's
``email`` parser — nothing of connectors/ or pipelines/.
"""

from __future__ import annotations

import email
import email.policy
import os
import random
from collections.abc import Iterable
from dataclasses import dataclass, field
from email.utils import getaddresses, parsedate_to_datetime
from pathlib import Path
from typing import Any

import duckdb
from imapclient.imap_utf7 import decode as decode_utf7

from devkit.dovecot import MASTER_USER, LocalDovecot
from devkit.synth import make_message
from pipelines.collect import RunSummary, run_collection

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


def _uidlist(folder_dir: Path) -> tuple[int, dict[str, int]]:
    lines = (folder_dir / "dovecot-uidlist").read_text().splitlines()
    uidvalidity = next(int(f[1:]) for f in lines[0].split() if f.startswith("V"))
    uids = {}
    for line in lines[1:]:
        head, _, base = line.partition(":")
        uids[base] = int(head.split()[0])
    return uidvalidity, uids


def _folder_dirs(maildir: Path) -> list[tuple[str, Path]]:
    """(IMAP name, directory) of every Maildir++ folder: INBOX, then `.<mUTF-7 name>`."""
    out = [("INBOX", maildir)]
    for d in sorted(maildir.iterdir()):
        if d.name.startswith(".") and (d / "cur").is_dir():
            out.append((decode_utf7(d.name[1:].encode()).replace(".", "/"), d))
    return out


def truth(server: LocalDovecot, mailboxes: Iterable[str]) -> set[tuple[Any, ...]]:
    """TRUTH_COLUMNS of every message now on the server (after Dovecot has seen it)."""
    rows = set()
    for mbx in mailboxes:
        for folder, path in _folder_dirs(server.home(mbx) / "Maildir"):
            uidvalidity, uids = _uidlist(path)
            for file in sorted((path / "cur").iterdir()):
                base, _, flags = file.name.partition(":2,")
                raw = file.read_bytes()
                msg = email.message_from_bytes(raw, policy=email.policy.compat32)
                internal = int(os.stat(file).st_mtime)
                sent = int(parsedate_to_datetime(msg["Date"]).timestamp())
                froms = [a.lower() for _, a in getaddresses([str(msg["From"])]) if a]
                rows.add(
                    (
                        mbx,
                        folder,
                        uidvalidity,
                        uids[base],
                        internal,
                        sent,
                        len(raw),
                        "S" in flags,
                        froms[0],
                        _addrs(msg.get_all("To", [])),
                        _addrs(msg.get_all("Cc", [])),
                        msg["Message-ID"].strip(),
                    )
                )
    return rows


def _addrs(values: list[Any]) -> tuple[str, ...]:
    """Every address of every occurrence of a field (real mail repeats To: and Cc:)."""
    return tuple(a.lower() for _, a in getaddresses([str(v) for v in values]) if a)


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
