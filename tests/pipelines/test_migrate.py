"""A data directory written by release 0.1.0 (one file per mailbox per night, JSON cursors)
keeps working: `mailusage compact`, or the first collection, converts it with nothing lost.

The old directory is written by the old release itself: its source is taken from this
repository's history (`git archive`) and run against the test Dovecot.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from devkit.synth import make_message
from mailusage.cli import main
from pipelines.collect import run_collection
from pipelines.storage import DataDir
from tests.conftest import MASTER_PASSWORD
from tests.groundtruth import BASE, per_folder, seed_regular, truth
from tests.pipelines.test_flow_and_cli import write_setup

ROOT = Path(__file__).resolve().parents[2]
# The last commit of the per-mailbox layout (release 0.1.0 as it ran in production).
RELEASE_0_1 = "0a8ecd8"
PEOPLE = ["old.a@danang.gov.vn", "old.b@danang.gov.vn", "old.c@danang.gov.vn"]


def old_release(tmp: Path) -> Path:
    tree = tmp / "release-0.1"
    tree.mkdir()
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", RELEASE_0_1], capture_output=True, check=True
    )
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive.stdout, check=True)
    return tree


def collect_with(tree: Path, config: str, night: str) -> None:
    code = (
        "import sys; from pipelines.collect import run_collection; "
        f"s = run_collection({config!r}, {night!r}, plain=True); "
        "sys.exit(0 if s.count('ok') == 3 else 1)"
    )
    env = {**os.environ, "PYTHONPATH": str(tree), "MU_TEST_MASTER": MASTER_PASSWORD}
    subprocess.run([sys.executable, "-c", code], cwd=tree, env=env, check=True, timeout=300)


def rows(data: Path) -> list[tuple]:
    return sorted(
        duckdb.execute(
            "select mailbox, folder, uidvalidity, uid, message_id, size, epoch(sent_date), "
            "to_addrs from read_parquet($p, union_by_name = true)",
            parameters={"p": str(data / "messages" / "*" / "*.parquet")},
        ).fetchall()
    )


def add(server, mailbox: str, n: int, tag: str) -> None:
    for i in range(n):
        raw = make_message(
            "x@gmail.com", [mailbox], date=BASE + 9 * 86400 + i, message_id=f"<{tag}{i}@t>"
        )
        server.deliver(mailbox, "INBOX", raw, when=BASE + 9 * 86400 + i)
    server.finish_seeding(mailbox)


@pytest.fixture(scope="module")
def layout1(dovecot, tmp_path_factory) -> tuple[Path, str]:
    """A config and a data directory as release 0.1.0 left them after two nights and one
    run killed before its commit."""
    tmp = tmp_path_factory.mktemp("layout1")
    for i, m in enumerate(PEOPLE):
        seed_regular(dovecot, m, 20 + i, seed=60 + i)
    roster = "".join(f"NV{i},Cán bộ {i},{m},VP,Văn phòng,no\n" for i, m in enumerate(PEOPLE))
    config = write_setup(tmp, dovecot, roster)
    tree = old_release(tmp)
    collect_with(tree, config, "2026-11-20")
    add(dovecot, PEOPLE[0], 4, "n2-")
    collect_with(tree, config, "2026-11-21")
    data = tmp / "data"
    # Killed before its commit: night 22's file of a mailbox whose cursor says night 21.
    key = PEOPLE[1]
    stray = data / "messages" / "night=2026-11-22" / f"{key}.parquet"
    stray.parent.mkdir(parents=True)
    shutil.copy(data / "messages" / "night=2026-11-20" / f"{key}.parquet", stray)
    assert len(list((data / "_state" / "cursors").glob("*.json"))) == 3
    return data, config


def test_compact_converts_the_old_layout_with_nothing_lost(layout1, tmp_path, monkeypatch):
    old, _config = layout1
    committed = sorted(
        r
        for night in ("2026-11-20", "2026-11-21")
        for r in duckdb.execute(
            "select mailbox, folder, uidvalidity, uid, message_id, size, epoch(sent_date), "
            "to_addrs from read_parquet($p, union_by_name = true)",
            parameters={"p": str(old / "messages" / f"night={night}" / "*.parquet")},
        ).fetchall()
    )
    work = tmp_path / "copy"
    shutil.copytree(old.parent, work, ignore=shutil.ignore_patterns("release-0.1"))
    data = work / "data"
    cfg = str(work / "mailusage.toml")
    monkeypatch.setenv("MU_TEST_MASTER", MASTER_PASSWORD)

    assert main(["compact", "--config", cfg]) == 0
    assert rows(data) == committed  # every committed row once; the stray night dropped
    for ds in ("messages", "mailbox_status"):
        for night_dir in (data / ds).iterdir():
            assert [p.name for p in night_dir.iterdir()] == ["part-0.parquet"], night_dir
    assert not list((data / "messages").glob("night=2026-11-22/*.parquet"))
    assert not (data / "_state" / "cursors").exists()
    states = DataDir(data).states()
    assert sorted(states) == PEOPLE and {s.night for s in states.values()} == {"2026-11-21"}
    assert main(["compact", "--config", cfg]) == 0  # a second time: nothing to do
    assert rows(data) == committed


def test_first_collection_on_the_old_layout_converts_and_goes_on(
    dovecot, layout1, tmp_path, monkeypatch
):
    old, _config = layout1
    work = tmp_path / "copy"
    shutil.copytree(old.parent, work, ignore=shutil.ignore_patterns("release-0.1"))
    monkeypatch.setenv("MU_TEST_MASTER", MASTER_PASSWORD)
    add(dovecot, PEOPLE[1], 3, "n3-")
    summary = run_collection(str(work / "mailusage.toml"), "2026-11-23", plain=True)
    assert summary.count("ok") == 3
    assert {o.mailbox: o.messages_new for o in summary.outcomes} == {
        PEOPLE[0]: 0,
        PEOPLE[1]: 3,
        PEOPLE[2]: 0,
    }
    stored = rows(work / "data")
    assert len(stored) == len({tuple(map(str, r)) for r in stored})
    for m in PEOPLE:
        got = per_folder(truth(dovecot, m, ["INBOX", "Sent"]))
        mine = duckdb.execute(
            "select folder, count(*), sum(size), min(epoch(sent_date))::bigint, "
            "max(epoch(sent_date))::bigint from read_parquet($p) where mailbox = $m group by 1",
            parameters={"p": str(work / "data" / "messages" / "*" / "*.parquet"), "m": m},
        ).fetchall()
        assert {f: (n, int(s), lo, hi) for f, n, s, lo, hi in mine} == got
