"""The mail system's own logs, collected every night: the ``mail_log_deliveries`` dataset.

Each ``[[mail_logs]]`` source is read on from its cursor through the one log reader
(connectors/logfiles.py: rotations, compression, a partial last line left for the next
night), its lines assembled by queue id (connectors/postfix_log.py), and written to
``mail_log_deliveries/night=N/<source>.parquet``. Then its commit record — the cursor and
the parser's open queue ids, where the night started and where it stopped — is committed
in the store beside the login logs' (``DataDir.commit_log`` under ``mail_logs:<source>``):
re-running a night re-reads the same lines, a run killed before the commit loses none
(its file is replaced or removed by the next run), and ``forget-night`` undoes it.

A message still queued (deferred) is not written: its queue id is carried to the next
night. One with no line for ``stale_after_days`` is written with ``removed`` false.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pyarrow as pa

from connectors.logfiles import LogFileError, LogRead, Seen, iter_lines
from connectors.postfix_log import LogState as ParserState
from connectors.postfix_log import LogStats, MailRecord, delivery_rows, read_chunk
from contract.mail_logs import MAIL_LOG_DELIVERIES
from pipelines.config import MailLogConfig
from pipelines.storage import MAIL_LOG_DATASET, MAIL_LOG_KEY, DataDir, LogState


class MailLogError(Exception):
    """A mail log cannot be read tonight; the message names the file and why."""


@dataclass
class MailLogNight:
    """What one night's read of a mail log did (the night's outcome says it)."""

    rows: int = 0
    stats: LogStats = field(default_factory=LogStats)
    ignored: int = 0  # messages of the collector's own test mail
    stale: int = 0  # messages given up on (no line for stale_after_days)
    still_open: int = 0  # queue ids carried to the next night (deferred)
    rotation_lost: bool = False
    dropped: int = 0  # bytes of an unfinished last line in a rotated file
    # the mailboxes tonight's lines say changed: users who submitted, recipients delivered
    # to, and when the log was last written (pipelines/quiet.py)
    seen: Seen = field(default_factory=Seen)

    def notes(self) -> str:
        """What an operator should know of this read ("" when nothing).

        >>> MailLogNight(rows=3, stale=1).notes()
        '1 message(s) given up on (no line for too long: written with removed false)'
        """
        out = []
        if self.rotation_lost:
            out.append(
                "the file read last night was not found among the rotated logs: "
                "lines between may be missing"
            )
        if self.stats.damaged:
            out.append(f"{self.stats.damaged} line(s) not understood")
        if self.dropped:
            out.append(f"{self.dropped} byte(s) of an unfinished line in a rotated log dropped")
        if self.stale:
            out.append(
                f"{self.stale} message(s) given up on (no line for too long: written with "
                "removed false)"
            )
        return "; ".join(out)


def key_of(src: MailLogConfig) -> str:
    """The source's commit record in the store.

    >>> key_of(MailLogConfig("postfix", "postfix", "/var/log/mail.log"))
    'mail_logs:postfix'
    """
    return MAIL_LOG_KEY + src.name


def collect_mail_log(
    src: MailLogConfig, night: str, data: DataDir, timezone: str, now: datetime | None = None
) -> MailLogNight:
    """Read one mail log for one night, write its rows, commit where it stopped.
    ``timezone`` is the agency's: every time and ``log_date`` is in it. Raises
    MailLogError (nothing written, nothing committed) when the log cannot be read, and
    NightConflict when a later night is already read from it."""
    key = key_of(src)
    record = data.log_state(key)
    start = record.start(key, night) if record else None
    carried = record.carried(key, night) if record else None
    data.drop_uncommitted(MAIL_LOG_DATASET, src.name, record.night if record else "", night)
    tz, log_tz = ZoneInfo(timezone), ZoneInfo(src.timezone)
    result = MailLogNight()
    read = LogRead(src.path, start, backlog=start is None)  # a first night reads the rotations
    state: list[ParserState] = [ParserState.from_json(carried)] if carried else []
    given_up = (now or datetime.now(tz)) - timedelta(days=src.stale_after_days)
    senders, accounts = set(src.ignore_senders), set(src.ignore_accounts)

    def tables() -> Iterator[pa.Table]:
        for piece in read:
            if not state:  # the log's first read: the year its syslog stamps are in
                first = next(iter_lines(piece.data), b"").decode("utf-8", "replace")
                state.append(ParserState.seeded(first, piece.written.astimezone(log_tz)))
            r = read_chunk(piece.data, state[0], tz=tz, log_tz=log_tz)
            result.stats.add(r.stats)
            _changed(r.messages, result.seen)
            yield _table(r.messages, senders, accounts, result)
        if state:  # delivered tonight, its queue id not yet removed: the mailbox changed
            _changed(state[0].open_messages(), result.seen)
        stale = state[0].drop_stale(given_up) if state else []
        result.stale = len(stale)
        yield _table(stale, senders, accounts, result)

    try:
        _, result.rows = data.write_batches(
            MAIL_LOG_DATASET, night, src.name, MAIL_LOG_DELIVERIES, tables()
        )
    except LogFileError as exc:
        raise MailLogError(str(exc)) from exc
    except OSError as exc:  # an unreadable rotated file, a read error: this source fails
        raise MailLogError(f"{src.path}: {exc}") from exc
    assert read.cursor is not None
    result.rotation_lost, result.dropped = read.rotation_lost, read.dropped
    result.seen.after(read)
    result.still_open = len(state[0].open) if state else 0
    after = state[0].to_json() if state else None
    data.commit_log(key, LogState(night, start, read.cursor, False, carried, after))
    return result


def _changed(records: list[MailRecord], into: Seen) -> None:
    """The mailboxes these messages changed: their authenticated sender (a client may have
    saved a copy in Sent) and every recipient a copy was delivered to."""
    for rec in records:
        if rec.sasl_username:
            into.changed.add(rec.sasl_username.lower())
        sent = [d.recipient.lower() for d in rec.deliveries if d.status == "sent"]
        into.changed.update(sent)
        into.named.update(sent)
        for when in (rec.time, *(d.time for d in rec.deliveries)):
            if when is not None:
                into.dated(when)


def _table(
    records: list[MailRecord], senders: set[str], accounts: set[str], result: MailLogNight
) -> pa.Table:
    kept = [r for r in records if not _test_mail(r, senders, accounts)]
    result.ignored += len(records) - len(kept)
    return pa.Table.from_pylist(delivery_rows(kept), schema=MAIL_LOG_DELIVERIES)


def _test_mail(rec: MailRecord, senders: set[str], accounts: set[str]) -> bool:
    """The collector's own test mail: sent by an ignored account or sender, or Postfix's
    notice (a bounce) about it, which goes back to that sender."""
    if rec.sasl_username in accounts or (rec.sender and rec.sender in senders):
        return True
    return bool(
        rec.notice_of and rec.deliveries and all(d.recipient in senders for d in rec.deliveries)
    )
