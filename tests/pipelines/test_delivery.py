"""The month's bundle mailed through a real Postfix (devkit.postfix: STARTTLS submission,
SASL through the test Dovecot, LMTP into it), read back from the recipients' mailboxes
over IMAP and compared byte for byte with the bundle's files."""

from __future__ import annotations

import email
import hashlib
import os
import re
from collections.abc import Iterator
from email import policy
from pathlib import Path

import pytest

from devkit.dovecot import LocalDovecot
from devkit.postfix import POSTFIX, LocalPostfix
from mailusage.cli import main
from pipelines.config import load_config
from pipelines.delivery import (
    ATTACHED,
    Bundle,
    DeliveryError,
    DeliveryFailed,
    _retry_when_transient,
    deliver_month,
)
from pipelines.outbox import Outbox
from pipelines.storage import DataDir
from tests.mail_read import delivered, inbox

pytestmark = pytest.mark.skipif(
    not Path(POSTFIX).exists() or os.geteuid() != 0,
    reason="needs Debian's postfix (make setup installs it) and root (Postfix's master runs as root)",
)

MONTH = "2026-11"
SENDER = "baocao@demo.gov.vn"
USERS = {
    SENDER: "pw-baocao-sender",
    "chutich@demo.gov.vn": "pw-chutich",
    "tccb@demo.gov.vn": "pw-tccb",
    "vanphong@demo.gov.vn": "pw-vanphong",
}


@pytest.fixture(scope="module")
def mta(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalDovecot, LocalPostfix]]:
    dovecot = LocalDovecot.start(tmp_path_factory.mktemp("deliver-dovecot"), mta=True)
    try:
        dovecot.add_users(USERS)
        dovecot.finish_seeding()
        postfix = LocalPostfix.start(
            tmp_path_factory.mktemp("deliver-postfix"), dovecot, domains=["demo.gov.vn"]
        )
        try:
            yield dovecot, postfix
        finally:
            postfix.stop()
    finally:
        dovecot.stop()


def write_config(
    tmp: Path, dc: LocalDovecot, pf: LocalPostfix, recipients: list[str], extra: str = ""
) -> Path:
    (tmp / "roster.csv").write_text("employee_id,full_name,email,unit_code,unit_name\n")
    path = tmp / "mailusage.toml"
    rcpts = ", ".join(f'"{r}"' for r in recipients)
    path.write_text(
        f"""
[agency]
name = "UBND quận Liên Chiểu"
official_domains = ["demo.gov.vn"]
[roster]
path = "roster.csv"
[[sources]]
name = "dovecot"
host = "127.0.0.1"
port = {dc.imaps_port}
master_user = "admin"
password = {{ env = "MU_TEST_UNUSED" }}
[delivery]
host = "127.0.0.1"
port = {pf.submission_port}
user = "{SENDER}"
from = "{SENDER}"
password = {{ env = "MU_TEST_SMTP_PASSWORD" }}
ca_file = "{pf.ca_file}"
recipients = [{rcpts}]
{extra}
""",
        encoding="utf-8",
    )
    return path


def write_bundle(reports: Path, seed: int = 1) -> dict[str, bytes]:
    """A month's outputs: the attached ones with bytes that a re-encoding would change
    (a BOM, CRLF, Vietnamese, every byte value), and two that are not attached."""
    folder = reports / MONTH
    folder.mkdir(parents=True, exist_ok=True)
    rng = hashlib.sha256(str(seed).encode()).digest()
    files = {
        "report.pdf": b"%PDF-1.7\n" + bytes(range(256)) * 400 + rng,
        "hr_ratings.xlsx": b"PK\x03\x04" + rng * 300,
        "violations.csv": "\ufeffMã,Họ và tên,Vi phạm\r\nP04,Phạm Thị Dung,Thư công vụ\r\n".encode(),
        "review.csv": b"not attached\r\n",
        "report.html": b"<html>not attached</html>",
    }
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return files


def mailbox(dc: LocalDovecot, user: str) -> list[email.message.EmailMessage]:
    return inbox(dc, user, USERS[user])


def wait_for(dc: LocalDovecot, pf: LocalPostfix, user: str, count: int) -> list:
    return delivered(dc, pf, user, USERS[user], count)


def attached(msg: email.message.EmailMessage) -> dict[str, str]:
    return {
        part.get_filename(): hashlib.sha256(part.get_payload(decode=True)).hexdigest()
        for part in msg.iter_attachments()
    }


def test_the_bundle_arrives_byte_for_byte_once_and_a_rerun_sends_nothing(
    mta, tmp_path, monkeypatch, capsys
):
    dc, pf = mta
    monkeypatch.setenv("MU_TEST_SMTP_PASSWORD", USERS[SENDER])
    cfg_path = write_config(tmp_path, dc, pf, ["chutich@demo.gov.vn", "tccb@demo.gov.vn"])
    files = write_bundle(tmp_path / "reports")
    cfg = load_config(cfg_path)
    before = {u: len(mailbox(dc, u)) for u in ("chutich@demo.gov.vn", "tccb@demo.gov.vn")}

    assert main(["deliver", "--config", str(cfg_path), "--month", MONTH, "--dry-run"]) == 0
    assert "would send" in capsys.readouterr().out
    report = deliver_month(cfg, MONTH)
    assert [o.outcome for o in report.outcomes] == ["sent", "sent"]

    expected = {n: hashlib.sha256(files[n]).hexdigest() for n in ATTACHED if "*" not in n}
    expected["hr_ratings.xlsx"] = hashlib.sha256(files["hr_ratings.xlsx"]).hexdigest()
    records = Outbox(DataDir(cfg.data_dir), "deliveries").rows(month=MONTH)
    assert [(r["recipient"], r["outcome"]) for r in records] == [
        ("chutich@demo.gov.vn", "sent"),
        ("tccb@demo.gov.vn", "sent"),
    ]
    for rcpt, outcome in zip(
        ("chutich@demo.gov.vn", "tccb@demo.gov.vn"), report.outcomes, strict=True
    ):
        got = wait_for(dc, pf, rcpt, before[rcpt] + 1)
        assert len(got) == before[rcpt] + 1  # the dry run sent nothing
        msg = got[-1]
        assert msg["Message-ID"] == outcome.message_id
        assert msg["Subject"] == (
            "Báo cáo sử dụng thư điện tử công vụ tháng 11/2026 — UBND quận Liên Chiểu"
        )
        assert "UBND quận Liên Chiểu" in msg.get_body(("plain",)).get_content()
        assert attached(msg) == expected  # review.csv and report.html are not mailed
    record = {r["recipient"]: r for r in records}["chutich@demo.gov.vn"]
    assert {a["name"]: a["sha256"] for a in __import__("json").loads(record["attachments"])} == (
        expected
    )

    # A rerun (a retry, or the operator again) sends nothing new.
    assert main(["deliver", "--config", str(cfg_path), "--month", MONTH]) == 0
    assert capsys.readouterr().out.count("already sent") == 2
    pf.wait_idle()
    assert len(mailbox(dc, "chutich@demo.gov.vn")) == before["chutich@demo.gov.vn"] + 1
    # --resend sends again, recorded as a second attempt
    again = deliver_month(cfg, MONTH, resend=True)
    assert [o.outcome for o in again.outcomes] == ["sent", "sent"]
    assert len(wait_for(dc, pf, "tccb@demo.gov.vn", before["tccb@demo.gov.vn"] + 2)) == (
        before["tccb@demo.gov.vn"] + 2
    )
    assert len(Outbox(DataDir(cfg.data_dir), "deliveries").rows(month=MONTH)) == 4


def test_a_wrong_password_fails_clearly_is_recorded_and_never_shown(
    mta, tmp_path, monkeypatch, capsys
):
    dc, pf = mta
    wrong = "wrong-Pa55-not-this-one"
    monkeypatch.setenv("MU_TEST_SMTP_PASSWORD", wrong)
    cfg_path = write_config(tmp_path, dc, pf, ["vanphong@demo.gov.vn"])
    write_bundle(tmp_path / "reports", seed=2)
    before = len(mailbox(dc, "vanphong@demo.gov.vn"))

    assert main(["deliver", "--config", str(cfg_path), "--month", MONTH]) == 1
    shown = capsys.readouterr()
    assert "refused the login of baocao@demo.gov.vn" in shown.out
    assert wrong not in shown.out + shown.err
    cfg = load_config(cfg_path)
    (row,) = Outbox(DataDir(cfg.data_dir), "deliveries").rows(month=MONTH)
    assert row["outcome"] == "failed" and "535" in str(row["detail"])
    assert wrong not in str(row)
    # not retried by the flow's task: a password does not get better by waiting
    with pytest.raises(DeliveryFailed) as failed:
        from pipelines.delivery import check_report

        check_report(deliver_month(cfg, MONTH))
    assert failed.value.transient is False
    assert not _retry_when_transient(None, None, type("S", (), {"data": failed.value})())
    assert wrong not in str(failed.value)

    # the right password: sent once, the failed attempts kept
    monkeypatch.setenv("MU_TEST_SMTP_PASSWORD", USERS[SENDER])
    assert main(["deliver", "--config", str(cfg_path), "--month", MONTH]) == 0
    assert len(wait_for(dc, pf, "vanphong@demo.gov.vn", before + 1)) == before + 1
    outcomes = [r["outcome"] for r in Outbox(DataDir(cfg.data_dir), "deliveries").rows()]
    assert outcomes == ["failed", "failed", "sent"]


def test_a_bundle_above_the_size_limit_is_refused_before_anything_is_sent(
    mta, tmp_path, monkeypatch, capsys
):
    dc, pf = mta
    monkeypatch.setenv("MU_TEST_SMTP_PASSWORD", USERS[SENDER])
    cfg_path = write_config(tmp_path, dc, pf, ["vanphong@demo.gov.vn"], "max_size_mb = 0.05")
    write_bundle(tmp_path / "reports", seed=3)  # ~100 kB of PDF: ~140 kB in base64
    cfg = load_config(cfg_path)
    with pytest.raises(DeliveryError, match=r"above delivery.max_size_mb = 0.05; nothing"):
        deliver_month(cfg, MONTH)
    assert main(["deliver", "--config", str(cfg_path), "--month", MONTH]) == 2
    assert "max_size_mb" in capsys.readouterr().err
    assert Outbox(DataDir(cfg.data_dir), "deliveries").rows() == []


def test_a_missing_file_names_it(mta, tmp_path, monkeypatch):
    dc, pf = mta
    cfg = load_config(write_config(tmp_path, dc, pf, ["vanphong@demo.gov.vn"]))
    files = write_bundle(tmp_path / "reports", seed=4)
    assert "violations.csv" in files
    (tmp_path / "reports" / MONTH / "violations.csv").unlink()
    with pytest.raises(DeliveryError, match=r"no violations.csv in .*2026-11; evaluate"):
        deliver_month(cfg, MONTH, dry_run=True)


def test_bundles_without_scopes_is_the_month_directory(mta, tmp_path):
    dc, pf = mta
    cfg = load_config(write_config(tmp_path, dc, pf, ["tccb@demo.gov.vn"]))
    from pipelines.delivery import bundles

    assert bundles(cfg, MONTH) == [
        Bundle("all", tmp_path.resolve() / "reports" / MONTH, ("tccb@demo.gov.vn",))
    ]


def test_the_evaluate_flow_mails_the_bundle_it_wrote(mta, tmp_path, monkeypatch, prefect_harness):
    """The monthly flow end to end: the fixture agency evaluated, then its real bundle
    (the PDF WeasyPrint laid out, the workbook) mailed as the flow's `deliver` task."""
    from pipelines.evaluate import evaluate
    from tests.analytics.fixture import build, write_roster

    dc, pf = mta
    monkeypatch.setenv("MU_TEST_SMTP_PASSWORD", USERS[SENDER])
    cfg_path = write_config(
        tmp_path, dc, pf, ["chutich@demo.gov.vn"], "retries = 0\n[storage]\ndata_dir = 'data'"
    )
    write_roster(tmp_path / "roster.csv")
    build(tmp_path / "data")
    before = len(mailbox(dc, "chutich@demo.gov.vn"))

    result = evaluate(config_path=str(cfg_path), month=MONTH)
    assert result["delivery"]["outcomes"] == {"sent": 1}
    folder = tmp_path / "reports" / MONTH
    on_disk = {
        name: hashlib.sha256((folder / name).read_bytes()).hexdigest()
        for name in ("report.pdf", "hr_ratings.xlsx", "violations.csv")
    }
    assert {n: d for n, _, d in result["delivery"]["attachments"]["all"]} == on_disk
    msg = wait_for(dc, pf, "chutich@demo.gov.vn", before + 1)[-1]
    assert attached(msg) == on_disk
    # the flow run again (a rerun of the deployment): nothing sent twice
    again = evaluate(config_path=str(cfg_path), month=MONTH)
    assert again["delivery"]["outcomes"] == {"already sent": 1}
    pf.wait_idle()
    assert len(mailbox(dc, "chutich@demo.gov.vn")) == before + 1


def test_the_example_configs_delivery_block_loads_as_documented(tmp_path, monkeypatch):
    """mailusage.example.toml's commented [delivery] and [reminders] blocks, uncommented,
    are a valid config."""
    root = Path(__file__).resolve().parents[2]
    lines = (root / "mailusage.example.toml").read_text(encoding="utf-8").splitlines()
    for section in ("# [delivery]", "# [reminders]"):
        start = next(i for i, line in enumerate(lines) if line.startswith(section))
        end = next(i for i in range(start, len(lines)) if not lines[i].startswith("# "))
        lines[start:end] = [line[2:] for line in lines[start:end]]
    text = "\n".join(lines)
    text = text.replace('ca_file = "/etc/ssl/certs/agency-ca.pem"', "")  # not on this machine
    (tmp_path / "mailusage.toml").write_text(text, encoding="utf-8")
    cfg = load_config(tmp_path / "mailusage.toml")
    assert cfg.delivery is not None and cfg.reminders is not None
    assert (cfg.delivery.port, cfg.delivery.max_bytes, cfg.delivery.password.env) == (
        587,
        20_000_000,
        "MAILUSAGE_SMTP_PASSWORD",
    )
    assert cfg.delivery.recipients == ("chutich@danang.gov.vn", "tccb@danang.gov.vn")
    assert cfg.reminders.days == (15, 25)
    assert cfg.reminders.heads["TCKH"] == ("truong.tckh@danang.gov.vn",)
    assert (cfg.reminders.notify_staff, cfg.reminders.rate_per_minute) == (False, 30)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ('password = "hunter2"', "delivery.password: passwords are never written"),
        ('recipients = ["not-an-address"]', "delivery.recipients: 'not-an-address' is not"),
        ("portt = 25", "delivery: unknown key 'portt' (did you mean 'port'?)"),
        ("max_size_mb = 0", "delivery.max_size_mb must be more than 0"),
    ],
)
def test_a_bad_delivery_section_is_named(tmp_path, extra, message):
    from pipelines.config import ConfigError

    base = 'host = "h"\nuser = "u@x.vn"\nfrom = "u@x.vn"\n'
    if not extra.startswith("password"):
        base += 'password = { env = "X" }\n'
    (tmp_path / "roster.csv").write_text("")
    (tmp_path / "c.toml").write_text(
        '[roster]\npath = "roster.csv"\n[[sources]]\nname = "s"\nhost = "h"\nmaster_user = "m"\n'
        f'password = {{ env = "X" }}\n[delivery]\n{base}{extra}\n'
    )
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config(tmp_path / "c.toml")


@pytest.mark.parametrize(
    "subject",
    [
        "Nhắc nhở sử dụng thư điện tử công vụ tháng 11/2026 — UBND phường Hòa Minh",
        "Báo cáo sử dụng thư điện tử công vụ tháng 11/2026 — " + "Ủy ban nhân dân xã An Bình " * 5,
    ],
)
def test_a_long_vietnamese_subject_and_sender_survive_folding_exactly(subject):
    """CPython's folder once lost the space in "tử công" (pipelines/mailer.py, _encoded)."""
    from pipelines.mailer import Outgoing, compose

    name = "Phòng Văn hóa và Thông tin quận Liên Chiểu, thành phố Đà Nẵng"
    raw = compose("bc@danang.gov.vn", name, Outgoing("a@x.vn", subject, "x"), "<1@x>").as_bytes(
        policy=policy.SMTP
    )
    head = raw.split(b"\r\n\r\n")[0]
    assert max(len(line) for line in head.split(b"\r\n")) <= 78
    back = email.message_from_bytes(raw, policy=policy.default)
    assert back["Subject"] == subject
    (sender,) = back["From"].addresses
    # Python's address parser keeps the folding space between two encoded words of a
    # display name, which RFC 2047 §6.2 says to ignore: compared with spaces normalised
    assert (" ".join(sender.display_name.split()), sender.addr_spec) == (name, "bc@danang.gov.vn")


def test_the_deliver_task_retries_what_may_pass_and_not_a_refused_password(
    mta, tmp_path, monkeypatch, prefect_harness
):
    """The evaluate flow's `deliver` task under Prefect: a server that does not answer is
    tried again (retries = 2: three attempts, each recorded); a refused password once."""
    from prefect import flow

    from devkit.dovecot import free_port
    from pipelines.delivery import delivery_task

    dc, pf = mta
    monkeypatch.setenv("MU_TEST_SMTP_PASSWORD", "wrong-password-here")
    attempts = {}
    for case, port in (("down", free_port()), ("refused", pf.submission_port)):
        folder = tmp_path / case
        folder.mkdir()
        cfg_path = write_config(
            folder, dc, pf, ["vanphong@demo.gov.vn"], "retries = 2\nretry_delay_seconds = [0, 0]"
        )
        cfg_path.write_text(
            cfg_path.read_text().replace(f"port = {pf.submission_port}", f"port = {port}")
        )
        write_bundle(folder / "reports", seed=5)
        cfg = load_config(cfg_path)

        @flow(name=f"deliver-{case}")
        def run(path: str = str(cfg_path), config=cfg) -> dict:
            return delivery_task(config)(path, MONTH)

        with pytest.raises(DeliveryFailed):
            run()
        rows = Outbox(DataDir(cfg.data_dir), "deliveries").rows()
        assert {r["outcome"] for r in rows} == {"failed"}
        attempts[case] = (len(rows), str(rows[0]["detail"]))
    assert attempts["down"][0] == 3 and "cannot connect to 127.0.0.1" in attempts["down"][1]
    assert attempts["refused"][0] == 1 and "refused the login" in attempts["refused"][1]


def test_a_message_a_killed_run_may_have_sent_is_not_sent_again_without_resend(
    mta, tmp_path, monkeypatch, capsys
):
    dc, pf = mta
    monkeypatch.setenv("MU_TEST_SMTP_PASSWORD", USERS[SENDER])
    cfg_path = write_config(tmp_path, dc, pf, ["tccb@demo.gov.vn"])
    write_bundle(tmp_path / "reports", seed=6)
    cfg = load_config(cfg_path)
    box = Outbox(DataDir(cfg.data_dir), "deliveries")
    # what a run killed between recording and the server's answer leaves
    box.begin({"month": MONTH, "bundle": "all", "recipient": "tccb@demo.gov.vn"}, "<k@x>", "[]")
    before = len(mailbox(dc, "tccb@demo.gov.vn"))

    assert main(["deliver", "--config", str(cfg_path), "--month", MONTH]) == 1
    assert "possibly sent" in capsys.readouterr().out
    pf.wait_idle()
    assert len(mailbox(dc, "tccb@demo.gov.vn")) == before
    assert main(["deliver", "--config", str(cfg_path), "--month", MONTH, "--resend"]) == 0
    assert len(wait_for(dc, pf, "tccb@demo.gov.vn", before + 1)) == before + 1


def test_the_evaluate_command_mails_a_whole_month_and_not_a_partial_one(
    mta, tmp_path, monkeypatch, capsys
):
    """`mailusage evaluate` without a Prefect API: the same delivery after the evaluation."""
    from tests.analytics.fixture import build, write_roster

    dc, pf = mta
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    monkeypatch.setenv("MU_TEST_SMTP_PASSWORD", USERS[SENDER])
    cfg_path = write_config(
        tmp_path, dc, pf, ["vanphong@demo.gov.vn"], "[storage]\ndata_dir = 'data'"
    )
    write_roster(tmp_path / "roster.csv")
    build(tmp_path / "data")
    before = len(mailbox(dc, "vanphong@demo.gov.vn"))
    data = DataDir(load_config(cfg_path).data_dir)

    # --partial: the files are written, nothing is mailed
    assert main(["evaluate", "--config", str(cfg_path), "--month", MONTH, "--partial"]) == 0
    assert Outbox(data, "deliveries").rows() == []
    assert main(["evaluate", "--config", str(cfg_path), "--month", MONTH]) == 0
    assert "sent" in capsys.readouterr().out
    msg = wait_for(dc, pf, "vanphong@demo.gov.vn", before + 1)[-1]
    folder = tmp_path / "reports" / MONTH
    assert (
        attached(msg)["report.pdf"]
        == hashlib.sha256((folder / "report.pdf").read_bytes()).hexdigest()
    )
    rows = Outbox(data, "deliveries").rows()
    assert [(r["month"], r["outcome"]) for r in rows] == [(MONTH, "sent")]
    pf.wait_idle()
    assert len(mailbox(dc, "vanphong@demo.gov.vn")) == before + 1


def test_doctor_checks_the_smtp_login_without_sending(mta, tmp_path, monkeypatch):
    from mailusage.doctor import run_doctor

    dc, pf = mta
    cfg_path = write_config(tmp_path, dc, pf, [])
    before = len(mailbox(dc, "vanphong@demo.gov.vn"))
    found = {}
    for password in (USERS[SENDER], "wrong-doctor-Pw"):
        monkeypatch.setenv("MU_TEST_SMTP_PASSWORD", password)
        checks = run_doctor(load_config(cfg_path))
        found[password] = {(c.check, c.status): c.detail for c in checks if c.subject == "delivery"}
    good, bad = found[USERS[SENDER]], found["wrong-doctor-Pw"]
    assert "STARTTLS and login as baocao@demo.gov.vn accepted" in good[("login", "ok")]
    assert "10,240,000 bytes" in good[("login", "ok")]  # Postfix's default message_size_limit
    assert ("recipients", "warn") in good
    assert "refused the login" in bad[("login", "fail")]
    assert "wrong-doctor-Pw" not in str(bad)
    monkeypatch.delenv("MU_TEST_SMTP_PASSWORD")
    checks = run_doctor(load_config(cfg_path))
    assert [(c.check, c.status) for c in checks if c.subject == "delivery"] == [("secret", "fail")]
    pf.wait_idle()
    assert len(mailbox(dc, "vanphong@demo.gov.vn")) == before


def test_a_certificate_from_an_unknown_ca_says_to_set_ca_file(mta, tmp_path, monkeypatch):
    dc, pf = mta
    monkeypatch.setenv("MU_TEST_SMTP_PASSWORD", USERS[SENDER])
    cfg_path = write_config(tmp_path, dc, pf, ["tccb@demo.gov.vn"])
    cfg_path.write_text(cfg_path.read_text().replace(f'ca_file = "{pf.ca_file}"\n', ""))
    write_bundle(tmp_path / "reports", seed=7)
    cfg = load_config(cfg_path)
    assert cfg.delivery is not None and cfg.delivery.ca_file is None
    (outcome,) = deliver_month(cfg, MONTH).outcomes
    assert outcome.outcome == "failed" and not outcome.transient
    assert "TLS failed" in outcome.detail and "set delivery.ca_file" in outcome.detail


def test_each_scope_bundle_goes_to_its_own_recipients_only(mta, tmp_path, monkeypatch):
    dc, pf = mta
    monkeypatch.setenv("MU_TEST_SMTP_PASSWORD", USERS[SENDER])
    scopes = """
[[scopes]]
name = "huyen"
root = "H"
recipients = ["chutich@demo.gov.vn"]
report = { issuing_body = "UBND HUYỆN PHÚ GIÁO" }
[[scopes]]
name = "xa"
root = "X"
recipients = ["vanphong@demo.gov.vn"]
[[scopes]]
name = "so"
root = "S"
"""
    cfg = load_config(write_config(tmp_path, dc, pf, [], scopes))
    reports = tmp_path / "reports"
    sent: dict[str, dict[str, bytes]] = {}
    for seed, scope in enumerate(("huyen", "xa", "so"), 1):
        files = write_bundle(reports / scope, seed)  # reports/<scope>/<month>: moved below
        (reports / MONTH).mkdir(parents=True, exist_ok=True)
        (reports / scope / MONTH).rename(reports / MONTH / scope)
        (reports / MONTH / scope / "hr_ratings.xlsx").rename(
            reports / MONTH / scope / f"hr_ratings_{scope.upper()}.xlsx"
        )
        sent[scope] = files
    from pipelines.delivery import bundles

    # no [delivery] recipients: only the scopes with recipients are mailed
    assert [(b.name, b.recipients, b.agency) for b in bundles(cfg, MONTH)] == [
        ("huyen", ("chutich@demo.gov.vn",), "UBND HUYỆN PHÚ GIÁO"),
        ("xa", ("vanphong@demo.gov.vn",), None),
    ]
    before = {u: len(mailbox(dc, u)) for u in ("chutich@demo.gov.vn", "vanphong@demo.gov.vn")}
    report = deliver_month(cfg, MONTH)
    assert sorted((o.bundle, o.recipient, o.outcome) for o in report.outcomes) == [
        ("huyen", "chutich@demo.gov.vn", "sent"),
        ("xa", "vanphong@demo.gov.vn", "sent"),
    ]
    for rcpt, scope in (("chutich@demo.gov.vn", "huyen"), ("vanphong@demo.gov.vn", "xa")):
        got = wait_for(dc, pf, rcpt, before[rcpt] + 1)
        assert len(got) == before[rcpt] + 1
        files = sent[scope]
        assert attached(got[-1]) == {
            "report.pdf": hashlib.sha256(files["report.pdf"]).hexdigest(),
            "violations.csv": hashlib.sha256(files["violations.csv"]).hexdigest(),
            f"hr_ratings_{scope.upper()}.xlsx": hashlib.sha256(
                files["hr_ratings.xlsx"]
            ).hexdigest(),
        }
    assert "UBND HUYỆN PHÚ GIÁO" in mailbox(dc, "chutich@demo.gov.vn")[-1]["Subject"]
