"""The CLI starts without Prefect unless a flow runs (issue 22.7): Prefect's import costs
~2 s, more with the `analyst` extra (see benchmarks/README.md, "Start-up")."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from analytics.evaluate import OUTPUT_FILES
from tests.analytics.fixture import ROSTER, build, people

ROOT = Path(__file__).resolve().parents[1]
PREFECT_LOADED = (
    "print('PREFECT', any(m == 'prefect' or m.startswith('prefect.') for m in sys.modules))"
)


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """A user's shell: no Prefect API, no profile of theirs, this checkout first."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "MAILUSAGE_"))}
    env.update(
        PYTHONPATH=str(ROOT), HOME=str(tmp_path / "home"), PREFECT_HOME=str(tmp_path / "prefect")
    )
    env.update(extra)
    return env


def _python(code: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=cwd, timeout=300
    )


def test_evaluate_help_imports_no_prefect(tmp_path):
    run = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "mailusage.cli", "evaluate", "--help"],
        capture_output=True,
        text=True,
        env=_env(tmp_path),
        cwd=tmp_path,
    )
    assert run.returncode == 0, run.stderr
    modules = {
        ln.split("|")[-1].strip() for ln in run.stderr.splitlines() if ln.startswith("import time:")
    }
    assert "argparse" in modules  # -X importtime did report
    assert not {
        m for m in modules if m.split(".")[0] in ("prefect", "jsonschema", "rfc3987_syntax")
    }


@pytest.fixture
def agency(tmp_path) -> Path:
    root = tmp_path / "agency"
    build(root / "data")
    people(root)
    cfg = root / "mailusage.toml"
    cfg.write_text(
        """
[agency]
official_domains = ["danang.gov.vn"]
[roster]
path = "roster.csv"
[[sources]]
host = "127.0.0.1"
master_user = "admin"
password = { env = "MU_STARTUP_SECRET" }
""",
        encoding="utf-8",
    )
    return cfg


def test_an_evaluation_without_a_prefect_api_never_imports_prefect(tmp_path, agency):
    code = (
        "import sys\nfrom mailusage.cli import main\n"
        f"rc = main(['evaluate', '--config', {str(agency)!r}, '--month', '2026-11'])\n"
        f"{PREFECT_LOADED}\n"
        "print('WEASYPRINT', 'weasyprint' in sys.modules)\n"
        "import os\nprint('EPOCH', os.environ.get('SOURCE_DATE_EPOCH'))\n"
        "sys.exit(rc)"
    )
    run = _python(code, _env(tmp_path, MU_STARTUP_SECRET="unused"), tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "PREFECT False" in run.stdout
    # report.pdf is laid out in a child process (analytics/pdf.py): WeasyPrint's import
    # and SOURCE_DATE_EPOCH stay out of the evaluating process
    assert "WEASYPRINT False" in run.stdout
    assert "EPOCH None" in run.stdout
    for name in OUTPUT_FILES:  # and it did the whole evaluation
        assert (agency.parent / "reports" / "2026-11" / name).exists(), name


def test_a_night_without_a_prefect_api_never_imports_prefect(tmp_path, agency):
    """`mailusage collect` runs the night without a flow when no Prefect API is configured:
    its steps are plain functions, and Prefect stays out (here every mailbox fails: the
    server's port is closed, and that is a night like any other)."""
    with socket.socket() as s:  # a port nothing listens on: each login is refused at once
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = agency.read_text(encoding="utf-8") + f"port = {port}\n[collect]\nretries = 0\n"
    agency.write_text(config, encoding="utf-8")
    code = (
        "import sys\nfrom mailusage.cli import main\n"
        f"rc = main(['collect', '--config', {str(agency)!r}, '--date', '2026-12-05', '--quiet'])\n"
        f"{PREFECT_LOADED}\n"
        "sys.exit(rc)"
    )
    run = _python(code, _env(tmp_path, MU_STARTUP_SECRET="unused"), tmp_path)
    assert run.returncode == 1, run.stdout + run.stderr  # failed mailboxes: not a green night
    assert "night 2026-12-05: ok 0, failed 11, skipped 0 of 11 mailboxes" in run.stdout, run.stdout
    assert "PREFECT False" in run.stdout


def test_an_evaluation_never_imports_pandas(tmp_path, agency):
    """pyarrow imports pandas (~0.18 s) the first time it is handed a Python value
    (``pa.array``, ``pa.scalar``, ``pc.equal(column, "x")``, ``schema.empty_table()``): the
    evaluation builds its arrays and scalars through contract/arrays.py instead. The paths
    that touch Arrow all run here: datasets never collected (logins, forwarding, contacts),
    a code the policy trusts only as "suspected" (review.csv), a name Excel would run as a
    formula."""
    preset = ROOT / "analytics" / "policies" / "lien-chieu-2014.toml"
    code = "[codes.OFFICIAL_ADDRESS_REGISTERED]\n"
    policy = preset.read_text(encoding="utf-8").replace(code, code + 'confidence = "suspected"\n')
    assert 'confidence = "suspected"' in policy
    (agency.parent / "policy.toml").write_text(policy, encoding="utf-8")
    rows = [("P05", "=Hoàng Văn Em", *r[2:]) if r[0] == "P05" else r for r in ROSTER]
    people(agency.parent, rows)
    config = agency.read_text(encoding="utf-8") + '[evaluation]\npolicy = "policy.toml"\n'
    agency.write_text(config, encoding="utf-8")
    command = ["evaluate", "--config", str(agency), "--month", "2026-11"]
    run = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "mailusage.cli", *command],
        capture_output=True,
        text=True,
        env=_env(tmp_path, MU_STARTUP_SECRET="unused"),
        cwd=tmp_path,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout + run.stderr[-3000:]
    modules = {
        ln.split("|")[-1].strip() for ln in run.stderr.splitlines() if ln.startswith("import time:")
    }
    assert {"pyarrow.compute", "duckdb", "analytics.evaluate"} <= modules  # importtime reported
    assert not {m for m in modules if m.split(".")[0] == "pandas"}
    reports = agency.parent / "reports" / "2026-11"
    review = (reports / "review.csv").read_text(encoding="utf-8-sig")
    assert review.count("OFFICIAL_ADDRESS_REGISTERED") == 2  # P05's two, downgraded
    assert "'=Hoàng Văn Em" in review  # neutralised for Excel


@pytest.mark.parametrize(
    "setting",
    ["nothing", "env", "profile", "profile-without-api"],
)
def test_the_prefect_api_is_the_one_prefect_itself_finds(tmp_path, setting):
    """The CLI decides 'flow or not' without importing Prefect where no setting can name an
    API; where one can, it asks Prefect. Either way the answer is Prefect's own."""
    extra = {}
    (tmp_path / "prefect").mkdir()
    profiles = tmp_path / "prefect" / "profiles.toml"
    if setting == "env":
        extra["PREFECT_API_URL"] = "http://127.0.0.1:9/api"
    elif setting == "profile":
        profiles.write_text(
            'active = "ops"\n[profiles.ops]\nPREFECT_API_URL = "http://127.0.0.1:8/api"\n'
        )
    elif setting == "profile-without-api":  # what Prefect writes by default
        profiles.write_text(
            'active = "ephemeral"\n[profiles.ephemeral]\nPREFECT_SERVER_ALLOW_EPHEMERAL_MODE = "true"\n'
        )
    env = _env(tmp_path, **extra)
    ours = _python(
        f"import sys\nfrom mailusage.cli import _prefect_api\nprint(_prefect_api())\n{PREFECT_LOADED}",
        env,
        tmp_path,
    )
    theirs = _python(
        "from prefect.settings import PREFECT_API_URL\nprint(PREFECT_API_URL.value())",
        env,
        tmp_path,
    )
    assert ours.returncode == 0 and theirs.returncode == 0, ours.stderr + theirs.stderr
    assert ours.stdout.splitlines()[0] == theirs.stdout.strip()
    if setting in ("nothing", "profile-without-api", "env"):
        assert "PREFECT False" in ours.stdout  # decided without the import


def test_config_is_shown_optional_with_its_default(tmp_path):
    env = _env(tmp_path)
    for command in ("collect", "doctor", "evaluate", "compact"):
        run = subprocess.run(
            [sys.executable, "-m", "mailusage.cli", command, "--help"],
            capture_output=True,
            text=True,
            env=env,
            cwd=tmp_path,
        )
        assert "[--config FILE]" in run.stdout.split("\n\n")[0], run.stdout  # the usage line
        assert "default: $MAILUSAGE_CONFIG" in " ".join(run.stdout.split())
    missing = subprocess.run(
        [sys.executable, "-m", "mailusage.cli", "evaluate"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    assert missing.returncode == 2
    assert "--config FILE is needed (or set MAILUSAGE_CONFIG" in missing.stderr
    assert "Traceback" not in missing.stderr


def test_evaluate_help_lists_every_output_file(tmp_path):
    run = subprocess.run(
        [sys.executable, "-m", "mailusage.cli", "evaluate", "--help"],
        capture_output=True,
        text=True,
        env=_env(tmp_path),
        cwd=tmp_path,
    )
    text = " ".join(run.stdout.split())
    for name in OUTPUT_FILES:
        assert name in text, name
