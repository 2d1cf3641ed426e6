"""The Prefect flow, the config/roster checks and the CLI, end to end on the real Dovecot."""

from __future__ import annotations

import re
from contextlib import closing
from pathlib import Path

import duckdb
import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterKey,
    FlowRunFilter,
    FlowRunFilterId,
)

from contract.roster import RosterError, load_roster
from devkit.dovecot import MASTER_USER, LocalDovecot
from mailusage.cli import main
from mailusage.doctor import settings
from pipelines.collect import NightFailed, collect
from pipelines.config import ConfigError, load_config
from pipelines.sources import build_source
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
    state = collect(config_path=cfg, night="2026-11-20", return_state=True)
    # One failed mailbox fails the flow run (allowed_failures = 0): red in the UI, with the
    # counts and the reason as its message, and the failed mailbox in an artifact table.
    assert state.is_failed()
    assert "night 2026-11-20: ok 3, failed 1, skipped 0" in state.message
    assert "no such mailbox" in state.message
    failure = state.result(raise_on_failure=False)
    assert isinstance(failure, NightFailed)
    result = failure.result
    assert (result["ok"], result["failed"], result["skipped"]) == (3, 1, 0)
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["collect-failures"])),
            flow_run_filter=FlowRunFilter(
                id=FlowRunFilterId(any_=[state.state_details.flow_run_id])
            ),
        )
    assert len(artifacts) == 1
    assert "ghost@danang.gov.vn" in str(artifacts[0].data)
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
    # With one failure allowed, the same night's run passes.
    Path(cfg).write_text(
        Path(cfg).read_text().replace("[collect]", "[collect]\nallowed_failures = 1")
    )
    assert collect(config_path=cfg, night="2026-11-20")["failed"] == 1


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
    # the settings the night runs with; those the file left out say so
    shown = {c.check: c.detail for c in settings(load_config(cfg))}
    assert shown["collect.concurrency"] == "2"  # written in the file
    assert shown["collect.allowed_failures"] == "0 (default)"
    assert shown["evaluation.policy"] == "lien-chieu-2014 (default)"
    assert all(key in out for key in shown)


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
    out = capsys.readouterr().out
    assert "line 5: email 'not-an-email' is not an address" in out
    # the roster's failure is one failure, not one more per source
    assert "not tried: the roster could not be read" in out
    assert "no roster mailbox" not in out and "1 failure(s)" in out


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
    path.write_text(
        ROSTER_HEADER + "NV1,A,a@x.gov.vn,VP,Văn phòng,no\nNV2,B,b@x.gov.vn,VP,Phòng Nội vụ,no\n",
        encoding="utf-8",
    )
    with pytest.raises(RosterError, match="line 3: unit_code VP is named 'Phòng Nội vụ' here"):
        load_roster(path)
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
    with pytest.raises(ConfigError, match=r"sources\[0\]: unknown key 'colour'"):
        load_config(cfg)


@pytest.mark.parametrize(
    ("typo", "message"),
    [
        # each of these used to be ignored, the default taken in silence
        (
            ("data_dir =", "data_dri ="),
            "storage: unknown key 'data_dri' (did you mean 'data_dir'?)",
        ),
        (("[collect]", "[evalution]"), "unknown section 'evalution' (did you mean 'evaluation'?)"),
        (("concurrency =", "concurency ="), "did you mean 'concurrency'?"),
        (("official_domains", "oficial_domains"), "did you mean 'official_domains'?"),
        (("[agency]", '[agency]\ntime_zone = "UTC"'), "did you mean 'timezone'?"),
        (("concurrency = 2", "concurrency = true"), "collect.concurrency must be an integer"),
        (("concurrency = 2", 'concurrency = "8"'), "collect.concurrency must be an integer"),
        (("retry_delay_seconds = [0]", "retry_delay_seconds = 0"), "must be a list"),
        (("port =", "prot ="), "sources[0]: unknown key 'prot' (did you mean 'port'?)"),
    ],
)
def test_config_typos_are_refused_with_the_nearest_name(dovecot, tmp_path, typo, message):
    cfg = Path(write_setup(tmp_path, dovecot, ""))
    load_config(cfg)  # the file as written is valid
    cfg.write_text(cfg.read_text(encoding="utf-8").replace(*typo, 1), encoding="utf-8")
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config(cfg)


def test_missing_env_secret_is_a_clear_error(dovecot, tmp_path, monkeypatch):
    monkeypatch.delenv("MU_TEST_MASTER", raising=False)
    cfg = load_config(write_setup(tmp_path, dovecot, ""))
    with pytest.raises(ConfigError, match="environment variable MU_TEST_MASTER is not set"):
        cfg.sources[0].password.resolve()
    assert "MU_TEST_MASTER" in repr(cfg.sources[0].password)


def test_prefect_secret_block_reference(prefect_harness):
    from prefect.blocks.system import Secret

    from pipelines.secrets import SecretRef

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
    assert "off (policy lien-chieu-2014; opt-in with [contact_scan])" in out
    assert "forwarding unknown" in out
    assert "not measurable here: forwarding, folder sizes" in out  # logins are covered
    plain = write_setup(tmp_path, dovecot, roster_rows(staff))
    assert main(["doctor", "--config", plain]) == 0
    out = capsys.readouterr().out
    assert "not measurable here: logins, forwarding, folder sizes (inactivity goes to review" in out


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


def test_cli_help_version_and_config_from_the_environment(dovecot, tmp_path, monkeypatch, capsys):
    with pytest.raises(SystemExit) as done:
        main(["--help"])
    assert done.value.code == 0
    listed = capsys.readouterr().out
    assert all(
        c in listed
        for c in ("collect", "doctor", "evaluate", "compact", "demo", "deliver", "remind")
    )
    # Each command's help says what it does and what its exit codes mean.
    for command, codes in (
        ("collect", "0123"),
        ("doctor", "012"),
        # 1 since issue 24.4: evaluated, but a message of the [delivery] that follows failed
        ("evaluate", "012"),
        ("deliver", "012"),
        ("remind", "012"),
        ("compact", "023"),
        ("demo", "012"),
    ):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        text = capsys.readouterr().out
        shown = re.findall(r"^  (\d)  \S", text.split("exit codes:")[1], re.M)
        assert "".join(shown) == codes, (command, text)
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out.startswith("mailusage 0.")
    monkeypatch.delenv("MAILUSAGE_CONFIG", raising=False)
    with pytest.raises(SystemExit) as done:
        main(["evaluate"])
    assert done.value.code == 2 and "--config" in capsys.readouterr().err
    # As in the notebooks: MAILUSAGE_CONFIG names the file when --config is left out.
    bad = tmp_path / "typo.toml"
    bad.write_text(
        Path(write_setup(tmp_path, dovecot, "")).read_text().replace("[roster]", "[rooster]")
    )
    monkeypatch.setenv("MAILUSAGE_CONFIG", str(bad))
    assert main(["compact"]) == 2
    assert "unknown section 'rooster' (did you mean 'roster'?)" in capsys.readouterr().err


def test_an_unset_per_user_password_fails_that_mailbox_only(
    dovecot, staff, tmp_path, monkeypatch, capsys
):
    """A source-wide secret that is not set refuses the night up front (see
    test_operator_path.py); a per-user one that is set for some users fails only the
    mailboxes whose own variable is missing, each with the variable's name."""
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    monkeypatch.setenv("MU_PW_AN_NV", "an-password")
    monkeypatch.delenv("MU_PW_BINH_TT", raising=False)
    cfg = write_setup(tmp_path, dovecot, roster_rows(staff[:2]))
    text = Path(cfg).read_text().replace('{ env = "MU_TEST_MASTER" }', '{ env_prefix = "MU_PW_" }')
    Path(cfg).write_text(text.replace("[[sources]]", '[[sources]]\nauth = "user"'))
    assert main(["collect", "--config", cfg, "--date", "2026-11-22", "--quiet"]) == 1
    out, errors = capsys.readouterr()
    assert "Traceback" not in out + errors
    reasons = dict(
        duckdb.execute(
            "select mailbox, reason from read_parquet($p)",
            parameters={"p": str(tmp_path / "data" / "run_mailboxes" / "*" / "*.parquet")},
        ).fetchall()
    )
    assert (
        reasons[staff[1]] == "environment variable MU_PW_BINH_TT is not set (it holds a password)"
    )
    assert "MU_PW_" not in reasons[staff[0]]  # tried with its own (wrong) password


def test_recollecting_a_night_counts_each_message_once_in_runs(dovecot, tmp_path, monkeypatch):
    from pipelines.collect import run_collection
    from tests.pipelines.test_collect import add_messages

    monkeypatch.setenv("MU_TEST_MASTER", MASTER_PASSWORD)
    people = ["lai.lan1@danang.gov.vn", "lai.lan2@danang.gov.vn"]
    for i, mailbox in enumerate(people):
        seed_regular(dovecot, mailbox, 9 + i, seed=90 + i)
    cfg = write_setup(
        tmp_path,
        dovecot,
        "".join(f"L{i},Cán bộ {i},{m},VP,Văn phòng,no\n" for i, m in enumerate(people)),
    )
    first = run_collection(cfg, "2026-11-20", plain=True)
    again = run_collection(cfg, "2026-11-20", plain=True)  # the operator re-runs the night
    add_messages(dovecot, people[0], "INBOX", 2, "late")  # mail that came after the first run
    later = run_collection(cfg, "2026-11-20", plain=True)
    assert (first.messages_new, again.messages_new, later.messages_new) == (9 + 10, 0, 2)
    runs = duckdb.execute(
        "select sum(messages_new) from read_parquet($p, hive_partitioning = true)",
        parameters={"p": str(tmp_path / "data" / "runs" / "*" / "*.parquet")},
    ).fetchone()
    stored = duckdb.execute(
        "select count(*) from read_parquet($p)",
        parameters={"p": str(tmp_path / "data" / "messages" / "*" / "*.parquet")},
    ).fetchone()
    assert runs == stored == (9 + 10 + 2,)
    per_mailbox = duckdb.execute(
        "select mailbox, sum(messages_new) from read_parquet($p) group by mailbox order by 1",
        parameters={"p": str(tmp_path / "data" / "run_mailboxes" / "*" / "*.parquet")},
    ).fetchall()
    assert per_mailbox == [(people[0], 9 + 2), (people[1], 10)]


def test_probe_runs_one_mailbox_night_on_imap_and_stores_nothing(
    dovecot, staff, tmp_path, monkeypatch, capsys
):
    from pipelines.storage import DataDir
    from tests.collect_one import collect_one

    monkeypatch.setenv("MU_TEST_MASTER", MASTER_PASSWORD)
    cfg = write_setup(tmp_path, dovecot, roster_rows(staff))
    assert main(["doctor", "--config", cfg, "--probe", staff[0]]) == 0
    first = capsys.readouterr().out
    assert "first night (no stored cursors)" in first and "15 message(s) read" in first
    assert MASTER_PASSWORD not in first and "AUTHENTICATE PLAIN ***" in first
    assert re.search(r"UID FETCH .*BODY\.PEEK", first) and "EXAMINE" in first
    assert not (tmp_path / "data").exists()
    # After a night is committed the probe reads on from its cursors: nothing to fetch.
    config = load_config(cfg)
    data = DataDir(config.data_dir)
    with closing(build_source(config.sources[0])) as source:
        assert collect_one(source, staff[0], "2026-11-22", data).status == "ok"

    def files() -> tuple[dict[str, int], list]:
        # Every data file untouched, and the state database's rows the same (its -wal and
        # -shm files are SQLite's own: any reader of a WAL database, even a read-only
        # one, maps and may update them)
        with data.db() as con:
            rows = con.execute("select * from cursors order by mailbox").fetchall()
        return {
            str(p): p.stat().st_mtime_ns
            for p in config.data_dir.rglob("*")
            if p.is_file() and not p.name.endswith(("-shm", "-wal"))
        }, rows

    stored = files()
    assert main(["doctor", "--config", cfg, "--probe", staff[0]]) == 0
    quiet = capsys.readouterr().out
    assert "from the stored cursors" in quiet and "0 message(s) read" in quiet
    assert "BODY.PEEK" not in quiet
    assert files() == stored
    # a mailbox the server does not have: its NO, and exit 1
    assert main(["doctor", "--config", cfg, "--probe", "ghost@danang.gov.vn"]) == 1
    assert "the night would fail this mailbox" in capsys.readouterr().out
