"""[[scopes]]: each scope's bundle under reports/YYYY-MM/<scope>/ holds its subtree only.
Every file of every bundle is read back (CSV, xlsx through openpyxl, HTML text, PDF text
through pypdf) and no person outside the scope may appear in any of them."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from openpyxl import load_workbook
from pypdf import PdfReader

from analytics.evaluate import OUTPUT_FILES
from analytics.scopes import BUNDLE_FILES
from contract.scopes import Bundle
from pipelines.config import ConfigError, load_config
from pipelines.evaluate import month_bundles, run_evaluation
from tests.analytics.fixture import ROSTER, addr, build, write_roster

MONTH = "2026-11"
# The fixture agency as a district: the ward A (an agency) with a residential group A1
# below it (P09 moved there); the office B, whose staff are the district Q's.
UNITS = (
    "unit_code;unit_name;parent_code;kind;head_email\n"
    "Q;UBND quận Liên Chiểu;;UBND quận;\n"
    f"A;UBND phường Hòa Minh;Q;UBND phường;{addr('P01')}\n"
    "A1;Tổ dân phố 1;A;tổ;\n"
    # the office's head is on the ward's roster rows (an acting head lent from elsewhere):
    # the office's bundle must not name them
    f"B;Phòng Tài chính - Kế hoạch;Q;phòng;{addr('P02')}\n"
)
ROWS = [(r[0], r[1], "A1", "Tổ dân phố 1", *r[4:]) if r[0] == "P09" else r for r in ROSTER]
UNIT_OF = {r[0]: r[2] for r in ROWS}
SUBTREE = {"quan": {"Q", "A", "A1", "B"}, "hoa-minh": {"A", "A1"}, "tckh": {"B"}}
# each scope's HR workbooks: agency -> its people (unit mailboxes are not people)
AGENCIES = {
    "quan": {
        "A": {"P01", "P02", "P05", "P07", "P09"},
        "Q": {"P03", "P04", "P06", "P08", "P10", "P11"},
    },
    "hoa-minh": {"A": {"P01", "P02", "P05", "P07", "P09"}},
    "tckh": {"B": {"P03", "P04", "P06", "P08", "P10", "P11"}},
}
SCOPES = """
[[scopes]]
name = "quan"
recipients = ["chutich@lienchieu.danang.gov.vn"]
report = { parent_body = "UBND THÀNH PHỐ ĐÀ NẴNG", issuing_body = "UBND QUẬN LIÊN CHIỂU" }

[[scopes]]
name = "hoa-minh"
root = "A"
recipients = ["ct.hoaminh@lienchieu.danang.gov.vn", "vp.hoaminh@lienchieu.danang.gov.vn"]

[[scopes]]
name = "tckh"
root = "B"
language = "en"
policy = "phu-giao-2018"
report = { issuing_body = "PHÒNG TÀI CHÍNH - KẾ HOẠCH" }
"""


def _config(root: Path, scopes: str = SCOPES) -> Path:
    write_roster(root / "roster.csv", ROWS)
    (root / "units.csv").write_text(UNITS, encoding="utf-8-sig")
    cfg = root / "mailusage.toml"
    cfg.write_text(
        f"""
[agency]
name = "UBND quận Liên Chiểu"
official_domains = ["danang.gov.vn"]
[storage]
data_dir = "{root / "data"}"
[roster]
path = "roster.csv"
units = "units.csv"
[evaluation]
reports_dir = "reports"
[[sources]]
name = "fixture"
host = "127.0.0.1"
master_user = "admin"
password = {{ env = "UNUSED_HERE" }}
{scopes}""",
        encoding="utf-8",
    )
    return cfg


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("scopes")
    build(root / "data")
    cfg = _config(root)
    return cfg, run_evaluation(str(cfg), MONTH)


def _texts(path: Path) -> str:
    """A bundle file's text as its reader sees it."""
    if path.suffix == ".xlsx":
        book = load_workbook(path, read_only=True)
        cells = [
            str(c)
            for ws in book.worksheets
            for row in ws.iter_rows(values_only=True)
            for c in row
            if c is not None
        ]
        return "\n".join(cells)
    if path.suffix == ".pdf":
        return "\n".join(page.extract_text() for page in PdfReader(path).pages)
    text = path.read_text(encoding="utf-8-sig")
    return re.sub(r"<[^>]+>", " ", text) if path.suffix == ".html" else text


def _workbook_ids(path: Path) -> set[str]:
    book = load_workbook(path, read_only=True)
    rows = list(book.worksheets[0].iter_rows(values_only=True))
    return {r[0] for r in rows if r and isinstance(r[0], str) and re.fullmatch(r"P\d\d", r[0])}


def test_no_bundle_holds_a_person_outside_its_scope(evaluated):
    cfg, summary = evaluated
    reports = load_config(cfg).reports_dir / MONTH
    assert summary["bundles"] == {name: str(reports / name) for name in SUBTREE}
    for scope, units in SUBTREE.items():
        folder = reports / scope
        files = sorted(p.name for p in folder.iterdir())
        workbooks = [f"hr_ratings_{a}.xlsx" for a in AGENCIES[scope]]
        assert files == sorted([*BUNDLE_FILES, *workbooks])
        inside = {r[0] for r in ROWS if UNIT_OF[r[0]] in units}
        outside = [r for r in ROWS if UNIT_OF[r[0]] not in units]
        for name in files:
            text = _texts(folder / name)
            # a name or address folded by a PDF's text extraction is still found
            flat = re.sub(r"\s+", " ", text)
            for employee_id, full_name, _, _, email, *_ in outside:
                assert not re.search(rf"\b{employee_id}\b", text), (scope, name, employee_id)
                assert full_name not in flat, (scope, name, full_name)
                assert not email or email not in text, (scope, name, email)
        # and each agency's workbook holds exactly that agency's people
        for agency, people in AGENCIES[scope].items():
            assert _workbook_ids(folder / f"hr_ratings_{agency}.xlsx") == people
            assert people <= inside


def test_the_scopes_see_their_subtree_and_the_province_the_whole(evaluated):
    cfg, _ = evaluated
    reports = load_config(cfg).reports_dir / MONTH
    whole = (reports / "quan" / "report.html").read_text(encoding="utf-8")
    for name in ("UBND phường Hòa Minh", "Tổ dân phố 1", "Phòng Tài chính - Kế hoạch"):
        assert name in whole
    assert "UBND QUẬN LIÊN CHIỂU" in whole and "UBND THÀNH PHỐ ĐÀ NẴNG" in whole
    ward = (reports / "hoa-minh" / "report.html").read_text(encoding="utf-8")
    assert "Phòng Tài chính - Kế hoạch" not in ward
    assert "UBND phường Hòa Minh" in ward  # its letterhead: its root unit's name by default
    # the office's own policy (Phú Giáo's) caps nobody; under the district's (Liên
    # Chiểu's) P04's mail with a declared personal address caps their rating
    office_hr = load_workbook(reports / "tckh" / "hr_ratings_B.xlsx", read_only=True)
    p04 = next(r for r in office_hr.worksheets[0].iter_rows(values_only=True) if r[0] == "P04")
    assert "No cap" in p04 and "Fairly well" not in " ".join(map(str, p04))
    district = load_workbook(reports / "quan" / "hr_ratings_Q.xlsx", read_only=True)
    p04 = next(r for r in district.worksheets[0].iter_rows(values_only=True) if r[0] == "P04")
    assert "Hoàn thành khá nhiệm vụ" in p04
    office = (reports / "tckh" / "report.html").read_text(encoding="utf-8")
    assert '<html lang="en">' in office and "PHÒNG TÀI CHÍNH - KẾ HOẠCH" in office
    # the whole evaluation stays where it was, beside the bundles
    for name in OUTPUT_FILES:
        assert (reports / name).exists()


def test_the_months_bundles_for_the_deliverer(evaluated):
    cfg, _ = evaluated
    config = load_config(cfg)
    reports = config.reports_dir / MONTH
    assert month_bundles(config, MONTH) == [
        Bundle("quan", reports / "quan", ("chutich@lienchieu.danang.gov.vn",)),
        Bundle(
            "hoa-minh",
            reports / "hoa-minh",
            ("ct.hoaminh@lienchieu.danang.gov.vn", "vp.hoaminh@lienchieu.danang.gov.vn"),
        ),
        Bundle("tckh", reports / "tckh", ()),
    ]
    assert month_bundles(config, "2026-10") == []  # nothing written for that month


def test_without_scopes_the_outputs_are_as_before(tmp_path):
    build(tmp_path / "data")
    cfg = _config(tmp_path, scopes="")
    summary = run_evaluation(str(cfg), MONTH)
    assert "bundles" not in summary
    folder = load_config(cfg).reports_dir / MONTH
    assert sorted(p.name for p in folder.iterdir()) == sorted(OUTPUT_FILES)


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ('name = "x"\nroot = "NOPE"', "scopes[0].root 'NOPE' is not a unit of units.csv"),
        ('name = "../x"', "scopes[0].name '../x' may hold only"),
        ('root = "A"', "scopes[0].name is required"),
        ('name = "x"\nrecipients = ["not an address"]', "scopes[0].recipients: not an address"),
        ('name = "x"\nlanguage = "fr"', "scopes[0].language must be vi or en"),
        ('name = "x"\nreport = { signer = "A" }', "scopes[0].report: unknown key 'signer'"),
        ('name = "x"\n[[scopes]]\nname = "x"', "scopes: each name must be unique"),
    ],
)
def test_a_wrong_scope_is_refused_by_its_entry(tmp_path, entry, message):
    (tmp_path / "data").mkdir()
    cfg = _config(tmp_path, scopes=f"[[scopes]]\n{entry}\n")
    with pytest.raises(ConfigError) as caught:
        run_evaluation(str(cfg), MONTH)
    assert message in str(caught.value)
    assert not (tmp_path / "reports").exists()  # refused before any file


def test_doctor_shows_the_tree_and_each_scope(tmp_path, monkeypatch):
    from mailusage.doctor import run_doctor

    monkeypatch.delenv("UNUSED_HERE", raising=False)  # the source stops at its secret
    (tmp_path / "data").mkdir()
    cfg = _config(tmp_path, scopes=SCOPES + '[[scopes]]\nname = "lost"\nroot = "NOPE"\n')
    checks = {(c.subject, c.check): c for c in run_doctor(load_config(cfg))}
    units = checks[("roster", "units")]
    assert (units.status, units.detail) == ("ok", "4 units on 3 levels")
    assert checks[("scopes", "quan")].detail == "4 unit(s)"
    assert checks[("scopes", "hoa-minh")].detail == "2 unit(s)"
    lost = checks[("scopes", "lost")]
    assert (
        lost.status == "fail" and lost.detail == "scopes[3].root 'NOPE' is not a unit of units.csv"
    )
    (tmp_path / "units.csv").write_text(UNITS + "X;X;Y;phòng;\nY;Y;X;phòng;\n", encoding="utf-8")
    units = next(c for c in run_doctor(load_config(cfg)) if c.check == "units")
    assert units.status == "fail" and "line 6: the parents go round: X (line 6)" in units.detail


def test_the_example_configs_scopes_read_as_documented(tmp_path):
    """mailusage.example.toml's [[scopes]] block, uncommented, is a valid config."""
    text = (Path(__file__).resolve().parents[2] / "mailusage.example.toml").read_text("utf-8")
    head, block = text.split("\n# [[scopes]]", 1)
    lines = ("# [[scopes]]" + block).splitlines()
    uncommented = [line[2:] if line.startswith("# ") else line.lstrip("#") for line in lines]
    path = tmp_path / "mailusage.toml"
    path.write_text(head + "\n" + "\n".join(uncommented) + "\n", encoding="utf-8")
    tinh, phu_giao = load_config(path).scopes
    assert (tinh.name, tinh.root, tinh.recipients) == ("tinh", None, ("chutich@binhduong.gov.vn",))
    assert tinh.letterhead.issuing_body == "SỞ THÔNG TIN VÀ TRUYỀN THÔNG"
    assert (phu_giao.root, phu_giao.language, phu_giao.policy) == ("PG", "vi", "phu-giao-2018")
    assert phu_giao.letterhead.signer_title == "CHỦ TỊCH"
