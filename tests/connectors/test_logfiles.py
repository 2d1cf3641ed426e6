"""The one log reader (connectors/logfiles.py) that every log source reads through: each
line handed out once, across rotations, renames, compression and chunk boundaries."""

from __future__ import annotations

import gzip
import os
import shutil
from pathlib import Path

import pytest

from connectors.logfiles import LogCursor, LogFileError, LogRead, current_file, iter_lines


def lines(path: Path, cursor: LogCursor | None, **kw) -> tuple[list[str], LogRead]:
    read = LogRead(path, cursor, **kw)
    got = [raw.decode() for piece in read for raw in iter_lines(piece.data)]
    return got, read


def write(path: Path, *names: str, partial: str = "") -> None:
    with path.open("a") as fh:
        fh.write("".join(f"{n}\n" for n in names) + partial)


def gzip_to(src: Path, dst: Path) -> None:
    with src.open("rb") as a, gzip.open(dst, "wb") as b:
        shutil.copyfileobj(a, b)
    st = src.stat()
    os.utime(dst, ns=(st.st_atime_ns, st.st_mtime_ns))  # as gzip(1) keeps it
    src.unlink()


def age(path: Path, seconds: int) -> None:
    os.utime(path, (seconds, seconds))


def test_partial_last_line_waits_and_nothing_is_read_twice(tmp_path):
    log = tmp_path / "mail.log"
    write(log, "a", "b", partial="c-start")
    got, read = lines(log, None)
    assert got == ["a", "b"]
    assert read.cursor is not None and read.cursor.offset == len("a\nb\n")
    write(log, "-end", "d")
    got, read = lines(log, read.cursor)
    assert got == ["c-start-end", "d"]
    got, again = lines(log, read.cursor)
    assert got == [] and again.cursor == read.cursor


@pytest.mark.parametrize(
    "rotated",
    [
        ["mail.log.1", "mail.log.2.gz"],  # logrotate, numbered, delaycompress
        ["mail.log-20261205", "mail.log-20261206.gz"],  # logrotate dateext
        ["maillog.20261205-230000", "maillog.20261206-230000.gz"],  # postfix logrotate
    ],
)
def test_rotated_renamed_and_compressed_between_reads_loses_and_repeats_nothing(tmp_path, rotated):
    base = rotated[0].split(".")[0] + (".log" if "mail.log" in rotated[0] else "")
    log = tmp_path / base
    write(log, "1", "2")
    _, read = lines(log, None)
    write(log, "3")  # after the read, before the first rotation
    older, newer = (tmp_path / n for n in rotated)
    os.rename(log, newer.with_suffix("") if newer.suffix == ".gz" else newer)
    write(log, "4")
    # the second rotation: the first rotated file compressed, the current one renamed
    gzip_to(newer.with_suffix("") if newer.suffix == ".gz" else newer, newer)
    age(newer, 1)
    os.rename(log, older)
    age(older, 2)
    write(log, "5", partial="6")
    got, read2 = lines(log, read.cursor)
    assert got == ["3", "4", "5"]
    assert not read2.rotation_lost
    assert read2.files == [newer, older, log]
    write(log, "")
    got, _ = lines(log, read2.cursor)
    assert got == ["6"]


def test_copytruncate_is_followed_through_the_copy(tmp_path):
    log = tmp_path / "mail.log"
    write(log, "a")
    _, read = lines(log, None)
    write(log, "b")
    shutil.copy2(log, tmp_path / "mail.log.1")  # logrotate copytruncate: same inode stays
    log.open("r+").truncate(0)
    write(log, "c", "d")
    got, read2 = lines(log, read.cursor)
    assert got == ["b", "c", "d"] and not read2.rotation_lost


def test_a_rotation_not_found_is_said_and_the_current_file_read_whole(tmp_path):
    log = tmp_path / "mail.log"
    write(log, "a")
    _, read = lines(log, None)
    write(log, "lost")
    os.rename(log, tmp_path / "elsewhere")  # rotated out of sight
    write(log, "b")
    got, read2 = lines(log, read.cursor)
    assert got == ["b"] and read2.rotation_lost


def test_backlog_reads_every_rotation_oldest_first_on_a_first_read(tmp_path):
    log = tmp_path / "mail.log"
    write(tmp_path / "mail.log.2", "1")
    gzip_to(tmp_path / "mail.log.2", tmp_path / "mail.log.2.gz")
    age(tmp_path / "mail.log.2.gz", 1)
    write(tmp_path / "mail.log.1", "2")
    age(tmp_path / "mail.log.1", 2)
    write(log, "3")
    assert lines(log, None)[0] == ["3"]  # login logs: from the current file
    assert lines(log, None, backlog=True)[0] == ["1", "2", "3"]
    # a directory of one log and its rotations is read the same
    assert lines(tmp_path, None, backlog=True)[0] == ["1", "2", "3"]
    assert current_file(tmp_path) == log


def test_a_directory_of_two_logs_is_refused_by_name(tmp_path):
    write(tmp_path / "mail.log", "a")
    write(tmp_path / "mail.err", "b")
    with pytest.raises(LogFileError, match=r"must hold one log.*mail\.err, mail\.log"):
        lines(tmp_path, None)


def test_chunks_split_only_between_lines(tmp_path):
    log = tmp_path / "mail.log"
    names = [f"line-{i:03d}-" + "x" * (i % 17) for i in range(300)]
    write(log, *names)
    got, read = lines(log, None, chunk=7)  # far smaller than a line
    assert got == names
    assert read.cursor is not None and read.cursor.offset == log.stat().st_size


def test_a_missing_log_is_an_error_naming_it(tmp_path):
    with pytest.raises(LogFileError, match=r"log file .*absent.log not found"):
        lines(tmp_path / "absent.log", None)


def test_just_rotated_before_the_new_file_begins(tmp_path):
    # `postfix logrotate` renames and gzips the log; postlogd creates the new one with
    # its next line (devkit.postfix.LocalPostfix.rotate): a read in between is not a failure
    log = tmp_path / "maillog"
    write(log, "a")
    _, read = lines(log, None)
    write(log, "b", partial="c")
    os.rename(log, tmp_path / "maillog.20261206-230000")
    gzip_to(tmp_path / "maillog.20261206-230000", tmp_path / "maillog.20261206-230000.gz")
    got, read2 = lines(log, read.cursor)
    assert got == ["b"] and not read2.rotation_lost
    write(log, "d")  # the new file begins
    got, read3 = lines(log, read2.cursor)
    assert got == ["d"]  # b not twice (c was never finished: dropped with its file)
    assert read3.files == [tmp_path / "maillog.20261206-230000.gz", log]
    # a first read of a login log, with nothing current, is still "not found"
    log.unlink()
    with pytest.raises(LogFileError, match="not found"):
        lines(log, None)
    assert lines(log, None, backlog=True)[0] == ["a", "b"]
