"""A collector process for the fault suite to kill, or to hold the lock while another runs.

    python -m tests.faults.child CONFIG NIGHT [NIGHT...] [--kill KIND:N] [--hold-until FILE]

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
        write = storage.MessagesWriter.write

        def patched_write(self: storage.MessagesWriter, table: Any) -> None:
            write(self, table)
            if next(seen) == n:
                _die()

        storage.MessagesWriter.write = patched_write  # type: ignore[method-assign]
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
    elif kind == "cursor":
        commit = storage.DataDir.commit

        def patched_commit(self: storage.DataDir, mailbox: str, state: Any) -> None:
            if next(seen) == n:
                with storage._atomic(self._state_file(mailbox)) as tmp:
                    text = state.to_json()
                    tmp.write_text(text[: len(text) // 2])
                    _die()
            commit(self, mailbox, state)

        storage.DataDir.commit = patched_commit  # type: ignore[method-assign]
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
