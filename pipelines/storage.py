"""The data directory: Hive-partitioned Parquet datasets and the per-mailbox cursor state.

    data/
      messages/night=2026-11-23/<mailbox>.parquet        one file per mailbox and night
      mailbox_status/night=2026-11-23/<mailbox>.parquet  one row per folder
      runs/night=2026-11-23/<run_id>.parquet              one row per run
      run_mailboxes/night=2026-11-23/<run_id>.parquet     one row per mailbox per run
      _state/cursors/<mailbox>.json                       the commit point of each mailbox

Every file is written to a temporary name and renamed, so a reader sees the old file or
the new one, never half of one. A mailbox's night is committed when its cursor file is
renamed into place; files of a night that was never committed are removed before the
next collection of that mailbox, so a killed run neither loses nor duplicates rows.
Re-collecting the night last committed starts again from the cursor that night started
from, so running the same night twice leaves the same data.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from connectors.base import FolderCursor, Message

MESSAGES = pa.schema(
    [
        ("source", pa.string()),
        ("mailbox", pa.string()),
        ("folder", pa.string()),
        ("role", pa.string()),
        ("uidvalidity", pa.int64()),
        ("uid", pa.int64()),
        ("internal_date", pa.timestamp("s", tz="UTC")),
        ("sent_date", pa.timestamp("s", tz="UTC")),
        ("date_source", pa.string()),
        ("size", pa.int64()),
        ("seen", pa.bool_()),
        ("from_addr", pa.string()),
        ("to_addrs", pa.list_(pa.string())),
        ("cc_addrs", pa.list_(pa.string())),
        ("message_id", pa.string()),
        ("address_invalid", pa.bool_()),
    ]
)

MAILBOX_STATUS = pa.schema(
    [
        ("source", pa.string()),
        ("mailbox", pa.string()),
        ("folder", pa.string()),
        ("role", pa.string()),
        ("folder_status", pa.string()),
        ("messages", pa.int64()),
        ("unseen", pa.int64()),
        ("uidnext", pa.int64()),
        ("uidvalidity", pa.int64()),
        ("highestmodseq", pa.int64()),
        ("last_uid", pa.int64()),
        ("fetched", pa.int64()),
        ("full_reread", pa.bool_()),
        ("read_activity", pa.int64()),
        ("folder_bytes", pa.int64()),
        ("unreadable", pa.int64()),
        ("quota_used_bytes", pa.int64()),
        ("quota_limit_bytes", pa.int64()),
        ("sent_folder", pa.string()),
    ]
)

# Server-side signals. Absent datasets mean "unknown" to the evaluation.
LOGINS = pa.schema(
    [
        ("mailbox", pa.string()),
        ("login_at", pa.timestamp("s", tz="UTC")),
        ("protocol", pa.string()),
        ("remote_addr", pa.string()),
        ("source", pa.string()),
    ]
)
FORWARDING = pa.schema(
    [
        ("mailbox", pa.string()),
        ("target", pa.string()),
        ("rule_name", pa.string()),
        ("keeps_copy", pa.bool_()),
        ("conditional", pa.bool_()),
    ]
)
CONTACTS = pa.schema(
    [
        ("mailbox", pa.string()),
        ("uid", pa.int64()),
        ("message_id", pa.string()),
        ("address", pa.string()),
        ("where_found", pa.string()),
        ("sent_date", pa.timestamp("s", tz="UTC")),
        ("skipped", pa.string()),  # why this message was not scanned (address is then null)
    ]
)

RUNS = pa.schema(
    [
        ("run_id", pa.string()),
        ("started_at", pa.timestamp("s", tz="UTC")),
        ("finished_at", pa.timestamp("s", tz="UTC")),
        ("mailboxes", pa.int64()),
        ("ok", pa.int64()),
        ("failed", pa.int64()),
        ("skipped", pa.int64()),
        ("messages_new", pa.int64()),
        ("config_sha256", pa.string()),
    ]
)

RUN_MAILBOXES = pa.schema(
    [
        ("run_id", pa.string()),
        ("source", pa.string()),
        ("mailbox", pa.string()),
        ("status", pa.string()),
        ("reason", pa.string()),
        ("messages_new", pa.int64()),
        ("folders", pa.int64()),
        ("seconds", pa.float64()),
    ]
)


def mailbox_key(mailbox: str) -> str:
    """A file name for a mailbox: readable, and unique even after unsafe characters go.

    >>> mailbox_key("An.NV@danang.gov.vn")
    'an.nv@danang.gov.vn'
    """
    lowered = mailbox.lower()
    safe = re.sub(r"[^a-z0-9@._+-]", "_", lowered)
    if safe != lowered or safe.startswith("."):
        safe = f"{safe.lstrip('.')}-{hashlib.sha256(lowered.encode()).hexdigest()[:8]}"
    return safe


@contextmanager
def _atomic(target: Path) -> Iterator[Path]:
    """Yield a temp path beside ``target``; rename it over ``target`` on success."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def messages_table(
    source: str,
    mailbox: str,
    uidvalidity: dict[str, int],
    roles: dict[str, str],
    batch: list[Message],
) -> pa.Table:
    """Columns of a batch of Message for the ``messages`` dataset."""
    cols = list(zip(*batch, strict=True))
    folders = cols[0]
    n = len(batch)
    return pa.Table.from_arrays(
        [
            pa.array([source] * n, pa.string()),
            pa.array([mailbox] * n, pa.string()),
            pa.array(folders, pa.string()),
            pa.array([roles[f] for f in folders], pa.string()),
            pa.array([uidvalidity[f] for f in folders], pa.int64()),
            pa.array(cols[1], pa.int64()),
            pa.array(cols[2], pa.int64()).cast(pa.timestamp("s", tz="UTC")),
            pa.array(cols[3], pa.int64()).cast(pa.timestamp("s", tz="UTC")),
            pa.array(cols[4], pa.string()),
            pa.array(cols[5], pa.int64()),
            pa.array(cols[6], pa.bool_()),
            pa.array(cols[7], pa.string()),
            pa.array(cols[8], pa.list_(pa.string())),
            pa.array(cols[9], pa.list_(pa.string())),
            pa.array(cols[10], pa.string()),
            pa.array(cols[11], pa.bool_()),
        ],
        schema=MESSAGES,
    )


@dataclass
class MailboxState:
    """The commit record of one mailbox: which night, and the cursors before and after it."""

    night: str
    before: dict[str, FolderCursor]
    after: dict[str, FolderCursor]

    def to_json(self) -> str:
        return json.dumps(
            {
                "night": self.night,
                "before": {k: asdict(v) for k, v in sorted(self.before.items())},
                "after": {k: asdict(v) for k, v in sorted(self.after.items())},
            },
            indent=1,
            ensure_ascii=False,
        )

    @classmethod
    def from_json(cls, text: str) -> MailboxState:
        raw = json.loads(text)
        return cls(
            raw["night"],
            {k: FolderCursor(**v) for k, v in raw["before"].items()},
            {k: FolderCursor(**v) for k, v in raw["after"].items()},
        )


class NightConflict(Exception):
    """A later night is already committed for this mailbox: collecting an earlier one
    would fetch its messages twice."""


class CollectionBusy(Exception):
    """Another collection holds this data directory."""


class DataDir:
    """Paths and atomic writes of the data directory."""

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

    def _file(self, dataset: str, night: str, stem: str) -> Path:
        return self.root / dataset / f"night={night}" / f"{stem}.parquet"

    def _state_file(self, mailbox: str) -> Path:
        return self.root / "_state" / "cursors" / f"{mailbox_key(mailbox)}.json"

    # -- cursors ---------------------------------------------------------------------------

    def state(self, mailbox: str) -> MailboxState | None:
        path = self._state_file(mailbox)
        return MailboxState.from_json(path.read_text()) if path.exists() else None

    def start_cursors(self, mailbox: str, night: str) -> dict[str, FolderCursor]:
        """The cursors tonight's collection starts from; removes uncommitted leftovers.

        Raises NightConflict when a later night is already committed.
        """
        state = self.state(mailbox)
        if state is None:
            self._remove_uncommitted(mailbox, after=None, keep=night)
            return {}
        if night < state.night:
            raise NightConflict(
                f"night {state.night} is already collected for {mailbox}; "
                f"collecting the earlier night {night} would count messages twice"
            )
        if night == state.night:
            self._remove_uncommitted(mailbox, after=state.night, keep=night)
            return dict(state.before)
        self._remove_uncommitted(mailbox, after=state.night, keep=night)
        return dict(state.after)

    def _remove_uncommitted(self, mailbox: str, after: str | None, keep: str) -> None:
        key = mailbox_key(mailbox)
        # Temp files of a run killed mid-write (never read: they do not end in .parquet).
        for pattern in (f"*/night=*/.{key}.parquet.*.tmp", f"_state/cursors/.{key}.json.*.tmp"):
            for path in self.root.glob(pattern):
                path.unlink(missing_ok=True)
        for dataset in ("messages", "mailbox_status"):
            for path in self.root.glob(f"{dataset}/night=*/{key}.parquet"):
                night = path.parent.name.removeprefix("night=")
                if (after is None or night > after) and night != keep:
                    path.unlink()

    def commit(self, mailbox: str, state: MailboxState) -> None:
        with _atomic(self._state_file(mailbox)) as tmp:
            tmp.write_text(state.to_json())

    # -- datasets --------------------------------------------------------------------------

    @contextmanager
    def messages_writer(self, mailbox: str, night: str) -> Iterator[MessagesWriter]:
        target = self._file("messages", night, mailbox_key(mailbox))
        with _atomic(target) as tmp:
            writer = MessagesWriter(tmp)
            try:
                yield writer
            finally:
                writer.close()

    def write_table(self, dataset: str, night: str, stem: str, table: pa.Table) -> Path:
        target = self._file(dataset, night, stem)
        with _atomic(target) as tmp:
            pq.write_table(table, tmp, compression="zstd")
        return target

    def write_status(self, mailbox: str, night: str, rows: list[dict[str, Any]]) -> Path:
        table = pa.Table.from_pylist(rows, schema=MAILBOX_STATUS)
        return self.write_table("mailbox_status", night, mailbox_key(mailbox), table)

    def drop_folder_rows(
        self, mailbox: str, folder: str, keep_uidvalidity: int | None, except_night: str
    ) -> int:
        """Remove a folder's rows of any other UIDVALIDITY (None: all its rows) from other
        nights: a re-read, or the folder read under its new name, replaces them. Returns
        how many rows went."""
        removed = 0
        for path in sorted(self.root.glob(f"messages/night=*/{mailbox_key(mailbox)}.parquet")):
            if path.parent.name == f"night={except_night}":
                continue
            table = pq.read_table(path, schema=MESSAGES)
            stale = pc.equal(table["folder"], folder)
            if keep_uidvalidity is not None:
                stale = pc.and_(stale, pc.not_equal(table["uidvalidity"], keep_uidvalidity))
            n = pc.sum(stale).as_py() or 0
            if n:
                with _atomic(path) as tmp:
                    pq.write_table(table.filter(pc.invert(stale)), tmp, compression="zstd")
                removed += n
        return removed


class MessagesWriter:
    """Streams record batches into one Parquet file: memory stays at one batch."""

    def __init__(self, path: Path) -> None:
        self._writer = pq.ParquetWriter(path, MESSAGES, compression="zstd")
        self.rows = 0

    def write(self, table: pa.Table) -> None:
        self._writer.write_table(table)
        self.rows += table.num_rows

    def close(self) -> None:
        self._writer.close()
