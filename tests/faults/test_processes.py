"""The collector killed mid-write, and runs that overlap."""

from __future__ import annotations

import contextlib
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import duckdb

from analytics.evaluate import MonthNotCollected
from pipelines.evaluate import run_evaluation
from tests.faults.conftest import FULL, NIGHT, World
from tests.faults.invariant import LEDGER, Entry
from tests.faults.world import Setup, add_mailboxes, as_truth, messages, seed_mail, truth

ROOT = Path(__file__).resolve().parents[2]
DATASETS = ("messages", "mailbox_status", "runs", "run_mailboxes")
# Upper bounds that a night of 50 mailboxes surely reaches: 2 staged files (messages,
# status) per shard, >= 4 shards; 2 night files built; 1 commit; 4 renames (messages,
# status, runs, run_mailboxes).
KINDS = {"batch": 8, "build": 2, "commit": 1, "replace": 4, "replaced": 4}


def child(setup: Setup, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.faults.child", str(setup.config), *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def readable(data: Path) -> int:
    """Every dataset reads with DuckDB; returns the messages row count."""
    rows = 0
    for ds in DATASETS:
        if list(data.glob(f"{ds}/night=*/*.parquet")):
            n = duckdb.sql(f"SELECT count(*) FROM read_parquet('{data}/{ds}/*/*.parquet')")
            count = n.fetchall()[0][0]
            rows = count if ds == "messages" else rows
    return rows


def kill_points(n: int, seed: int) -> list[tuple[str, int]]:
    rng = random.Random(seed)
    kinds = list(KINDS)
    # Every kind at least n // len(KINDS) times, at seeded random depths of the night.
    return [(kinds[i % len(kinds)], rng.randint(1, KINDS[kinds[i % len(kinds)]])) for i in range(n)]


def test_sigkill_mid_write_then_the_next_run_completes(world: World) -> None:
    points = kill_points(48 if FULL else 20, seed=4242)
    killed, rows_seen = 0, 0
    # Two kills in a row on each data directory, then a clean run completes it.
    for i in range(0, len(points), 2):
        setup = world.setup(f"killed-{i:02d}")
        for kind, n in points[i : i + 2]:
            proc = child(setup, NIGHT, "--kill", f"{kind}:{n}")
            _out, err = proc.communicate(timeout=300)
            assert proc.returncode == -9, f"{kind}:{n} not reached: {proc.returncode} {err}"
            killed += 1
            rows_seen += readable(setup.data)
        summary = setup.collect(NIGHT)
        assert summary.count("ok") == len(world.mailboxes)
        assert messages(setup.data) == messages(world.reference.data)
        assert not list(setup.data.rglob("*.tmp")), "temp files of the killed runs were left"
    rows = len(messages(world.reference.data))
    LEDGER.append(
        Entry(
            f"SIGKILL mid-write at {killed} seeded points (staged batch, night-file build, "
            "commit transaction, before/after rename)",
            killed + len(points) // 2,
            rows * len(points) // 2,
            0,
            0,
            0,
            0,
            "store readable by DuckDB after every kill",
        )
    )


def test_sigkill_during_the_final_write_of_a_2000_mailbox_night(fault_server, tmp_path) -> None:
    """At province scale the night's final write is long enough to be killed in: built
    night files half written, some already renamed into place. Nothing may be lost or
    counted twice, row for row against the files on the server."""
    mailboxes = add_mailboxes(fault_server, [f"big{i:04d}" for i in range(2000)])
    seed_mail(fault_server, mailboxes, random.Random(2000), night=0, most=3)
    fault_server.finish_seeding()
    setup = Setup(tmp_path / "big", fault_server, mailboxes, concurrency=4)
    # build:1   a night file being built, its first row batch written (no footer yet)
    # replaced:1  the first built file renamed into place, the others not yet
    kills = ("build:1", "replaced:1")
    for kind in kills:
        proc = child(setup, NIGHT, "--kill", kind)
        _out, err = proc.communicate(timeout=900)
        assert proc.returncode == -9, f"{kind} not reached: {proc.returncode} {err}"
        readable(setup.data)
    summary = setup.collect(NIGHT)
    assert summary.count("ok") == len(mailboxes)
    expected = truth(fault_server, mailboxes)  # once Dovecot has given every file its UID
    stored = messages(setup.data)
    assert len(stored) == len(expected), "rows lost or duplicated"
    assert as_truth(stored) == expected
    assert not list(setup.data.rglob("*.tmp")) and not list(
        (setup.data / "_state").glob("staging/*")
    )
    LEDGER.append(
        Entry(
            f"SIGKILL during the final write of a {len(mailboxes):,}-mailbox night "
            "(a night file half built; one night file renamed, the rest not)",
            len(kills) + 1,
            len(stored),
            0,
            0,
            0,
            0,
            "every message once, equal to the seeded files",
        )
    )


def test_two_collections_at_once_the_second_refuses(world: World, tmp_path: Path) -> None:
    setup = world.setup("overlap")
    release = tmp_path / "release"
    first = child(setup, NIGHT, "--hold-until", str(release))
    deadline = time.monotonic() + 60
    while not Path(f"{release}.held").exists():
        assert first.poll() is None, first.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.05)
    # The second is the command an operator (or a second cron line) would run.
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect")}
    second = subprocess.run(
        [sys.executable, "-m", "mailusage.cli", "collect", "--config", str(setup.config),
         "--date", NIGHT, "--quiet"],
        cwd=ROOT, capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    release.touch()
    _out, err = first.communicate(timeout=300)
    assert first.returncode == 0, err
    assert second.returncode == 3, second.stdout + second.stderr
    assert "another collection is running" in second.stderr
    assert f"pid {first.pid}" in second.stderr
    assert messages(setup.data) == messages(world.reference.data)
    runs = duckdb.sql(f"SELECT count(*) FROM read_parquet('{setup.data}/runs/*/*.parquet')")
    assert runs.fetchall()[0][0] == 1  # the refused run wrote nothing, not even a run row

    # A holder killed with SIGKILL leaves no stale lock: the next run goes ahead.
    holder = child(setup, NIGHT, "--hold-until", str(tmp_path / "never"))
    while not (tmp_path / "never.held").exists():
        assert holder.poll() is None
        time.sleep(0.05)
    holder.kill()
    holder.wait()
    assert setup.collect(NIGHT).count("ok") == len(world.mailboxes)
    assert messages(setup.data) == messages(world.reference.data)
    LEDGER.append(
        Entry(
            "two collect processes at once; then the lock holder SIGKILLed",
            3,
            len(messages(setup.data)),
            0,
            0,
            0,
            1,
            "second run refused: another collection is running (exit 3); no stale lock",
        )
    )


def test_evaluate_while_collect_writes(world: World, tmp_path: Path) -> None:
    setup = world.setup("evaluate during collect")
    nights = [f"2026-11-{d:02d}" for d in range(20, 26 if FULL else 23)]
    proc = child(setup, *nights)
    evaluations = 0
    try:
        while proc.poll() is None:
            # Before the first night commits there is nothing to evaluate, and it says so.
            with contextlib.suppress(MonthNotCollected):
                run_evaluation(str(setup.config), "2026-11")  # must never see half a file
            evaluations += 1
    finally:
        out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert evaluations >= 2, "the evaluations did not overlap the collection"
    assert [line.split()[1:] for line in out.splitlines()] == [["50", "0"]] * len(nights)
    assert messages(setup.data) == messages(world.reference.data)
