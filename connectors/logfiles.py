"""The one log reader: a log file read on from a cursor, across rotations and compression.

Every log source reads through it — Dovecot's login log (connectors/logins.py), Zimbra's
audit logs (connectors/zimbra.py) and Postfix's mail log (connectors/postfix_log.py) —
and parses the whole lines it hands out. What it guarantees:

* **A partial last line waits.** The current file's last line without its newline is not
  handed out; the cursor stops before it, so the next read starts with it whole.
* **Rotation is followed.** The cursor names the file read last by its inode and a hash of
  its first line (``head``), so it is found again wherever rotation moved it, renamed
  (``mail.log.1``, ``audit.log.2026-11-22``, ``maillog.20261206-201113``) or compressed
  (``mail.log.2.gz``): the rest of it is read from the cursor's offset, then every file
  rotated after it, oldest first, then the current file from its start.
* **Nothing twice.** A cursor in the current file (same inode, same first line, offset
  within it) reads on from its offset only.
* **Between a rotation and the next line** (the new file not created yet), the rotated
  files are read and the cursor stays in the last of them.
* **A loss is said.** When the file read last is no longer there (deleted before it was
  read to its end, or truncated in place), the current file is read from its start and
  ``rotation_lost`` says that lines between may be missing.

``path`` is the current file, or a directory holding one log and its rotations (``mail.log``,
``mail.log.1``, ``mail.log.2.gz``): then the current file is the name the others extend.

    >>> read = LogRead(Path("/var/log/mail.log"), cursor)
    >>> for piece in read:            # whole lines, oldest first, bounded chunks
    ...     parse(piece.data)
    >>> read.cursor                   # where the next read starts, once all was read
    LogCursor(inode=1835011, offset=48213, head='3f1c9a0d2b7e6f41')
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import re
from collections.abc import Generator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

__all__ = [
    "LogCursor",
    "LogFileError",
    "LogRead",
    "Piece",
    "Seen",
    "current_file",
    "head_of",
    "iter_lines",
    "rotated_files",
]

CHUNK = 4 << 20  # bytes read at a time: a month of Postfix logs never sits in memory whole

# What rotation appends to a log's name: `.1`, `.2.gz`, `-20261206` (logrotate dateext),
# `.2026-11-22` (Zimbra's log4j), `.20261206-201113.gz` (`postfix logrotate`).
_ROTATED = re.compile(r"(?:[.-]\d{4}-?\d\d-?\d\d(?:-\d{6})?|\.\d{1,4})?(?:\.gz)?$")


@dataclass(frozen=True)
class LogCursor:
    """Where reading stopped: the file's inode and the byte offset after the last whole
    line (``head``: a hash of its first line, to find it again once rotated and compressed)."""

    inode: int
    offset: int
    head: str | None = None


class LogFileError(Exception):
    """A log cannot be read; the message names the file and why."""


@dataclass(frozen=True)
class Piece:
    """Whole lines of one file. ``written``: the file's last change (UTC), which dates
    stamps without a year; ``start``: the lines begin at the file's first byte."""

    path: Path
    data: bytes
    written: datetime
    start: bool


@dataclass
class Seen:
    """What a read saw besides its records, for the night's verdict on which mailboxes
    changed (pipelines/quiet.py), filled by the reader that knows its lines: the mailboxes
    they name as changed, every mailbox they name at all (the collector's own logins
    included: a log whose names match no roster address names mailboxes some other way),
    the time of the newest line it could date (a log whose lines stopped is silent, however
    recently its file was touched), and whether lines may be missing (a rotation not found,
    an unfinished line dropped from a rotated file)."""

    changed: set[str] = field(default_factory=set)
    named: set[str] = field(default_factory=set)
    latest: datetime | None = None
    # whether a login counts as a change: not where the server logs every change itself
    # (Dovecot's mail_log plugin), so the collector's own logins need not be told apart
    logins: bool = True
    rotation_lost: bool = False
    dropped: int = 0
    first: bool = False  # the log's first read: nothing says what came before its lines

    def dated(self, when: datetime) -> None:
        """A line of this time was read."""
        if self.latest is None or when > self.latest:
            self.latest = when

    def after(self, read: LogRead) -> None:
        """Take what ``read`` saw, once it was read to its end."""
        self.rotation_lost = self.rotation_lost or read.rotation_lost
        self.dropped += read.dropped
        self.first = read.start is None


def head_of(first_line: bytes) -> str | None:
    """A file's identity across renames and compression: a hash of its first whole line.

    >>> head_of(b"Dec  6 20:13:01 mail postfix/qmgr[1]: AB3CE20E0D0: removed\\n")
    '85e49f693fffd770'
    >>> head_of(b"Dec  6 20:13") is None  # not a whole line yet
    True
    """
    return hashlib.sha256(first_line).hexdigest()[:16] if first_line.endswith(b"\n") else None


def _open(path: Path) -> io.BufferedIOBase:
    return gzip.open(path, "rb") if path.suffix == ".gz" else path.open("rb")


def _head(path: Path) -> str | None:
    try:
        with _open(path) as fh:
            return head_of(fh.readline())
    except (OSError, EOFError):
        return None


def current_file(path: Path) -> Path:
    """The file to read on: ``path`` itself, or in a directory the one log whose name the
    other files extend (``mail.log`` beside ``mail.log.1`` and ``mail.log.2.gz``)."""
    if not path.is_dir():
        return path
    bases = {_ROTATED.sub("", p.name) for p in path.iterdir() if p.is_file()}
    bases.discard("")
    if len(bases) != 1:
        listed = ", ".join(sorted(bases)) or "no file"
        raise LogFileError(
            f"log directory {path} must hold one log and its rotations, not: {listed}; "
            "name the file as path"
        )
    return path / bases.pop()


def rotated_files(current: Path) -> list[Path]:
    """The rotations of ``current`` beside it, oldest first (by last change, then name)."""
    found = []
    for p in current.parent.iterdir() if current.parent.is_dir() else ():
        rest = p.name[len(current.name) :]
        if p.name.startswith(current.name) and rest and _ROTATED.fullmatch(rest) and p.is_file():
            found.append(p)
    return sorted(found, key=lambda p: (p.stat().st_mtime_ns, p.name))


class LogRead:
    """One read of a log from ``cursor`` (None: the first read): iterate it for its
    :class:`Piece` s, then take :attr:`cursor`. ``backlog``: on a first read, the rotated
    files too (oldest first), not only the current file."""

    def __init__(
        self,
        path: Path,
        cursor: LogCursor | None,
        *,
        backlog: bool = False,
        chunk: int = CHUNK,
    ) -> None:
        self.path, self.start, self.backlog, self.chunk = path, cursor, backlog, chunk
        self.cursor: LogCursor | None = None
        self.rotation_lost = False
        self.dropped = 0  # bytes of unfinished last lines in rotated files (never completed)
        self.files: list[Path] = []  # the files read, in order
        self._end: tuple[Path, int] | None = None  # the last rotated file read, and where

    def __iter__(self) -> Iterator[Piece]:
        current = current_file(self.path)
        try:
            fh = current.open("rb")
        except FileNotFoundError as exc:
            if (self.start is None and not self.backlog) or not rotated_files(current):
                raise LogFileError(f"log file {current} not found") from exc
            # Just rotated, and the new file not begun (postlogd and rsyslog create it with
            # their next line): the rotations are read, and the cursor stays in the last.
            yield from self._older(current)
            self.cursor = self.start
            if self._end is not None:
                p, end = self._end
                self.cursor = LogCursor(p.stat().st_ino, end, _head(p))
            return
        except PermissionError as exc:
            raise LogFileError(
                f"log file {current}: permission denied (the collector's account needs read "
                "access: docs/operator-guide.md §4d)"
            ) from exc
        with fh:
            st = os.fstat(fh.fileno())
            head = head_of(fh.readline())
            c = self.start
            same = (
                c is not None
                and c.inode == st.st_ino
                and c.offset <= st.st_size
                and (c.head is None or c.head == head)
            )
            if not same:
                yield from self._older(current)
            self.files.append(current)
            offset = c.offset if same and c is not None else 0
            offset = yield from self._pieces(current, fh, offset, st.st_mtime, last=True)
            if head is None and offset:  # its first line was finished while being read
                fh.seek(0)
                head = head_of(fh.readline())
        self.cursor = LogCursor(st.st_ino, offset, head)

    def _older(self, current: Path) -> Iterator[Piece]:
        """The rotated files to read before the current one: on a first read with
        ``backlog`` all of them; after a rotation the rest of the file read last (found by
        its first line, or by its inode for a cursor of a release without heads) and
        every file rotated after it."""
        c = self.start
        if c is None:
            yield from self._whole(rotated_files(current) if self.backlog else [])
            return
        older = rotated_files(current)
        for at, p in enumerate(older):
            if c.head is not None:
                if _head(p) != c.head:
                    continue
            elif p.suffix == ".gz" or p.stat().st_ino != c.inode:
                continue
            try:
                with _open(p) as fh:
                    self.files.append(p)
                    end = yield from self._pieces(p, fh, c.offset, p.stat().st_mtime, last=False)
                    self._end = (p, end)
            except (OSError, EOFError) as exc:
                raise LogFileError(f"rotated log {p}: {exc}") from exc
            yield from self._whole(older[at + 1 :])
            return
        self.rotation_lost = True

    def _whole(self, files: list[Path]) -> Iterator[Piece]:
        for p in files:
            try:
                with _open(p) as fh:
                    self.files.append(p)
                    end = yield from self._pieces(p, fh, 0, p.stat().st_mtime, last=False)
                    self._end = (p, end)
            except (OSError, EOFError) as exc:
                raise LogFileError(f"rotated log {p}: {exc}") from exc

    def _pieces(
        self, path: Path, fh: io.BufferedIOBase, offset: int, mtime: float, *, last: bool
    ) -> Generator[Piece, None, int]:
        """Whole lines from ``offset`` in chunks; returns the offset after the last one.
        The current file's unfinished last line waits; a rotated file's is dropped."""
        written = datetime.fromtimestamp(mtime, UTC)
        fh.seek(offset)
        carry = b""
        first = offset == 0
        while data := fh.read(self.chunk):
            data = carry + data
            end = data.rfind(b"\n") + 1
            carry = data[end:]
            if end:
                yield Piece(path, data[:end], written, first)
                first = False
                offset += end
        if carry and not last:
            self.dropped += len(carry)
        return offset


def iter_lines(data: bytes) -> Iterator[bytes]:
    """The lines of whole-line ``data``, each without its newline (split on ``\\n`` only).

    >>> list(iter_lines(b"a\\r\\nb\\n"))
    [b'a\\r', b'b']
    """
    return iter(data.split(b"\n")[:-1]) if data else iter(())
