"""Reminders before the caps through a real Postfix (devkit.postfix), read back from the
heads' and the staff's Dovecot mailboxes over IMAP.

The agency is tests/analytics/fixture.py's, whose November is counted by hand there; on
15 November (the window 1-14 November) and on 25 November (1-24) the people not yet
active are, from that table:

  15 Nov  unit A: P05 (reads first on night 20), P09 (sends first on day 20)
          unit B: P04 (first mail day 15), P06 (nothing), P10 (reads night 22);
                  P08 unknown (never collected)
  25 Nov  unit A: nobody; unit B: P06; P08 unknown
  never   P01-P03 (active early), P07 (on leave), P11 (no mailbox), UA (a unit mailbox)
"""

from __future__ import annotations

import email
import os
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest

from devkit.dovecot import LocalDovecot
from devkit.postfix import POSTFIX, LocalPostfix
from mailusage.cli import main
from pipelines.config import ConfigError, load_config
from pipelines.outbox import Outbox
from pipelines.remind import run_reminders
from pipelines.storage import DataDir
from tests.analytics.fixture import ROSTER, addr, build, write_roster
from tests.mail_read import delivered
from tests.mail_read import inbox as read_inbox

pytestmark = pytest.mark.skipif(
    not Path(POSTFIX).exists() or os.geteuid() != 0,
    reason="needs Debian's postfix (make setup installs it) and root (Postfix's master runs as root)",
)

SENDER = "vhtt@demo.gov.vn"
HEADS = {"A": "head.a@demo.gov.vn", "B": "head.b@demo.gov.vn"}
PASSWORDS = {SENDER: "pw-vhtt", **{h: f"pw-{h}" for h in HEADS.values()}}
PASSWORDS |= {addr(row[0]): f"pw-{row[0]}" for row in ROSTER if row[4]}
NAMES = {row[0]: row[1] for row in ROSTER}
UNIT = {row[0]: row[2] for row in ROSTER}
INACTIVE_15 = {"A": ["P05", "P09"], "B": ["P04", "P06", "P10"]}
UNKNOWN = {"A": [], "B": ["P08"]}


@pytest.fixture(scope="module")
def mta(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalDovecot, LocalPostfix]]:
    dovecot = LocalDovecot.start(tmp_path_factory.mktemp("remind-dovecot"), mta=True)
    try:
        dovecot.add_users(PASSWORDS)
        dovecot.finish_seeding()
        postfix = LocalPostfix.start(
            tmp_path_factory.mktemp("remind-postfix"),
            dovecot,
            domains=["demo.gov.vn", "lienchieu.danang.gov.vn"],
        )
        try:
            yield dovecot, postfix
        finally:
            postfix.stop()
    finally:
        dovecot.stop()


def setup(tmp: Path, dc: LocalDovecot, pf: LocalPostfix, reminders: str) -> Path:
    write_roster(tmp / "roster.csv")
    build(tmp / "data")
    path = tmp / "mailusage.toml"
    path.write_text(
        f"""
[agency]
name = "UBND quận Liên Chiểu"
official_domains = ["lienchieu.danang.gov.vn"]
[storage]
data_dir = "data"
[roster]
path = "roster.csv"
[[sources]]
name = "fixture"
host = "127.0.0.1"
port = {dc.imaps_port}
master_user = "admin"
password = {{ env = "MU_TEST_UNUSED" }}
[[logins]]
name = "lastlogin"
kind = "dovecot-dict"
[delivery]
host = "127.0.0.1"
port = {pf.submission_port}
user = "{SENDER}"
from = "{SENDER}"
password = {{ env = "MU_TEST_SMTP_PASSWORD" }}
ca_file = "{pf.ca_file}"
retries = 0
[reminders]
{reminders}
""",
        encoding="utf-8",
    )
    return path


REMINDERS = """days = [15, 25]
heads = { A = "head.a@demo.gov.vn", B = ["head.b@demo.gov.vn"] }
notify_staff = true
rate_per_minute = 600
"""


def inbox(dc: LocalDovecot, user: str) -> list[email.message.EmailMessage]:
    return read_inbox(dc, user, PASSWORDS[user])


def settle(pf: LocalPostfix, dc: LocalDovecot, user: str, count: int) -> list:
    return delivered(dc, pf, user, PASSWORDS[user], count)


def body(msg: email.message.EmailMessage) -> str:
    return msg.get_body(("plain",)).get_content()


def named(text: str) -> set[str]:
    """The roster people a text names: by id, name or address (independently of how)."""
    return {pid for pid in NAMES if f"({pid})" in text or NAMES[pid] in text or addr(pid) in text}


def test_each_head_gets_only_their_units_list_once_and_each_inactive_a_note(
    mta, tmp_path, monkeypatch, capsys
):
    dc, pf = mta
    monkeypatch.setenv("MU_TEST_SMTP_PASSWORD", PASSWORDS[SENDER])
    cfg_path = setup(tmp_path, dc, pf, REMINDERS)
    cfg = load_config(cfg_path)
    everyone = [*HEADS.values(), *(addr(p) for p in NAMES if p not in ("P11",))]
    before = {u: len(inbox(dc, u)) for u in everyone}

    assert main(["remind", "--config", str(cfg_path), "--date", "2026-11-15", "--dry-run"]) == 0
    assert capsys.readouterr().out.count("would send") == 2 + 5

    clock = [0.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        clock[0] += seconds

    report = run_reminders(cfg, date(2026, 11, 15), sleep=sleep, clock=lambda: clock[0])
    sent = {(m.kind, m.recipient): m.outcome for m in report.messages}
    staff = sorted(p for ids in INACTIVE_15.values() for p in ids)
    assert sent == {
        ("head", HEADS["A"]): "sent",
        ("head", HEADS["B"]): "sent",
        **{("staff", addr(p)): "sent" for p in staff},
    }
    # 600 a minute: one message every 0.1 s, the first at once (a fake clock: no waiting)
    assert slept == [pytest.approx(0.1)] * 6

    for unit, head in HEADS.items():
        got = settle(pf, dc, head, before[head] + 1)
        assert len(got) == before[head] + 1  # the dry run sent nothing
        text = body(got[-1])
        assert got[-1]["Subject"].startswith("Nhắc nhở sử dụng thư điện tử công vụ tháng 11/2026")
        # only this unit's people, and of them exactly the not-yet-active ones
        assert named(text) == set(INACTIVE_15[unit] + UNKNOWN[unit])
        assert all(UNIT[p] == unit for p in named(text))
        listed, _, unknown_part = text.partition("Chưa xác định được")
        assert named(listed) == set(INACTIVE_15[unit])
        assert named(unknown_part) == set(UNKNOWN[unit])
        for pid in INACTIVE_15[unit]:  # days active and last login, measured: none recorded
            assert (
                f"({pid}) — {addr(pid)} — số ngày hoạt động: 0 — đăng nhập gần nhất: chưa ghi nhận"
                in text
            )
    assert "chưa thu thập được dữ liệu hộp thư" in body(inbox(dc, HEADS["B"])[-1])

    for pid in NAMES:
        if pid == "P11":
            continue
        got = settle(pf, dc, addr(pid), before[addr(pid)] + (pid in staff))
        assert len(got) == before[addr(pid)] + (pid in staff), pid  # P08 (unknown): no note
        if pid in staff:
            assert named(body(got[-1])) == {pid}

    rows = Outbox(DataDir(cfg.data_dir), "reminders").rows(day="2026-11-15")
    assert sorted((r["kind"], r["recipient"], r["outcome"]) for r in rows) == sorted(
        (kind, rcpt, "sent") for kind, rcpt in sent
    )

    # the same day again (a rerun, a retry): nothing new
    assert main(["remind", "--config", str(cfg_path), "--date", "2026-11-15"]) == 0
    assert capsys.readouterr().out.count("already sent") == 7
    pf.wait_idle()
    assert len(inbox(dc, HEADS["A"])) == before[HEADS["A"]] + 1
    # a day not in reminders.days does nothing
    assert main(["remind", "--config", str(cfg_path), "--date", "2026-11-16"]) == 0
    assert "not a reminder day" in capsys.readouterr().out
    assert len(Outbox(DataDir(cfg.data_dir), "reminders").rows()) == 7


def test_the_remind_flow_on_the_25th(mta, tmp_path, monkeypatch, prefect_harness):
    from pipelines.remind import remind

    dc, pf = mta
    monkeypatch.setenv("MU_TEST_SMTP_PASSWORD", PASSWORDS[SENDER])
    cfg_path = setup(tmp_path, dc, pf, REMINDERS)
    before = {u: len(inbox(dc, u)) for u in (*HEADS.values(), addr("P06"), addr("P04"))}

    result = remind(config_path=str(cfg_path), day="2026-11-25")
    # unit A has nobody left to remind: no message to its head; unit B: P06 (+ P08 unknown)
    assert result["outcomes"] == {"sent": 2}
    text = body(settle(pf, dc, HEADS["B"], before[HEADS["B"]] + 1)[-1])
    assert named(text) == {"P06", "P08"}
    assert len(settle(pf, dc, addr("P06"), before[addr("P06")] + 1)) == before[addr("P06")] + 1
    assert len(inbox(dc, HEADS["A"])) == before[HEADS["A"]]
    assert len(inbox(dc, addr("P04"))) == before[addr("P04")]
    assert remind(config_path=str(cfg_path), day="2026-11-24")["reminder_day"] is False


def test_a_wrong_smtp_password_is_recorded_and_never_shown(mta, tmp_path, monkeypatch, capsys):
    dc, pf = mta
    wrong = "not-the-Passw0rd"
    monkeypatch.setenv("MU_TEST_SMTP_PASSWORD", wrong)
    cfg_path = setup(tmp_path, dc, pf, REMINDERS.replace("notify_staff = true", ""))
    assert main(["remind", "--config", str(cfg_path), "--date", "2026-11-15"]) == 1
    shown = capsys.readouterr()
    assert "refused the login" in shown.out and wrong not in shown.out + shown.err
    rows = Outbox(DataDir(load_config(cfg_path).data_dir), "reminders").rows()
    assert [r["outcome"] for r in rows] == ["failed", "failed"]
    assert wrong not in str(rows)


def test_a_head_of_a_unit_not_in_the_roster_is_named(mta, tmp_path, monkeypatch):
    dc, pf = mta
    cfg_path = setup(tmp_path, dc, pf, 'days = [15]\nheads = { Z = "head.z@demo.gov.vn" }')
    with pytest.raises(ConfigError, match=r"reminders.heads.Z: no unit 'Z' in the roster"):
        run_reminders(load_config(cfg_path), date(2026, 11, 15), dry_run=True)


@pytest.mark.parametrize(
    ("reminders", "message"),
    [
        ("days = [31]", "reminders.days: 31 is not a day from 1 to 28"),
        ("days = []", "reminders.days is required"),
        ('days = [15]\nheads = { A = "nobody" }', "reminders.heads.A: 'nobody' is not"),
        ("days = [15]\nrate_per_minute = 0", "reminders.rate_per_minute must be 1 or more"),
    ],
)
def test_a_bad_reminders_section_is_named(tmp_path, reminders, message):
    (tmp_path / "roster.csv").write_text("")
    (tmp_path / "c.toml").write_text(
        '[roster]\npath = "roster.csv"\n[[sources]]\nname = "s"\nhost = "h"\nmaster_user = "m"\n'
        'password = { env = "X" }\n[delivery]\nhost = "h"\nuser = "u@x.vn"\nfrom = "u@x.vn"\n'
        f'password = {{ env = "X" }}\n[reminders]\n{reminders}\n'
    )
    with pytest.raises(ConfigError, match=message):
        load_config(tmp_path / "c.toml")


def test_reminders_need_a_delivery_section(tmp_path):
    (tmp_path / "roster.csv").write_text("")
    (tmp_path / "c.toml").write_text(
        '[roster]\npath = "roster.csv"\n[[sources]]\nname = "s"\nhost = "h"\nmaster_user = "m"\n'
        'password = { env = "X" }\n[reminders]\ndays = [15]\n'
    )
    with pytest.raises(ConfigError, match=r"reminders: needs a \[delivery\] section"):
        load_config(tmp_path / "c.toml")


def test_doctor_names_the_units_without_a_head(mta, tmp_path, monkeypatch):
    from mailusage.doctor import run_doctor

    dc, pf = mta
    monkeypatch.setenv("MU_TEST_SMTP_PASSWORD", PASSWORDS[SENDER])
    cfg_path = setup(tmp_path, dc, pf, 'days = [15]\nheads = { A = "head.a@demo.gov.vn" }')
    (check,) = [c for c in run_doctor(load_config(cfg_path)) if c.subject == "reminders"]
    assert (check.status, check.detail) == (
        "warn",
        "1 unit head(s); days 15; no head for B: not reminded",
    )


def test_the_unit_trees_heads_are_reminded_and_the_config_names_win(mta, tmp_path):
    from pipelines.remind import UnitHead, unit_heads
    from tests.analytics.fixture import people

    dc, pf = mta
    cfg_path = setup(tmp_path, dc, pf, 'days = [15]\nheads = { B = "pho.b@demo.gov.vn" }')
    (tmp_path / "units.csv").write_text(
        "unit_code,unit_name,parent_code,kind,head_email\n"
        "Q,UBND quận Liên Chiểu,,UBND quận,chutich.q@demo.gov.vn\n"
        "A,UBND phường Hòa Minh,Q,UBND phường,Truong.A@demo.gov.vn\n"
        "B,Phòng Tài chính - Kế hoạch,Q,phòng,truong.b@demo.gov.vn\n",
        encoding="utf-8",
    )
    text = cfg_path.read_text().replace(
        'path = "roster.csv"', 'path = "roster.csv"\nunits = "units.csv"'
    )
    cfg_path.write_text(text)
    assert unit_heads(load_config(cfg_path), people(tmp_path)) == [
        UnitHead("A", "UBND phường Hòa Minh", ("truong.a@demo.gov.vn",)),  # from the tree
        UnitHead("B", "Phòng Tài chính - Kế hoạch", ("pho.b@demo.gov.vn",)),  # the config's
    ]  # Q has no staff of its own: nobody to list
