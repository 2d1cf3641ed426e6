"""A collector process for the fault suite to kill, or to hold the lock while another runs.

    python -m tests.faults.child CONFIG NIGHT [NIGHT...] [--kill KIND:N   SIGKILL itself at the Nth event of KIND:
                  batch        just after staged rows went into a shard's staging file
                               (the Parquet file has no footer yet)
                  build        just after a row batch went into a night file being built
                               (the night's final write)
                  commit       inside the commit transaction, cursors half written
                  replace      just before a built file is renamed into place
                  replaced     just after a rename (some night files published, not all)
--hold-until FILE]

--kill KIND:N   SIGKILL itself at the Nth event of KIND:
                  batch        just after a record batch went into a messages file being
                               written (the Parquet file has no footer yet)
                  replace      just before a finished temp file is renamed into place
                  replaced     just after a rename (e.g. messages in place, cursor not yet)
                  cursor       halfway through writing a cursor file (the commit point)
--hold-until F  once the collection lock is held, write F.held and wait until F exists
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from itertools import count
from pathlib import Path
from typing import Any

from pipelines import storage
from pipelines.collect import run_collection


def _die() -> None:
    sys.stdout.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def arm(kind: str, n: int) -> None:
    seen = count(1)
    if kind == "batch":
        flush = storage.ShardWriter._flush

        def patched_flush(self: storage.ShardWriter, dataset: str) -> None:
            flush(self, dataset)
            if next(seen) == n:
                _die()

        storage.ShardWriter._flush = patched_flush  # type: ignore[method-assign]
    elif kind == "build":
        real_writer = storage.pq.ParquetWriter

        class DyingWriter(real_writer):  # type: ignore[misc,valid-type]
            def write_table(self, table: Any, *args: Any, **kwargs: Any) -> None:
                super().write_table(table, *args, **kwargs)
                if "/out/" in str(self.where) and next(seen) == n:
                    _die()

        storage.pq.ParquetWriter = DyingWriter  # type: ignore[misc]
    elif kind == "commit":
        commit_index = storage._commit_index

        def patched_commit(db: Any, collected: Any, night: str) -> None:
            # Half the mailboxes' index rows written inside the open transaction.
            commit_index(db, collected[: len(collected) // 2], night)
            if next(seen) == n:
                _die()
            commit_index(db, collected[len(collected) // 2 :], night)

        storage._commit_index = patched_commit
    elif kind in ("replace", "replaced"):
        replace = os.replace

        def patched_replace(src: Any, dst: Any) -> None:
            hit = next(seen) == n
            if hit and kind == "replace":
                _die()
            replace(src, dst)
            if hit:
                _die()

        storage.os.replace = patched_replace  # type: ignore[attr-defined]
    else:
        raise SystemExit(f"unknown kill point {kind}")


def hold(until: Path) -> None:
    lock = storage.DataDir.collect_lock

    @contextmanager
    def patched(self: storage.DataDir, night: str) -> Iterator[None]:
        with lock(self, night):
            Path(f"{until}.held").touch()
            while not until.exists():
                time.sleep(0.05)
            yield

    storage.DataDir.collect_lock = patched  # type: ignore[method-assign]


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("config")
    p.add_argument("nights", nargs="+")
    p.add_argument("--kill")
    p.add_argument("--hold-until", type=Path)
    args = p.parse_args()
    if args.kill:
        kind, n = args.kill.split(":")
        arm(kind, int(n))
    if args.hold_until:
        hold(args.hold_until)
    for night in args.nights:
        summary = run_collection(args.config, night, plain=True)
        print(night, summary.count("ok"), summary.count("failed"), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
