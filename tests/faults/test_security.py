"""Security checks of the fault suite: TLS verified by default, no secret in anything the
product writes, CSV cells HR opens never run as formulas, hostile rosters and configs
refused with a clear error."""

from __future__ import annotations

import csv
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from contract.roster import RosterError, load_roster
from pipelines.collect import run_collection
from pipelines.config import ConfigError, load_config
from pipelines.evaluate import run_evaluation
from tests.faults.conftest import NIGHT, World
from tests.faults.world import DOMAIN, Setup, add_mailboxes, seed_mail

ROOT = Path(__file__).resolve().parents[2]
FORMULA = ("=", "+", "-", "@", "\t", "\r")


def test_tls_verification_is_on_by_default(world: World) -> None:
    """A self-signed server and no CA in the config: refused, with the reason; naming the
    CA (and nothing else) then completes the same night."""
    refused = world.setup("tls without the CA", ca=False)
    faulty = refused.collect(NIGHT)
    assert faulty.count("failed") == len(world.mailboxes)
    assert all("certificate" in o.reason and "not trusted" in o.reason for o in faulty.outcomes)
    fixed = world.setup("tls without the CA")  # the same directory, ca_file added
    entry = world.check(
        "TLS: self-signed server, CA not configured (then configured)",
        fixed,
        faulty,
        kind="tls",
    )
    assert entry.failed == len(world.mailboxes)


def _every_file(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()]


def test_no_secret_in_any_file_or_log_after_a_full_demo(tmp_path: Path) -> None:
    """The demo end to end (Dovecot, collection, the Prefect flow, evaluation, report) in a
    process of its own; then every byte it left — data, reports, Prefect's database with its
    flow runs, logs and artifacts, stdout and stderr — is searched for the secret."""
    secret = "Vault-only-9fK2-master"
    env = {
        **os.environ,
        "MAILUSAGE_DEMO_MASTER_PASSWORD": secret,
        "PREFECT_HOME": str(tmp_path / "prefect"),
        "PREFECT_LOGGING_LEVEL": "DEBUG",
    }
    env.pop("PREFECT_API_URL", None)
    demo = tmp_path / "demo"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "mailusage.cli",
            "demo",
            "--workdir",
            str(demo),
            "--staff",
            "10",
            "--nights",
            "2",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        timeout=900,
    )
    (tmp_path / "demo.stdout").write_bytes(proc.stdout)
    (tmp_path / "demo.stderr").write_bytes(proc.stderr)
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    # The mail server's own files hold its passwords by design; everything else is ours.
    ours = [p for p in _every_file(tmp_path) if (demo / "dovecot") not in p.parents]
    kinds = {p.suffix for p in ours}
    assert {".parquet", ".csv", ".html", ".db"} <= kinds, kinds
    leaks = [p for p in ours if secret.encode() in p.read_bytes()]
    assert not leaks, f"the secret is in {leaks}"
    # And the search can fail: the server's passwd-file does hold it.
    assert secret.encode() in (demo / "dovecot" / "master.passwd").read_bytes()


def test_csv_cells_never_run_as_formulas(world: World) -> None:
    """Formula-shaped display names, unit names and addresses, from the roster and from
    mail and a forwarding rule: every CSV HR opens holds them as text."""
    server = world.server
    (mbx,) = add_mailboxes(server, ["hostile"])
    seed_mail(server, [mbx], random.Random(5), night=0)
    server.set_sieve(mbx, "roundcube", 'require "copy";\nredirect :copy "=1+2@gmail.com";\n')
    server.finish_seeding()
    rows = [
        f'E9001,"=HYPERLINK(""http://x.example/"",""bấm"")",{mbx},HOST,+Ủy ban,,=SUM(1+1)@gmail.com',
        f"E9002,-2+3 Nguyễn,-cmd@{DOMAIN},HOST2,\tTab unit,,",
    ]
    setup = Setup(
        world.root / "hostile",
        server,
        [mbx],
        rows=rows,
        header="employee_id,full_name,email,unit_code,unit_name,is_unit_mailbox,personal_email",
        extra=f'sieve = {{ port = {server.sieve_port}, security = "starttls" }}',
        timeout=20,  # the missing mailbox's refused login makes Dovecot slow the next ones
    )
    night = run_collection(str(setup.config), NIGHT, plain=True)
    assert night.count("failed") == 1, night.outcomes
    result = run_evaluation(str(setup.config), "2026-11", language="en")
    csvs = [Path(p) for p in result["paths"].values() if str(p).endswith(".csv")]
    assert len(csvs) >= 4
    cells = []
    for path in csvs:
        with path.open(encoding="utf-8-sig", newline="") as fh:
            cells += [c for row in list(csv.reader(fh))[1:] for c in row]
    dangerous = [c for c in cells if c.startswith(FORMULA) and not _number(c)]
    assert not dangerous, dangerous
    assert '\'=HYPERLINK("http://x.example/","bấm")' in cells  # kept, as text
    assert "'+Ủy ban" in cells
    assert "'=1+2@gmail.com" in cells  # the forwarding target, as evidence


def _number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ("E1,An,an@x.gov.vn,../../etc,Unit", "unit_code '../../etc' may hold only"),
        ("E1,An,an@x.gov.vn,a/b,Unit", "unit_code 'a/b' may hold only"),
        ("../E1,An,an@x.gov.vn,U1,Unit", "employee_id '../E1' may hold only"),
        ("E1,An,an@x.gov.vn,U1," + "x" * 5000, "unit_name is 5,000 characters long"),
        ("E1,An\x00,an@x.gov.vn,U1,Unit", "full_name holds control characters"),
        ("E1,An,an@x.gov.vn,U1," + "y" * 200_000, "field larger than field limit"),
    ],
)
def test_hostile_roster_rows_are_refused(tmp_path: Path, row: str, message: str) -> None:
    path = tmp_path / "roster.csv"
    path.write_text("employee_id,full_name,email,unit_code,unit_name\n" + row + "\n")
    with pytest.raises(RosterError, match=message.replace("(", r"\(").replace(".", r"\.")):
        load_roster(path)


@pytest.mark.parametrize("name", ["../../tmp/x", "a/b", "", "x" * 65, ".hidden"])
def test_hostile_source_names_are_refused(tmp_path: Path, name: str) -> None:
    cfg = tmp_path / "mailusage.toml"
    cfg.write_text(
        '[agency]\nname = "x"\ntimezone = "Asia/Ho_Chi_Minh"\nofficial_domains = ["x.vn"]\n'
        '[roster]\npath = "r.csv"\n'
        f'[[sources]]\nname = "{name}"\nhost = "h"\npassword = {{ env = "X" }}\n'
    )
    with pytest.raises(ConfigError, match="may hold only letters"):
        load_config(cfg)
