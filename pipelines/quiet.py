"""A quiet night that needs no login (issue 25.3): which mailboxes tonight must read.

The mail system's own logs say which mailboxes changed since the last committed night: a
delivery into it, a submission by its user (a client may have saved a copy in Sent), a
login (a client may have read, flagged, moved or deleted mail), and Dovecot's ``mail_log``
events (save, copy, expunge, flag change, rename). A mailbox with none of them has nothing
new to read; its rows of tonight are carried from the night it was last read
(:func:`carried_rows`): the values reading it would give, since nothing changed.

Doubt means reading. Every mailbox is read when a log source failed or was not read to
its end, when its lines stop longer ago than the configured silence (the logging stopped,
or a rotation was lost), or when no verdict was given at all. A mailbox is read anyway
when it was not collected last night (a hole in its nights), when its last rows cannot be
carried as they are (a rename, a cursor that disagrees with them), and on its sweep
night: each mailbox has one night in every ``sweep_every`` (spread by a hash of its
address), so whatever the logs missed is found within that many nights.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from connectors.base import FolderCursor

__all__ = ["Changes", "LogEvidence", "carried_rows", "changes_from", "read_reason", "sweep_night"]


@dataclass(frozen=True)
class LogEvidence:
    """What one log source said about the time since its last committed read."""

    source: str
    mailboxes: frozenset[str]  # lower-case addresses with an event in the lines read
    ok: bool  # read to its end, on from its cursor (no rotation lost)
    reason: str = ""  # why not ok
    last_line: datetime | None = None  # the time of the newest line it could date
    named: frozenset[str] = frozenset()  # every mailbox its lines name (the collector's too)


@dataclass(frozen=True)
class Changes:
    """Tonight's verdict: the mailboxes with an event, or None to read every mailbox."""

    changed: frozenset[str] | None
    why: str  # a full night's reason, or what the verdict rests on


def changes_from(
    evidence: Sequence[LogEvidence],
    *,
    now: datetime,
    silence: timedelta,
    roster: frozenset[str] | None = None,
) -> Changes:
    """One verdict from every configured log source's evidence. With ``roster`` (the
    night's addresses, lower case), a log whose lines name mailboxes but none of the
    roster's names them some other way (a bare user name, an alias): not trusted.

    >>> from dataclasses import replace
    >>> from datetime import UTC
    >>> now = datetime(2026, 12, 6, 18, 30, tzinfo=UTC)
    >>> ev = LogEvidence("mail", frozenset({"an@x.vn"}), True, last_line=now)
    >>> changes_from([ev], now=now, silence=timedelta(hours=12)).changed
    frozenset({'an@x.vn'})
    >>> changes_from([replace(ev, ok=False, reason="rotation not found")], now=now,
    ...              silence=timedelta(hours=12)).why
    'mail: rotation not found'
    """
    if not evidence:
        return Changes(None, "no log source gave a verdict")
    changed: set[str] = set()
    for ev in evidence:
        if not ev.ok:
            return Changes(None, f"{ev.source}: {ev.reason or 'not read to its end'}")
        if ev.last_line is None or now - ev.last_line > silence:
            since = (
                "no line"
                if ev.last_line is None
                else f"no line since {ev.last_line:%Y-%m-%d %H:%M} UTC"
            )
            return Changes(None, f"{ev.source}: {since} (longer than {silence})")
        if roster is not None and ev.named and not ev.named & roster:
            example = sorted(ev.named)[0]
            return Changes(
                None, f"{ev.source}: its lines name no roster mailbox (e.g. {example!r})"
            )
        changed |= ev.mailboxes
    sources = ", ".join(ev.source for ev in evidence)
    return Changes(frozenset(changed), f"{len(changed)} mailboxes with an event in {sources}")


def sweep_night(mailbox: str, night: str, every: int) -> bool:
    """Whether ``night`` is ``mailbox``'s sweep night: one in every ``every`` nights, the
    same for a mailbox from one run to the next, spread evenly over the mailboxes.

    >>> nights = [f"2026-12-{d:02d}" for d in range(1, 15)]
    >>> sum(sweep_night("an.nv@danang.gov.vn", n, 7) for n in nights)
    2
    """
    slot = int.from_bytes(hashlib.sha256(mailbox.lower().encode()).digest()[:8], "big")
    return (date.fromisoformat(night).toordinal() + slot) % every == 0


def read_reason(
    mailbox: str, night: str, last_night: str | None, changes: Changes | None, every: int
) -> str | None:
    """Why ``mailbox`` is read tonight, or None when its rows may be carried from
    ``last_night`` (the last night committed for it)."""
    if changes is None or changes.changed is None:
        return "full night"
    if last_night is None:
        return "never collected"
    if last_night >= night:
        return "re-collection"
    if date.fromisoformat(night) - date.fromisoformat(last_night) != timedelta(days=1):
        return f"last collected {last_night}"
    if night.endswith("-01"):  # a month's figures never rest on rows carried into it
        return "first night of the month"
    if mailbox.lower() in changes.changed:
        return "log event"
    if sweep_night(mailbox, night, every):
        return "sweep"
    return None


def carried_rows(
    rows: Iterable[dict[str, Any]],
    start: dict[str, FolderCursor],
    source: str | None = None,
    reading_logged: bool = True,
) -> list[dict[str, Any]] | None:
    """Tonight's ``mailbox_status`` rows of a mailbox with no event since its last night,
    from that night's rows; None when they cannot be carried as they are (a rename that
    night, a folder or a cursor that disagrees with ``start``, another ``source``): the
    mailbox is read.

    What a read would give, since nothing changed: the same counts, cursors and quota,
    nothing fetched, nothing re-read, nothing unreadable. Read activity is 0 where the
    server counts it (the folder has a HIGHESTMODSEQ) and the logs record reading itself
    (``reading_logged``: Dovecot's mail_log plugin logs flag changes); unknown otherwise —
    a client's session begun before the last read (IMAP IDLE, a web client's token) reads
    without a new login line.
    """
    out: list[dict[str, Any]] = []
    listed: set[str] = set()
    for row in rows:
        folder, status = row["folder"], row["folder_status"]
        cursor = start.get(folder)
        if status not in ("ok", "vanished") or cursor is None:
            return None
        if source is not None and row["source"] != source:
            return None
        if (row["uidvalidity"], row["last_uid"]) != (cursor.uidvalidity, cursor.last_uid):
            return None
        if status == "ok":
            if cursor.highestmodseq != row["highestmodseq"] or cursor.token is not None:
                return None
            counted = reading_logged and row["highestmodseq"] is not None
            row = {**row, "fetched": 0, "full_reread": False, "unreadable": 0,
                   "read_activity": 0 if counted else None}  # fmt: skip
        listed.add(folder)
        out.append(row)
    if not out or listed != start.keys():
        return None
    return out
