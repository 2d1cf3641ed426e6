"""Seeding helpers and the one ground truth of the tests: what the seeded Maildir holds.

The truth reads the Maildir files with the standard library's `email` parser, the
filesystem and Dovecot's own ``dovecot-uidlist`` (each folder's UIDVALIDITY and every
file's UID) — nothing of connectors/ — so a bug in our parser cannot hide in both.
:func:`maildir_messages` is that reader; :func:`truth` (the integration tests) and
tests/faults/world.py (the fault suite) and test_corpus.py each take their columns of it.
"""

from __future__ import annotations

import email
import email.policy
import os
import random
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from email.utils import getaddresses, parsedate_to_datetime
from pathlib import Path

from imapclient.imap_utf7 import decode as decode_utf7

from devkit.dovecot import LocalDovecot
from devkit.synth import make_message

BASE = 1_793_500_000  # 2026-11-01 ~ ICT


@dataclass(frozen=True)
class MaildirMessage:
    """One message file as the standard library reads it."""

    folder: str  # the IMAP name: "INBOX", "Sent", "Dự án"
    uidvalidity: int | None  # None until Dovecot has listed the folder (dovecot-uidlist)
    uid: int | None  # None until Dovecot has given the file a UID
    size: int  # RFC822.SIZE: the bytes with CRLF line ends (as Dovecot's W= and IMAP count)
    internal_date: int  # the file's mtime: INTERNALDATE (epoch seconds)
    sent_date: int | None  # the Date header; None when absent or unreadable
    seen: bool  # the Maildir S flag
    message_id: str | None  # the Message-ID header, stripped; None when absent or empty
    from_addr: str | None  # the first From address, lower-cased
    to_addrs: tuple[str, ...]  # every address of every To: field (real mail repeats it)
    cc_addrs: tuple[str, ...]


def maildir_messages(
    server: LocalDovecot, mailbox: str, folders: Iterable[str] | None = None
) -> list[MaildirMessage]:
    """Every message file of ``folders`` (default: every folder of the Maildir), in folder
    order, then file name order."""
    maildir = server.home(mailbox) / "Maildir"
    if folders is None:
        where = _folder_dirs(maildir)
    else:
        where = [(f, server.folder_dir(mailbox, f)) for f in folders]
    rows = []
    for folder, path in where:
        uidvalidity, uids = _uidlist(path)
        for file in sorted((path / "cur").iterdir()):
            base, _, flags = file.name.partition(":2,")
            raw = file.read_bytes()
            msg = email.message_from_bytes(raw, policy=email.policy.compat32)
            try:
                date = msg["Date"]
                sent = int(parsedate_to_datetime(str(date)).timestamp()) if date else None
            except (TypeError, ValueError, IndexError, OverflowError):  # damaged real mail
                sent = None
            froms = _addrs([msg["From"] or ""])
            rows.append(
                MaildirMessage(
                    folder,
                    uidvalidity,
                    uids.get(base),
                    len(raw) + raw.count(b"\n") - raw.count(b"\r\n"),
                    int(os.stat(file).st_mtime),
                    sent,
                    "S" in flags,
                    str(msg["Message-ID"] or "").strip() or None,
                    froms[0] if froms else None,
                    _addrs(msg.get_all("To", [])),
                    _addrs(msg.get_all("Cc", [])),
                )
            )
    return rows


def _uidlist(folder_dir: Path) -> tuple[int | None, dict[str, int]]:
    """A folder's UIDVALIDITY and the UID of each file (by its base name), from Dovecot's
    ``dovecot-uidlist`` (format 3: a header ``3 V<uidvalidity> N<next>``, then
    ``<uid> [extensions] :<base name>`` per file)."""
    path = folder_dir / "dovecot-uidlist"
    if not path.exists():
        return None, {}
    lines = path.read_text().splitlines()
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


def _addrs(values: list[object]) -> tuple[str, ...]:
    """Every address of every occurrence of a field, lower-cased."""
    return tuple(a.lower() for _, a in getaddresses([str(v) for v in values]) if a)


@dataclass(frozen=True)
class TruthRow:
    folder: str
    size: int
    internal_date: int
    sent_date: int
    seen: bool
    message_id: str | None
    from_addr: str | None
    to_addrs: tuple[str, ...]


def truth(server: LocalDovecot, mailbox: str, folders: list[str]) -> list[TruthRow]:
    """The columns the integration tests compare, of :func:`maildir_messages`: a message
    without a readable Date is dated by its INTERNALDATE, as the collector dates it."""
    return [
        TruthRow(
            m.folder,
            m.size,
            m.internal_date,
            m.sent_date if m.sent_date is not None else m.internal_date,
            m.seen,
            m.message_id,
            m.from_addr,
            m.to_addrs,
        )
        for m in maildir_messages(server, mailbox, folders)
    ]


def per_folder(rows: list[TruthRow]) -> dict[str, tuple[int, int, int, int]]:
    """folder -> (messages, total size, min sent_date, max sent_date)."""
    out: dict[str, tuple[int, int, int, int]] = {}
    for folder in sorted({r.folder for r in rows}):
        sel = [r for r in rows if r.folder == folder]
        out[folder] = (
            len(sel),
            sum(r.size for r in sel),
            min(r.sent_date for r in sel),
            max(r.sent_date for r in sel),
        )
    return out


def seed_regular(
    server: LocalDovecot,
    mailbox: str,
    n: int,
    *,
    sent_folder: str | None = "Sent",
    seed: int = 1,
    start: int = BASE,
    tag: str = "m",
) -> None:
    """n messages split between INBOX and the Sent folder, with varied headers."""
    rng = random.Random(seed)
    server.add_user(mailbox, "user-secret")
    for i in range(n):
        when = start + i * 3600 + rng.randint(0, 600)
        to_sent = sent_folder is not None and i % 3 == 0
        folder = sent_folder if to_sent else "INBOX"
        peer = rng.choice(
            [
                "b.tt@danang.gov.vn",
                "friend@gmail.com",
                "x@yahoo.com.vn",
                "Phong.KH@Binhduong.gov.vn",
            ]
        )
        raw = make_message(
            mailbox if to_sent else peer,
            [peer if to_sent else mailbox],
            cc=["c@danang.gov.vn"] if i % 5 == 0 else (),
            date=when + rng.choice([0, 0, 30, -7200]),
            message_id=f"<{tag}{i}.{seed}@test>",
            from_name="Nguyễn Văn An" if i % 2 else None,
        )
        server.deliver(mailbox, folder or "INBOX", raw, when=when, seen=rng.random() < 0.6)
    server.finish_seeding(mailbox)


ODD_MESSAGES: list[tuple[str, bytes]] = [
    # (what it exercises, raw message)
    (
        "no Date header",
        b"From: a@danang.gov.vn\r\nTo: b@danang.gov.vn\r\nMessage-ID: <nodate@t>\r\n"
        b"Subject: x\r\n\r\nbody\r\n",
    ),
    (
        "unknown charset in encoded word",
        b"From: =?x-unknown-cs?q?Nguy=E1=BB=85n?= <an@danang.gov.vn>\r\nTo: b@danang.gov.vn\r\n"
        b"Date: Mon, 2 Nov 2026 10:00:00 +0700\r\nMessage-ID: <badcs@t>\r\n\r\nbody\r\n",
    ),
    (
        "Vietnamese encoded words, folded To",
        b"From: =?utf-8?b?VHLhuqduIFRo4buLIELDrG5o?= <Binh.TT@DaNang.gov.vn>\r\n"
        b"To: =?utf-8?q?Ph=C3=B2ng_N=E1=BB=99i_v=E1=BB=A5?= <nv@danang.gov.vn>,\r\n"
        b'\t"L\xc3\xaa, V\xc4\x83n (c\xc3\xa1 nh\xc3\xa2n)" <levan@gmail.com>\r\n'
        # dated hours after its delivery (BASE), not days: a Date more than a day after
        # arrival is implausible and falls back to INTERNALDATE
        b"Date: Sun, 1 Nov 2026 08:15:00 +0700 (ICT)\r\nMessage-ID: <viet@t>\r\n\r\nbody\r\n",
    ),
    (
        "invalid addresses",
        b"From: not an address\r\nTo: someone@, @nowhere, ok@danang.gov.vn\r\n"
        b"Date: Wed, 4 Nov 2026 09:00:00 +0700\r\nMessage-ID: <invalid@t>\r\n\r\nbody\r\n",
    ),
    (
        "garbage Date",
        b"From: a@danang.gov.vn\r\nDate: sometime last week\r\n"
        b"Message-ID: <baddate@t>\r\n\r\nbody\r\n",
    ),
    (
        "8-bit raw header, no Message-ID",
        b"From: \xc4\x90\xe1\xbb\x97 V\xc4\x83n <do.v@danang.gov.vn>\r\nTo: b@danang.gov.vn\r\n"
        b"Date: Thu, 5 Nov 2026 07:00:00 +0700\r\n\r\nbody\r\n",
    ),
]


def seed_odd(server: LocalDovecot, mailbox: str) -> None:
    server.add_user(mailbox, "user-secret")
    for i, (_why, raw) in enumerate(ODD_MESSAGES):
        server.deliver(mailbox, "INBOX", raw, when=BASE + i * 60)
    server.finish_seeding(mailbox)


def flag_names(server: LocalDovecot, mailbox: str) -> Counter[str]:
    """The Maildir file names (their suffix holds the flags) of every folder."""
    names: Counter[str] = Counter()
    for dirpath, _dirs, files in os.walk(server.home(mailbox) / "Maildir"):
        if Path(dirpath).name in ("cur", "new"):
            names.update(f"{Path(dirpath).parent.name}/{f}" for f in files)
    return names


def night_status(root: Path, mailbox: str, night: str) -> dict[str, dict[str, object]]:
    """A mailbox's `mailbox_status` rows of one night, by folder, read from the night file."""
    import pyarrow.parquet as pq

    path = root / "mailbox_status" / f"night={night}" / "part-0.parquet"
    return {r["folder"]: r for r in pq.read_table(path).to_pylist() if r["mailbox"] == mailbox}
