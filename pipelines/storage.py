"""The data directory's writer: one Parquet file per dataset per night, one SQLite state file.

    data/
      messages/night=2026-11-23/part-0.parquet        every mailbox's new messages that night
      mailbox_status/night=2026-11-23/part-0.parquet  one row per mailbox and folder
      forwarding/…/part-0.parquet, contacts/…/part-0.parquet
      runs/night=…/<run_id>.parquet, run_mailboxes/night=…/<run_id>.parquet
      logins/night=…/<source>.parquet                 (pipelines/signals.py)
      mail_log_deliveries/night=…/<source>.parquet    (pipelines/mail_logs.py)
      _state/store.sqlite                             cursors (mailboxes', login and mail logs'),
                                                      folder index, files to publish,
                                                      what was mailed (pipelines/outbox.py)
      _state/staging/<run_id>/                        a running night's staged rows

A night is written in four steps, so that a kill at any point loses and duplicates nothing:

1. **stage**   a mailbox's rows, once the whole mailbox is read, go into its shard's
               staging files. Nothing a reader sees changes.
2. **build**   each dataset's night file is built in staging: the night's committed file
               without the rows of mailboxes collected again tonight, plus the staged rows,
               sorted by sent date (a month's query skips other months' row groups). Nights
               holding rows that a UIDVALIDITY reset or a rename replaces are rebuilt too —
               found through the folder index, never by scanning other nights.
3. **commit**  one SQLite transaction stores every collected mailbox's cursors, the folder
               index and the list of built files to publish. This is the commit point.
4. **publish** each built file is renamed over its target (atomic per file); the list is
               then cleared. A run killed inside 4 is finished by the next run's start.

A run killed before 3 leaves only its staging directory, which the next run removes. Why
SQLite: it is in the standard library, its transactions survive kill -9 and power loss,
one file holds 50,000 cursors in a few MB, and readers of the data never need it.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from contextlib import closing, contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from connectors.base import FolderCursor, Message
from connectors.logfiles import LogCursor
from contract.datasets import (
    CONTACTS,
    FORWARDING,
    MAILBOX_STATUS,
    MESSAGES,
)
from contract.files import atomic_path, fsync_dir

# The datasets written once per night from every mailbox's staged rows, with the order
# their night file is sorted in (deterministic: a night collected twice is the same file).
NIGHT_DATASETS: dict[str, tuple[pa.Schema, str]] = {
    "messages": (MESSAGES, "sent_date, mailbox, folder, uidvalidity, uid"),
    "mailbox_status": (MAILBOX_STATUS, "mailbox, folder"),
    "forwarding": (FORWARDING, "all"),
    "contacts": (CONTACTS, "all"),
}
ROW_GROUP = 65_536  # rows per row group: small enough for sent_date statistics to skip
# Where releases before the one cursor store kept a log source's read position
# (<source>.json); migrated into the state database on first use, then removed.
OLD_LOG_STATES = "_state/logs"
LAYOUT = "2"  # one file per dataset per night (1: one file per mailbox per night)


def mailbox_key(mailbox: str) -> str:
    """A file name for a mailbox (the layout-1 file stem): readable and unique.

    >>> mailbox_key("An.NV@danang.gov.vn")
    'an.nv@danang.gov.vn'
    """
    lowered = mailbox.lower()
    safe = re.sub(r"[^a-z0-9@._+-]", "_", lowered)
    if safe != lowered or safe.startswith("."):
        safe = f"{safe.lstrip('.')}-{hashlib.sha256(lowered.encode()).hexdigest()[:8]}"
    return safe


def messages_table(
    source: str,
    mailbox: str,
    uidvalidity: dict[str, int],
    roles: dict[str, str],
    batch: list[Message],
) -> pa.Table:
    """Columns of a batch of Message for the ``messages`` dataset, matched by name: each
    Message field fills the schema's column of the same name, and the four columns a
    Message does not carry (source, mailbox, role, uidvalidity) come from the mailbox."""
    cols = dict(zip(Message._fields, zip(*batch, strict=True), strict=True))
    folders = cols["folder"]
    n = len(batch)
    cols |= {
        "source": (source,) * n,
        "mailbox": (mailbox,) * n,
        "role": tuple(roles[f] for f in folders),
        "uidvalidity": tuple(uidvalidity[f] for f in folders),
    }
    return pa.Table.from_arrays(
        [
            # epoch seconds: as integers first, then the schema's UTC timestamp
            pa.array(cols[f.name], pa.int64()).cast(f.type)
            if pa.types.is_timestamp(f.type)
            else pa.array(cols[f.name], f.type)
            for f in MESSAGES
        ],
        schema=MESSAGES,
    )


@dataclass
class MailboxState:
    """The commit record of one mailbox: which night, and the cursors before and after it.

    ``before`` is None only after `forget-night` restored a night whose own start is no
    longer kept (a store written before the cursor history, or older than it): that night
    is then not collected again, later nights are.
    """

    night: str
    before: dict[str, FolderCursor] | None
    after: dict[str, FolderCursor]

    def to_json(self) -> str:
        def cursors(c: dict[str, FolderCursor]) -> dict[str, dict[str, int | str | None]]:
            # Spelled out: dataclasses.asdict deep-copies, 4x slower for 10,000 mailboxes.
            out: dict[str, dict[str, int | str | None]] = {}
            for k, v in sorted(c.items()):
                out[k] = {"uidvalidity": v.uidvalidity, "last_uid": v.last_uid,
                          "highestmodseq": v.highestmodseq}  # fmt: skip
                if v.token is not None:  # Graph's delta link: absent for IMAP and EWS
                    out[k]["token"] = v.token
            return out

        before = None if self.before is None else cursors(self.before)
        return json.dumps(
            {"night": self.night, "before": before, "after": cursors(self.after)},
            separators=(",", ":"),
            ensure_ascii=False,
        )

    @classmethod
    def from_json(cls, text: str) -> MailboxState:
        raw = json.loads(text)
        before = raw["before"]
        return cls(
            raw["night"],
            None if before is None else {k: FolderCursor(**v) for k, v in before.items()},
            {k: FolderCursor(**v) for k, v in raw["after"].items()},
        )

    def start(self, mailbox: str, night: str) -> dict[str, FolderCursor]:
        """The cursors a collection of ``night`` starts from.

        Re-collecting the night last committed starts again from the cursors that night
        started from, so running the same night twice leaves the same data.
        """
        if night < self.night:
            raise NightConflict(
                f"night {self.night} is already collected for {mailbox}; "
                f"collecting the earlier night {night} would count messages twice"
                f" (if night {self.night} was a mistake: mailusage forget-night {self.night})"
            )
        if night > self.night:
            return dict(self.after)
        if self.before is None:
            raise NightConflict(
                f"night {night} cannot be collected again for {mailbox}: forget-night kept "
                "the cursors it ended with, not those it started from; collect a later night"
            )
        return dict(self.before)


# A mail log source's commit record is kept beside the login logs' under this prefix and
# its name (names hold no ':', so the two never meet); its night file is in MAIL_LOG_DATASET.
MAIL_LOG_KEY = "mail_logs:"
MAIL_LOG_DATASET = "mail_log_deliveries"


def log_file_of(key: str) -> tuple[str, str]:
    """The dataset and file stem a log source's night is written to, from its key.

    >>> log_file_of("mail_logs:postfix"), log_file_of("dovecot-log-0")
    (('mail_log_deliveries', 'postfix'), ('logins', 'dovecot-log-0'))
    """
    if key.startswith(MAIL_LOG_KEY):
        return MAIL_LOG_DATASET, key.removeprefix(MAIL_LOG_KEY)
    return "logins", key


@dataclass
class LogState:
    """The commit record of one log source (a login log: pipelines/signals; a mail log:
    pipelines/mail_logs): which night, and where reading started and stopped.

    ``before`` is None for the night that read the log from its start; ``before_unknown``
    marks a record that `forget-night` restored without that night's own start (kept no
    longer): that night is then not read again, later nights are. ``carried_before`` and
    ``carried_after``: what the log's parser carries from one night to the next at those
    two points, as its own JSON (Postfix: the queue ids still open); None for login logs.
    """

    night: str
    before: LogCursor | None
    after: LogCursor | None
    before_unknown: bool = False
    carried_before: str | None = None
    carried_after: str | None = None

    def to_json(self) -> str:
        def cursor(c: LogCursor | None) -> dict[str, Any] | None:
            return None if c is None else {"inode": c.inode, "offset": c.offset, "head": c.head}

        raw: dict[str, Any] = {
            "night": self.night, "before": cursor(self.before), "after": cursor(self.after),
        }  # fmt: skip
        if self.before_unknown:
            raw["before_unknown"] = True
        if self.carried_before is not None:
            raw["carried_before"] = self.carried_before
        if self.carried_after is not None:
            raw["carried_after"] = self.carried_after
        return json.dumps(raw, separators=(",", ":"), ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str) -> LogState:
        raw = json.loads(text)
        return cls(
            raw["night"],
            LogCursor(**raw["before"]) if raw.get("before") else None,
            LogCursor(**raw["after"]) if raw.get("after") else None,
            bool(raw.get("before_unknown")),
            raw.get("carried_before"),
            raw.get("carried_after"),
        )

    def start(self, source: str, night: str) -> LogCursor | None:
        """Where reading ``night`` starts: re-reading the night last committed starts where
        that night started (the same lines again), a later night where it stopped."""
        if night < self.night:
            raise NightConflict(
                f"night {self.night} is already read from {source}"
                f" (if night {self.night} was a mistake: mailusage forget-night {self.night})"
            )
        if night > self.night:
            return self.after
        if self.before_unknown:
            raise NightConflict(
                f"night {night} cannot be read again from {source}: forget-night kept the "
                "position it ended at, not the one it started from; collect a later night"
            )
        return self.before

    def carried(self, source: str, night: str) -> str | None:
        """What the parser carried at the point :meth:`start` gives for ``night``."""
        return self.carried_after if night > self.night else self.carried_before


@dataclass
class MailboxRows:
    """One mailbox's rows of tonight, staged only once the whole mailbox was read."""

    messages: list[pa.Table] = field(default_factory=list)
    # Rows as dicts: a quiet mailbox's two rows are cheaper gathered than made a table each.
    mailbox_status: list[dict[str, Any]] = field(default_factory=list)
    forwarding: pa.Table | None = None
    contacts: pa.Table | None = None


@dataclass
class Collected:
    """What the commit needs of a mailbox read in full tonight."""

    mailbox: str
    state: MailboxState
    # (folder, uidvalidity) -> rows staged tonight: the folder index's new entries
    folder_rows: dict[tuple[str, int], int]
    # Rows of other nights to drop: (folder, UIDVALIDITY to keep); None keeps none (renamed)
    drops: list[tuple[str, int | None]]


@dataclass
class ForgetPlan:
    """What `forget-night NIGHT` restores and removes (see :meth:`DataDir.plan_forget`)."""

    night: str
    # mailbox -> the commit record it goes back to (None: it had no night before)
    restore: dict[str, MailboxState | None] = field(default_factory=dict)
    # log source -> the commit record it goes back to (None: it had no night before)
    logs: dict[str, LogState | None] = field(default_factory=dict)
    files: list[Path] = field(default_factory=list)
    # mailbox or logins:<source> -> the later night committed after this one
    later: dict[str, str] = field(default_factory=dict)
    # mailboxes restored to the cursors the night started from, whose own previous start
    # is not kept (that earlier night can then not be collected again; later ones can)
    unknown_start: list[str] = field(default_factory=list)

    def refusal(self) -> str:
        """Why the night may not be forgotten ("" when it may)."""
        if not self.later:
            return ""
        nights = sorted(set(self.later.values()))
        shown = ", ".join(f"{m} ({n})" for m, n in list(self.later.items())[:5])
        more = f" and {len(self.later) - 5} more" if len(self.later) > 5 else ""
        return (
            f"night {self.night} is not the latest committed night of {len(self.later)} "
            f"mailbox(es): {shown}{more}; forget the later night(s) first, newest first "
            f"({', '.join(reversed(nights))}) — nothing was changed"
        )


class NightConflict(Exception):
    """A later night is already committed for this mailbox: collecting an earlier one
    would fetch its messages twice."""


class CollectionBusy(Exception):
    """Another collection holds this data directory."""


_SCHEMA = """
create table if not exists meta (key text primary key, value text not null);
create table if not exists cursors (
    mailbox text primary key, night text not null, state text not null);
create table if not exists folder_nights (
    mailbox text not null, folder text not null, uidvalidity integer not null,
    night text not null, rows integer not null,
    primary key (mailbox, folder, uidvalidity, night));
create table if not exists publish (
    seq integer primary key, staged text, target text not null);
create table if not exists cursor_history (
    mailbox text not null, night text not null, state text not null,
    primary key (mailbox, night));
create table if not exists log_cursors (
    source text primary key, night text not null, state text not null);
create table if not exists log_cursor_history (
    source text not null, night text not null, state text not null,
    primary key (source, night));
create table if not exists deliveries (
    seq integer primary key, month text not null, bundle text not null,
    recipient text not null, message_id text not null, attachments text not null,
    started_at text not null, finished_at text, outcome text not null, detail text not null);
create index if not exists deliveries_key on deliveries (month, bundle, recipient);
create table if not exists reminders (
    seq integer primary key, day text not null, kind text not null, unit_code text not null,
    recipient text not null, people text not null, message_id text not null,
    started_at text not null, finished_at text, outcome text not null, detail text not null);
create index if not exists reminders_key on reminders (day, kind, unit_code, recipient);
"""
# Nights of commit records kept in cursor_history and log_cursor_history: what
# `forget-night` restores from.
HISTORY_NIGHTS = 14


class DataDir:
    """The data directory: its lock, its state database and its night files."""

    def __init__(self, root: Path) -> None:
        self.root = root

    @contextmanager
    def collect_lock(self, night: str) -> Iterator[None]:
        """One collection at a time per data directory.

        An flock(2) on ``_state/collect.lock``: the kernel releases it when the holder
        exits, however it exits (kill -9 included), so a stale lock cannot outlive a run.
        The file's text names the holder for the message a second run prints.
        """
        path = self.root / "_state" / "collect.lock"
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 512, 0).decode("utf-8", "replace").strip()
                raise CollectionBusy(
                    f"another collection is running on {self.root} ({holder or 'holder unknown'}); "
                    "wait for it to finish, or stop it — this run changed nothing"
                ) from None
            os.ftruncate(fd, 0)
            started = datetime.now(UTC).isoformat(timespec="seconds")
            os.pwrite(fd, f"pid {os.getpid()}, night {night}, started {started}\n".encode(), 0)
            yield
        finally:
            os.close(fd)  # closing the descriptor releases the lock

    def dataset(self, name: str) -> Path:
        return self.root / name

    def night_file(self, dataset: str, night: str, stem: str = "part-0") -> Path:
        return self.root / dataset / f"night={night}" / f"{stem}.parquet"

    @property
    def staging(self) -> Path:
        return self.root / "_state" / "staging"

    # -- the state database ----------------------------------------------------------------

    @contextmanager
    def db(self) -> Iterator[sqlite3.Connection]:
        """The state database; a ``with con:`` block inside is one transaction."""
        path = self.root / "_state" / "store.sqlite"
        path.parent.mkdir(parents=True, exist_ok=True)
        with closing(sqlite3.connect(path, timeout=60)) as con:
            con.execute("pragma journal_mode = wal")
            con.execute("pragma synchronous = full")
            con.executescript(_SCHEMA)
            yield con

    def layout(self) -> str | None:
        with self.db() as con:
            row = con.execute("select value from meta where key = 'layout'").fetchone()
        return row[0] if row else None

    def changed_only_since(self) -> str | None:
        """The first night of the nights in a row run with ``collect.changed_only``, which
        read their logs before their mailboxes (pipelines/quiet.py); None when the last
        night committed did not."""
        return self.meta("changed_only_since")

    def set_changed_only_since(self, night: str | None) -> None:
        self.set_meta("changed_only_since", night)

    def last_reasons(self, night: str, mailboxes: Iterable[str]) -> dict[str, str]:
        """Each mailbox's ``run_mailboxes.reason`` of the last run of ``night`` that had it."""
        files = sorted((self.root / "run_mailboxes" / f"night={night}").glob("*.parquet"))
        wanted, out = set(mailboxes), {}
        for path in files:  # run ids sort by their start: the last run's reason wins
            table = pq.read_table(path, columns=["mailbox", "reason"])
            for mailbox, reason in zip(
                table["mailbox"].to_pylist(), table["reason"].to_pylist(), strict=True
            ):
                if mailbox in wanted:
                    out[mailbox] = reason or ""
        return out

    def drop_uncommitted(self, dataset: str, name: str, committed: str, night: str) -> None:
        """Remove a log source's files of ``dataset`` for nights after its last committed
        one (other than ``night``'s, which is written over): a run killed between writing
        and committing left them, and tonight reads their lines again — kept, they would
        be counted twice."""
        for path in self.root.glob(f"{dataset}/night=*/{name}.parquet"):
            other = path.parent.name.removeprefix("night=")
            if other > committed and other != night:
                path.unlink()

    def meta(self, key: str) -> str | None:
        """A setting of the store (``meta``), None when unset."""
        with self.db() as con:
            row = con.execute("select value from meta where key = ?", (key,)).fetchone()
        return row[0] if row else None

    def set_meta(self, key: str, value: str | None) -> None:
        """Set (None: remove) a setting of the store."""
        with self.db() as con, con:
            if value is None:
                con.execute("delete from meta where key = ?", (key,))
            else:
                con.execute("insert or replace into meta values (?, ?)", (key, value))

    def states(self) -> dict[str, MailboxState]:
        """Every mailbox's commit record (one query, whatever the number of nights)."""
        with self.db() as con:
            rows = con.execute("select mailbox, state from cursors").fetchall()
        return {m: MailboxState.from_json(s) for m, s in rows}

    def rows_of(
        self, dataset: str, night: str, mailboxes: Iterable[str]
    ) -> dict[str, list[dict[str, Any]]]:
        """The rows ``mailboxes`` have in ``dataset``'s file of ``night``, by mailbox, in
        the file's order (none when the file does not exist)."""
        path = self.night_file(dataset, night)
        if not path.exists():
            return {}
        wanted = pa.array(sorted(set(mailboxes)), pa.string())
        table = pq.read_table(path)
        table = table.filter(pc.is_in(table["mailbox"], value_set=wanted))
        out: dict[str, list[dict[str, Any]]] = {}
        for row in table.to_pylist():
            out.setdefault(row["mailbox"], []).append(row)
        return out

    def stored_rows(self, mailboxes: Iterable[str], night: str) -> dict[str, int]:
        """Messages each mailbox has stored under ``night`` (from the folder index, by its
        primary key): what re-collecting that night replaces.

        >>> DataDir(root).stored_rows(["an.nv@danang.gov.vn"], "2026-11-22")
        {'an.nv@danang.gov.vn': 17}
        """
        with self.db() as con:
            return {
                m: con.execute(
                    "select coalesce(sum(rows), 0) from folder_nights "
                    "where mailbox = ? and night = ?",
                    (m, night),
                ).fetchone()[0]
                for m in mailboxes
            }

    def state(self, mailbox: str) -> MailboxState | None:
        with self.db() as con:
            row = con.execute("select state from cursors where mailbox = ?", (mailbox,)).fetchone()
        return MailboxState.from_json(row[0]) if row else None

    # -- login log sources' read positions ---------------------------------------------------

    def log_states(self) -> dict[str, LogState]:
        """Every login log source's commit record."""
        self._migrate_log_files()
        with self.db() as con:
            rows = con.execute("select source, state from log_cursors").fetchall()
        return {name: LogState.from_json(s) for name, s in rows}

    def log_state(self, source: str) -> LogState | None:
        self._migrate_log_files()
        with self.db() as con:
            row = con.execute(
                "select state from log_cursors where source = ?", (source,)
            ).fetchone()
        return LogState.from_json(row[0]) if row else None

    def commit_log(self, source: str, state: LogState) -> None:
        """Commit a log source's night (after its file is written): its record and the
        history forget-night restores from, in one transaction."""
        self._migrate_log_files()
        record = (source, state.night, state.to_json())
        with self.db() as con, con:
            con.execute("insert or replace into log_cursors values (?, ?, ?)", record)
            _keep_history(con, [record], "log_cursor_history")

    def _migrate_log_files(self) -> None:
        """Move the JSON read positions of releases before the one store into it.

        Each ``_state/logs/<source>.json`` ({night, before, after, previous}) becomes its
        commit record, and ``previous`` (the night it replaced, as forget-night restores
        it) a history record ending where the current night started. One transaction,
        then the files go; killed between, the next use imports the same records again.
        """
        old = self.root / OLD_LOG_STATES
        paths = sorted(old.glob("*.json")) if old.is_dir() else []
        if not paths:
            return
        records, history = [], []
        for path in paths:
            raw = json.loads(path.read_text(encoding="utf-8"))
            state = LogState.from_json(json.dumps(raw))
            records.append((path.stem, state.night, state.to_json()))
            history.append(records[-1])
            previous = raw.get("previous")
            if previous:
                earlier = LogState.from_json(json.dumps({**previous, "after": raw["before"]}))
                history.append((path.stem, earlier.night, earlier.to_json()))
        with self.db() as con, con:
            con.executemany("insert or replace into log_cursors values (?, ?, ?)", records)
            con.executemany("insert or replace into log_cursor_history values (?, ?, ?)", history)
        for path in paths:
            path.unlink()
        with suppress(OSError):
            old.rmdir()

    # -- recovery --------------------------------------------------------------------------

    def recover(self, night: str | None = None) -> None:
        """Finish what a killed run committed, and drop what it did not.

        Files listed for publication were committed: rename them into place (a rename
        already done is skipped). Staging directories are uncommitted leftovers, and so
        are temp files of a login source's write for ``night`` (never read: not .parquet;
        only tonight's directory is looked at, never the other nights').
        """
        with self.db() as con:
            pending = con.execute("select staged, target from publish order by seq").fetchall()
            if pending:
                _publish(self.root, pending)
                with con:
                    con.execute("delete from publish")
        if self.staging.exists():
            shutil.rmtree(self.staging)
        if night is not None:
            for dataset in ("logins", MAIL_LOG_DATASET):
                for path in self.root.glob(f"{dataset}/night={night}/.*.tmp"):
                    path.unlink(missing_ok=True)

    # -- forgetting a night -----------------------------------------------------------------

    def plan_forget(self, night: str) -> ForgetPlan:
        """What `forget-night` would do to ``night``: the commit records to restore, the
        files to remove, and what refuses it (a mailbox or log collected after it).

        >>> DataDir(root).plan_forget("2027-01-15").restore
        {'an.nv@danang.gov.vn': MailboxState(night='2026-12-02', before={...}, after={...})}
        """
        plan = ForgetPlan(night)
        plan.files = sorted(
            p for p in self.root.glob(f"*/night={night}/*") if not p.parts[-3].startswith("_")
        )
        status = self.night_file("mailbox_status", night)
        there: set[str] = set()
        if status.exists():  # the mailboxes collected that night
            there = set(pq.read_table(status, columns=["mailbox"])["mailbox"].to_pylist())
        states = self.states()
        unknown: list[str] = []
        with self.db() as con:
            for mailbox, state in sorted(states.items()):
                if state.night > night and mailbox in there:
                    plan.later[mailbox] = state.night
                if state.night != night:
                    continue
                row = con.execute(
                    "select state from cursor_history where mailbox = ? and night < ? "
                    "order by night desc limit 1",
                    (mailbox, night),
                ).fetchone()
                earlier = MailboxState.from_json(row[0]) if row else None
                if earlier is not None and earlier.after == state.before:
                    plan.restore[mailbox] = earlier
                elif not state.before:  # the mailbox's first night: it goes back to none
                    plan.restore[mailbox] = None
                else:
                    unknown.append(mailbox)
        if unknown:  # before the cursor history, or older than it: its night is looked up
            found = self._last_nights("mailbox_status", night, set(unknown))
            for mailbox in unknown:
                before = states[mailbox].before
                assert before is not None
                plan.restore[mailbox] = MailboxState(found.get(mailbox, ""), None, before)
            plan.unknown_start = unknown
        logs = self.log_states()
        with self.db() as con:
            for name, log in sorted(logs.items()):
                dataset, stem = log_file_of(name)
                if log.night > night and self.night_file(dataset, night, stem).exists():
                    plan.later[name if dataset != "logins" else f"logins:{name}"] = log.night
                if log.night != night:
                    continue
                row = con.execute(
                    "select state from log_cursor_history where source = ? and night < ? "
                    "order by night desc limit 1",
                    (name, night),
                ).fetchone()
                earlier_log = LogState.from_json(row[0]) if row else None
                if earlier_log is not None and earlier_log.after == log.before:
                    plan.logs[name] = earlier_log
                elif log.before is None:  # the night read the log from its start
                    plan.logs[name] = None
                else:
                    last = self._last_log_night(name, night)
                    plan.logs[name] = LogState(
                        last, None, log.before, before_unknown=True,
                        carried_after=log.carried_before,
                    )  # fmt: skip
        return plan

    def _last_nights(self, dataset: str, night: str, mailboxes: set[str]) -> dict[str, str]:
        """The latest night before ``night`` each mailbox has rows in (newest first, so
        usually one file is read)."""
        found: dict[str, str] = {}
        nights = sorted((p.name.removeprefix("night=") for p in self.dataset(dataset).glob(
            "night=*")), reverse=True)  # fmt: skip
        for other in (n for n in nights if n < night):
            path = self.night_file(dataset, other)
            if not path.exists():
                continue
            for m in set(pq.read_table(path, columns=["mailbox"])["mailbox"].to_pylist()):
                if m in mailboxes and m not in found:
                    found[m] = other
            if len(found) == len(mailboxes):
                break
        return found

    def _last_log_night(self, name: str, night: str) -> str:
        dataset, stem = log_file_of(name)
        nights = [p.parent.name.removeprefix("night=") for p in self.root.glob(
            f"{dataset}/night=*/{stem}.parquet")]  # fmt: skip
        return max((n for n in nights if n < night), default="")

    def forget(self, plan: ForgetPlan) -> None:
        """Apply a plan (under the collect lock): one SQLite transaction restores the
        commit records of mailboxes and login logs, drops the night's folder index and
        history and lists its files for deletion, which are then removed. Killed half-way,
        running it again finishes it (nothing restored is on the forgotten night)."""
        if plan.refusal():
            raise NightConflict(plan.refusal())
        pending = [(None, str(p.relative_to(self.root))) for p in plan.files]
        with self.db() as con:
            with con:
                for mailbox, state in plan.restore.items():
                    if state is None:
                        con.execute("delete from cursors where mailbox = ?", (mailbox,))
                    else:
                        con.execute(
                            "insert or replace into cursors values (?, ?, ?)",
                            (mailbox, state.night, state.to_json()),
                        )
                con.execute("delete from folder_nights where night = ?", (plan.night,))
                con.execute("delete from cursor_history where night = ?", (plan.night,))
                for name, log in plan.logs.items():
                    if log is None:
                        con.execute("delete from log_cursors where source = ?", (name,))
                    else:
                        con.execute(
                            "insert or replace into log_cursors values (?, ?, ?)",
                            (name, log.night, log.to_json()),
                        )
                con.execute("delete from log_cursor_history where night = ?", (plan.night,))
                con.executemany("insert into publish (staged, target) values (?, ?)", pending)
            _publish(self.root, pending)
            with con:
                con.execute("delete from publish")
        for directory in {p.parent for p in plan.files}:
            with suppress(OSError):  # a file a reader still has open keeps it; harmless
                directory.rmdir()

    # -- single files (runs of login sources) ----------------------------------------------

    def write_table(self, dataset: str, night: str, stem: str, table: pa.Table) -> Path:
        target = self.night_file(dataset, night, stem)
        with atomic_path(target) as tmp:
            pq.write_table(table, tmp, compression="zstd")
        return target

    def write_batches(
        self, dataset: str, night: str, stem: str, schema: pa.Schema, tables: Iterable[pa.Table]
    ) -> tuple[Path, int]:
        """Stream ``tables`` into one night file, written atomically (a file with no rows
        when there are none); returns it and its row count."""
        target = self.night_file(dataset, night, stem)
        rows = 0
        with atomic_path(target) as tmp, pq.ParquetWriter(tmp, schema, compression="zstd") as w:
            for table in tables:
                w.write_table(table)
                rows += table.num_rows
        return target, rows

    def begin(self, run_id: str, night: str) -> NightWriter:
        """The staging area of one run's night."""
        return NightWriter(self, run_id, night)


def _publish(root: Path, pending: Iterable[tuple[str | None, str]]) -> None:
    """Rename staged files over their targets; a missing staged file was renamed before.
    A row with no staged file deletes its target (a layout-1 file a conversion replaced)."""
    dirs: set[Path] = set()
    for staged, target in pending:
        dst = root / target
        if staged is None:
            dst.unlink(missing_ok=True)
            continue
        src = root / staged
        if src.exists():
            dst.parent.mkdir(parents=True, exist_ok=True)
            os.replace(src, dst)
            dirs.add(dst.parent)
    for d in dirs:  # the renames themselves survive a power cut
        fsync_dir(d)


class ShardWriter:
    """Streams the staged rows of one shard's mailboxes into one file per dataset.

    Small tables (a quiet mailbox's two status rows) are gathered and written as one row
    group per ``FLUSH_ROWS`` rows: a row group per mailbox would cost more than its IMAP.
    One thread per shard: each shard owns its writers, so no lock is needed.
    """

    FLUSH_ROWS = 50_000

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._writers: dict[str, pq.ParquetWriter] = {}
        self._pending: dict[str, list[pa.Table]] = {}
        self._dicts: dict[str, list[dict[str, Any]]] = {}
        self._rows: dict[str, int] = {}

    def _flush(self, dataset: str) -> None:
        tables = self._pending.pop(dataset, [])
        rows = self._dicts.pop(dataset, [])
        if rows:
            tables.append(pa.Table.from_pylist(rows, schema=NIGHT_DATASETS[dataset][0]))
        self._rows.pop(dataset, None)
        if not tables:
            return
        if dataset not in self._writers:
            path = self.directory / dataset / f"{self.directory.name}.parquet"
            path.parent.mkdir(parents=True, exist_ok=True)
            schema = NIGHT_DATASETS[dataset][0]
            self._writers[dataset] = pq.ParquetWriter(path, schema, compression="zstd")
        self._writers[dataset].write_table(pa.concat_tables(tables))

    def write(self, dataset: str, table: pa.Table) -> None:
        if not table.num_rows:
            return
        self._pending.setdefault(dataset, []).append(table)
        self._rows[dataset] = self._rows.get(dataset, 0) + table.num_rows
        if self._rows[dataset] >= self.FLUSH_ROWS:
            self._flush(dataset)

    def write_rows(self, dataset: str, rows: list[dict[str, Any]]) -> None:
        self._dicts.setdefault(dataset, []).extend(rows)
        self._rows[dataset] = self._rows.get(dataset, 0) + len(rows)
        if self._rows[dataset] >= self.FLUSH_ROWS:
            self._flush(dataset)

    def add(self, rows: MailboxRows) -> None:
        for table in rows.messages:
            self.write("messages", table)
        self.write_rows("mailbox_status", rows.mailbox_status)
        for dataset in ("forwarding", "contacts"):
            table = getattr(rows, dataset)
            if table is not None:
                self.write(dataset, table)

    def close(self) -> None:
        for dataset in set(self._pending) | set(self._dicts):
            self._flush(dataset)
        for writer in self._writers.values():
            writer.close()
        self._writers.clear()


class NightWriter:
    """One run's night: shards stage rows, then :meth:`commit` builds, commits, publishes."""

    def __init__(self, data: DataDir, run_id: str, night: str) -> None:
        self.data = data
        self.night = night
        self.run_id = run_id
        self.dir = data.staging / run_id
        self.dir.mkdir(parents=True, exist_ok=True)
        self.committed = False

    def shard(self, name: str) -> ShardWriter:
        return ShardWriter(self.dir / "shards" / name)

    def _staged(self, dataset: str) -> list[Path]:
        return sorted(self.dir.glob(f"shards/*/{dataset}/*.parquet"))

    def commit(
        self,
        collected: list[Collected],
        runs: pa.Table | None,
        run_mailboxes: pa.Table | None,
    ) -> None:
        """Build the night's files, commit cursors and index in one transaction, publish."""
        root = self.data.root
        out = self.dir / "out"
        built: list[tuple[str | None, str]] = []
        again = sorted({c.mailbox for c in collected})
        with closing(duckdb.connect()) as con:
            # A first night of a million rows sorts within this, spilling to staging.
            con.execute("set memory_limit = '1GB'")
            con.execute("set temp_directory = ?", [str(self.dir / "spill")])
            con.execute("set preserve_insertion_order = true")
            con.register("again", pa.table({"mailbox": pa.array(again, pa.string())}))
            for dataset, (schema, order) in NIGHT_DATASETS.items():
                target = self.data.night_file(dataset, self.night)
                staged = self._staged(dataset)
                old = target if target.exists() and again else None
                if not staged and old is None:
                    continue
                path = out / dataset / f"night={self.night}.parquet"
                _build(con, schema, old, staged, order, path)
                built.append((str(path.relative_to(root)), str(target.relative_to(root))))
            with self.data.db() as db:
                rewrites = _rewrites(db, collected, self.night)
            for night, drops in sorted(rewrites.items()):
                target = self.data.night_file("messages", night)
                if not target.exists():
                    continue
                path = out / "rewrites" / f"night={night}.parquet"
                _rewrite(con, target, drops, path)
                built.append((str(path.relative_to(root)), str(target.relative_to(root))))
        for dataset, table in (("runs", runs), ("run_mailboxes", run_mailboxes)):
            if table is None:
                continue
            path = out / dataset / f"{self.run_id}.parquet"
            path.parent.mkdir(parents=True, exist_ok=True)
            pq.write_table(table, path, compression="zstd")
            target = self.data.night_file(dataset, self.night, self.run_id)
            built.append((str(path.relative_to(root)), str(target.relative_to(root))))
        _fsync_files(root / p for p, _ in built if p is not None)
        with self.data.db() as db:
            with db:  # the commit point
                _commit_index(db, collected, self.night)
                records = [(c.mailbox, c.state.night, c.state.to_json()) for c in collected]
                db.executemany("insert or replace into cursors values (?, ?, ?)", records)
                _keep_history(db, records, "cursor_history")
                db.execute("insert or replace into meta values ('layout', ?)", (LAYOUT,))
                db.executemany("insert into publish (staged, target) values (?, ?)", built)
            self.committed = True
            _publish(root, built)
            with db:
                db.execute("delete from publish")
        shutil.rmtree(self.dir, ignore_errors=True)

    def abandon(self) -> None:
        """Drop what was staged, unless it was committed: then the files still to be
        published are the next run's to rename (:meth:`DataDir.recover`)."""
        if not self.committed:
            shutil.rmtree(self.dir, ignore_errors=True)


def _fsync_files(paths: Iterable[Path]) -> None:
    for path in paths:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _build(
    con: duckdb.DuckDBPyConnection,
    schema: pa.Schema,
    old: Path | None,
    staged: list[Path],
    order: str,
    out: Path,
) -> None:
    """Write a night file: the committed one less re-collected mailboxes, plus staged rows."""
    parts, params = [], []
    if old is not None:
        parts.append(
            "select * from read_parquet(?) where mailbox not in (select mailbox from again)"
        )
        params.append(str(old))
    if staged:
        parts.append("select * from read_parquet(?)")
        params.append([str(p) for p in staged])  # type: ignore[arg-type]
    query = " union all by name ".join(parts) + f" order by {order}"
    _write_query(con, query, params, schema, out)


def _rewrite(
    con: duckdb.DuckDBPyConnection,
    path: Path,
    drops: list[tuple[str, str, int | None]],
    out: Path,
) -> None:
    """Rewrite another night's messages file without the rows a reset or rename replaces."""
    con.register(
        "drops",
        pa.table(
            {
                "mailbox": pa.array([d[0] for d in drops], pa.string()),
                "folder": pa.array([d[1] for d in drops], pa.string()),
                "keep": pa.array([d[2] for d in drops], pa.int64()),
            }
        ),
    )
    query = """
        select m.* from read_parquet(?) m
        where not exists (
            select 1 from drops d
            where d.mailbox = m.mailbox and d.folder = m.folder
              and (d.keep is null or d.keep <> m.uidvalidity))
        order by sent_date, mailbox, folder, uidvalidity, uid"""
    _write_query(con, query, [str(path)], MESSAGES, out)


def _write_query(
    con: duckdb.DuckDBPyConnection,
    query: str,
    params: Sequence[object],
    schema: pa.Schema,
    out: Path,
) -> None:
    """Stream a query's rows into a Parquet file of exactly ``schema`` (DuckDB spills to
    disk when a sort outgrows memory, so a first night of a million rows stays bounded)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    reader = con.sql(query, params=params).to_arrow_reader(ROW_GROUP)
    with pq.ParquetWriter(out, schema, compression="zstd") as writer:
        for batch in reader:
            writer.write_table(pa.Table.from_batches([batch]).select(schema.names).cast(schema))


def _rewrites(
    db: sqlite3.Connection, collected: list[Collected], night: str
) -> dict[str, list[tuple[str, str, int | None]]]:
    """Other nights holding rows that tonight's resets and renames replace: night -> drops."""
    out: dict[str, list[tuple[str, str, int | None]]] = {}
    for c in collected:
        for folder, keep in c.drops:
            rows = db.execute(
                "select distinct night from folder_nights where mailbox = ? and folder = ? "
                "and night <> ? and (? is null or uidvalidity <> ?)",
                (c.mailbox, folder, night, keep, keep),
            ).fetchall()
            for (other,) in rows:
                out.setdefault(other, []).append((c.mailbox, folder, keep))
    return out


def _keep_history(
    db: sqlite3.Connection,
    records: list[tuple[str, str, str]],
    table: Literal["cursor_history", "log_cursor_history"],
) -> None:
    """Keep tonight's commit records, and those of the last HISTORY_NIGHTS nights only."""
    db.executemany(f"insert or replace into {table} values (?, ?, ?)", records)
    db.execute(
        f"delete from {table} where night < (select night from (select distinct night "
        f"from {table} order by night desc limit 1 offset ?))",
        (HISTORY_NIGHTS - 1,),
    )


def _commit_index(db: sqlite3.Connection, collected: list[Collected], night: str) -> None:
    for c in collected:
        db.execute("delete from folder_nights where mailbox = ? and night = ?", (c.mailbox, night))
        for folder, keep in c.drops:
            db.execute(
                "delete from folder_nights where mailbox = ? and folder = ? "
                "and (? is null or uidvalidity <> ?)",
                (c.mailbox, folder, keep, keep),
            )
        db.executemany(
            "insert into folder_nights values (?, ?, ?, ?, ?)",
            [(c.mailbox, f, uv, night, n) for (f, uv), n in c.folder_rows.items() if n],
        )
