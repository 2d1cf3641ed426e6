"""What an operator meets in the first month (issue 22): nights in order and recoverable,
secrets checked before anything runs, a roster as Excel writes it. The CLI as they run it,
against the real Dovecot."""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import duckdb
import pyarrow.parquet as pq
import pytest

from connectors.logfiles import head_of
from connectors.logins import LogCursor
from contract.roster import RosterError, RosterNotes, load_roster
from devkit.dovecot import LocalDovecot
from mailusage.cli import main
from mailusage.doctor import run_doctor
from pipelines.collect import collect, run_collection
from pipelines.config import load_config
from pipelines.night import NightRefused
from pipelines.secrets import SecretRef
from pipelines.storage import DataDir
from tests.conftest import MASTER_PASSWORD
from tests.groundtruth import seed_regular
from tests.pipelines.test_collect import add_messages
from tests.pipelines.test_flow_and_cli import ROSTER_HEADER, write_setup

ZONE = ZoneInfo("Asia/Ho_Chi_Minh")  # the configs' agency zone (the default)


def today() -> datetime:
    return datetime.now(ZONE)


def files(root: Path) -> dict[str, int]:
    """Every file of a data directory with its mtime (SQLite's -wal/-shm are its own)."""
    return {
        str(p.relative_to(root)): p.stat().st_mtime_ns
        for p in root.rglob("*")
        if p.is_file() and not p.name.endswith(("-shm", "-wal", ".lock"))
    }


def snapshot(root: Path) -> dict[str, object]:
    """The data of a store, independent of run ids: every night file of the datasets a
    night writes (as sorted rows), and the state database's cursors, index and history.
    Run records (runs/, run_mailboxes/) are the log of what ran, not data, and differ."""
    out: dict[str, object] = {}
    for dataset in ("messages", "mailbox_status", "forwarding", "contacts", "logins"):
        for path in sorted((root / dataset).glob("night=*/*.parquet")):
            rows = duckdb.execute(
                "select * from read_parquet(?) order by all", [str(path)]
            ).fetchall()
            out[str(path.relative_to(root))] = rows
    with sqlite3.connect(root / "_state" / "store.sqlite") as con:
        for table in (
            "cursors", "folder_nights", "cursor_history", "log_cursors", "log_cursor_history",
        ):  # fmt: skip
            out[table] = con.execute(f"select * from {table} order by 1, 2").fetchall()
    return out


def log_logins(log: Path, day: int, users: list[str]) -> None:
    """Append a Dovecot log line per login (one [[logins]] log source both stores read)."""
    with log.open("a") as fh:
        for i, user in enumerate(users):
            fh.write(
                f"Nov {day} 08:{i:02d}:00 imap-login: Info: Login: user=<{user}>, "
                f"method=PLAIN, rip=10.0.0.{i + 7}, lip=10.0.0.1, TLS\n"
            )


LOG_SOURCE = """
[[logins]]
name = "log"
kind = "dovecot-log"
path = "{path}"
timezone = "UTC"
"""


def roster(people: list[str]) -> str:
    return "".join(f"F{i},Cán bộ {i},{m},VP,Văn phòng,no\n" for i, m in enumerate(people))


# -- 1. nights in order, always recoverable ----------------------------------------------


def test_a_night_after_today_is_refused_and_nothing_is_written(
    dovecot, tmp_path, monkeypatch, capsys
):
    monkeypatch.setenv("MU_TEST_MASTER", MASTER_PASSWORD)
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    mailbox = "future.f1@danang.gov.vn"
    seed_regular(dovecot, mailbox, 3, seed=301)
    cfg = write_setup(tmp_path, dovecot, roster([mailbox]))
    tomorrow = (today() + timedelta(days=1)).date().isoformat()
    assert main(["collect", "--config", cfg, "--date", tomorrow]) == 2
    err = capsys.readouterr().err
    assert f"night {tomorrow} is after today" in err and "nothing was written" in err
    assert not (tmp_path / "data").exists()
    # the flow's own entry refuses it too (the deployment, a script)
    with pytest.raises(NightRefused, match="is after today"):
        run_collection(cfg, tomorrow, plain=True)
    assert not (tmp_path / "data").exists()
    # today itself is a night like any other
    assert main(["collect", "--config", cfg, "--date", today().date().isoformat()]) == 0


def test_forget_night_then_recollect_is_the_store_that_never_made_the_mistake(
    dovecot, tmp_path, monkeypatch, capsys
):
    """Two stores over the same mailboxes, collected at the same moments: one night by
    night, the other with a mistaken later night in between, skipped behind it, then
    forgotten and the skipped night collected again. The data must be the same — the
    login log's files and read positions included."""
    monkeypatch.setenv("MU_TEST_MASTER", MASTER_PASSWORD)
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    a, b, c = (f"forget.{x}@danang.gov.vn" for x in "abc")
    seed_regular(dovecot, a, 6, seed=311)
    seed_regular(dovecot, b, 4, seed=312)
    seed_regular(dovecot, c, 5, seed=313)
    (tmp_path / "ref").mkdir()
    (tmp_path / "bad").mkdir()
    log = tmp_path / "dovecot.log"
    log_logins(log, 1, [a, b])
    extra = LOG_SOURCE.format(path=log)
    ref = write_setup(tmp_path / "ref", dovecot, roster([a, b]), extra=extra)
    bad = write_setup(tmp_path / "bad", dovecot, roster([a, b]), extra=extra)

    def both(night: str) -> None:
        for cfg in (ref, bad):
            assert main(["collect", "--config", cfg, "--date", night, "--quiet"]) == 0

    both("2026-11-01")
    add_messages(dovecot, a, "INBOX", 3, "f-n2")
    log_logins(log, 2, [a])
    both("2026-11-02")
    add_messages(dovecot, b, "INBOX", 2, "f-n3")
    log_logins(log, 3, [b, a])
    # c joins the roster; the mistaken store collects 30 Nov instead of 3 Nov: c's first
    # night is the mistaken one
    for cfg in (ref, bad):
        (Path(cfg).parent / "roster.csv").write_text(
            ROSTER_HEADER + roster([a, b, c]), encoding="utf-8"
        )
    assert main(["collect", "--config", bad, "--date", "2026-11-30", "--quiet"]) == 0
    capsys.readouterr()
    # Every night after it is skipped: never a green run, and it says how to recover.
    assert main(["collect", "--config", bad, "--date", "2026-11-03", "--quiet"]) == 1
    out, err = capsys.readouterr()
    assert "ok 0, failed 0, skipped 3" in out
    assert "login sources: ok 0, skipped 1 of 1" in out
    assert "night 2026-11-30 is already committed" in err
    assert "mailusage forget-night 2026-11-30" in err
    assert "4 skipped" in err  # the login log is held back by the same night

    bad_root = tmp_path / "bad" / "data"
    # Not the latest night of its mailboxes: refused, nothing changed.
    before = files(bad_root)
    assert main(["forget-night", "--config", bad, "2026-11-02"]) == 2
    err = " ".join(capsys.readouterr().err.split())  # as one line, however the console wraps
    # 2 mailboxes and the login log (whose later night counts among them)
    assert "night 2026-11-02 is not the latest committed night of 3 mailbox(es)" in err
    assert "logins:log (2026-11-30)" in err
    assert "forget the later night(s) first" in err and "2026-11-30" in err
    assert files(bad_root) == before
    # --dry-run lists what it would do and changes nothing.
    assert main(["forget-night", "--config", bad, "2026-11-30", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "messages/night=2026-11-30/part-0.parquet" in out
    assert "restore the cursors of 3 mailbox(es)" in out
    assert "2 mailbox(es) to 2026-11-02" in out and "1 mailbox(es) to no night" in out
    assert "logins:log: read position back to night 2026-11-02" in out
    assert "dry run: nothing was changed" in out
    assert files(bad_root) == before
    assert main(["forget-night", "--config", bad, "2026-11-30"]) == 0
    assert "night 2026-11-30 forgotten" in capsys.readouterr().out
    assert not list(bad_root.glob("*/night=2026-11-30"))
    assert main(["forget-night", "--config", bad, "2026-11-30"]) == 0  # done already
    assert "nothing is stored for it" in capsys.readouterr().out

    both("2026-11-03")
    add_messages(dovecot, c, "INBOX", 2, "f-n4")
    log_logins(log, 4, [c])
    both("2026-11-04")
    got, want = snapshot(bad_root), snapshot(tmp_path / "ref" / "data")
    assert got.keys() == want.keys()
    # the login log was read once over, its read positions and their history the same
    assert [len(want[f"logins/night=2026-11-0{d}/log.parquet"]) for d in (1, 2, 3, 4)] == [
        2, 1, 2, 1,
    ]  # fmt: skip
    assert len(want["log_cursors"]) == 1 and len(want["log_cursor_history"]) == 4
    for key in want:
        assert got[key] == want[key], key
    # and the messages are those the server holds, each once
    stored = duckdb.execute(
        "select mailbox, count(*), count(distinct (folder, uid)) from read_parquet(?) "
        "group by 1 order by 1",
        [str(bad_root / "messages" / "*" / "*.parquet")],
    ).fetchall()
    assert stored == [(a, 9, 9), (b, 6, 6), (c, 7, 7)]


def test_forget_night_on_a_store_without_cursor_history(dovecot, tmp_path, monkeypatch, capsys):
    """A store whose mistaken night was committed before the cursor history existed (or
    longer ago than it keeps): the night is forgotten from the cursors it started from;
    later nights are collected as if it never ran, the night before cannot be re-run."""
    monkeypatch.setenv("MU_TEST_MASTER", MASTER_PASSWORD)
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    mailbox = "forget.old@danang.gov.vn"
    seed_regular(dovecot, mailbox, 5, seed=321)
    cfg = write_setup(tmp_path, dovecot, roster([mailbox]))
    assert main(["collect", "--config", cfg, "--date", "2026-11-01", "--quiet"]) == 0
    add_messages(dovecot, mailbox, "INBOX", 2, "old-n2")
    assert main(["collect", "--config", cfg, "--date", "2026-11-29", "--quiet"]) == 0
    data = DataDir(tmp_path / "data")
    with data.db() as con, con:
        con.execute("delete from cursor_history")
    capsys.readouterr()
    assert main(["forget-night", "--config", cfg, "2026-11-29"]) == 0
    assert "the start of the night before is not kept" in capsys.readouterr().out
    state = data.state(mailbox)
    assert state is not None and (state.night, state.before) == ("2026-11-01", None)
    assert main(["collect", "--config", cfg, "--date", "2026-11-01", "--quiet"]) == 1
    assert "cannot be collected again" in capsys.readouterr().err
    assert main(["collect", "--config", cfg, "--date", "2026-11-02", "--quiet"]) == 0
    per_night = duckdb.execute(
        "select night, count(*) from read_parquet(?, hive_partitioning = true, "
        "hive_types = {'night': varchar}) group by 1 order by 1",
        [str(tmp_path / "data" / "messages" / "*" / "*.parquet")],
    ).fetchall()
    assert per_night == [("2026-11-01", 5), ("2026-11-02", 2)]


def test_forget_night_restores_a_log_sources_read_position(tmp_path):
    """A [[logins]] log's read position goes back to where the forgotten night started,
    and the night before keeps its own start (the record signals.py commits)."""
    from pipelines.storage import LogState

    data = DataDir(tmp_path)
    data.commit_log("log", LogState("2026-11-01", None, LogCursor(7, 100)))
    data.commit_log("log", LogState("2026-11-02", LogCursor(7, 100), LogCursor(7, 250)))
    night2 = data.log_state("log")
    data.commit_log("log", LogState("2026-11-30", LogCursor(7, 250), LogCursor(7, 900)))
    data.write_table("logins", "2026-11-30", "log", _empty_logins())
    plan = data.plan_forget("2026-11-30")
    assert plan.refusal() == ""
    data.forget(plan)
    restored = data.log_state("log")
    assert restored is not None and night2 is not None
    assert (restored.night, restored.before, restored.after) == (
        night2.night, night2.before, night2.after,
    )  # fmt: skip
    assert restored.start("log", "2026-11-03") == LogCursor(7, 250)
    assert restored.start("log", "2026-11-02") == LogCursor(7, 100)
    assert not (tmp_path / "logins" / "night=2026-11-30").exists()
    # and the night before it can be forgotten in turn, back to the first night
    data.forget(data.plan_forget("2026-11-02"))
    first = data.log_state("log")
    assert first is not None and (first.night, first.before, first.after) == (
        "2026-11-01", None, LogCursor(7, 100),
    )  # fmt: skip


def test_json_log_positions_of_an_old_store_move_into_the_state_database(tmp_path):
    """A data directory of a release that kept log positions as `_state/logs/<source>.json`
    reads on exactly where it stopped — no line read twice, none lost — and forget-night
    still finds the night before; the JSON files are gone after the first use."""
    from pipelines.config import LoginSourceConfig
    from pipelines.signals import collect_logins

    log = tmp_path / "dovecot.log"
    log_logins(log, 1, ["a@x.vn", "b@x.vn"])
    first = log.stat().st_size
    log_logins(log, 2, ["c@x.vn"])
    second = log.stat().st_size
    inode = log.stat().st_ino
    old = tmp_path / "data" / "_state" / "logs"
    old.mkdir(parents=True)
    # exactly what signals.py wrote before the one store (nights 1 and 2 read)
    (old / "mail1.json").write_text(
        json.dumps(
            {
                "night": "2026-11-02",
                "before": {"inode": inode, "offset": first, "head": None},
                "after": {"inode": inode, "offset": second, "head": None},
                "previous": {"night": "2026-11-01", "before": None},
            }
        )
    )
    log_logins(log, 3, ["d@x.vn", "a@x.vn"])
    src = LoginSourceConfig("mail1", "dovecot-log", path=log, timezone="UTC")
    data = DataDir(tmp_path / "data")
    assert collect_logins(src, "2026-11-03", data) == 2  # the two new lines, only those
    got = pq.read_table(data.night_file("logins", "2026-11-03", "mail1"))
    assert sorted(got.column("mailbox").to_pylist()) == ["a@x.vn", "d@x.vn"]
    assert not old.exists()
    state = data.log_state("mail1")
    assert state is not None and state.night == "2026-11-03"
    # the one log reader's cursor also names the file by its first line (found again
    # once rotated and compressed); a migrated cursor without one still reads on
    first_line = log.read_bytes().split(b"\n")[0] + b"\n"
    assert state.before == LogCursor(inode, second) and state.after == LogCursor(
        inode, log.stat().st_size, head_of(first_line)
    )
    # the migrated history: forgetting night 3 then night 2 goes back to night 1's record
    data.forget(data.plan_forget("2026-11-03"))
    data.forget(data.plan_forget("2026-11-02"))
    back = data.log_state("mail1")
    assert back is not None
    assert (back.night, back.before, back.after) == ("2026-11-01", None, LogCursor(inode, first))
    # and night 2 read again starts where night 1 stopped: its line and the two after it
    assert collect_logins(src, "2026-11-02", data) == 3
    got = pq.read_table(data.night_file("logins", "2026-11-02", "mail1"))
    assert sorted(got.column("mailbox").to_pylist()) == ["a@x.vn", "c@x.vn", "d@x.vn"]


def test_a_migration_killed_before_the_json_files_went_is_finished_the_same(tmp_path):
    """Killed between the transaction and removing the files, the next use imports the
    same records again: the store ends as if the migration had run once."""
    from pipelines.storage import LogState

    old = tmp_path / "_state" / "logs"
    old.mkdir(parents=True)
    text = json.dumps(
        {
            "night": "2026-11-02",
            "before": {"inode": 7, "offset": 100, "head": None},
            "after": {"inode": 7, "offset": 250, "head": "ab12"},
            "previous": {"night": "2026-11-01", "before": None},
        }
    )
    (old / "log.json").write_text(text)
    data = DataDir(tmp_path)
    once = data.log_state("log")
    assert once == LogState("2026-11-02", LogCursor(7, 100), LogCursor(7, 250, "ab12"))
    assert not old.exists()
    with data.db() as con:
        history = con.execute("select * from log_cursor_history order by night").fetchall()
    assert [row[1] for row in history] == ["2026-11-01", "2026-11-02"]
    old.mkdir()
    (old / "log.json").write_text(text)  # as a kill before the unlink leaves it
    assert data.log_state("log") == once and not old.exists()
    with data.db() as con:
        again = con.execute("select * from log_cursor_history order by night").fetchall()
    assert again == history


def _empty_logins():  # type: ignore[no-untyped-def]
    import pyarrow as pa

    from contract.datasets import LOGINS

    return pa.Table.from_pylist([], schema=LOGINS)


def test_a_skipped_night_fails_the_flow_run(dovecot, tmp_path, monkeypatch, prefect_harness):
    monkeypatch.setenv("MU_TEST_MASTER", MASTER_PASSWORD)
    mailbox = "skip.flow@danang.gov.vn"
    seed_regular(dovecot, mailbox, 2, seed=331)
    cfg = write_setup(tmp_path, dovecot, roster([mailbox]))
    assert collect(config_path=cfg, night="2026-11-25")["ok"] == 1
    state = collect(config_path=cfg, night="2026-11-24", return_state=True)
    assert state.is_failed()
    assert "ok 0, failed 0, skipped 1" in state.message
    assert "mailusage forget-night 2026-11-25" in state.message
    tomorrow = (today() + timedelta(days=1)).date().isoformat()
    state = collect(config_path=cfg, night=tomorrow, return_state=True)
    assert state.is_failed() and "is after today" in state.message


def test_evaluate_refuses_a_month_that_has_not_ended(dovecot, tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    cfg = write_setup(tmp_path, dovecot, roster(["eval.e1@danang.gov.vn"]))
    month = today().strftime("%Y-%m")
    assert main(["evaluate", "--config", cfg, "--month", month]) == 2
    err = capsys.readouterr().err
    assert f"month {month} has not ended" in err and "--partial" in err
    # With --partial it goes on (and finds that nothing of it was collected here).
    assert main(["evaluate", "--config", cfg, "--month", month, "--partial"]) == 2
    assert f"no night of {month} was collected" in capsys.readouterr().err
    following = (today().replace(day=1) + timedelta(days=32)).strftime("%Y-%m")
    assert main(["evaluate", "--config", cfg, "--month", following, "--partial"]) == 2
    assert f"month {following} has not begun" in capsys.readouterr().err
    assert not (tmp_path / "reports").exists()


# -- 2. secrets checked before anything runs ---------------------------------------------


@pytest.mark.parametrize("value", [None, ""])
def test_collect_refuses_an_unset_or_empty_secret_and_changes_nothing(
    dovecot, tmp_path, monkeypatch, capsys, value
):
    if value is None:
        monkeypatch.delenv("MU_TEST_MASTER", raising=False)
    else:
        monkeypatch.setenv("MU_TEST_MASTER", value)
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    cfg = write_setup(tmp_path, dovecot, roster(["secret.s1@danang.gov.vn"]))
    assert main(["collect", "--config", cfg, "--date", "2026-11-22", "--quiet"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and "Traceback" not in err
    assert err.strip().splitlines() == [
        "error: source dovecot: environment variable MU_TEST_MASTER is not set (it holds a "
        "password); nothing was collected"
    ]
    assert not (tmp_path / "data").exists()  # no run record, no failed mailbox rows


@pytest.mark.parametrize("server_up", [True, False])
def test_doctor_fails_an_unset_secret_whether_or_not_the_server_answers(
    dovecot: LocalDovecot, tmp_path, monkeypatch, capsys, server_up
):
    monkeypatch.delenv("MU_TEST_MASTER", raising=False)
    cfg = write_setup(tmp_path, dovecot, roster(["secret.s2@danang.gov.vn"]))
    if not server_up:  # a port nothing listens on
        text = Path(cfg).read_text()
        Path(cfg).write_text(text.replace(f"port = {dovecot.imaps_port}", "port = 1"))
    assert main(["doctor", "--config", cfg]) == 1
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    checks = {(c.subject, c.check): c for c in run_doctor(load_config(cfg))}
    secret = checks[("dovecot", "secret")]
    assert secret.status == "fail"
    assert secret.detail == "environment variable MU_TEST_MASTER is not set (it holds a password)"
    if server_up:  # the source's checks stop before the login that would need it
        assert checks[("dovecot", "tls")].status == "ok"
        assert checks[("dovecot", "login")].detail.startswith("not tried: environment variable")
    else:
        assert checks[("dovecot", "tcp")].status == "fail"


def test_a_per_user_secret_blocks_only_when_none_is_set(dovecot, tmp_path, monkeypatch):
    from pipelines.secrets import secret_problems

    cfg_path = write_setup(
        tmp_path, dovecot, roster(["pu.one@danang.gov.vn", "pu.two@danang.gov.vn"])
    )
    text = (
        Path(cfg_path)
        .read_text()
        .replace('{ env = "MU_TEST_MASTER" }', '{ env_prefix = "MU_PW_" }')
    )
    Path(cfg_path).write_text(text)
    cfg = load_config(cfg_path)
    people = load_roster(cfg.roster_path)
    monkeypatch.delenv("MU_PW_PU_ONE", raising=False)
    monkeypatch.delenv("MU_PW_PU_TWO", raising=False)
    problems = secret_problems(cfg, people)
    assert [p.blocking for p in problems] == [True]
    assert "none of the 2 per-user password variables" in str(problems[0])
    monkeypatch.setenv("MU_PW_PU_ONE", "x")
    problems = secret_problems(cfg, people)
    assert [(p.blocking, p.detail) for p in problems] == [
        (
            False,
            "pu.two@danang.gov.vn: environment variable MU_PW_PU_TWO is not set (it holds a password)",
        )
    ]


def test_an_empty_prefect_secret_block_is_a_problem(prefect_harness):
    from prefect.blocks.system import Secret

    Secret(value="").save("mailusage-empty-secret", overwrite=True)
    assert SecretRef(prefect_secret="mailusage-empty-secret").problem() == (
        "Prefect Secret block 'mailusage-empty-secret' is empty"
    )
    assert "not found" in (SecretRef(prefect_secret="mailusage-absent").problem() or "")


# -- 3. a roster as Excel writes it --------------------------------------------------------

EXCEL_HEADER = ["employee_id", "full_name", "email", "unit_code", "unit_name", "is_unit_mailbox"]
EXCEL_ROWS = [
    ["NV1", "Đỗ Thị Hà", "ha.dt@danang.gov.vn", "VP", "Văn phòng", "no"],
    ["NV2", "Lê Văn Bình, phó phòng", "binh.lv@danang.gov.vn", "VP", "Văn phòng", ""],
    ["NV3", "Trần Thị C", "", "TC", "Phòng Tài chính", "no"],
]


def excel_csv(sep: str, bom: bool, blank_rows: int) -> bytes:
    """A roster as Excel saves it: its list separator, a BOM for 'CSV UTF-8', CRLF, the
    empty rows it leaves under a table, a cell quoted where it holds the separator."""

    def cell(v: str) -> str:
        return f'"{v}"' if sep in v or "," in v else v

    lines = [sep.join(EXCEL_HEADER)] + [sep.join(cell(v) for v in r) for r in EXCEL_ROWS]
    lines += [sep * (len(EXCEL_HEADER) - 1)] * blank_rows
    return ("\ufeff" if bom else "").encode() + ("\r\n".join(lines) + "\r\n").encode()


@pytest.mark.parametrize("sep", [";", ",", "\t"])
@pytest.mark.parametrize("bom", [True, False])
def test_roster_as_excel_writes_it(tmp_path, sep, bom):
    path = tmp_path / "roster.csv"
    path.write_bytes(excel_csv(sep, bom, blank_rows=2))
    notes = RosterNotes()
    people = load_roster(path, notes=notes)
    assert [(p.employee_id, p.full_name, p.email, p.unit_name) for p in people] == [
        (r[0], r[1], r[2], r[4]) for r in EXCEL_ROWS
    ]
    assert (notes.delimiter, notes.blank_rows) == (sep, 2)
    assert notes.lines == {"NV1": 2, "NV2": 3, "NV3": 4}


def test_roster_counts_bad_rows_not_problems(tmp_path):
    path = tmp_path / "roster.csv"
    data = excel_csv(";", True, blank_rows=2).decode("utf-8-sig")
    # two bad rows, five problems; a blank row between them is skipped, lines still exact
    data += ";;nobody@danang.gov.vn;;;no\r\n;;;;;\r\nNV1;X;x@danang.gov.vn;VP;Văn phòng;maybe\r\n"
    path.write_text(data, encoding="utf-8-sig")
    with pytest.raises(RosterError) as err:
        load_roster(path)
    text = str(err.value)
    assert "2 bad row(s), 5 problem(s)" in text
    assert "line 7: employee_id is empty" in text and "line 7: full_name is empty" in text
    assert "line 9: employee_id NV1 repeats line 2" in text
    assert "line 9: is_unit_mailbox must be yes/no" in text


def test_a_semicolon_roster_missing_a_column_says_how_it_was_read(tmp_path):
    path = tmp_path / "roster.csv"
    path.write_text("employee_id;full_name;email;unit_code\r\n", encoding="utf-8-sig")
    with pytest.raises(
        RosterError,
        match=r"missing required column\(s\) unit_name \(header read "
        "as separated by semicolons",
    ):
        load_roster(path)


def test_doctor_warns_of_an_address_outside_the_official_domains_and_a_blanked_email(
    dovecot, tmp_path, monkeypatch, capsys
):
    monkeypatch.setenv("MU_TEST_MASTER", MASTER_PASSWORD)
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    kept, blanked = "warn.kept@danang.gov.vn", "warn.blanked@danang.gov.vn"
    seed_regular(dovecot, kept, 3, seed=341)
    seed_regular(dovecot, blanked, 3, seed=342)
    cfg = write_setup(
        tmp_path,
        dovecot,
        f"W1,Nguyễn Văn Kế,{kept},VP,Văn phòng,no\nW2,Phạm Thị Bảo,{blanked},VP,Văn phòng,no\n",
    )
    assert main(["collect", "--config", cfg, "--date", "2026-11-20", "--quiet"]) == 0
    assert main(["evaluate", "--config", cfg, "--month", "2026-11"]) == 0
    capsys.readouterr()
    (tmp_path / "roster.csv").write_text(
        ROSTER_HEADER
        + f"W1,Nguyễn Văn Kế,{kept},VP,Văn phòng,no\n"
        + "W2,Phạm Thị Bảo,,VP,Văn phòng,no\n"
        + "W3,Lê Gmail,le.gmail@gmail.com,VP,Văn phòng,no\n",
        encoding="utf-8-sig",
    )
    assert main(["doctor", "--config", cfg]) == 0  # warnings, not failures
    warned = {
        c.check: c.detail
        for c in run_doctor(load_config(cfg))
        if c.subject == "roster" and c.status == "warn"
    }
    assert warned["official-domain"].startswith(
        "line 4: W3's email le.gmail@gmail.com is outside the official domains (danang.gov.vn)"
    )
    assert warned["blank-email"].startswith(
        f"line 3: Phạm Thị Bảo (W2) has no email, but their mailbox {blanked} (the 2026-11 "
        "evaluation) has data in the store"
    )
