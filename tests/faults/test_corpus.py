"""Damaged and exotic real mail that nobody here wrote: CPython's email test corpus, from
Debian's libpython3.11-testsuite package (not committed; `make corpus` unpacks it, the test
only reads the files), seeded into a mailbox — 47 messages (defective MIME, odd charsets,
broken headers) and 17 binary files (images, sounds) stored as if they were mail."""

from __future__ import annotations

import shutil
from pathlib import Path

import duckdb
import pytest

from tests.faults.conftest import NIGHT, World
from tests.faults.invariant import LEDGER, Entry
from tests.faults.world import START, Setup, add_mailboxes, messages
from tests.groundtruth import maildir_messages

INSTALLED = Path("/usr/lib/python3.11/test/test_email/data")  # Debian's libpython3.11-testsuite
CORPUS = Path(__file__).resolve().parents[2] / ".corpus"  # the Makefile's `corpus` target
PROVIDED = CORPUS / "test_email" / "data"
UNAVAILABLE = CORPUS / "unavailable"  # why that target could not get it


@pytest.fixture(scope="module")
def corpus() -> list[Path]:
    """The corpus files: installed, or as the Makefile's `corpus` target (run by `make test`
    and `make faults`) unpacked them; skipped only where that target could not get them."""
    for where in (INSTALLED, PROVIDED):
        if where.is_dir():
            files = sorted(p for p in where.iterdir() if p.is_file())
            break
    else:
        if UNAVAILABLE.exists():
            pytest.skip(f"CPython's email corpus: {UNAVAILABLE.read_text().strip()}")
        pytest.fail(f"CPython's email corpus is not in {PROVIDED}: run `make corpus`")
    assert len(files) >= 60, f"the corpus is smaller than expected: {len(files)} files"
    return files


def test_real_damaged_mail_is_collected_or_skipped_with_a_reason(
    world: World, corpus: list[Path]
) -> None:
    server = world.server
    (mbx,) = add_mailboxes(server, ["corpus"])
    for i, path in enumerate(corpus):
        folder = "Sent" if i % 4 == 0 else "INBOX"
        server.deliver(mbx, folder, path.read_bytes(), when=START + i * 60, seen=i % 3 == 0)
    server.finish_seeding()
    setup = Setup(world.root / "corpus", server, [mbx])
    summary = setup.collect(NIGHT)
    assert summary.count("ok") == 1, summary.outcomes

    # Ground truth from the files and Dovecot's uidlist, parsed by the standard library.
    truth = {
        (m.folder, m.uid): (
            m.size,
            m.internal_date,
            " ".join(m.message_id.split()) if m.message_id else None,  # a folded header
        )
        for m in maildir_messages(server, mbx, ("INBOX", "Sent"))
    }
    assert len(truth) == len(corpus)
    rows = messages(setup.data)
    got = {(r[1], r[3]): (r[9], r[6], r[14]) for r in rows}
    fetched, unreadable = duckdb.sql(
        "SELECT sum(fetched), sum(unreadable) "
        f"FROM read_parquet('{setup.data}/mailbox_status/*/*.parquet')"
    ).fetchall()[0]
    # Every message accounted for: stored, or counted as unreadable (none are, here).
    assert fetched + unreadable == len(truth)
    assert len(rows) == len(got) == len(truth) - unreadable, "a message lost or stored twice"
    mismatched = {
        k: (got.get(k), v)
        for k, v in truth.items()
        if got.get(k) is None or got[k][:2] != v[:2] or (v[2] and got[k][2] != v[2])
    }
    assert not mismatched, mismatched
    LEDGER.append(
        Entry(
            f"{len(corpus)} real damaged/exotic messages (CPython test_email corpus)",
            1,
            len(rows),
            len(truth) - len(rows) - unreadable,
            0,
            0,
            unreadable,
            f"{len(rows)} collected, {unreadable} unreadable; UID, size, INTERNALDATE and "
            "Message-ID equal the stdlib's reading",
        )
    )
    shutil.rmtree(setup.root)
