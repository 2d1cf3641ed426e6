"""The interface every mail source implements, and the records it yields.

A connector talks one protocol and nothing else: no Prefect, no Parquet, no SQL. Flows
depend on :class:`MailboxSource` only, so IMAP and EWS are interchangeable downstream.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import NamedTuple, Protocol

from contract.signals import SIGNAL_NAMES, Signals

__all__ = ["SIGNAL_NAMES", "Signals"]  # what a source measures: declared with the source


class Message(NamedTuple):
    """One message's metadata. Times are epoch seconds (UTC).

    >>> m = Message("INBOX", 42, 1_763_860_000, 1_763_859_990, "header", 5120, True,
    ...             "an.nv@danang.gov.vn", ("b@gmail.com",), (), "<x@y>", False)
    >>> m.internal_date - m.sent_date, m.size, m.to_addrs
    (10, 5120, ('b@gmail.com',))
    """

    folder: str
    uid: int
    internal_date: int
    sent_date: int
    date_source: str  # "header" | "internaldate" | "internaldate_implausible_header"
    size: int | None  # None: the server does not give it (Graph without Mail.Read)
    seen: bool
    from_addr: str | None
    to_addrs: tuple[str, ...]
    cc_addrs: tuple[str, ...]
    message_id: str | None
    address_invalid: bool  # some address was not an addr-spec and is kept raw


# A Date header before this (1980-01-01) is a broken clock or a typo ("0102", "0001"):
# stored as written it would drop the message out of every month.
EARLIEST_SENT = 315_532_800
# How far a Date may run ahead of the server's arrival time (clock skew, time zones).
MAX_SENT_AHEAD = 86_400


def sent_date(header: int | None, arrived: int) -> tuple[int, str]:
    """The date a message is counted by, and where it came from: the Date header unless it
    is missing, or implausible against the arrival time (INTERNALDATE, DateTimeReceived).
    A Date long *before* arrival stays: mail imported from an old system is like that.

    >>> sent_date(1_793_588_400, 1_793_588_460)
    (1793588400, 'header')
    >>> sent_date(None, 1_793_588_460)
    (1793588460, 'internaldate')
    >>> sent_date(-59_011_459_200, 1_793_588_460)  # "Date: ... 0100": far before 1980
    (1793588460, 'internaldate_implausible_header')
    """
    if header is None:
        return arrived, "internaldate"
    if header < EARLIEST_SENT or header > arrived + MAX_SENT_AHEAD:
        return arrived, "internaldate_implausible_header"
    return header, "header"


def smtp_address(
    address: str | None, name: str | None = None, routing: str | None = None
) -> tuple[str | None, bool]:
    """(lower-cased SMTP address, invalid?) of an address a server gave as structured data
    (EWS, Graph). An EX (legacyExchangeDN) or nameless entry is kept raw and flagged, as
    IMAP does with a non-address.

    >>> smtp_address("An.NV@DaNang.gov.vn", "An")
    ('an.nv@danang.gov.vn', False)
    >>> smtp_address("/O=DANANG/OU=EXCHANGE/CN=RECIPIENTS/CN=AN", "An", "EX")
    ('/O=DANANG/OU=EXCHANGE/CN=RECIPIENTS/CN=AN', True)
    """
    address = (address or "").strip()
    if (routing or "SMTP").upper() == "SMTP" and "@" in address and " " not in address:
        return address.lower(), False
    return (address or name or "").strip() or None, True


@dataclass(frozen=True, slots=True)
class FolderCursor:
    """What the server guarantees about a folder at the end of the last collection.

    >>> FolderCursor(uidvalidity=1795445645, last_uid=1200, highestmodseq=3411)
    FolderCursor(uidvalidity=1795445645, last_uid=1200, highestmodseq=3411, token=None)
    """

    uidvalidity: int
    last_uid: int
    highestmodseq: int | None
    # A server's own sync state, opaque to the collector (Graph: the delta link, EWS: the
    # folder's SyncState); None for IMAP, whose cursor is the numbers above.
    token: str | None = None


@dataclass(frozen=True, slots=True)
class FolderState:
    """A folder as the server describes it right now (from EXAMINE / STATUS)."""

    name: str
    role: str  # inbox | sent | drafts | trash | junk | archive | other
    messages: int
    unseen: int | None
    uidnext: int
    uidvalidity: int
    highestmodseq: int | None
    size_bytes: int | None = None  # the folder's total size, where the server says (EWS)


@dataclass(frozen=True, slots=True)
class Quota:
    used_bytes: int | None
    limit_bytes: int | None


@dataclass(frozen=True, slots=True)
class FolderPlan:
    """What to fetch from one folder tonight, decided from its cursor (pure)."""

    from_uid: int  # first UID to fetch
    to_uid: int  # last UID to fetch (uidnext - 1); nothing when to_uid < from_uid
    full_reread: bool  # UIDVALIDITY changed (or first night): replace the folder's rows
    changed_since: int | None  # count read activity for UIDs <= previous last_uid after this
    previous_last_uid: int

    @property
    def empty(self) -> bool:
        return self.to_uid < self.from_uid


def plan_folder(state: FolderState, cursor: FolderCursor | None) -> FolderPlan:
    """Turn last night's cursor and tonight's folder state into a fetch plan.

    >>> plan_folder(FolderState("INBOX", "inbox", 10, 0, 11, 7, 50), FolderCursor(7, 8, 40))
    FolderPlan(from_uid=9, to_uid=10, full_reread=False, changed_since=40, previous_last_uid=8)
    """
    last = state.uidnext - 1
    if cursor is None or cursor.uidvalidity != state.uidvalidity:
        return FolderPlan(1, last, cursor is not None, None, 0)
    return FolderPlan(cursor.last_uid + 1, last, False, cursor.highestmodseq, cursor.last_uid)


class MailboxSession(Protocol):
    """An open, read-only view of one mailbox."""

    # Per folder: messages the server listed that could not be read (not stored).
    unreadable: Counter[str]

    def resume(self, start: Mapping[str, FolderCursor]) -> None:
        """Last night's cursors, given before :meth:`folders`: a server whose cursor is a
        token (Graph's delta links, EWS sync states) reads on from them; IMAP plans from
        numbers."""
        ...

    def token(self, folder: FolderState) -> str | None:
        """The folder's sync token once tonight's fetch of it is done (None: no tokens)."""
        ...

    def folders(self) -> list[FolderState]: ...

    def quota(self) -> Quota: ...

    def count_changed(self, folder: FolderState, since_modseq: int, up_to_uid: int) -> int | None:
        """Messages with UID <= up_to_uid whose flags changed after since_modseq (None:
        unknown). Asked after :meth:`fetch`: Graph and EWS learn the changes from their sync."""
        ...

    def messages(self, folder: FolderState, from_uid: int, to_uid: int) -> Iterator[list[Message]]:
        """Batches of messages with from_uid <= UID <= to_uid."""
        ...

    def fetch(self, requests: Sequence[tuple[FolderState, int, int]]) -> Iterator[list[Message]]:
        """Batches for several (folder, from_uid, to_uid) at once; a server that can read
        folders together (EWS FindItem) saves calls, IMAP reads them one by one."""
        ...

    def raw_message(self, folder: FolderState, uid: int) -> bytes | None:
        """The whole message, read without changing it (None: gone, or not offered)."""
        ...

    def forwards(self) -> list[Forward] | None:
        """The mailbox's forwarding rules (Graph's inbox rules from the session's first
        batch, EWS's GetInboxRules in its account; IMAP's from ManageSieve or Zimbra, added
        by the opened source); None when the source reads none tonight: unknown, not "no
        forwarding". May be asked after the session's block has closed its connection."""
        ...


@dataclass(frozen=True, slots=True)
class Forward:
    """A rule that sends a mailbox's mail elsewhere (Sieve redirect, Exchange inbox rule)."""

    mailbox: str
    target: str
    rule_name: str  # the Sieve script's or the inbox rule's name
    keeps_copy: bool  # the mailbox keeps the message too (`redirect :copy`, an EWS forward)
    conditional: bool  # only some messages are forwarded (inside an `if`, rule conditions)


@dataclass(frozen=True, slots=True)
class Check:
    """One line of ``mailusage doctor``: what was checked of a subject, and how it went."""

    subject: str  # the source's name (or the roster, a login source)
    check: str  # e.g. "tcp", "login", "inbox-rules"
    status: str  # ok | warn | fail
    detail: str


@dataclass(frozen=True, slots=True)
class Probe:
    """Whom ``doctor`` tries a source with: a roster mailbox, or why there is none.

    >>> Probe(None, roster_read=False).missing("open")
    ('warn', 'not tried: the roster could not be read')
    """

    mailbox: str | None
    roster_read: bool = True
    secret: str | None = None  # why the source's secret is not there: no login is tried

    def missing(self, what: str) -> tuple[str, str]:
        """The login check's status and detail when no roster mailbox can be tried."""
        if not self.roster_read:  # a failure of its own already: not one more per source
            return "warn", "not tried: the roster could not be read"
        return "fail", f"no roster mailbox for this source to {what}"


class ForwardingSource(Protocol):
    """Where a mailbox's forwarding rules are read."""

    def forwards(self, mailbox: str) -> list[Forward]: ...


class MailboxSource(Protocol):
    """A mail server that can open any mailbox of the roster read-only."""

    name: str
    kind: str

    def open(self, mailbox: str) -> AbstractContextManager[MailboxSession]: ...


class SourceError(Exception):
    """A failure worth recording against a mailbox; ``transient`` ones are retried."""

    transient = False

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class AuthError(SourceError):
    """Wrong password, or the admin may not act for this mailbox: retrying will not help."""


class CredentialsRejected(AuthError):
    """The source's own account (an IMAP master user, an EWS service account) was refused:
    every mailbox of the source would fail the same way, so the night stops using it."""


class MailboxMissing(SourceError):
    """The server has no such mailbox."""


class TransientError(SourceError):
    """Dropped connection, timeout, server busy: worth a retry."""

    transient = True
