"""Which mailboxes Dovecot's own log says changed: deliveries and mail_log plugin events.

A mailbox's contents change in three ways Dovecot logs (issue 25.3):

- a delivery over LMTP (or ``dovecot-lda``), logged by default at info level::

      lmtp(an.nv@danang.gov.vn)<5650><kT1x>: Info: msgid=<t1@x>: saved mail to INBOX

- a change made in a session, logged by the ``mail_log`` plugin (``mail_plugins = $mail_plugins
  notify mail_log``, its events in ``mail_log_events``; Dovecot's documentation,
  doc.dovecot.org "Mail logger plugin", and src/plugins/mail-log/mail-log-plugin.c for the
  event names)::

      imap(an.nv@danang.gov.vn)<5671><Q2x>: Info: copy from INBOX: box=Trash, uid=5, msgid=<…>
      imap(an.nv@danang.gov.vn)<5671><Q2x>: Info: expunge: box=INBOX, uid=3, msgid=<…>
      imap(an.nv@danang.gov.vn)<5671><Q2x>: Info: flag_change: box=INBOX, uid=4, msgid=<…>
      imap(an.nv@danang.gov.vn)<5671><Q2x>: Info: Mailbox renamed: Dự án -> Lưu

- a login: whatever a client does after it (reading, flagging, moving, deleting) changes the
  mailbox, so without the ``mail_log`` plugin a login is counted as a change
  (``connectors.logins`` reads those lines).

Everything here is pure: lines in, (mailbox, time, what) out. The collector's own sessions
select read-only and fetch with ``BODY.PEEK``, so they log no event of the plugin's.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

__all__ = ["MAIL_LOG_EVENTS", "ChangeEvent", "change_events", "parse_change_line"]

# mail-log-plugin.c's event names as they are logged (``expunge`` logs as "expunge",
# a copy as "copy from X" / "copy -> X", a save as "save" or "append"), plus LMTP's line.
MAIL_LOG_EVENTS = (
    "delete",
    "undelete",
    "expunge",
    "expunged",
    "save",
    "append",
    "copy",
    "flag_change",
    "mailbox_create",
    "mailbox_delete",
    "mailbox_rename",
)

_LINE = re.compile(
    r"^(?P<ts>\w{3} +\d{1,2} \d\d:\d\d:\d\d"
    r"|\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:?\d\d)?)"
    r".*?\b(?P<service>imap|pop3|lmtp|lda|managesieve|doveadm|indexer-worker)"
    r"\((?P<user>[^)\s]+)\)(?:<\d+>)?(?:<[^>]*>)?: (?:Info: )?(?P<what>.*)$"
)
_EVENT = re.compile(r"^(?P<event>[a-z_]+)(?::| from | -> )")
# Folders are logged in words (mail-log-plugin.c: "Mailbox created: %s", "Mailbox deleted:
# %s", "Mailbox renamed: %s -> %s"), as Dovecot 2.3.19's log shows them.
_FOLDER = re.compile(r"^Mailbox (?P<done>created|deleted|renamed): ")
_FOLDER_EVENTS = {
    "created": "mailbox_create",
    "deleted": "mailbox_delete",
    "renamed": "mailbox_rename",
}
_SAVED = re.compile(r"(?:saved mail to|stored mail into mailbox) ")
# Dovecot's shared namespace, as its documentation configures it (prefix = shared/%%u/)
_SHARED = re.compile(r"\bbox=shared/(?P<owner>[^/,\s]+@[^/,\s]+)/")
_MONTHS = {
    m: i
    for i, m in enumerate(
        ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), 1
    )
}


@dataclass(frozen=True)
class ChangeEvent:
    """One logged change to a mailbox."""

    mailbox: str  # lower case
    at: datetime  # UTC
    what: str  # "delivery" or a mail_log event name
    # a shared folder's owner (``box=shared/<owner>/INBOX``): a delegate's change is the
    # owner's mailbox's too
    owner: str | None = None


def parse_change_line(line: str, *, year: int, tz: ZoneInfo) -> ChangeEvent | None:
    """The change one Dovecot log line records, or None for any other line.

    >>> tz = ZoneInfo("Asia/Ho_Chi_Minh")
    >>> parse_change_line("Dec 06 20:13:01 lmtp(An.NV@x.vn)<5650><kT1x>: Info: "
    ...     "msgid=<t1@x>: saved mail to INBOX", year=2026, tz=tz)
    ChangeEvent(mailbox='an.nv@x.vn', at=datetime.datetime(2026, 12, 6, 13, 13, 1, tzinfo=datetime.timezone.utc), what='delivery', owner=None)
    >>> parse_change_line("Dec 06 20:14:00 imap(an.nv@x.vn)<5671><Q2x>: Info: "
    ...     "copy from INBOX: box=Trash, uid=5", year=2026, tz=tz).what
    'copy'
    >>> parse_change_line("Dec 06 20:15:00 imap(an.nv@x.vn)<5671><Q2x>: Info: "
    ...     "Disconnected: Logged out in=120 out=800", year=2026, tz=tz) is None
    True
    """  # noqa: E501
    m = _LINE.match(line)
    if m is None:
        return None
    what = m.group("what")
    if m.group("service") in ("lmtp", "lda"):
        if _SAVED.search(what) is None:
            return None
        kind = "delivery"
    else:
        e, f = _EVENT.match(what), _FOLDER.match(what)
        if f is not None:
            kind = _FOLDER_EVENTS[f.group("done")]
        elif e is not None and e.group("event") in MAIL_LOG_EVENTS:
            kind = e.group("event")
        else:
            return None
    at = _time(m.group("ts"), year, tz)
    if at is None:
        return None
    shared = _SHARED.search(what)
    owner = shared.group("owner").lower() if shared else None
    return ChangeEvent(m.group("user").lower(), at, kind, owner)


def change_events(lines: Iterable[str], *, year: int, tz: ZoneInfo) -> Iterator[ChangeEvent]:
    """Every change the lines record, in order."""
    for line in lines:
        event = parse_change_line(line, year=year, tz=tz)
        if event is not None:
            yield event


def _time(ts: str, year: int, tz: ZoneInfo) -> datetime | None:
    try:
        if ts[0].isdigit():
            local = datetime.fromisoformat(ts.replace(" ", "T"))
        else:
            mon, day, clock = ts.split()
            hh, mm, ss = (int(x) for x in clock.split(":"))
            local = datetime(year, _MONTHS[mon], int(day), hh, mm, ss)
    except (KeyError, ValueError):
        return None
    if local.tzinfo is None:
        local = local.replace(tzinfo=tz)
    return local.astimezone(UTC)
