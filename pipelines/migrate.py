"""Converting a data directory of layout 1 (one file per mailbox per night, a JSON cursor
per mailbox) to layout 2 (one file per dataset per night, cursors in SQLite).

Runs at the start of a collection when the store says it is old (:func:`migrate_if_old`),
or as `mailusage compact`.
It is one night's commit in the storage's own terms: the new night files are built in
staging, then cursors, folder index and the list of renames and deletions are committed in
one transaction, then published — a kill at any point leaves layout 1 whole or layout 2
whole (what was committed is finished by the next run's start).

What layout 1 considered uncommitted is dropped, as its next run would have: a mailbox's
files of nights after its cursor's night, files of a mailbox with no cursor, temp files.
"""

from __future__ import annotations

import shutil
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import duckdb

from contract.datasets import NIGHT_FILE, night_of
from pipelines.storage import (
    LAYOUT,
    NIGHT_DATASETS,
    DataDir,
    MailboxState,
    _fsync_files,
    _publish,
    _write_query,
)


@dataclass
class Conversion:
    """What a conversion did."""

    mailboxes: int = 0
    files_read: int = 0
    files_dropped: int = 0  # uncommitted files of layout 1
    night_files: int = 0
    rows: int = 0


def _layout1_files(night_dir: Path) -> list[Path]:
    return sorted(
        p
        for p in night_dir.iterdir()
        if p.suffix == ".parquet" and p.name != NIGHT_FILE and not p.name.startswith(".")
    )


def is_old(data: DataDir) -> bool:
    """The store says it is not in this layout: no layout mark in its state database
    (0.1 had none), or 0.1's cursor files still there (a conversion killed before its
    last step). One stat and one read of the ``meta`` table.
    """
    return (data.root / "_state" / "cursors").exists() or data.layout() != LAYOUT


def migrate_if_old(data: DataDir) -> Conversion | None:
    """What a night does first: convert ``data`` only when :func:`is_old` says so."""
    return convert_layout(data) if is_old(data) else None


def convert_layout(data: DataDir) -> Conversion | None:
    """Convert ``data`` from layout 1 if it is still in it; None when nothing was to do."""
    if not is_old(data):
        return None
    cursors = data.root / "_state" / "cursors"
    states: dict[str, MailboxState] = {}
    if cursors.exists():
        for path in sorted(cursors.glob("*.json")):
            states[path.stem] = MailboxState.from_json(path.read_text(encoding="utf-8"))
    report = Conversion(mailboxes=len(states))
    root = data.root
    out = data.staging / "layout-2"
    if out.exists():
        shutil.rmtree(out)
    changes: list[tuple[str | None, str]] = []
    addresses: dict[str, str] = {}
    index: list[tuple[str, str, int, str, int]] = []
    for tmp in root.glob("*/night=*/.*.tmp"):  # 0.1's killed writes: never read, once
        tmp.unlink()
    with closing(duckdb.connect()) as con:
        for dataset, (schema, order) in NIGHT_DATASETS.items():
            base = root / dataset
            if not base.is_dir():
                continue
            for night_dir in sorted(p for p in base.iterdir() if p.name.startswith("night=")):
                night = night_of(night_dir / NIGHT_FILE)
                old = _layout1_files(night_dir)
                if not old:
                    continue
                keep = [p for p in old if p.stem in states and night <= states[p.stem].night]
                report.files_read += len(keep)
                report.files_dropped += len(old) - len(keep)
                changes += [(None, str(p.relative_to(root))) for p in old]
                current = night_dir / NIGHT_FILE
                sources = [str(p) for p in keep] + ([str(current)] if current.exists() else [])
                if not sources:
                    continue
                built = out / dataset / f"night={night}.parquet"
                names = ", ".join(schema.names)
                # union_by_name: layout-1 files written before a column was added still read.
                query = (
                    f"select * from (select {names} from "
                    f"read_parquet(?, union_by_name = true)) order by {order}"
                )
                _write_query(con, query, [sources], schema, built)
                changes.insert(0, (str(built.relative_to(root)), str(current.relative_to(root))))
                report.night_files += 1
                if dataset == "mailbox_status":
                    for key, mailbox in con.execute(
                        "select distinct filename, mailbox from read_parquet(?, filename = true)",
                        [[str(p) for p in keep]],
                    ).fetchall():
                        addresses[Path(key).stem] = mailbox
                if dataset == "messages":
                    rows = con.execute(
                        "select mailbox, folder, uidvalidity, count(*) from read_parquet(?) "
                        "group by all",
                        [str(built)],
                    ).fetchall()
                    index += [(m, f, uv, night, n) for m, f, uv, n in rows]
                    report.rows += sum(r[3] for r in rows)
    changes += [(None, str(p.relative_to(root))) for p in sorted(cursors.glob("*.json"))]
    _fsync_files(root / s for s, _ in changes if s is not None)
    with data.db() as db:
        with db:
            db.executemany(
                "insert or replace into cursors values (?, ?, ?)",
                [(addresses.get(k, k), s.night, s.to_json()) for k, s in states.items()],
            )
            db.executemany("insert or replace into folder_nights values (?, ?, ?, ?, ?)", index)
            db.executemany("insert into publish (staged, target) values (?, ?)", changes)
            db.execute("insert or replace into meta values ('layout', ?)", (LAYOUT,))
        _publish(root, changes)
        with db:
            db.execute("delete from publish")
    for parent in {(root / t).parent for _, t in changes}:
        if parent.name.startswith("night=") and not any(parent.iterdir()):
            parent.rmdir()  # a night that held only uncommitted files
    shutil.rmtree(out, ignore_errors=True)
    shutil.rmtree(cursors, ignore_errors=True)  # only temp files of killed runs remain
    return report
