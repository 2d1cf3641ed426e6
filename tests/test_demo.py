"""`mailusage demo` end to end (small): every planted violation found, nothing false."""

from __future__ import annotations

import csv

from analytics.evaluate import OUTPUT_FILES
from mailusage.cli import main
from mailusage.demo import run_demo


def test_demo_finds_what_it_planted(tmp_path, monkeypatch, prefect_harness):
    monkeypatch.chdir(tmp_path)
    assert run_demo(str(tmp_path / "demo"), staff=16, cli=main) == 0  # non-zero on missed / false
    reports = next((tmp_path / "demo" / "reports").iterdir())
    for name in OUTPUT_FILES:
        assert (reports / name).exists(), name
    with (reports / "hr_ratings.csv").open(encoding="utf-8-sig") as fh:
        rows = list(csv.reader(fh))
    assert len(rows) == 1 + 16  # one row per person; unit mailboxes are not rated
    # The master password file is its owner's alone.
    assert (tmp_path / "demo" / "dovecot" / "master.passwd").stat().st_mode & 0o077 == 0


def test_demo_never_deletes_a_directory_it_did_not_write(tmp_path):
    mine = tmp_path / "notes.txt"
    mine.write_text("an operator's file")
    assert run_demo(str(tmp_path), staff=4, cli=main) == 2
    assert mine.read_text() == "an operator's file"


def test_demo_with_one_unit_on_a_graph_tenant(tmp_path, monkeypatch, prefect_harness):
    import duckdb

    monkeypatch.chdir(tmp_path)
    root = tmp_path / "demo"
    assert run_demo(str(root), staff=16, nights=4, graph=True, cli=main) == 0
    with (root / "roster.csv").open(encoding="utf-8-sig") as fh:
        online = {r["email"] for r in csv.DictReader(fh) if r["source"] == "demo-m365"}
    assert online
    runs = duckdb.sql(
        f"select mailbox, status from read_parquet('{root}/data/run_mailboxes/*/*.parquet') "
        "where source = 'demo-m365'"
    ).fetchall()
    assert {m for m, _ in runs} == online and {s for _, s in runs} == {"ok"}
    assert len(runs) == 4 * len(online)  # every night, every Graph mailbox
    stored = duckdb.sql(
        f"select distinct mailbox from read_parquet('{root}/data/messages/*/*.parquet') "
        "where source = 'demo-m365'"
    ).fetchall()
    assert {m for (m,) in stored} == online  # everyone there receives official mail


def test_demo_months_are_the_last_n_before_this_one():
    from datetime import date

    from mailusage.demo import demo_months

    assert demo_months(date(2027, 1, 10), 3) == [
        date(2026, 10, 1),
        date(2026, 11, 1),
        date(2026, 12, 1),
    ]
    assert demo_months(date(2026, 12, 1), 1) == [date(2026, 11, 1)]


def test_demo_months_builds_consecutive_evaluated_months(tmp_path, monkeypatch, prefect_harness):
    """--months 2: both months collected and evaluated in turn, so the second month's
    ranking and report know the first (the trend has two points)."""
    from datetime import datetime, timedelta
    from zoneinfo import ZoneInfo

    monkeypatch.chdir(tmp_path)
    root = tmp_path / "demo"
    assert run_demo(str(root), staff=6, nights=2, months=2, cli=main) == 0
    today = datetime.now(ZoneInfo("Asia/Ho_Chi_Minh")).date()
    last = (today.replace(day=1) - timedelta(days=1)).replace(day=1)
    first = (last - timedelta(days=1)).replace(day=1)
    months = [first.strftime("%Y-%m"), last.strftime("%Y-%m")]
    assert sorted(p.name for p in (root / "reports").iterdir()) == months
    nights = sorted(p.name for p in (root / "data" / "mailbox_status").iterdir())
    # each month's first two days, collected the night after each
    expected = [
        f"night={(m + timedelta(days=d)).isoformat()}" for m in (first, last) for d in (1, 2)
    ]
    assert nights == expected
    from analytics.evaluate import UNIT_COLUMNS

    with (root / "reports" / months[1] / "unit_ranking.csv").open(encoding="utf-8-sig") as fh:
        ranking = list(csv.reader(fh))[1:]  # headers in the report's language: by position
    prev = UNIT_COLUMNS.index("share_regular_prev")
    assert ranking and all(r[prev] != "" for r in ranking)  # last month known to this one
    html = (root / "reports" / months[1] / "report.html").read_text(encoding="utf-8")
    label = f"{first.month}/{first.year}"  # as the report writes a month
    assert label in html  # the earlier month is in the trend


def test_demo_serve_leaves_dovecot_up_for_the_printed_operator_commands(tmp_path, prefect_harness):
    """`mailusage demo --serve` as a user runs it: the commands it prints, pasted into a
    shell that has no password set, run doctor, collect and evaluate on the demo's
    Dovecot; the password is in a 0600 file and in no output; SIGTERM stops it all."""
    import os
    import signal
    import socket
    import subprocess
    import sys
    import threading
    from pathlib import Path

    from prefect.settings import PREFECT_API_URL

    root = tmp_path / "demo"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAILUSAGE_")}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[1])
    env["PREFECT_API_URL"] = PREFECT_API_URL.value()  # the harness's server: no startup wait
    demo = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mailusage.cli",
            "demo",
            "--workdir",
            str(root),
            "--staff",
            "4",
            "--nights",
            "2",
            "--serve",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    lines: list[str] = []
    try:
        timer = threading.Timer(600, demo.kill)  # a hung demo fails the test, not the suite
        timer.start()
        assert demo.stdout is not None
        for line in demo.stdout:
            lines.append(line)
            if "evaluate --month" in line:
                break
        timer.cancel()
        output = "".join(lines)
        assert "Dovecot stays up" in output, output
        commands = [
            ln.strip()
            for ln in lines[next(i for i, ln in enumerate(lines) if "In another shell" in ln) + 1 :]
        ]
        port = int(output.split("Dovecot stays up on 127.0.0.1:")[1].split(" ")[0])
        assert demo.poll() is None
        shell = subprocess.run(
            ["bash", "-c", "set -e\n" + "\n".join(commands)],
            capture_output=True,
            text=True,
            env=env,
            cwd=tmp_path,
            timeout=600,
        )
        assert shell.returncode == 0, shell.stdout + shell.stderr
        # 4 staff + 8 unit mailboxes, the login source counted apart
        assert "skipped 0 of 12 mailboxes; login sources: ok 1 of 1;" in shell.stdout, shell.stdout
        assert "all checks passed" in shell.stdout or "0 failure" in shell.stdout, shell.stdout
    finally:
        demo.send_signal(signal.SIGTERM)
        rest, _ = demo.communicate(timeout=60)
    assert demo.returncode == 0, rest
    secret = root / "master-password"
    assert secret.stat().st_mode & 0o777 == 0o600
    password = secret.read_text().strip()
    assert len(password) >= 16
    for text in (output, rest, shell.stdout, shell.stderr):
        assert password not in text
    with socket.socket() as s:  # stopped with the demo
        assert s.connect_ex(("127.0.0.1", port)) != 0


def test_the_notebook_hint_works_as_printed(tmp_path):
    """The closing hint names a command this installation can run: `python -m jupyter lab`
    only where JupyterLab is installed, else how to install it (the `analyst` extra)."""
    import importlib.util
    import subprocess
    import sys

    from mailusage.demo import notebook_hint

    hint = notebook_hint(tmp_path / "mailusage.toml")
    assert f"MAILUSAGE_CONFIG={tmp_path / 'mailusage.toml'} {sys.executable} -m jupyter lab" in hint
    lab = subprocess.run([sys.executable, "-m", "jupyter", "lab", "--version"], capture_output=True)
    if importlib.util.find_spec("jupyterlab") is None:
        assert lab.returncode != 0  # the command alone would fail here ...
        assert (
            f"{sys.executable} -m pip install -e " in hint and "[analyst]" in hint
        )  # ... so it says how
    else:
        assert lab.returncode == 0 and "install" not in hint


def test_demo_as_a_small_province(tmp_path, monkeypatch, prefect_harness):
    """`mailusage demo --province`, kept small here (33 staff in 11 staffed units, 3
    nights; the default 240 staff over a whole month takes minutes): a three-level tree
    with every unit's head, a scope for the province, each sở and each huyện, and each
    scope's bundle held to the truth by the demo itself — then shown to fail that check
    when a bundle names an outsider or loses a row."""
    from contract.units import load_units
    from mailusage.demo import PROVINCE, Agency, Person, scope_check
    from pipelines.config import load_config
    from pipelines.evaluate import month_bundles

    monkeypatch.chdir(tmp_path)
    root = tmp_path / "demo"
    assert run_demo(str(root), staff=33, nights=3, province=True, cli=main) == 0
    with (root / "roster.csv").open(encoding="utf-8-sig") as fh:
        roster = list(csv.DictReader(fh))
    unit_of = {r["employee_id"]: r["unit_code"] for r in roster}
    staff = [r for r in roster if r["is_unit_mailbox"] == "no"]
    assert len(staff) == 33

    tree = load_units(root / "units.csv")  # what the product reads, checked as it checks
    assert tree.levels == 3 and tree.roots() == ("TINH",)
    assert tree.children("TINH") == ("STTTT", "SNV", "BAC", "NAM")
    for district in ("BAC", "NAM"):
        kinds = {tree.units[c].kind for c in tree.children(district)}
        assert {"phòng", "UBND xã"} <= kinds
    emails = {r["email"]: r["employee_id"] for r in staff}
    for code, unit in tree.units.items():  # each head one of the unit's own staff
        assert unit.head_email in emails, code
        assert unit_of[emails[unit.head_email]] in tree.subtree(code), code

    config = load_config(root / "mailusage.toml")
    month = next((root / "reports").iterdir()).name
    roots = {s.name: s.root for s in config.scopes}
    assert roots == {
        "tinh": None,
        "so-tttt": "STTTT",
        "so-noi-vu": "SNV",
        "demo-bac": "BAC",
        "demo-nam": "NAM",
    }
    bundles = month_bundles(config, month)
    assert [b.scope for b in bundles] == list(roots) and all(b.recipients for b in bundles)
    # independently of the demo's check: each district's workbooks hold its units' staff
    from openpyxl import load_workbook

    for name, district in (("demo-bac", "BAC"), ("demo-nam", "NAM")):
        units = {c for c, _, p, _ in PROVINCE if district in (c, p)}
        ids = set()
        for book in (root / "reports" / month / name).glob("hr_ratings_*.xlsx"):
            rows = load_workbook(book, read_only=True).worksheets[0].iter_rows(values_only=True)
            ids |= {r[0] for r in rows if r and str(r[0]).startswith("NV")}
        assert ids == {r["employee_id"] for r in staff if r["unit_code"] in units}

    # the demo's per-scope check can fail: rebuilt from the files, it holds as written ...
    agency = Agency(
        [
            Person(
                r["employee_id"],
                r["full_name"],
                r["email"],
                r["unit_code"],
                r["unit_name"],
                "",
                is_unit_mailbox=r["is_unit_mailbox"] == "yes",
            )
            for r in roster
        ]
    )
    reports = root / "reports" / month
    with (reports / "violations.csv").open(encoding="utf-8-sig") as fh:
        found = {(r[0], r[4]) for r in list(csv.reader(fh))[1:]}
    assert found and scope_check(reports, agency, found)[0] == 0
    # ... but not with an outsider's address in a department's report
    html = reports / "so-noi-vu" / "report.html"
    kept = html.read_bytes()
    outsider = next(r for r in staff if r["unit_code"] == "BAC-XAB")
    html.write_text(kept.decode() + f"<p>{outsider['email']}</p>", encoding="utf-8")
    assert scope_check(reports, agency, found)[0] == 1
    # (an address that merely ends like it, qu + an.lm@…, is someone else's: not named)
    html.write_text(kept.decode() + f"<p>qu{outsider['email']}</p>", encoding="utf-8")
    assert scope_check(reports, agency, found)[0] == 0
    html.write_bytes(kept)
    # ... nor with a confirmed row gone from the bundle that has one
    scope = next(
        b.scope
        for b in bundles
        if b.scope != "tinh"
        and len((reports / b.scope / "violations.csv").read_bytes().splitlines()) > 1
    )
    evidence = reports / scope / "violations.csv"
    lines = evidence.read_bytes().splitlines(keepends=True)
    evidence.write_bytes(b"".join(lines[:-1]))
    assert scope_check(reports, agency, found)[0] == 1
