"""The Prefect flow, the config/roster checks and the CLI, end to end on the real Dovecot."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from mailusage.cli import main
from mailusage.devserver import MASTER_USER, LocalDovecot
from pipelines.collect import collect
from pipelines.config import ConfigError, RosterError, load_config, load_roster
from tests.conftest import MASTER_PASSWORD
from tests.groundtruth import seed_regular

ROSTER_HEADER = "employee_id,full_name,email,unit_code,unit_name,is_unit_mailbox\n"


def write_setup(
    tmp_path, server: LocalDovecot, roster: str, *, password_env="MU_TEST_MASTER", extra: str = ""
) -> str:
    (tmp_path / "roster.csv").write_text(ROSTER_HEADER + roster, encoding="utf-8-sig")
    cfg = tmp_path / "mailusage.toml"
    cfg.write_text(
        f"""
[agency]
name = "UBND quận Liên Chiểu"
official_domains = ["danang.gov.vn"]
[storage]
data_dir = "data"
[roster]
path = "roster.csv"
[collect]
concurrency = 2
retries = 1
retry_delay_seconds = [0]
[[sources]]
name = "dovecot"
host = "127.0.0.1"
port = {server.imaps_port}
ca_file = "{server.ca_file}"
master_user = "{MASTER_USER}"
password = {{ env = "{password_env}" }}
{extra}
""",
        encoding="utf-8",
    )
    return str(cfg)


@pytest.fixture(scope="module")
def staff(dovecot: LocalDovecot) -> list[str]:
    people = ["an.nv@danang.gov.vn", "binh.tt@danang.gov.vn", "vp.lienchieu@danang.gov.vn"]
    for i, mailbox in enumerate(people):
        seed_regular(dovecot, mailbox, 15 + i, seed=20 + i)
    return people


def roster_rows(people: list[str]) -> str:
    names = ["Nguyễn Văn An", "Trần Thị Bình", "Hộp thư Văn phòng"]
    return "".join(
        f"NV{i},{names[i]},{m},VP,Văn phòng,{'yes' if i == 2 else 'no'}\n"
        for i, m in enumerate(people)
    )


def test_flow_collects_every_mailbox_and_records_a_bad_one(
    dovecot, staff, tmp_path, monkeypatch, prefect_harness
):
    monkeypatch.setenv("MU_TEST_MASTER", MASTER_PASSWORD)
    roster = roster_rows(staff) + "NV9,Người Không Có Hộp Thư,ghost@danang.gov.vn,VP,Văn phòng,no\n"
    cfg = write_setup(tmp_path, dovecot, roster)
    result = collect(config_path=cfg, night="2026-11-20")
    assert (result["ok"], result["failed"], result["skipped"]) == (3, 1, 0)
    assert result["messages_new"] == 15 + 16 + 17
    ghost = next(o for o in result["outcomes"] if o["mailbox"] == "ghost@danang.gov.vn")
    assert ghost["status"] == "failed" and "no such mailbox" in ghost["reason"]

    runs = duckdb.execute(
        "select ok, failed, mailboxes from read_parquet($p, hive_partitioning = true)",
        parameters={"p": str(tmp_path / "data" / "runs" / "*" / "*.parquet")},
    ).fetchall()
    assert runs == [(3, 1, 4)]
    per_mailbox = dict(
        duckdb.execute(
            "select mailbox, count(*) from read_parquet($p, hive_partitioning = true) group by 1",
            parameters={"p": str(tmp_path / "data" / "messages" / "*" / "*.parquet")},
        ).fetchall()
    )
    assert per_mailbox == {m: 15 + i for i, m in enumerate(staff)}


def test_cli_collect_exits_nonzero_on_a_failed_mailbox_and_never_prints_the_password(
    dovecot, staff, tmp_path, monkeypatch, capsys, prefect_harness
):
    monkeypatch.setenv("MU_TEST_MASTER", "not-the-password")
    cfg = write_setup(tmp_path, dovecot, roster_rows(staff[:1]))
    assert main(["collect", "--config", cfg, "--date", "2026-11-21"]) == 1
    out = capsys.readouterr()
    assert "wrong password" in out.out
    assert "not-the-password" not in out.out + out.err


def test_doctor_passes_on_a_good_setup(dovecot, staff, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MU_TEST_MASTER", MASTER_PASSWORD)
    cfg = write_setup(tmp_path, dovecot, roster_rows(staff))
    code = main(["doctor", "--config", cfg])
    out = capsys.readouterr().out
    assert code == 0, out
    for check in ("tcp", "tls", "login", "master-user", "condstore", "quota", "sent-folder"):
        assert check in out


def test_doctor_names_a_wrong_master_password(dovecot, staff, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MU_TEST_MASTER", "wrong")
    cfg = write_setup(tmp_path, dovecot, roster_rows(staff))
    code = main(["doctor", "--config", cfg])
    out = capsys.readouterr().out
    assert code != 0
    assert "login failed for master user" in out and "wrong password" in out


def test_doctor_names_a_bad_roster_row(dovecot, staff, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MU_TEST_MASTER", MASTER_PASSWORD)
    cfg = write_setup(
        tmp_path, dovecot, roster_rows(staff) + "NV7,Lê Văn C,not-an-email,VP,VP,no\n"
    )
    assert main(["doctor", "--config", cfg]) != 0
    assert "line 5: email 'not-an-email' is not an address" in capsys.readouterr().out


def test_roster_errors_name_line_and_cause(tmp_path):
    path = tmp_path / "r.csv"
    path.write_text(
        ROSTER_HEADER + "NV1,A,a@x.gov.vn,VP,VP,no\nNV1,B,b@x.gov.vn,,VP,maybe\n", encoding="utf-8"
    )
    with pytest.raises(RosterError) as err:
        load_roster(path)
    text = str(err.value)
    assert "line 3: employee_id NV1 repeats line 2" in text
    assert "line 3: unit_code is empty" in text
    assert "line 3: is_unit_mailbox must be yes/no" in text
    path.write_text("employee_id,full_name,email\n", encoding="utf-8")
    with pytest.raises(RosterError, match=r"missing required column.*unit_code, unit_name"):
        load_roster(path)


def test_roster_reads_excel_utf8_with_bom(tmp_path):
    path = tmp_path / "r.csv"
    path.write_bytes(
        "\ufeff".encode()
        + (ROSTER_HEADER + "NV1,Đỗ Thị Hà,Ha.DT@X.gov.vn,VP,Văn phòng,\n").encode("utf-8")
    )
    person = load_roster(path)[0]
    assert (person.full_name, person.email) == ("Đỗ Thị Hà", "ha.dt@x.gov.vn")


def test_config_refuses_inline_passwords_and_unknown_keys(dovecot, tmp_path):
    cfg = write_setup(tmp_path, dovecot, "", extra="")
    path = Path(cfg)
    text = path.read_text(encoding="utf-8")
    path.write_text(text.replace('password = { env = "MU_TEST_MASTER" }', 'password = "hunter2"'))
    with pytest.raises(ConfigError, match="passwords are never written in the config"):
        load_config(cfg)
    path.write_text(text + 'colour = "blue"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match=r"sources\[0\]: unknown keys \['colour'\]"):
        load_config(cfg)


def test_missing_env_secret_is_a_clear_error(dovecot, tmp_path, monkeypatch):
    monkeypatch.delenv("MU_TEST_MASTER", raising=False)
    cfg = load_config(write_setup(tmp_path, dovecot, ""))
    with pytest.raises(ConfigError, match="environment variable MU_TEST_MASTER is not set"):
        cfg.sources[0].password.resolve()
    assert "MU_TEST_MASTER" in repr(cfg.sources[0].password)


def test_prefect_secret_block_reference(prefect_harness):
    from prefect.blocks.system import Secret

    from pipelines.config import SecretRef

    Secret(value="from-a-block").save("mailusage-test-secret", overwrite=True)
    assert SecretRef(prefect_secret="mailusage-test-secret").resolve() == "from-a-block"
    with pytest.raises(ConfigError, match="Prefect Secret block 'absent' not found"):
        SecretRef(prefect_secret="absent").resolve()


def test_doctor_says_which_signals_are_provided(dovecot, staff, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MU_TEST_MASTER", MASTER_PASSWORD)
    extra = f"""
[[logins]]
name = "dict"
kind = "dovecot-dict"
doveadm = ["/usr/bin/doveadm", "-c", "{dovecot.config_path}"]
[[logins]]
name = "log"
kind = "dovecot-log"
path = "{dovecot.root / "dovecot.log"}"
[[logins]]
name = "exchange"
kind = "exchange-csv"
path = "missing.csv"
"""
    cfg = write_setup(tmp_path, dovecot, roster_rows(staff), extra=extra)
    assert main(["doctor", "--config", cfg]) == 1  # the missing export fails
    out = capsys.readouterr().out
    assert "dovecot-dict:" in out and "dovecot-log:" in out and "readable" in out
    assert "missing.csv not found" in out
    assert "login recency from: dovecot-dict, dovecot-log, exchange-csv" in out
    assert "off (policy lien-chieu-2014" in out and "forwarding unknown" in out


def test_doctor_checks_managesieve(dovecot, staff, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MU_TEST_MASTER", MASTER_PASSWORD)
    cfg = write_setup(
        tmp_path,
        dovecot,
        roster_rows(staff),
        extra=f'sieve = {{ port = {dovecot.sieve_port}, security = "starttls" }}',
    )
    assert main(["doctor", "--config", cfg]) == 0
    out = capsys.readouterr().out
    assert "managesieve" in out and "forwarding rules via ManageSieve from dovecot" in out
