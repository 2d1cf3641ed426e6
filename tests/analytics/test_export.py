"""`mailusage export`: a scope's data as one DuckDB file. The fixture agency as a three-level
district (tests/analytics/test_scopes.py: Q -> A -> A1, Q -> B), with logins, forwarding,
contacts and a mail log added; the ward A's subtree is exported. The file is opened and
every string in it read: nobody outside the scope, and each table's rows are those of the
store restricted to the scope, counted here from the Parquet files with pyarrow."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from datetime import date, datetime
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from analytics.evaluate import evaluate_month
from analytics.export import (
    OUTSIDE,
    TABLES,
    ExportError,
    export_scope,
    resolve_scope,
    rule_of,
)
from contract.datasets import CONTACTS, FORWARDING, LOGINS, MESSAGES
from pipelines.config import ConfigError, load_config
from pipelines.evaluate import evaluation_inputs
from pipelines.storage import DataDir
from tests.analytics.fixture import ICT, ROSTER, addr, build, local
from tests.analytics.mail_log_fixture import fixture_sent, inbound, rows_of, write_mail_log
from tests.analytics.test_scopes import ROWS, UNIT_OF, _config

ROOT = Path(__file__).resolve().parents[2]
MONTH = "2026-11"
SCOPE = "hoa-minh"  # the ward A and its residential group A1
UNITS = {"A", "A1"}
INSIDE = [r for r in ROWS if UNIT_OF[r[0]] in UNITS]
OUTSIDE_ROWS = [r for r in ROWS if UNIT_OF[r[0]] not in UNITS]
EMAILS = {r[4] for r in INSIDE if r[4]}
KEY = "a district analyst's key, 32 bytes"
# the export's days: the month before (the first month's comparison) through November
START, END = datetime(2026, 10, 1, tzinfo=ICT), datetime(2026, 12, 1, tzinfo=ICT)
NIGHTS = (date(2026, 10, 1), date(2026, 12, 1))


def _more_signals(data_dir: Path) -> None:
    """Logins, forwarding, contacts and one more messages night, inside and outside A."""
    data = DataDir(data_dir)
    data.write_table(
        "logins",
        "2026-11-10",
        "dovecot-log",
        pa.Table.from_pylist(
            [
                {"mailbox": addr(p), "login_at": local(9), "protocol": "imap"}
                | {"remote_addr": f"198.51.100.{i}", "source": "dovecot-log"}
                for i, p in enumerate(("P01", "P05", "P03", "P06"))
            ]
            + [  # before the export's days: not in it
                {"mailbox": addr("P01"), "login_at": local(20, month=9), "protocol": "imap"}
                | {"remote_addr": "198.51.100.9", "source": "dovecot-log"}
            ],
            schema=LOGINS,
        ),
    )
    for night in ("2026-11-20", "2026-12-05"):  # the second is after the month's nights
        data.write_table(
            "forwarding",
            night,
            "part-0",
            pa.Table.from_pylist(
                [
                    {"mailbox": addr("P05"), "target": "p05.fwd@gmail.com"}
                    | {"rule_name": "Chuyển cho Em", "keeps_copy": True, "conditional": False},
                    {"mailbox": addr("P06"), "target": "p06.fwd@yahoo.com"}
                    | {"rule_name": "Giang", "keeps_copy": False, "conditional": False},
                ],
                schema=FORWARDING,
            ),
        )
    contacts = [
        {"mailbox": addr("P09"), "uid": 901, "message_id": "<c1@fixture>"}
        | {"address": "lienhe.p09@gmail.com", "where_found": "docx", "sent_date": local(20)},
        {"mailbox": addr("P03"), "uid": 902, "message_id": "<c2@fixture>"}
        | {"address": "contact.b@gmail.com", "where_found": "pdf", "sent_date": local(12)},
    ]
    data.write_table(
        "contacts", "2026-11-21", "part-0", pa.Table.from_pylist(contacts, schema=CONTACTS)
    )
    # P01 writes to P04's declared personal address (P04 is not of A) and to outsiders
    extra = [
        {
            "source": "fixture",
            "mailbox": addr("P01"),
            "folder": "Sent",
            "role": "sent",
            "uidvalidity": 1,
            "uid": 500 + i,
            "internal_date": local(day),
            "sent_date": local(day),
            "date_source": "header",
            "size": 100,
            "seen": True,
            "from_addr": addr("P01"),
            "to_addrs": to,
            "cc_addrs": [addr("P06")],
            "message_id": f"<x{i}@lienchieu.danang.gov.vn>",
            "address_invalid": False,
        }
        for i, (day, to) in enumerate(
            [(22, ["p04.home@gmail.com"]), (23, ["ban.doc@yahoo.com", addr("P02")])]
        )
    ]
    data.write_table(
        "messages", "2026-11-24", "part-0", pa.Table.from_pylist(extra, schema=MESSAGES)
    )


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("export")
    build(root / "data")
    _more_signals(root / "data")
    write_mail_log(root / "data", rows_of(fixture_sent(root / "data"), inbound(root / "data")))
    cfg = _config(root)
    with cfg.open("a", encoding="utf-8") as fh:
        fh.write('\n[export]\nkey = { env = "MAILUSAGE_TEST_EXPORT_KEY" }\n')
        # the month is evaluated with the mail log: its columns are exported too
        fh.write('\n[[mail_logs]]\nkind = "postfix"\npath = "mail.log"\n')
    return cfg


def _export(cfg: Path, out: Path, key: str | None, months=(MONTH,), scope=SCOPE) -> Path:
    config = load_config(cfg)
    inputs = evaluation_inputs(config)
    chosen = resolve_scope(scope, config.scopes, inputs.tree())
    export_scope(inputs, chosen, list(months), out, key=key.encode() if key else None)
    return out


def _tables(path: Path) -> dict[str, pa.Table]:
    con = duckdb.connect(str(path), read_only=True)
    try:
        names = [r[0] for r in con.sql("select table_name from duckdb_tables()").fetchall()]
        assert sorted(names) == sorted(TABLES)
        return {n: con.sql(f"select * from {n}").to_arrow_table() for n in names}
    finally:
        con.close()


def _strings(table: pa.Table) -> list[str]:
    """Every string of a table: its string columns and the strings of its list columns."""
    out: list[str] = []
    for col in table.columns:
        if pa.types.is_list(col.type):
            col = pa.chunked_array([c.flatten() for c in col.chunks], col.type.value_type)
        if pa.types.is_string(col.type):
            out += [v for v in col.to_pylist() if v]
    return out


def _truth(data_dir: Path, dataset: str) -> list[dict]:
    """A dataset's rows read with pyarrow alone (night from the directory name)."""
    rows = []
    for f in sorted((data_dir / dataset).glob("night=*/*.parquet")):
        night = date.fromisoformat(f.parent.name.removeprefix("night="))
        rows += [r | {"night": night} for r in pq.read_table(f).to_pylist()]
    return rows


def test_a_scope_export_holds_its_people_and_no_one_else(store, tmp_path):
    tables = _tables(_export(store, tmp_path / "ward.duckdb", None))
    assert {r["employee_id"] for r in tables["roster"].to_pylist()} == {r[0] for r in INSIDE}
    assert {r["unit_code"] for r in tables["units"].to_pylist()} == UNITS
    for name, table in tables.items():
        text = "\n".join(_strings(table))
        for employee_id, full_name, _, _, email, _, personal, _ in OUTSIDE_ROWS:
            assert not re.search(rf"\b{employee_id}\b", text), (name, employee_id)
            assert full_name not in text, (name, full_name)
            assert not email or email not in text, (name, email)
            assert not personal or personal not in text, (name, personal)
    # a member's mail still shows that it went to another unit, and the domain's class
    rows = tables["messages"].to_pylist()
    to_p04 = next(r for r in rows if r["message_id"] == "<x0@lienchieu.danang.gov.vn>")
    assert to_p04["to_addrs"] == [f"{OUTSIDE}@gmail.com"]
    assert to_p04["cc_addrs"] == [f"{OUTSIDE}@lienchieu.danang.gov.vn"]
    domains = {r["domain"]: r for r in tables["domains"].to_pylist()}
    assert domains["gmail.com"]["is_public"] and domains["lienchieu.danang.gov.vn"]["is_official"]
    assert {r["unit_code"]: r["head_email"] for r in tables["units"].to_pylist()} == {
        "A": addr("P01"),
        "A1": None,
    }
    readme = dict(zip(*tables["readme"].to_pydict().values(), strict=True))
    assert readme["scope"] == SCOPE and readme["pseudonymised"] == "no"
    assert readme["months"] == MONTH and readme["people"] == str(len(INSIDE))


def test_each_table_holds_the_stores_rows_of_the_scope(store, tmp_path):
    tables = _tables(_export(store, tmp_path / "ward.duckdb", None))
    data = store.parent / "data"

    def count(dataset: str, keep) -> int:
        return sum(1 for r in _truth(data, dataset) if keep(r))

    def dated(when: datetime | None) -> bool:
        return when is not None and START <= when < END

    expected = {
        "messages": count("messages", lambda r: r["mailbox"] in EMAILS and dated(r["sent_date"])),
        "mailbox_status": count(
            "mailbox_status",
            lambda r: r["mailbox"] in EMAILS and NIGHTS[0] <= r["night"] <= NIGHTS[1],
        ),
        "logins": count("logins", lambda r: r["mailbox"] in EMAILS and dated(r["login_at"])),
        "forwarding": count(
            "forwarding",
            lambda r: r["mailbox"] in EMAILS and NIGHTS[0] <= r["night"] <= NIGHTS[1],
        ),
        "contacts": count("contacts", lambda r: r["mailbox"] in EMAILS and dated(r["sent_date"])),
        "mail_log_deliveries": count(
            "mail_log_deliveries",
            lambda r: (
                (r["sasl_username"] in EMAILS or r["recipient"] in EMAILS) and dated(r["time"])
            ),
        ),
    }
    got = {name: tables[name].num_rows for name in expected}
    assert got == expected
    assert all(expected.values()), expected  # every dataset has rows here: the test can fail
    # the evaluation's tables: the whole month's, restricted to the scope's people and units
    whole = evaluate_month(evaluation_inputs(load_config(store)), MONTH)
    ids = {r[0] for r in INSIDE}
    for name, key, wanted in (
        ("person_month", "employee_id", ids),
        ("violations", "employee_id", ids),
        ("unit_month", "unit_code", UNITS),
    ):
        mine = [r for r in getattr(whole, name).to_pylist() if r[key] in wanted]
        assert tables[name].num_rows == len(mine) > 0, name
        exported = sorted(
            (r[key], r.get("code") or "", str(r.get("message_id")))
            for r in tables[name].to_pylist()
        )
        assert exported == sorted(
            (r[key], r.get("code") or "", str(r.get("message_id"))) for r in mine
        )
    assert "sent_submitted" in tables["person_month"].column_names
    assert "queue_id" in tables["violations"].column_names
    regular = {r["employee_id"]: r["usage_class"] for r in tables["person_month"].to_pylist()}
    assert regular["P01"] == "regular" and regular["P09"] == "occasional"


def _addresses_of(tables: dict[str, pa.Table]) -> set[str]:
    """Every clear address an export holds (outsiders are already outside-scope@)."""
    return {
        s
        for t in tables.values()
        for s in _strings(t)
        if re.fullmatch(r"[^@\s]+@[a-z0-9.-]+", s) and not s.startswith(f"{OUTSIDE}@")
    }


def test_the_pseudonymised_export_names_nobody(store, tmp_path):
    clear = _tables(_export(store, tmp_path / "clear.duckdb", None))
    path = _export(store, tmp_path / "pseudo.duckdb", KEY)
    pseudo = _tables(path)
    addresses = _addresses_of(clear)
    # members' and external people's addresses: the scan below must have something to find
    assert {addr("P01"), "p05.fwd@gmail.com", "lienhe.p09@gmail.com", "ban.doc@yahoo.com"} <= (
        addresses
    )
    names = [r[1] for r in ROSTER]
    raw = path.read_bytes()
    for name, table in pseudo.items():
        strings = _strings(table)
        text = "\n".join(strings)
        for a in addresses:
            assert a not in text, (name, a)
        for full_name in names:
            assert full_name not in text, (name, full_name)
        assert not re.search(r"\b(P\d\d|UA)\b", text), name
        assert "198.51.100" not in text  # client addresses are hashed too
    # the raw scan finds what is there: the clear file holds the addresses in its bytes
    assert addr("P01").encode() in (tmp_path / "clear.duckdb").read_bytes()
    for a in addresses:
        assert a.encode() not in raw, a
    for full_name in names:
        assert full_name.encode() not in raw, full_name
    # the same rows, the same domains and classes
    assert {n: t.num_rows for n, t in pseudo.items() if n != "readme"} == {
        n: t.num_rows for n, t in clear.items() if n != "readme"
    }
    assert pseudo["domains"] == clear["domains"]
    domain = [a.rpartition("@")[2] for a in pseudo["messages"]["mailbox"].to_pylist()]
    assert domain == [a.rpartition("@")[2] for a in clear["messages"]["mailbox"].to_pylist()]
    assert "full_name" not in pseudo["roster"].column_names
    # the tables still join on their pseudonyms: ids across roster, person_month and
    # violations, addresses across roster and the datasets
    ids = set(pseudo["roster"]["employee_id"].to_pylist())
    assert set(pseudo["person_month"]["employee_id"].to_pylist()) == ids
    assert set(pseudo["violations"]["employee_id"].to_pylist()) <= ids
    emails = set(pseudo["roster"]["email"].to_pylist())
    assert set(pseudo["messages"]["mailbox"].to_pylist()) <= emails
    assert set(pseudo["mailbox_status"]["mailbox"].to_pylist()) <= emails
    sent = set(pseudo["messages"]["message_id"].to_pylist())
    assert sent & set(pseudo["mail_log_deliveries"]["message_id"].to_pylist())
    assert "rule_name" not in pseudo["forwarding"].column_names


def test_pseudonyms_are_stable_under_one_key_and_differ_under_another(store, tmp_path):
    def pseudonyms(path: Path) -> dict[str, str]:
        roster = _tables(path)["roster"].to_pylist()
        return {r["employee_id"]: r["email"] for r in roster}

    def ids(path: Path) -> list[str]:
        return sorted(_tables(path)["roster"]["employee_id"].to_pylist())

    november = _export(store, tmp_path / "nov.duckdb", KEY)
    autumn = _export(store, tmp_path / "autumn.duckdb", KEY, months=("2026-10", MONTH))
    other = _export(store, tmp_path / "other.duckdb", KEY + " but another")
    whole = _export(store, tmp_path / "all.duckdb", KEY, scope="all")
    assert pseudonyms(november) == pseudonyms(autumn)  # months join
    assert ids(november) == ids(autumn)
    assert set(pseudonyms(november).items()) <= set(pseudonyms(whole).items())  # scopes too
    assert not set(pseudonyms(november).values()) & set(pseudonyms(other).values())
    assert not set(ids(november)) & set(ids(other))
    readme = {
        p: dict(zip(*_tables(p)["readme"].to_pydict().values(), strict=True))
        for p in (november, autumn, other)
    }
    assert readme[november]["key_id"] == readme[autumn]["key_id"] != readme[other]["key_id"]
    assert readme[autumn]["months"] == "2026-10, 2026-11"


def test_a_column_without_a_rule_is_never_exported():
    assert rule_of("messages", "to_addrs") == "addresses"
    with pytest.raises(ExportError, match=r"messages.subject has no export rule"):
        rule_of("messages", "subject")


def test_every_exported_column_is_in_the_data_dictionary(store, tmp_path):
    text = (ROOT / "docs" / "data-dictionary.md").read_text(encoding="utf-8")
    section = text.split("## Analyst exports", 1)[1]
    for name, table in _tables(_export(store, tmp_path / "x.duckdb", None)).items():
        part = section.split(f"### `{name}`", 1)
        assert len(part) == 2, f"no section for {name}"
        body = part[1].split("\n### ", 1)[0]
        for col in table.column_names:
            assert f"`{col}`" in body, (name, col)


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mailusage.cli", "export", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "200", **(env or {})},
        timeout=300,
    )


def test_the_command_as_an_operator_meets_it(store, tmp_path):
    cfg = str(store)
    out = tmp_path / "pg" / "ward.duckdb"
    base = ["--config", cfg, "--month", MONTH, "--out", str(out)]
    no_scope = _cli("--config", cfg, "--month", MONTH, "--out", str(out))
    assert no_scope.returncode == 2 and "--scope" in no_scope.stderr
    unknown = _cli(*base, "--scope", "nowhere")
    assert unknown.returncode == 2
    assert "'nowhere' is neither a [[scopes]] name (quan, hoa-minh, tckh)" in unknown.stderr
    unset = _cli(*base, "--scope", SCOPE, "--pseudonymise", env={"MAILUSAGE_TEST_EXPORT_KEY": ""})
    assert unset.returncode == 2
    assert "export.key: environment variable MAILUSAGE_TEST_EXPORT_KEY is not set" in unset.stderr
    short = _cli(*base, "--scope", SCOPE, "--pseudonymise", env={"MAILUSAGE_TEST_EXPORT_KEY": "k1"})
    assert short.returncode == 2 and "shorter than 16 bytes" in short.stderr
    assert "k1" not in short.stderr.replace("export.key", "")
    assert not out.exists()
    done = _cli(*base, "--scope", "A", "--pseudonymise", env={"MAILUSAGE_TEST_EXPORT_KEY": KEY})
    assert done.returncode == 0, done.stderr
    assert f"scope A, {len(INSIDE)} people, {MONTH}, pseudonymised" in done.stdout
    assert KEY not in done.stdout + done.stderr
    assert _tables(out)["roster"].num_rows == len(INSIDE)
    again = _cli(*base, "--scope", SCOPE)
    assert again.returncode == 2 and "exists (--force replaces it)" in again.stderr
    forced = _cli(*base, "--scope", SCOPE, "--force")
    assert forced.returncode == 0, forced.stderr
    assert "in the clear" in forced.stdout
    office = tmp_path / "tckh.duckdb"  # a [[scopes]] entry with its own policy
    run = _cli(
        "--config", cfg, "--from", "2026-10", "--to", MONTH, "--out", str(office), "--scope", "tckh"
    )
    assert run.returncode == 0, run.stderr
    readme = dict(zip(*_tables(office)["readme"].to_pydict().values(), strict=True))
    assert readme["policy"] == "phu-giao-2018" and readme["scope_root"] == "B"
    assert readme["months"] == "2026-10, 2026-11"
    backwards = _cli(
        "--config",
        cfg,
        "--from",
        MONTH,
        "--to",
        "2026-10",
        "--out",
        str(office),
        "--scope",
        "B",
        "--force",
    )
    assert backwards.returncode == 2 and "--to 2026-10 is before --from 2026-11" in backwards.stderr
    both = _cli(*base, "--from", MONTH, "--scope", "B")
    assert both.returncode == 2 and "not both" in both.stderr
    nothing = _cli(
        "--config", cfg, "--month", "2025-01", "--out", str(tmp_path / "n.duckdb"), "--scope", "all"
    )
    assert nothing.returncode == 2 and "no night of 2025-01 was collected" in nothing.stderr
    assert not (tmp_path / "n.duckdb").exists()


def test_without_an_export_section_pseudonymising_is_refused(tmp_path):
    build(tmp_path / "data")
    cfg = _config(tmp_path)
    run = _cli("--config", str(cfg), "--month", MONTH, "--scope", "all", "--pseudonymise")
    assert run.returncode == 2 and "--out" in run.stderr  # argparse: --out is required
    run = _cli(
        "--config", str(cfg), "--month", MONTH, "--scope", "all", "--pseudonymise",
        "--out", str(tmp_path / "x.duckdb"),
    )  # fmt: skip
    assert run.returncode == 2
    assert "--pseudonymise needs the hashing key: add [export] key" in run.stderr
    assert not (tmp_path / "x.duckdb").exists()


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ('[export]\nkey = "the key itself"\n', "export.key: passwords are never written"),
        ("[export]\n", "export.key is required"),
        ('[export]\nkey = { env = "K" }\nsalt = "x"\n', "salt"),
    ],
)
def test_the_key_is_a_reference_only(tmp_path, section, message):
    build(tmp_path / "data")
    cfg = _config(tmp_path)
    cfg.write_text(cfg.read_text(encoding="utf-8") + "\n" + section, encoding="utf-8")
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config(cfg)


def test_doctor_shows_whether_the_export_key_is_usable(store, monkeypatch):
    from mailusage.doctor import run_doctor

    config = load_config(store)
    for value, status, detail in (
        (KEY, "ok", "set, by reference (env MAILUSAGE_TEST_EXPORT_KEY)"),
        ("k1x", "fail", "is shorter than 16 bytes"),
        (None, "fail", "MAILUSAGE_TEST_EXPORT_KEY is not set (it holds the export key)"),
    ):
        if value is None:
            monkeypatch.delenv("MAILUSAGE_TEST_EXPORT_KEY", raising=False)
        else:
            monkeypatch.setenv("MAILUSAGE_TEST_EXPORT_KEY", value)
        (check,) = [c for c in run_doctor(config) if c.subject == "export"]
        assert (check.check, check.status) == ("key", status) and detail in check.detail
        assert value is None or value not in check.detail.replace("export.key", "")
