"""One mailbox's night, read: from its start cursors to the rows to stage and the cursors
to commit. Nothing is written here and nothing here knows Prefect; the night
(:mod:`pipelines.collect`) stages what :func:`read_mailbox` returns.

    read_mailbox   one session: folders, quota, the new messages, activity, tokens
    next_cursors   where tomorrow starts, folder by folder
    renamed        folders gone under their name whose UIDVALIDITY a new folder carries
    status_rows    the night's ``mailbox_status`` rows, typed (:class:`StatusRow`)
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa

from connectors.base import (
    CredentialsRejected,
    FolderCursor,
    FolderPlan,
    FolderState,
    Forward,
    ForwardingSource,
    MailboxSession,
    MailboxSource,
    Message,
    Quota,
    SourceError,
    plan_folder,
)
from connectors.contacts import find_contacts
from contract.datasets import CONTACTS, FORWARDING, RUN_MAILBOXES
from pipelines.storage import Collected, MailboxRows, MailboxState, messages_table


@dataclass(frozen=True)
class MailboxOutcome:
    """What happened to one mailbox tonight.

    >>> MailboxOutcome("dovecot", "an.nv@danang.gov.vn", "ok", "", 120, 4, 0.8).is_signal
    False
    """

    source: str
    mailbox: str
    status: str  # ok | failed | skipped
    reason: str
    messages_new: int = 0
    folders: int = 0
    seconds: float = 0.0
    # The source's own account was refused: the night's other mailboxes of this source
    # would fail the same way (not a run_mailboxes column).
    account_refused: bool = False
    # It failed transiently on its last try (a time-out, a dropped connection): the
    # next night reads it from the same cursors (not a run_mailboxes column).
    transient: bool = False

    @property
    def is_signal(self) -> bool:
        """A server-signal source (``logins:<name>``, ``mail_logs:<name>``), not a mailbox."""
        return self.mailbox.startswith(("logins:", "mail_logs:"))

    def row(self, run_id: str) -> dict[str, Any]:
        return {"run_id": run_id, **{k: getattr(self, k) for k in RUN_MAILBOXES.names[1:]}}


@dataclass
class Collection:
    """One mailbox read in full tonight: its outcome, its rows and what its commit needs."""

    outcome: MailboxOutcome
    rows: MailboxRows | None = None
    collected: Collected | None = None


@dataclass(frozen=True)
class ContactScan:
    """The opt-in contact scan (policy `[contact_scan] enabled = true`)."""

    is_public: Callable[[str], bool]
    max_bytes: int


@dataclass(frozen=True)
class StatusRow:
    """One folder's ``mailbox_status`` row (docs/data-dictionary.md), field for column."""

    source: str
    mailbox: str
    folder: str
    role: str | None
    folder_status: str  # ok | vanished | renamed
    messages: int | None
    unseen: int | None
    uidnext: int | None
    uidvalidity: int
    highestmodseq: int | None
    last_uid: int
    fetched: int
    full_reread: bool | None
    read_activity: int | None  # unknown, not 0, where it could not be counted
    folder_bytes: int | None
    unreadable: int | None
    quota_used_bytes: int | None
    quota_limit_bytes: int | None
    sent_folder: str | None


@dataclass
class SessionRead:
    """What one session told us of a mailbox tonight: the inputs of its rows and cursors."""

    folders: list[FolderState]
    quota: Quota
    plans: dict[str, FolderPlan]
    messages: list[pa.Table] = field(default_factory=list)
    fetched: Counter[str] = field(default_factory=Counter)
    activity: dict[str, int | None] = field(default_factory=dict)
    unreadable: Counter[str] = field(default_factory=Counter)
    tokens: dict[str, str | None] = field(default_factory=dict)
    contacts: pa.Table | None = None

    @property
    def sent(self) -> str | None:
        return next((f.name for f in self.folders if f.role == "sent"), None)


def read_mailbox(
    source: MailboxSource,
    mailbox: str,
    night: str,
    start: dict[str, FolderCursor],
    forwarding: ForwardingSource | None = None,
    scan: ContactScan | None = None,
) -> Collection:
    """Read one mailbox from its start cursors into rows to stage. Nothing is written here.

    Transient errors propagate (the night retries them); other source errors come back
    as a failed outcome.
    """
    started = time.monotonic()
    try:
        with source.open(mailbox) as session:
            read = read_session(session, source.name, mailbox, start, scan)
    except SourceError as exc:
        if exc.transient:
            raise
        return Collection(
            MailboxOutcome(
                source.name,
                mailbox,
                "failed",
                exc.reason,
                seconds=time.monotonic() - started,
                account_refused=isinstance(exc, CredentialsRejected),
            )
        )
    # After the IMAP logout: ManageSieve and Zimbra open connections of their own.
    forwards, not_read = read_forwards(session, mailbox, forwarding)
    gone = renamed(start, read.folders)
    after = next_cursors(start, read.folders, read.tokens, gone)
    status = status_rows(source.name, mailbox, start, read, after, gone)
    rows = MailboxRows(read.messages, [vars(r) for r in status], None, read.contacts)
    notes = [] if read.sent else ["no Sent folder found"]
    if sum(read.unreadable.values()):
        notes.append(f"{sum(read.unreadable.values())} FETCH responses unreadable (not stored)")
    if forwards is not None:
        rows.forwarding = pa.Table.from_pylist([asdict(r) for r in forwards], schema=FORWARDING)
    if not_read:  # the messages are safe; say what is missing
        notes.append(f"forwarding rules not read: {not_read}")
    drops: list[tuple[str, int | None]] = [
        (f.name, f.uidvalidity) for f in read.folders if read.plans[f.name].full_reread
    ]
    drops += [(name, None) for name in gone]
    collected = Collected(
        mailbox,
        MailboxState(night, start, after),
        {(f.name, f.uidvalidity): read.fetched[f.name] for f in read.folders},
        drops,
    )
    outcome = MailboxOutcome(
        source.name,
        mailbox,
        "ok",
        "; ".join(notes),
        sum(read.fetched.values()),
        len(read.folders),
        time.monotonic() - started,
    )
    return Collection(outcome, rows, collected)


def read_session(
    session: MailboxSession,
    source: str,
    mailbox: str,
    start: dict[str, FolderCursor],
    scan: ContactScan | None,
) -> SessionRead:
    """The session's part of a mailbox's night: one LIST (with quota), the new messages of
    the folders that changed, then what only the fetch makes known."""
    session.resume(start)
    folders = session.folders()
    read = SessionRead(
        folders, session.quota(), {f.name: plan_folder(f, start.get(f.name)) for f in folders}
    )
    roles = {f.name: f.role for f in folders}
    uidvalidity = {f.name: f.uidvalidity for f in folders}
    by_name = {f.name: f for f in folders}
    to_scan: list[tuple[FolderState, Message]] = []
    wanted = [(f, p.from_uid, p.to_uid) for f in folders if not (p := read.plans[f.name]).empty]
    for batch in session.fetch(wanted):
        read.messages.append(messages_table(source, mailbox, uidvalidity, roles, batch))
        read.fetched.update(m.folder for m in batch)
        if scan is not None:
            to_scan.extend((by_name[m.folder], m) for m in batch if roles[m.folder] == "sent")
    # After the fetch: a Graph folder's changes are known once its delta is read.
    read.activity = {
        f.name: session.count_changed(f, p.changed_since, p.previous_last_uid)
        for f in folders
        if (p := read.plans[f.name]).changed_since is not None
    }
    read.unreadable = session.unreadable
    read.tokens = {f.name: session.token(f) for f in folders}
    if scan is not None:
        read.contacts = scan_contacts(session, mailbox, to_scan, scan)
    return read


def read_forwards(
    session: MailboxSession, mailbox: str, forwarding: ForwardingSource | None
) -> tuple[list[Forward] | None, str]:
    """The mailbox's forwarding rules, read in its session (``forwarding``: a separate
    reader, asked when the session reads none); None when not read, with why if it failed."""
    try:
        rules = session.forwards()
        if rules is None and forwarding is not None:
            rules = forwarding.forwards(mailbox)
    except SourceError as exc:
        return None, exc.reason
    return rules, ""


def next_cursors(
    start: dict[str, FolderCursor],
    folders: list[FolderState],
    tokens: dict[str, str | None],
    gone: dict[str, str],
) -> dict[str, FolderCursor]:
    """Where tomorrow starts: each listed folder at its last UID. A folder we knew that
    the server no longer lists keeps its cursor (if it comes back with the same
    UIDVALIDITY we go on from it), unless it was renamed: then it is read whole under
    its new name tonight.

    >>> inbox = FolderState("INBOX", "inbox", 3, 0, 11, 1, None)
    >>> after = next_cursors({"Old": FolderCursor(7, 9, None)}, [inbox], {"INBOX": None}, {})
    >>> after["INBOX"].last_uid, after["Old"].last_uid
    (10, 9)
    """
    after = {
        f.name: FolderCursor(f.uidvalidity, max(f.uidnext - 1, 0), f.highestmodseq, tokens[f.name])
        for f in folders
    }
    for name in sorted(start.keys() - after.keys()):
        if name not in gone:
            after[name] = start[name]
    return after


def renamed(start: dict[str, FolderCursor], folders: list[FolderState]) -> dict[str, str]:
    """Folders known last night that are gone under their name but whose UIDVALIDITY a new
    folder now carries: old name -> new name.

    >>> kept = FolderState("Lưu", "other", 9, 0, 10, 7, None)
    >>> renamed({"Dự án": FolderCursor(7, 9, None)}, [kept])
    {'Dự án': 'Lưu'}
    """
    names = {f.name for f in folders}
    new = {f.uidvalidity: f.name for f in folders if f.name not in start}
    return {
        old: new[c.uidvalidity]
        for old, c in start.items()
        if old not in names and c.uidvalidity in new
    }


def status_rows(
    source: str,
    mailbox: str,
    start: dict[str, FolderCursor],
    read: SessionRead,
    after: dict[str, FolderCursor],
    gone: dict[str, str],
) -> list[StatusRow]:
    """The night's ``mailbox_status`` rows: one per listed folder, then one per folder we
    knew that is no longer listed (``vanished``, or ``renamed`` when its UIDVALIDITY
    moved to a new name; their rows under the old name are dropped when tonight commits)."""
    quota, sent = read.quota, read.sent
    rows = [
        StatusRow(
            source,
            mailbox,
            f.name,
            f.role,
            "ok",
            f.messages,
            f.unseen,
            f.uidnext,
            f.uidvalidity,
            f.highestmodseq,
            after[f.name].last_uid,
            read.fetched[f.name],
            read.plans[f.name].full_reread,
            read.activity.get(f.name),
            f.size_bytes,
            read.unreadable.get(f.name, 0),
            quota.used_bytes,
            quota.limit_bytes,
            sent,
        )
        for f in read.folders
    ]
    listed = {f.name for f in read.folders}
    for name in sorted(start.keys() - listed):
        was = start[name]
        rows.append(
            StatusRow(
                source,
                mailbox,
                name,
                None,
                "renamed" if name in gone else "vanished",
                None,
                None,
                None,
                was.uidvalidity,
                None,
                was.last_uid,
                0,
                None,
                None,
                None,
                None,
                quota.used_bytes,
                quota.limit_bytes,
                sent,
            )
        )
    return rows


def scan_contacts(
    session: MailboxSession,
    mailbox: str,
    sent: list[tuple[FolderState, Message]],
    scan: ContactScan,
) -> pa.Table:
    """Public contact addresses in tonight's new sent messages; skips recorded with reasons."""
    rows: list[dict[str, Any]] = []
    for folder, m in sent:
        base = {
            "mailbox": mailbox,
            "uid": m.uid,
            "message_id": m.message_id,
            "sent_date": datetime.fromtimestamp(m.sent_date, UTC),
        }
        if m.size is not None and m.size > scan.max_bytes:
            rows.append({**base, "skipped": f"larger than {scan.max_bytes} bytes ({m.size})"})
            continue
        raw = session.raw_message(folder, m.uid)
        if raw is None:
            rows.append({**base, "skipped": "gone before it could be read"})
            continue
        for address, where in find_contacts(raw, scan.is_public):
            rows.append({**base, "address": address, "where_found": where})
    return pa.Table.from_pylist(rows, schema=CONTACTS)
