"""What was mailed to whom, in the state store (``_state/store.sqlite``): the month's
bundles (table ``deliveries``) and the reminders (``reminders``), one row per attempt.

A message's row is written as ``sending`` before the server is given it and made ``sent``
or ``failed`` after, so that a run killed in between leaves a row that says the message
may have gone: it is not sent again without ``--resend`` (a duplicate to a chairman is
worse than a question to the operator). A rerun, or a Prefect retry, skips what is
``sent`` or ``sending`` and tries only the rest.

    >>> box = Outbox(DataDir(Path("data")), "deliveries")
    >>> box.done({"month": "2026-11", "bundle": "reports/2026-11", "recipient": "a@x.vn"})
    Sent(outcome='sent', message_id='<...@danang.gov.vn>', finished_at='2026-12-01T06:02:11+00:00')
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import make_msgid
from typing import Literal

from pipelines.mailer import Mailer, Outgoing, SendFailed, compose
from pipelines.storage import DataDir

Table = Literal["deliveries", "reminders"]
# Each table's key: one message per key value, unless resent. Fixed names, never input.
KEYS: dict[str, tuple[str, ...]] = {
    "deliveries": ("month", "bundle", "recipient"),
    "reminders": ("day", "kind", "unit_code", "recipient"),
}
PAYLOAD = {"deliveries": "attachments", "reminders": "people"}


@dataclass(frozen=True)
class Sent:
    """The last attempt of a key that counts as sent (or possibly sent)."""

    outcome: str  # "sent", or "sending": killed after the row, the message may have gone
    message_id: str
    finished_at: str | None


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class Outbox:
    """One table of the store's mail record."""

    def __init__(self, data: DataDir, table: Table) -> None:
        if table not in KEYS:
            raise ValueError(f"unknown outbox table {table!r}")
        self.data, self.table, self.keys = data, table, KEYS[table]

    def _where(self) -> str:
        return " and ".join(f"{k} = ?" for k in self.keys)

    def done(self, key: Mapping[str, str]) -> Sent | None:
        """The attempt that sent (or may have sent) this key's message; None: not sent."""
        with self.data.db() as con:
            row = con.execute(
                f"select outcome, message_id, finished_at from {self.table} "
                f"where {self._where()} and outcome in ('sent', 'sending') "
                "order by seq desc limit 1",
                [key[k] for k in self.keys],
            ).fetchone()
        return Sent(*row) if row else None

    def begin(self, key: Mapping[str, str], message_id: str, payload: str) -> int:
        """Record an attempt as ``sending`` (committed before the message is handed over)."""
        cols = (*self.keys, "message_id", PAYLOAD[self.table], "started_at", "outcome", "detail")
        values = [*(key[k] for k in self.keys), message_id, payload, _now(), "sending", ""]
        with self.data.db() as con, con:
            cur = con.execute(
                f"insert into {self.table} ({', '.join(cols)}) "
                f"values ({', '.join('?' for _ in cols)})",
                values,
            )
            return int(cur.lastrowid or 0)

    def finish(self, seq: int, outcome: Literal["sent", "failed"], detail: str = "") -> None:
        with self.data.db() as con, con:
            con.execute(
                f"update {self.table} set outcome = ?, detail = ?, finished_at = ? where seq = ?",
                (outcome, detail, _now(), seq),
            )

    def rows(self, **where: str) -> list[dict[str, object]]:
        """Every attempt matching ``where`` (key columns only), oldest first."""
        unknown = set(where) - set(self.keys)
        if unknown:
            raise ValueError(f"not a key of {self.table}: {sorted(unknown)}")
        clause = " and ".join(f"{k} = ?" for k in where) or "1 = 1"
        with self.data.db() as con:
            cur = con.execute(
                f"select * from {self.table} where {clause} order by seq", list(where.values())
            )
            names = [d[0] for d in cur.description]
            return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


@dataclass(frozen=True)
class Result:
    """What became of one message handed to :func:`send_recorded`."""

    outcome: Literal["sent", "failed"]
    message_id: str  # "" when the session failed before the message was made
    detail: str = ""
    transient: bool = False  # failed, and a later try may pass


def send_recorded(
    box: Outbox,
    items: Sequence[tuple[Mapping[str, str], str, Outgoing]],
    session: Callable[[], AbstractContextManager[Mailer]],
    sender: str,
    sender_name: str,
) -> list[Result]:
    """Send each ``(key, payload, message)`` over one session, each attempt recorded:
    ``sending`` before the server is given it, ``sent`` or ``failed`` after. A message the
    server refuses (a 5xx) fails alone; a session that cannot open, or a dropped connection
    or a 4xx, fails the rest too (each recorded, to be tried by the next run or retry).
    The results are in the order of ``items``."""
    domain = sender.rsplit("@", 1)[1]
    results: list[Result] = []
    pending = list(items)
    try:
        with session() as mailer:
            while pending:
                key, payload, message = pending[0]
                msgid = make_msgid(domain=domain)
                seq = box.begin(key, msgid, payload)
                try:
                    mailer.send(compose(sender, sender_name, message, msgid))
                except SendFailed as exc:
                    box.finish(seq, "failed", str(exc))
                    results.append(Result("failed", msgid, str(exc), exc.transient))
                    pending.pop(0)
                    if exc.transient:  # the session may be gone: the rest wait
                        raise
                    continue
                box.finish(seq, "sent")
                results.append(Result("sent", msgid))
                pending.pop(0)
    except SendFailed as exc:
        for key, payload, _ in pending:
            box.finish(box.begin(key, "", payload), "failed", str(exc))
            results.append(Result("failed", "", str(exc), exc.transient))
    return results
