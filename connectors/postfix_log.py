"""Postfix's mail log as records: one per message Postfix is done with, one per recipient.

Postfix logs a message over several lines from several daemons, joined by its queue id
(here AB3CE20E0D0, after ``Dec  6 20:13:01 mail``; long lines cut)::

    postfix/submission/smtpd[5631]: AB3CE20E0D0: client=localhost[127.0.0.1],
        sasl_method=PLAIN, sasl_username=an.nv@demo.gov.vn
    postfix/cleanup[5639]: AB3CE20E0D0: message-id=<t1@demo>
    postfix/qmgr[5628]: AB3CE20E0D0: from=<an.nv@demo.gov.vn>, size=291, nrcpt=2 (queue active)
    postfix/smtp[5649]: AB3CE20E0D0: to=<friend@gmail.com>, relay=mx[1.2.3.4]:25,
        delay=0.23, delays=0.01/0.01/0.02/0.19, dsn=2.0.0, status=sent (250 2.0.0 Ok)
    postfix/lmtp[5650]: AB3CE20E0D0: to=<binh.tt@demo.gov.vn>, relay=127.0.0.1[127.0.0.1]:24,
        delay=0.25, delays=0.01/0.03/0.2/0.01, dsn=2.0.0, status=sent (250 2.0.0 Saved)
    postfix/qmgr[5628]: AB3CE20E0D0: removed

The envelope is what Postfix logs, so Bcc recipients are there like any other. Everything
here is pure: lines (or bytes) in, records out, and a :class:`LogState` of the queue ids
still open, which a reader saves (``to_json``) and hands back to read on from where it
stopped — the next chunk of the same file, or the file after a rotation. No Prefect,
Parquet or SQL; the dataset's columns are ``contract.mail_logs``.

Lines Postfix did not write (Dovecot's, the kernel's) are counted as ``foreign``; lines
this module does not need (connect, disconnect, warnings) as ``ignored``; lines it cannot
read as ``damaged``. None of them stops the read.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

__all__ = [
    "Delivery",
    "LogState",
    "LogStats",
    "MailRecord",
    "ReadResult",
    "delivery_rows",
    "domain_of",
    "iter_deliveries",
    "read_chunk",
    "read_lines",
]

STATE_VERSION = 1

_MONTHS = {
    m: i
    for i, m in enumerate(
        ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), 1
    )
}

# `Dec  6 20:01:02` (syslog), `Dec 06 20:01:02` (Postfix's own postlogd) and RFC 3339
# `2026-12-06T20:01:02.123456+07:00` (rsyslog's high-precision format), then host, then
# `program[pid]: message`.
_HEADER = re.compile(
    r"(?:(?P<mon>[A-Z][a-z]{2}) {1,2}(?P<day>\d{1,2}) (?P<hms>\d\d:\d\d:\d\d)(?:\.\d+)?"
    r"|(?P<iso>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:?\d\d)))"
    r" \S+ (?P<prog>[^\s\[:]+)(?:\[\d+\])?: (?P<msg>.*)"
)
# Short ids are upper-case hex; long ids (enable_long_queue_ids) use an alphabet without
# vowels, so no word Postfix logs ("warning", "NOQUEUE", "statistics") reads as one.
_QID = re.compile(r"([0-9A-F]{6,}|[0-9B-DF-HJ-NP-TV-Zb-df-hj-np-tv-z]{10,}): ")
_CLIENT = re.compile(r"client=(?P<client>[^,\s]+)(?P<rest>.*)")
_SASL_USER = re.compile(r", sasl_username=(?P<user>[^,\s]*)")
_ORIG_QID = re.compile(r", orig_queue_id=([0-9A-Za-z]+)")
_FROM = re.compile(r"from=<(?P<from>[^>]*)>(?P<rest>.*)")
_SIZE = re.compile(r", size=(\d+)")
_NRCPT = re.compile(r", nrcpt=(\d+)")
_TO = re.compile(
    r"to=<(?P<to>[^>]*)>, (?:orig_to=<(?P<orig>[^>]*)>, )?relay=(?P<relay>[^,]+), "
    r".*?dsn=(?P<dsn>[^,]+), status=(?P<status>[a-z]+)(?: \((?P<text>.*)\))?$"
)
_NOTICE = re.compile(
    r"(?:sender|postmaster) (?:non-delivery|delivery status|delay) notification: (?P<qid>\S+)"
)
_HANDED = re.compile(r"(queued|forwarded) as ([0-9A-Za-z]+)")


@dataclass(frozen=True, slots=True)
class Delivery:
    """One recipient of a message and what became of it (its last attempt).

    ``status`` is Postfix's: sent, deferred (still queued: only in :meth:`LogState.open_messages`
    or a message whose end was lost), bounced, or expired (given up after the queue lifetime).
    ``handed_to`` is set when the reply names a queue id of this same log: a content filter
    such as amavis re-injected the message (``queued as``), or ``local`` forwarded it by an
    alias or ``.forward`` (``forwarded as``); the real deliveries are that message's.
    """

    recipient: str
    orig_recipient: str | None
    status: str
    relay: str | None
    dsn: str | None
    time: datetime
    deferrals: int = 0
    handed_to: str | None = None

    @property
    def domain(self) -> str | None:
        return domain_of(self.recipient)


@dataclass(frozen=True, slots=True)
class MailRecord:
    """A message as the log tells it.

    ``direction``: ``out`` (an authenticated submission: ``sasl_username`` is the user),
    ``in`` (arrived by SMTP without authentication), ``local`` (``sendmail``/pickup, or
    Postfix's own notices: ``notice_of`` names the message reported on), or None when the
    message's first lines were not in what was read (``complete`` False) — unknown, not "in".
    ``sender`` is ``""`` for the null sender ``<>`` of bounces, None when not seen.
    ``removed``: Postfix's ``removed`` line was read (False only for :meth:`LogState.drop_stale`
    and :meth:`LogState.open_messages`).
    """

    queue_id: str
    time: datetime | None
    sasl_username: str | None
    client: str | None
    sender: str | None
    size: int | None
    message_id: str | None
    nrcpt: int | None
    direction: str | None
    notice_of: str | None
    via_queue_id: str | None
    complete: bool
    removed: bool
    deliveries: tuple[Delivery, ...]

    @property
    def sender_domain(self) -> str | None:
        return domain_of(self.sender) if self.sender else None


@dataclass
class LogStats:
    """How many lines a read saw, and what it did with them (``partial``: bytes of an
    unfinished last line left for the next read)."""

    lines: int = 0
    used: int = 0
    ignored: int = 0
    foreign: int = 0
    damaged: int = 0
    partial: int = 0
    messages: int = 0

    def add(self, other: LogStats) -> None:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))


@dataclass
class _Open:
    """A queue id being assembled (mutable; saved in the state as JSON)."""

    first: datetime | None = None
    last: datetime | None = None
    sasl_username: str | None = None
    client: str | None = None
    sender: str | None = None
    size: int | None = None
    message_id: str | None = None
    nrcpt: int | None = None
    direction: str | None = None
    notice_of: str | None = None
    via_queue_id: str | None = None
    probe: bool = False  # an address-verification probe (verify(8)): not mail anyone sent
    # (recipient, orig_to) -> [status, relay, dsn, time, deferrals, handed_to]
    rcpts: dict[str, list[Any]] = field(default_factory=dict)

    def record(self, queue_id: str, *, removed: bool) -> MailRecord:
        deliveries = []
        for key, r in self.rcpts.items():
            recipient, _, orig = key.partition("\x00")
            deliveries.append(Delivery(recipient, orig or None, r[0], r[1], r[2], r[3], r[4], r[5]))
        return MailRecord(
            queue_id=queue_id,
            time=self.first,
            sasl_username=self.sasl_username,
            client=self.client,
            sender=self.sender,
            size=self.size,
            message_id=self.message_id,
            nrcpt=self.nrcpt,
            direction=self.direction,
            notice_of=self.notice_of,
            via_queue_id=self.via_queue_id,
            complete=self.direction is not None,
            removed=removed,
            deliveries=tuple(deliveries),
        )


@dataclass
class LogState:
    """What a read leaves for the next one: the queue ids still open, and the year that
    syslog stamps (which carry none) are in. ``year`` is where to start: the year of the
    first line read (e.g. the log file's date); it moves on by itself at a Dec -> Jan turn.

    >>> state = LogState(year=2026)
    >>> LogState.from_json(state.to_json()) == state
    True
    """

    year: int
    month: int | None = None
    open: dict[str, _Open] = field(default_factory=dict)

    @classmethod
    def seeded(cls, first_line: str, written: datetime) -> LogState:
        """The state a log's first read starts with. Syslog stamps carry no year: it is
        the year the file was last written in (``written``, in the log's zone), less one
        when the first line's month comes after that month (begun in December, written
        to in January). RFC 3339 stamps carry their own.

        >>> LogState.seeded("Dec 30 23:59:01 mail postfix/qmgr[1]: 0A1B2C3D4E: removed",
        ...                 datetime(2027, 1, 2, 8, 0))
        LogState(year=2026, month=12, open={})
        >>> LogState.seeded("Nov 30 23:59:01 mail postfix/qmgr[1]: …", datetime(2026, 12, 6))
        LogState(year=2026, month=11, open={})
        """
        month = _MONTHS.get(first_line[:3]) if first_line[3:4] == " " else None
        if month is None:
            return cls(year=written.year)
        return cls(year=written.year - (month > written.month), month=month)

    def to_json(self) -> str:
        def enc(o: _Open) -> dict[str, Any]:
            d = {f.name: getattr(o, f.name) for f in fields(o) if f.name != "rcpts"}
            for k in ("first", "last"):
                d[k] = d[k].isoformat() if d[k] else None
            d["rcpts"] = {
                k: [r[0], r[1], r[2], r[3].isoformat(), r[4], r[5]] for k, r in o.rcpts.items()
            }
            return d

        return json.dumps(
            {
                "version": STATE_VERSION,
                "year": self.year,
                "month": self.month,
                "open": {q: enc(o) for q, o in self.open.items()},
            },
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str) -> LogState:
        raw = json.loads(text)
        if raw.get("version") != STATE_VERSION:
            raise ValueError(f"postfix log state version {raw.get('version')!r} is not mine")

        def dec(d: dict[str, Any]) -> _Open:
            o = _Open(**{k: v for k, v in d.items() if k != "rcpts"})
            o.first = datetime.fromisoformat(d["first"]) if d["first"] else None
            o.last = datetime.fromisoformat(d["last"]) if d["last"] else None
            o.rcpts = {
                k: [r[0], r[1], r[2], datetime.fromisoformat(r[3]), r[4], r[5]]
                for k, r in d["rcpts"].items()
            }
            return o

        return cls(
            year=raw["year"],
            month=raw["month"],
            open={q: dec(d) for q, d in raw["open"].items()},
        )

    def open_messages(self) -> list[MailRecord]:
        """The messages still in Postfix's queue as far as the log says (deferred ones)."""
        return [o.record(q, removed=False) for q, o in self.open.items()]

    def drop_stale(self, before: datetime) -> list[MailRecord]:
        """Give up on queue ids with no line since ``before`` (their ``removed`` line was lost,
        or they were deleted from the queue unlogged): returned with ``removed`` False.
        One that never reached the queue manager (no ``from=``, no recipient: the client left
        before the end of the data, which Postfix does not log) was never sent: dropped."""
        stale = [q for q, o in self.open.items() if (o.last or o.first or before) < before]
        gone = [(q, self.open.pop(q)) for q in stale]
        return [o.record(q, removed=False) for q, o in gone if o.sender is not None or o.rcpts]


@dataclass
class ReadResult:
    """Messages Postfix was done with in what was read, the line counts, and (for
    :func:`read_chunk`) how many bytes were whole lines — where the next read starts."""

    messages: list[MailRecord]
    stats: LogStats
    consumed: int = 0


def domain_of(address: str | None) -> str | None:
    """The domain of an address, lower case, without a trailing dot; None without one.

    >>> domain_of("An.NV@Demo.Gov.VN."), domain_of("postmaster"), domain_of("")
    ('demo.gov.vn', None, None)
    """
    if not address or "@" not in address:
        return None
    return address.rsplit("@", 1)[1].lower().rstrip(".") or None


def read_chunk(
    data: bytes, state: LogState, *, tz: ZoneInfo, log_tz: ZoneInfo | None = None
) -> ReadResult:
    """Read the whole lines of ``data`` (bytes from a log file, from where the last read
    stopped); a last line without its newline is left: ``consumed`` stops before it.

    >>> state = LogState(year=2026)
    >>> r = read_chunk(b"Dec  6 20:13:01 mail postfix/qmgr[1]: AB3CE20E0D0: removed\\nDec  6",
    ...                state, tz=ZoneInfo("Asia/Ho_Chi_Minh"))
    >>> r.consumed, r.stats.partial, r.stats.lines
    (59, 6, 1)
    """
    end = data.rfind(b"\n") + 1
    result = read_lines(
        data[:end].decode("utf-8", "replace").splitlines(), state, tz=tz, log_tz=log_tz
    )
    result.consumed = end
    result.stats.partial = len(data) - end
    return result


def read_lines(
    lines: Iterable[str], state: LogState, *, tz: ZoneInfo, log_tz: ZoneInfo | None = None
) -> ReadResult:
    """Assemble messages from log lines, updating ``state`` (the open queue ids).

    ``tz`` is the agency's zone: every time comes back in it. ``log_tz`` is the zone the
    server wrote syslog stamps in (default: ``tz``); RFC 3339 stamps carry their own offset.

    >>> state = LogState(year=2026)
    >>> r = read_lines([
    ...     "Dec  6 20:13:01 mail postfix/pickup[9]: 0A1B2C3D4E: uid=33 from=<www-data>",
    ...     "Dec  6 20:13:02 mail postfix/qmgr[7]: 0A1B2C3D4E: removed",
    ... ], state, tz=ZoneInfo("Asia/Ho_Chi_Minh"))
    >>> r.messages[0].direction, r.messages[0].time.isoformat(), r.stats.used
    ('local', '2026-12-06T20:13:01+07:00', 2)
    """
    stats = LogStats()
    done: list[MailRecord] = []
    reader = _Reader(state, tz, log_tz or tz, stats, done)
    for line in lines:
        reader.line(line)
    stats.messages = len(done)
    return ReadResult(done, stats)


class _Reader:
    """One pass over lines; keeps the last stamp parsed (many lines share a second)."""

    def __init__(
        self,
        state: LogState,
        tz: ZoneInfo,
        log_tz: ZoneInfo,
        stats: LogStats,
        done: list[MailRecord],
    ) -> None:
        self.state, self.tz, self.log_tz, self.stats, self.done = state, tz, log_tz, stats, done
        self._stamp = ""
        self._when: datetime | None = None
        self._hours: dict[str, float] = {}

    def line(self, line: str) -> None:
        stats = self.stats
        stats.lines += 1
        m = _HEADER.match(line)
        if m is None:
            if line.strip():
                stats.damaged += 1
            else:
                stats.ignored += 1
            return
        prog = m.group("prog")
        if not prog.startswith("postfix"):
            stats.foreign += 1
            return
        when = self._time(m)
        if when is None:
            stats.damaged += 1
            return
        msg = m.group("msg")
        q = _QID.match(msg)
        if q is None:
            stats.ignored += 1  # connect, disconnect, NOQUEUE rejects, warnings, statistics
            return
        used = self._message(prog.rsplit("/", 1)[-1], q.group(1), msg[q.end() :], when)
        if used is None:
            stats.damaged += 1
        elif used:
            stats.used += 1
        else:
            stats.ignored += 1

    def _time(self, m: re.Match[str]) -> datetime | None:
        iso = m.group("iso")
        stamp = iso or m.group("mon") + m.group("day") + m.group("hms")
        if stamp == self._stamp:
            return self._when
        try:
            if iso:
                when = datetime.fromisoformat(iso).astimezone(self.tz)
            else:
                hms = m.group("hms")
                key = m.group("mon") + m.group("day") + hms[:2]
                base = self._hours.get(key)
                if base is None:
                    base = self._hours[key] = self._hour(m.group("mon"), m.group("day"), hms)
                mm, ss = int(hms[3:5]), int(hms[6:8])
                if mm > 59 or ss > 60:
                    return None
                when = datetime.fromtimestamp(base + 60 * mm + ss, self.tz)
        except (KeyError, ValueError):
            return None
        self._stamp, self._when = stamp, when
        return when

    def _hour(self, mon: str, day: str, hms: str) -> float:
        """The epoch of a syslog stamp's hour (most lines share one: computed once each).
        Exact but in the hour a DST change repeats, which a syslog stamp cannot tell apart."""
        month = _MONTHS[mon]
        state = self.state
        year = state.year
        if state.month is not None and month < state.month - 6:
            year = state.year = year + 1  # Dec -> Jan: a new year
        elif state.month is not None and month > state.month + 6:
            year -= 1  # a straggler from before the turn
        if year == state.year:
            state.month = month
        local = datetime(year, month, int(day), int(hms[:2]))
        return local.replace(tzinfo=self.log_tz).timestamp()

    def _message(self, service: str, qid: str, rest: str, when: datetime) -> bool | None:
        """Apply one ``QID: …`` line: True if it told us something, False if not needed,
        None if it should have and could not be read."""
        opened = self.state.open
        if rest.startswith("to=<"):
            return self._delivery(qid, rest, when)
        if rest.startswith("client="):
            c = _CLIENT.match(rest)
            if c is None:
                return None
            o = opened.setdefault(qid, _Open())
            o.client = c.group("client")
            s = _SASL_USER.search(c.group("rest"))
            o.sasl_username = s.group("user").lower() if s and s.group("user") else None
            o.direction = "out" if o.sasl_username else "in"
            if (oq := _ORIG_QID.search(c.group("rest"))) and (prev := opened.get(oq.group(1))):
                # A content filter gave the message back with XFORWARD: it is the same one.
                o.via_queue_id = oq.group(1)
                o.sasl_username = o.sasl_username or prev.sasl_username
                o.direction = prev.direction or o.direction
            o.first = o.first or when
            o.last = when
            return True
        if service == "pickup" and rest.startswith("uid="):
            o = opened.setdefault(qid, _Open())
            o.direction, o.first, o.last = "local", o.first or when, when
            return True
        if rest.startswith("message-id="):
            o = opened.setdefault(qid, _Open())
            o.message_id = rest[len("message-id=") :].strip() or None
            o.first = o.first or when
            o.last = when
            return True
        if rest.startswith("from=<"):
            f = _FROM.match(rest)
            if f is None:
                return None
            o = opened.setdefault(qid, _Open())
            o.sender = f.group("from").lower()
            tail = f.group("rest")
            # given up: after maximal_queue_lifetime, or by the admin (`postsuper -e`)
            if tail.startswith((", status=expired", ", status=force-expired")):
                for r in o.rcpts.values():
                    if r[0] == "deferred":
                        r[0], r[3] = "expired", when
            else:
                size, nrcpt = _SIZE.match(tail), _NRCPT.search(tail)
                o.size = int(size.group(1)) if size else o.size
                o.nrcpt = int(nrcpt.group(1)) if nrcpt else o.nrcpt
            o.first = o.first or when
            o.last = when
            return True
        if rest == "removed":
            o = opened.pop(qid) if qid in opened else _Open(first=when)
            o.last = when
            if not o.probe:
                self.done.append(o.record(qid, removed=True))
            return True
        if service == "bounce":
            n = _NOTICE.match(rest)
            if n is None:
                return False
            notice = opened.setdefault(n.group(1), _Open())
            notice.notice_of, notice.direction = qid, "local"
            notice.first = notice.first or when
            notice.last = when
            return True
        if service == "cleanup" and rest.startswith(("reject:", "milter-reject:", "discard:")):
            opened.pop(qid, None)  # refused while being received: never queued
            return True
        return False

    def _delivery(self, qid: str, rest: str, when: datetime) -> bool | None:
        t = _TO.match(rest)
        if t is None:
            return None
        o = self.state.open.setdefault(qid, _Open())
        o.last = when
        status, relay = t.group("status"), t.group("relay")
        if status in ("deliverable", "undeliverable"):
            o.probe = True  # reject_unverified_recipient or `sendmail -bv` asking, not sending
            return True
        key = f"{t.group('to').lower()}\x00{(t.group('orig') or '').lower()}"
        prev = o.rcpts.get(key)
        deferrals = (prev[4] + (prev[0] == "deferred")) if prev else 0
        handed_to = None
        if status == "sent" and (h := _HANDED.search(t.group("text") or "")):
            nxt = self.state.open.get(h.group(2))
            if nxt is not None and nxt.sasl_username is None:
                # Our own queue id. `queued as`: a content filter re-injected the message
                # (Zimbra's amavis) and the copy inherits who sent it. `forwarded as`: local(8)
                # sent it on by an alias or .forward — the server's doing, so `local`.
                handed_to = h.group(2)
                nxt.via_queue_id = qid
                if h.group(1) == "queued":
                    nxt.sasl_username = o.sasl_username
                    nxt.direction = o.direction or nxt.direction
                else:
                    nxt.direction = nxt.direction or "local"
        o.rcpts[key] = [
            status,
            None if relay == "none" else relay,
            t.group("dsn"),
            when,
            deferrals,
            handed_to,
        ]
        return True


def iter_deliveries(records: Iterable[MailRecord]) -> Iterator[tuple[MailRecord, Delivery | None]]:
    """(message, recipient) pairs, one per recipient; a message with no recipient line
    (removed before any delivery) gives one pair with None — it was still submitted."""
    for rec in records:
        if not rec.deliveries:
            yield rec, None
        for d in rec.deliveries:
            yield rec, d


def delivery_rows(records: Iterable[MailRecord]) -> list[dict[str, Any]]:
    """The ``contract.mail_logs.DELIVERIES`` rows of ``records``: one per recipient.

    >>> rows = delivery_rows([MailRecord("AB3CE20E0D0", None, "an.nv@demo.gov.vn", None,
    ...     "an.nv@demo.gov.vn", 291, None, 1, "out", None, None, True, True, ())])
    >>> rows[0]["sender_domain"], rows[0]["recipient"], rows[0]["log_date"]
    ('demo.gov.vn', None, None)
    """
    rows = []
    for rec, d in iter_deliveries(records):
        rows.append(
            {
                "log_date": rec.time.date() if rec.time else None,
                "queue_id": rec.queue_id,
                "time": rec.time,
                "direction": rec.direction,
                "sasl_username": rec.sasl_username,
                "client": rec.client,
                "sender": rec.sender,
                "sender_domain": rec.sender_domain,
                "size": rec.size,
                "message_id": rec.message_id,
                "nrcpt": rec.nrcpt,
                "notice_of": rec.notice_of,
                "via_queue_id": rec.via_queue_id,
                "complete": rec.complete,
                "removed": rec.removed,
                "recipient": d.recipient if d else None,
                "orig_recipient": d.orig_recipient if d else None,
                "recipient_domain": d.domain if d else None,
                "status": d.status if d else None,
                "relay": d.relay if d else None,
                "dsn": d.dsn if d else None,
                "status_time": d.time if d else None,
                "deferrals": d.deferrals if d else None,
                "handed_to": d.handed_to if d else None,
            }
        )
    return rows
