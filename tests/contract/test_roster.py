"""contract.roster: the roster read once into typed Person rows, importing no other layer."""

import ast
import doctest
import subprocess
import sys
from datetime import date
from pathlib import Path

import pytest

import contract.people
import contract.roster
from contract.people import Person
from contract.roster import RosterError, load_roster

ROOT = Path(__file__).resolve().parents[2]
HEADER = (
    "employee_id,full_name,email,unit_code,unit_name,is_unit_mailbox,personal_email,"
    "on_leave,start_date,mailbox_issued,source,notes\n"
)


def test_the_docstring_examples_run():
    for module in (contract.roster, contract.people):
        result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
        assert result.attempted >= 1 and result.failed == 0, module.__name__


def test_flags_are_parsed_once_into_typed_fields(tmp_path):
    path = tmp_path / "r.csv"
    path.write_text(
        HEADER
        + "NV1,An,An@X.gov.vn,VP,Văn phòng,,An.Home@Gmail.com; b@yahoo.com.vn,Có,2026-11-16,,,x\n"
        + "HT-VP,Hộp thư VP,vp@x.gov.vn,VP,Văn phòng,yes,,no,,yes,dovecot,\n"
        + "NV2,Bình,,VP,Văn phòng,0,,,,không,,\n",
        encoding="utf-8",
    )
    an, unit, binh = load_roster(path)
    assert an == Person(
        "NV1",
        "An",
        "an@x.gov.vn",
        "VP",
        "Văn phòng",
        None,
        is_unit_mailbox=False,
        personal_emails=("an.home@gmail.com", "b@yahoo.com.vn"),
        on_leave=True,
        start_date=date(2026, 11, 16),
        mailbox_issued=True,  # an empty cell: issued
    )
    assert (unit.is_unit_mailbox, unit.on_leave, unit.source, unit.personal_emails) == (
        True,
        False,
        "dovecot",
        (),
    )
    assert (binh.email, binh.mailbox_issued, binh.is_unit_mailbox, binh.start_date) == (
        "",
        False,
        False,
        None,
    )


def test_a_roster_without_the_optional_columns_gets_the_defaults(tmp_path):
    path = tmp_path / "r.csv"
    path.write_text(
        "employee_id;full_name;email;unit_code;unit_name\nNV1;An;an@x.gov.vn;VP;VP\n",
        encoding="utf-8",
    )
    (an,) = load_roster(path)
    assert an == Person("NV1", "An", "an@x.gov.vn", "VP", "VP")
    assert (an.mailbox_issued, an.on_leave, an.personal_emails, an.start_date) == (
        True,
        False,
        (),
        None,
    )


def test_a_bad_start_date_or_flag_names_its_line(tmp_path):
    path = tmp_path / "r.csv"
    path.write_text(
        HEADER
        + "NV1,An,an@x.gov.vn,VP,VP,,,,16/11/2026,,,\n"
        + "NV2,Bình,b@x.gov.vn,VP,VP,,,maybe,,,,\n",
        encoding="utf-8",
    )
    with pytest.raises(RosterError) as err:
        load_roster(path)
    text = str(err.value)
    assert "line 2: start_date '16/11/2026' is not a date (YYYY-MM-DD)" in text
    assert "line 3: on_leave must be yes/no (got 'maybe')" in text
    assert "2 bad row(s)" in text


def test_reading_a_roster_imports_no_other_layer():
    code = (
        "import sys, contract.roster, contract.months, contract.domains\n"
        "print(sorted({m.split('.')[0] for m in sys.modules}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    ).stdout
    loaded = set(ast.literal_eval(out))
    unwanted = {"connectors", "pipelines", "analytics", "mailusage", "prefect", "exchangelib"}
    assert not loaded & (unwanted | {"imapclient", "duckdb", "msal", "requests"})


def test_contract_imports_no_other_mailusage_package():
    """contract/ is the bottom layer: its modules import nothing of connectors,
    pipelines, analytics or mailusage (read from the source, so a lazy import counts)."""
    for path in sorted((ROOT / "contract").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                top = name.split(".")[0]
                assert top not in {"connectors", "pipelines", "analytics", "mailusage"}, (
                    f"{path.name} imports {name}"
                )
