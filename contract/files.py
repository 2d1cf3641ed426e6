"""Writing a file so that a reader, a kill or a power cut sees the old file or the new one,
never half of one. Standard library only: every layer may import it.

    with atomic_path(out / "report.pdf") as tmp:   # a temp file beside report.pdf
        tmp.write_bytes(pdf)                          # renamed over it when the block ends
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def fsync_dir(directory: Path) -> None:
    """Make the renames inside ``directory`` survive a power cut."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def atomic_path(target: Path) -> Iterator[Path]:
    """Yield a temp path beside ``target`` to write; on success it is fsynced, renamed over
    ``target`` and the directory fsynced. On failure the temp file is removed and ``target``
    is left as it was. The temp name starts with a dot and ends in ``.tmp``: no reader of
    ``*.parquet`` or ``*.csv`` ever picks it up."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(target.parent)


def atomic_write(target: Path, data: bytes) -> None:
    """Write ``data`` to ``target`` atomically (see :func:`atomic_path`)."""
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)
