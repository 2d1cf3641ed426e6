"""The night's shape: its pure per-mailbox steps on literal folder states, its one retry
helper, a migration only when the store says it is old, and one read of the config."""

from __future__ import annotations

from collections import Counter

import pytest

from connectors.base import FolderCursor, FolderState, Quota, plan_folder
from contract.datasets import MAILBOX_STATUS
from pipelines import migrate, night
from pipelines.mailbox import SessionRead, StatusRow, next_cursors, renamed, status_rows
from pipelines.night import in_passes, retry_delays
from pipelines.storage import DataDir

# Last night: INBOX at UID 8 (UIDVALIDITY 7), "Dự án" (UIDVALIDITY 9), "Cũ" (UIDVALIDITY 5).
START = {
    "INBOX": FolderCursor(7, 8, 40),
    "Dự án": FolderCursor(9, 3, None),
    "Cũ": FolderCursor(5, 2, None),
}
# Tonight: INBOX has UIDs 9-10 new; "Dự án" is listed as "Lưu" (same UIDVALIDITY 9);
# "Cũ" is gone; Sent is new.
TONIGHT = [
    FolderState("INBOX", "inbox", 10, 2, 11, 7, 50, 4096),
    FolderState("Lưu", "other", 3, 0, 4, 9, None),
    FolderState("Sent", "sent", 1, 0, 2, 3, None),
]


def test_renamed_is_a_known_uidvalidity_under_a_new_name():
    assert renamed(START, TONIGHT) == {"Dự án": "Lưu"}
    assert renamed({}, TONIGHT) == {}  # a first night renames nothing


def test_next_cursors_keep_a_vanished_folder_and_drop_a_renamed_one():
    tokens = {"INBOX": None, "Lưu": None, "Sent": "delta-1"}
    after = next_cursors(START, TONIGHT, tokens, {"Dự án": "Lưu"})
    assert after == {
        "INBOX": FolderCursor(7, 10, 50, None),
        "Lưu": FolderCursor(9, 3, None, None),
        "Sent": FolderCursor(3, 1, None, "delta-1"),
        "Cũ": FolderCursor(5, 2, None),  # vanished: kept, in case it comes back
    }


def test_status_rows_are_typed_one_per_folder_and_one_per_lost_folder():
    # Every column of mailbox_status is a field of the row, in order: a column added to
    # the schema without the row (or the other way round) fails here.
    assert list(StatusRow.__dataclass_fields__) == MAILBOX_STATUS.names
    read = SessionRead(
        TONIGHT,
        Quota(1000, 5000),
        {f.name: plan_folder(f, START.get(f.name)) for f in TONIGHT},
        fetched=Counter({"INBOX": 2, "Lưu": 3, "Sent": 1}),
        activity={"INBOX": None},  # asked, and unknown: stays null, not 0
        unreadable=Counter({"Sent": 1}),
        tokens={f.name: None for f in TONIGHT},
    )
    gone = renamed(START, TONIGHT)
    rows = status_rows(
        "dovecot", "an@x.vn", START, read, next_cursors(START, TONIGHT, read.tokens, gone), gone
    )
    by_folder = {r.folder: r for r in rows}
    assert [r.folder for r in rows] == ["INBOX", "Lưu", "Sent", "Cũ", "Dự án"]
    assert by_folder["INBOX"] == StatusRow(
        "dovecot", "an@x.vn", "INBOX", "inbox", "ok", 10, 2, 11, 7, 50, 10, 2, False, None,
        4096, 0, 1000, 5000, "Sent",
    )  # fmt: skip
    assert by_folder["Lưu"].full_reread is False and by_folder["Lưu"].fetched == 3
    assert by_folder["Sent"].unreadable == 1 and by_folder["Sent"].read_activity is None
    assert (by_folder["Cũ"].folder_status, by_folder["Dự án"].folder_status) == (
        "vanished",
        "renamed",
    )
    lost = by_folder["Cũ"]
    assert (lost.uidvalidity, lost.last_uid, lost.fetched, lost.messages, lost.role) == (
        5,
        2,
        0,
        None,
        None,
    )


def test_in_passes_retries_only_the_transient_after_each_delay(monkeypatch):
    slept: list[float] = []
    monkeypatch.setattr(night.time, "sleep", slept.append)
    tries: Counter[str] = Counter()
    lasts: list[tuple[str, bool]] = []

    def attempt(item: str, last: bool) -> str | None:
        tries[item] += 1
        lasts.append((item, last))
        if item == "flaky" and tries[item] < 3:
            return None  # transient twice, then read
        if item == "down" and not last:
            return None  # transient until the last pass, which records it
        return f"{item}:{tries[item]}"

    done, pending = in_passes(["ok", "flaky", "down"], attempt, retry_delays(2, (10, 60)))
    assert done == ["ok:1", "flaky:3", "down:3"] and pending == []
    assert slept == [10, 60]  # one wait before each retry pass, none before the first
    assert lasts[-2:] == [("flaky", True), ("down", True)] and ("ok", False) in lasts
    # The lead's single pass is never the last: what failed transiently is handed back.
    done, pending = in_passes(["down"], attempt, [], final=False)
    assert done == [] and pending == ["down"]
    assert retry_delays(3, (10, 60)) == [10, 60, 60] and retry_delays(0, (10,)) == []


def test_a_current_store_is_not_migrated_and_an_old_one_is(tmp_path, monkeypatch):
    data = DataDir(tmp_path)
    assert migrate.is_old(data)  # no layout mark yet
    calls: list[DataDir] = []
    real = migrate.convert_layout

    def counted(d: DataDir):
        calls.append(d)
        return real(d)

    monkeypatch.setattr(migrate, "convert_layout", counted)
    migrate.migrate_if_old(data)
    assert len(calls) == 1 and not migrate.is_old(data)  # the conversion left its mark
    assert migrate.migrate_if_old(data) is None and len(calls) == 1  # a current store: nothing
    (tmp_path / "_state" / "cursors").mkdir()  # 0.1's cursor files: old again
    assert migrate.is_old(data)


def test_the_config_is_read_once_per_run(dovecot, tmp_path, monkeypatch, prefect_harness):
    import mailusage.cli
    import pipelines.collect
    import pipelines.config
    from mailusage.cli import main
    from tests.conftest import MASTER_PASSWORD
    from tests.groundtruth import seed_regular
    from tests.pipelines.test_flow_and_cli import write_setup

    monkeypatch.setenv("MU_TEST_MASTER", MASTER_PASSWORD)
    seed_regular(dovecot, "once.read@danang.gov.vn", 3, seed=71)
    cfg = write_setup(tmp_path, dovecot, "O1,Một Lần,once.read@danang.gov.vn,VP,Văn phòng,no\n")
    reads: list[str] = []
    real = pipelines.config.load_config

    def counted(path):
        reads.append(str(path))
        return real(path)

    monkeypatch.setattr(pipelines.config, "load_config", counted)
    monkeypatch.setattr(pipelines.collect, "load_config", counted)
    # `mailusage collect` without a Prefect API: the CLI reads it and hands it on.
    monkeypatch.setattr(mailusage.cli, "_prefect_api", lambda: None)
    assert main(["collect", "--config", cfg, "--date", "2026-11-20", "--quiet"]) == 0
    assert len(reads) == 1, reads
    reads.clear()
    summary = pipelines.collect.run_collection(cfg, "2026-11-21", plain=True)
    assert summary.count("ok") == 1 and len(reads) == 1
    reads.clear()
    # The flow (a deployment's run, given the file's path) reads it once, for the night
    # and for its allowed failures alike.
    result = pipelines.collect.collect(config_path=cfg, night="2026-11-22")
    assert result["ok"] == 1 and len(reads) == 1, reads


@pytest.mark.parametrize("n, expected", [(1, [3]), (2, [2, 1]), (5, [1, 1, 1])])
def test_shards_deal_round_robin(n, expected):
    work = [night.Work("s", str(i), {}) for i in range(3)]
    assert [len(s) for s in night.shards(work, n)] == expected
