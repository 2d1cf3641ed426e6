"""Nights of collection into Parquet against the real Dovecot: incremental, idempotent,
UIDVALIDITY resets, vanished folders, killed runs."""

from __future__ import annotations

import shutil
import socket
from contextlib import contextmanager

import duckdb
import pyarrow.parquet as pq
import pytest

from connectors.imap import ImapSettings, ImapSource
from devkit.dovecot import MASTER_USER, LocalDovecot
from devkit.synth import make_message
from pipelines import storage
from pipelines.storage import DataDir, ShardWriter
from tests.collect_one import collect_one
from tests.conftest import MASTER_PASSWORD
from tests.groundtruth import BASE, per_folder, seed_regular, truth


@pytest.fixture
def src(dovecot: LocalDovecot) -> ImapSource:
    return ImapSource(
        ImapSettings(
            host="127.0.0.1",
            port=dovecot.imaps_port,
            ca_file=str(dovecot.ca_file),
            master_user=MASTER_USER,
            batch_size=16,
        ),
        password_for=lambda _m: MASTER_PASSWORD,
        name="test",
    )


def rows(data: DataDir, mailbox: str) -> list[tuple]:
    """(folder, uidvalidity, uid, message_id, size, sent epoch) of every stored message."""
    return duckdb.execute(
        """select folder, uidvalidity, uid, message_id, size, epoch(sent_date)::bigint
           from read_parquet($p, hive_partitioning = true) where mailbox = $m
           order by all""",
        parameters={"p": str(data.root / "messages" / "*" / "*.parquet"), "m": mailbox},
    ).fetchall()


def stored_per_folder(data: DataDir, mailbox: str) -> dict[str, tuple[int, int, int, int]]:
    out = {}
    for folder, n, size, lo, hi in duckdb.execute(
        """select folder, count(*), sum(size), min(epoch(sent_date))::bigint,
                  max(epoch(sent_date))::bigint
           from read_parquet($p, hive_partitioning = true) where mailbox = $m group by folder""",
        parameters={"p": str(data.root / "messages" / "*" / "*.parquet"), "m": mailbox},
    ).fetchall():
        out[folder] = (n, int(size), lo, hi)
    return out


def add_messages(server: LocalDovecot, mailbox: str, folder: str, n: int, tag: str) -> None:
    for i in range(n):
        raw = make_message(
            "x@gmail.com", [mailbox], date=BASE + 86400 * 5 + i, message_id=f"<{tag}{i}@test>"
        )
        server.deliver(mailbox, folder, raw, when=BASE + 86400 * 5 + i)
    server.finish_seeding(mailbox)


def test_first_night_equals_ground_truth_and_second_fetches_only_new(dovecot, src, tmp_path):
    mailbox = "night@danang.gov.vn"
    seed_regular(dovecot, mailbox, 50, sent_folder="Sent Items", seed=3)
    data = DataDir(tmp_path)
    first = collect_one(src, mailbox, "2026-11-20", data)
    assert first.status == "ok" and first.messages_new == 50
    assert stored_per_folder(data, mailbox) == per_folder(
        truth(dovecot, mailbox, ["INBOX", "Sent Items"])
    )

    add_messages(dovecot, mailbox, "INBOX", 4, "new")
    second = collect_one(src, mailbox, "2026-11-21", data)
    assert second.messages_new == 4
    new_file = pq.read_table(tmp_path / "messages" / "night=2026-11-21" / "part-0.parquet")
    assert sorted(new_file["message_id"].to_pylist()) == [f"<new{i}@test>" for i in range(4)]
    assert stored_per_folder(data, mailbox) == per_folder(
        truth(dovecot, mailbox, ["INBOX", "Sent Items"])
    )
    stored = rows(data, mailbox)
    assert len(stored) == len(set(stored)) == 54

    status = duckdb.execute(
        "select folder, role, messages, fetched, last_uid, sent_folder, quota_limit_bytes "
        "from read_parquet($p, hive_partitioning = true) where night = '2026-11-21' order by 1",
        parameters={"p": str(tmp_path / "mailbox_status" / "*" / "*.parquet")},
    ).fetchall()
    assert [s[:4] for s in status] == [("INBOX", "inbox", 37, 4), ("Sent Items", "sent", 17, 0)]
    assert {s[5] for s in status} == {"Sent Items"} and {s[6] for s in status} == {5 * 1024**3}


def test_same_night_twice_leaves_identical_data(dovecot, src, tmp_path):
    mailbox = "twice@danang.gov.vn"
    seed_regular(dovecot, mailbox, 30, seed=4)
    data = DataDir(tmp_path)
    collect_one(src, mailbox, "2026-11-20", data)
    add_messages(dovecot, mailbox, "INBOX", 3, "n2")
    collect_one(src, mailbox, "2026-11-21", data)
    runs = ("runs", "run_mailboxes")  # one file per run: a re-run adds its own
    snapshot = {
        p.relative_to(tmp_path): p.read_bytes()
        for p in tmp_path.rglob("*.parquet")
        if p.relative_to(tmp_path).parts[0] not in runs
    }
    run_files = {d: sorted((tmp_path / d).rglob("*.parquet")) for d in runs}
    again = collect_one(src, mailbox, "2026-11-21", data)
    # The night is redone from the cursor it started from: its 3 messages read again ...
    fetched = duckdb.execute(
        "select sum(fetched) from read_parquet($p) where mailbox = $m",
        parameters={"p": str(data.night_file("mailbox_status", "2026-11-21")), "m": mailbox},
    ).fetchone()
    assert again.status == "ok" and fetched == (3,)
    # ... and not new again: summed over the night's runs, each message counts once.
    assert again.messages_new == 0
    new_runs = duckdb.execute(
        "select sum(messages_new), count(*) from read_parquet($p)",
        parameters={"p": str(tmp_path / "runs" / "night=2026-11-21" / "*.parquet")},
    ).fetchone()
    assert new_runs == (3, 2)
    assert {
        p.relative_to(tmp_path): p.read_bytes()
        for p in tmp_path.rglob("*.parquet")
        if p.relative_to(tmp_path).parts[0] not in runs
    } == snapshot
    for d in runs:  # the earlier runs' records untouched, one record of the re-run added
        now = sorted((tmp_path / d).rglob("*.parquet"))
        assert set(run_files[d]) < set(now) and len(now) == len(run_files[d]) + 1
    earlier = collect_one(src, mailbox, "2026-11-19", data)
    assert earlier.status == "skipped" and "already collected" in earlier.reason


def test_uidvalidity_reset_rereads_the_folder_without_duplicates(dovecot, src, tmp_path):
    mailbox = "reset@danang.gov.vn"
    seed_regular(dovecot, mailbox, 24, seed=5)
    data = DataDir(tmp_path)
    collect_one(src, mailbox, "2026-11-20", data)
    old = {r[1] for r in rows(data, mailbox) if r[0] == "INBOX"}
    new = dovecot.reset_uidvalidity(mailbox, "INBOX")
    outcome = collect_one(src, mailbox, "2026-11-21", data)
    stored = rows(data, mailbox)
    inbox = [r for r in stored if r[0] == "INBOX"]
    assert new not in old and {r[1] for r in inbox} == {new}  # only the new UIDVALIDITY left
    assert outcome.messages_new == len(inbox)  # INBOX re-read whole, Sent untouched
    assert stored_per_folder(data, mailbox) == per_folder(
        truth(dovecot, mailbox, ["INBOX", "Sent"])
    )
    assert len(stored) == len(set(stored))


def test_vanished_folder_is_recorded_not_fatal(dovecot, src, tmp_path):
    mailbox = "vanish@danang.gov.vn"
    seed_regular(dovecot, mailbox, 12, seed=6)
    data = DataDir(tmp_path)
    collect_one(src, mailbox, "2026-11-20", data)
    shutil.rmtree(dovecot.folder_dir(mailbox, "Sent"))
    outcome = collect_one(src, mailbox, "2026-11-21", data)
    assert outcome.status == "ok"
    status = dict(
        duckdb.execute(
            "select folder, folder_status from read_parquet($p, hive_partitioning = true) "
            "where night = '2026-11-21'",
            parameters={"p": str(tmp_path / "mailbox_status" / "*" / "*.parquet")},
        ).fetchall()
    )
    assert status == {"INBOX": "ok", "Sent": "vanished"}
    assert len(rows(data, mailbox)) == 12  # what was collected stays


def test_killed_run_keeps_earlier_data_and_next_run_completes(dovecot, src, tmp_path, monkeypatch):
    mailbox = "killed@danang.gov.vn"
    seed_regular(dovecot, mailbox, 40, seed=7)
    data = DataDir(tmp_path)
    collect_one(src, mailbox, "2026-11-20", data)
    before = rows(data, mailbox)
    add_messages(dovecot, mailbox, "INBOX", 40, "k")

    real_write = ShardWriter.write
    calls = {"n": 0}

    def dying_write(self, dataset, table):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt("killed")  # the process dies while staging
        real_write(self, dataset, table)

    monkeypatch.setattr(ShardWriter, "write", dying_write)
    with pytest.raises(KeyboardInterrupt):
        collect_one(src, mailbox, "2026-11-21", data)
    monkeypatch.setattr(ShardWriter, "write", real_write)
    assert rows(data, mailbox) == before  # earlier data readable, nothing half-written
    assert not list(tmp_path.rglob("*.tmp"))
    assert not list(data.staging.glob("*"))

    outcome = collect_one(src, mailbox, "2026-11-22", data)
    assert outcome.messages_new == 40
    stored = rows(data, mailbox)
    assert len(stored) == len(set(stored)) == 80


def test_a_night_killed_before_its_commit_leaves_nothing(dovecot, src, tmp_path, monkeypatch):
    mailbox = "orphan@danang.gov.vn"
    seed_regular(dovecot, mailbox, 10, seed=8)
    data = DataDir(tmp_path)
    collect_one(src, mailbox, "2026-11-20", data)
    add_messages(dovecot, mailbox, "INBOX", 5, "o")

    def killed(*_args):
        raise KeyboardInterrupt("killed inside the commit transaction")

    monkeypatch.setattr(storage, "_commit_index", killed)
    with pytest.raises(KeyboardInterrupt):
        collect_one(src, mailbox, "2026-11-21", data)
    monkeypatch.undo()
    assert data.state(mailbox).night == "2026-11-20"  # the transaction rolled back
    outcome = collect_one(src, mailbox, "2026-11-22", data)
    assert outcome.messages_new == 5
    assert not (tmp_path / "messages" / "night=2026-11-21").exists()
    stored = rows(data, mailbox)
    assert len(stored) == len(set(stored)) == 15


def test_a_night_killed_after_its_commit_is_published_by_the_next_start(
    dovecot, src, tmp_path, monkeypatch
):
    mailbox = "rollforward@danang.gov.vn"
    seed_regular(dovecot, mailbox, 10, seed=9)
    data = DataDir(tmp_path)
    collect_one(src, mailbox, "2026-11-20", data)
    add_messages(dovecot, mailbox, "INBOX", 5, "r")
    real_publish = storage._publish

    def killed(root, pending):
        pending = list(pending)
        real_publish(root, pending[:1])  # one file renamed, then the process dies
        raise KeyboardInterrupt("killed while publishing")

    monkeypatch.setattr(storage, "_publish", killed)
    with pytest.raises(KeyboardInterrupt):
        collect_one(src, mailbox, "2026-11-21", data)
    monkeypatch.undo()
    assert data.state(mailbox).night == "2026-11-21"  # committed
    data.recover()  # what every run does first
    stored = rows(data, mailbox)
    assert len(stored) == len(set(stored)) == 15
    assert collect_one(src, mailbox, "2026-11-22", data).messages_new == 0
    assert len(rows(data, mailbox)) == 15


class DroppingSource:
    """The real IMAP source, but the TCP connection is cut after the first batch."""

    def __init__(self, inner: ImapSource) -> None:
        self.inner, self.name, self.kind = inner, inner.name, inner.kind

    @contextmanager
    def open(self, mailbox):
        with self.inner.open(mailbox) as session:
            real = session.messages

            def messages(folder, lo, hi):
                for n, batch in enumerate(real(folder, lo, hi)):
                    yield batch
                    if n == 0:
                        session.wire.sock.shutdown(socket.SHUT_RDWR)

            session.messages = messages
            yield session


def test_dropped_connection_is_transient_and_loses_or_duplicates_nothing(dovecot, src, tmp_path):
    mailbox = "dropped@danang.gov.vn"
    seed_regular(dovecot, mailbox, 60, seed=11)
    data = DataDir(tmp_path)
    # Cut on every try (the lead's, then its shard's): failed as transient, not stored.
    failed = collect_one(DroppingSource(src), mailbox, "2026-11-20", data)
    assert failed.status == "failed" and failed.transient, failed
    runs = ("runs", "run_mailboxes")  # the run's own records of the failure
    assert not [
        p for p in tmp_path.rglob("*.parquet") if p.relative_to(tmp_path).parts[0] not in runs
    ]
    assert data.state(mailbox) is None
    outcome = collect_one(src, mailbox, "2026-11-20", data)  # the retry
    assert outcome.messages_new == 60
    stored = rows(data, mailbox)
    assert len(stored) == len(set(stored)) == 60


def test_forwarding_rules_are_written_with_the_night(dovecot, src, tmp_path):
    from connectors.sieve import SieveSettings, SieveSource

    mailbox = "forwarder@danang.gov.vn"
    seed_regular(dovecot, mailbox, 5, seed=12)
    dovecot.set_sieve(mailbox, "roundcube", 'require "copy"; redirect :copy "me@yahoo.com.vn";')
    sieve = SieveSource(
        SieveSettings(
            host="127.0.0.1",
            port=dovecot.sieve_port,
            ca_file=str(dovecot.ca_file),
            master_user=MASTER_USER,
        ),
        password_for=lambda _m: MASTER_PASSWORD,
    )
    data = DataDir(tmp_path)
    outcome = collect_one(src, mailbox, "2026-11-20", data, forwarding=sieve)
    assert outcome.status == "ok" and outcome.reason == ""
    table = pq.read_table(tmp_path / "forwarding" / "night=2026-11-20" / "part-0.parquet")
    assert table.to_pylist() == [
        {
            "mailbox": mailbox,
            "target": "me@yahoo.com.vn",
            "rule_name": "roundcube",
            "keeps_copy": True,
            "conditional": False,
        }
    ]
    broken = SieveSource(sieve.settings, password_for=lambda _m: "wrong")
    outcome = collect_one(src, mailbox, "2026-11-21", data, forwarding=broken)
    assert outcome.status == "ok" and "forwarding rules not read" in outcome.reason


def test_a_quiet_mailbox_costs_one_connection_and_three_round_trips(
    dovecot, src, tmp_path, monkeypatch
):
    from connectors.imap_wire import Wire

    mailbox = "quiet@danang.gov.vn"
    seed_regular(dovecot, mailbox, 9, seed=13)
    data = DataDir(tmp_path)
    collect_one(src, mailbox, "2026-11-20", data)
    writes: list[list[bytes]] = []
    opened = {"n": 0}
    real_send, real_open = Wire.send, Wire.open.__func__

    def send(self, *commands):
        writes.append([c.split(b" ")[0] for c in commands])
        return real_send(self, *commands)

    def open_(cls, *args, **kwargs):
        opened["n"] += 1
        return real_open(cls, *args, **kwargs)

    monkeypatch.setattr(Wire, "send", send)
    monkeypatch.setattr(Wire, "open", classmethod(open_))
    assert collect_one(src, mailbox, "2026-11-21", data).messages_new == 0
    # Every write of the client waits for one answer: these are the round trips.
    assert opened["n"] == 1
    assert writes == [
        [b"AUTHENTICATE"],
        [b"ENABLE", b"LIST", b"GETQUOTAROOT"],
        [b"LOGOUT"],
    ]
    writes.clear()
    add_messages(dovecot, mailbox, "INBOX", 2, "q")
    assert collect_one(src, mailbox, "2026-11-22", data).messages_new == 2
    # Only the folder that changed is opened: INBOX, never Sent.
    examined = [w for w in writes if w[0] in (b"EXAMINE", b"UID")]
    # EXAMINE with SEARCH MODSEQ in one write, then the FETCH of the new UIDs.
    assert examined == [[b"EXAMINE", b"UID"], [b"UID"]]
