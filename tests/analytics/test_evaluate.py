"""Each query on the fixture agency (tests/analytics/fixture.py) with hand-counted rows."""

from __future__ import annotations

import csv
import shutil
import subprocess
from pathlib import Path

import pytest

from analytics.evaluate import EvaluationInputs, evaluate_month
from analytics.policy import PolicyError, Waiver, load_policy
from contract.signals import Signals
from tests.analytics.fixture import ROSTER, addr, build, people

MONTH = "2026-11"


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("eval")
    build(root / "data")
    return root


# The fixture's source: an IMAP server with CONDSTORE and a login source covering it.
MEASURES_ALL = Signals(
    read_activity=True, quota=True, forwarding=True, folder_sizes=False, logins=True
)


def inputs(root: Path, *, policy="lien-chieu-2014", waivers=(), rows=ROSTER, signals=None):
    return EvaluationInputs(
        data_dir=root / "data",
        people=people(root, rows),
        timezone="Asia/Ho_Chi_Minh",
        official_domains=("danang.gov.vn",),
        policy=load_policy(policy),
        waivers=waivers,
        signals={"fixture": MEASURES_ALL} if signals is None else signals,
    )


@pytest.fixture(scope="module")
def result(data_dir):
    return evaluate_month(inputs(data_dir), MONTH, out_dir=data_dir / "reports")


def test_person_month_usage_is_counted_by_hand(result):
    got = {
        r["employee_id"]: (
            r["sent"],
            r["received"],
            r["read_activity"],
            r["active_days"],
            r["usage_class"],
            r["nights_collected"],
        )
        for r in result.person_month.to_pylist()
    }
    assert got == {
        "P01": (8, 0, 0, 8, "regular", 30),
        "P02": (0, 1, 20, 10, "regular", 30),
        "P03": (10, 0, 0, 10, "regular", 30),
        "P04": (1, 0, 0, 1, "occasional", 30),
        "P05": (0, 2, 1, 1, "occasional", 30),
        "P06": (0, 0, 0, 0, "inactive", 30),
        "P07": (0, 0, 0, 0, "inactive", 30),
        # never collected: not rated "inactive", and its reading unknown, not 0
        "P08": (0, 0, None, 0, "not_collected", 0),
        "P09": (2, 0, 0, 1, "occasional", 30),
        "P10": (0, 1, 1, 1, "occasional", 30),
        "P11": (0, 0, None, 0, "no_mailbox", 0),
        "UA": (0, 0, 0, 0, "inactive", 30),
    }
    p01 = next(r for r in result.person_month.to_pylist() if r["employee_id"] == "P01")
    assert p01["storage_share"] == 0.2
    assert str(p01["last_activity"]) == "2026-11-08"
    assert p01["last_login"] is None  # no login data: unknown, not "never"


def test_the_30_70_split_is_reported_as_such(result):
    staff = [
        r for r in result.person_month.to_pylist() if not r["is_unit_mailbox"] and r["has_mailbox"]
    ]
    regular = sum(r["usage_class"] == "regular" for r in staff)
    assert (regular, len(staff) - regular) == (3, 7)


def test_counterparts(result):
    got = {
        r["employee_id"]: (
            r["msgs_official"],
            r["msgs_public"],
            r["msgs_other"],
            r["public_addresses"],
        )
        for r in result.person_month.to_pylist()
    }
    assert got["P01"] == (8, 0, 0, 0)  # the 1 Dec mail is outside November
    assert got["P03"] == (9, 1, 0, 1)
    assert got["P04"] == (0, 1, 0, 1)
    assert got["P05"] == (0, 0, 2, 0)  # facebookmail.com is neither official nor public
    assert got["P09"] == (0, 2, 0, 2)  # two spellings of one address, counted as written
    assert got["P02"] == (1, 0, 0, 0)


def test_unit_ranking(result):
    rows = {r["unit_code"]: r for r in result.unit_ranking.to_pylist()}
    a, b = rows["A"], rows["B"]
    assert (a["rank"], a["headcount"], a["mailboxes"], a["regular"], a["share_regular"]) == (
        1,
        5,
        5,
        2,
        0.4,
    )
    assert (b["rank"], b["headcount"], b["mailboxes"], b["regular"], b["no_mailbox"]) == (
        2,
        6,
        5,
        1,
        1,
    )
    # P08 was never collected: not rated, so B's share is of its 4 rated mailboxes
    assert (b["not_collected"], b["share_regular"]) == (1, 0.25)
    assert (a["share_regular_prev"], a["share_regular_change"]) == (0.2, 0.2)
    assert (b["share_regular_prev"], b["share_regular_change"]) == (0.0, 0.25)
    assert (a["unit_mailboxes"], a["unit_mailboxes_unattended"]) == (1, 1)


def test_violations_with_evidence(result):
    rows = result.violations.to_pylist()
    confirmed = sorted(
        {(r["employee_id"], r["code"]) for r in rows if r["confidence"] == "confirmed"}
    )
    assert confirmed == [
        ("P04", "PUBLIC_MAIL_FOR_WORK"),
        ("P05", "OFFICIAL_ADDRESS_REGISTERED"),
        ("P06", "NOT_USING_OFFICIAL_MAIL"),
        ("UA", "UNIT_MAILBOX_UNATTENDED"),
    ]
    p04 = next(r for r in rows if r["employee_id"] == "P04")
    assert (p04["counterpart"], p04["folder"], p04["rule"]) == (
        "p04.home@gmail.com",
        "Sent",
        "declared_personal_address",
    )
    assert p04["message_id"].endswith("@fixture>") and p04["uid"] is not None
    suspected = sorted({r["employee_id"] for r in rows if r["confidence"] == "suspected"})
    assert suspected == ["P03", "P09", "P10"]  # 3 mailboxes, 2 units, one public address


def test_no_confirmed_violation_for_clean_people(result):
    flagged = {
        r["employee_id"] for r in result.violations.to_pylist() if r["confidence"] == "confirmed"
    }
    for clean in ("P01", "P02", "P03", "P07", "P08", "P09", "P10", "P11"):
        assert clean not in flagged, clean


def test_hr_ratings_caps_and_exemptions(result):
    rows = {r["employee_id"]: r for r in result.hr_rows}
    assert "UA" not in rows and len(rows) == 11  # one row per person; unit mailboxes are not
    assert rows["P04"]["max_rating"] == "Hoàn thành khá nhiệm vụ"
    assert rows["P06"]["max_rating"] == "Hoàn thành khá nhiệm vụ"
    assert (
        rows["P05"]["max_rating"] == "Không giới hạn"
    )  # this code does not count in lien-chieu-2014
    assert rows["P05"]["violation_codes"] == "OFFICIAL_ADDRESS_REGISTERED"
    assert rows["P07"]["exemption"] == "Nghỉ phép/nghỉ dài ngày"
    assert (
        rows["P07"]["max_rating"] == "Không giới hạn"
        and rows["P08"]["max_rating"] == "Không giới hạn"
    )
    assert rows["P11"]["usage_class"] == "Chưa có hộp thư"


def test_every_listed_code_has_its_name_and_reason(result):
    rows = {r["employee_id"]: r for r in result.hr_rows}
    assert rows["P04"]["violations"] == "Dùng thư điện tử công cộng cho công việc"
    assert rows["P04"]["reason"] == (
        "Dùng thư điện tử công cộng cho công việc: 1 bằng chứng, "
        "tính vào xếp loại: tối đa Hoàn thành khá nhiệm vụ"
    )
    # listed but not capped: the reason says why (lien-chieu-2014 does not count it)
    assert rows["P05"]["reason"].startswith(
        "Dùng địa chỉ công vụ đăng ký dịch vụ trực tuyến: 2 bằng chứng, không tính vào xếp loại"
    )
    for r in rows.values():
        codes = [c for c in r["violation_codes"].split(";") if c]
        assert len(r["reason"].split("; ")) == len(codes) or not codes
        assert r["max_rating"] and (r["capped"] or r["max_rating"] == "Không giới hạn")


def test_hr_workbook_reads_back_like_the_csv(result):
    from openpyxl import load_workbook

    book = load_workbook(result.paths["hr_ratings_xlsx"])
    sheet = book.active
    assert sheet.title == "Tháng 11-2026"
    assert sheet.freeze_panes == "A2" and sheet.auto_filter.ref == "A1:M12"
    assert sheet.page_setup.paperSize == 9 and sheet.page_setup.orientation == "landscape"
    # one page wide (fitToWidth's default, 1, is left out of the file), any number tall
    assert sheet.sheet_properties.pageSetUpPr.fitToPage and sheet.page_setup.fitToHeight == 0
    assert sheet.page_setup.fitToWidth in (None, 1) and sheet.print_title_rows == "$1:$1"
    cells = [[c.value for c in row] for row in sheet.iter_rows()]
    with result.paths["hr_ratings"].open(encoding="utf-8-sig", newline="") as fh:
        lines = list(csv.reader(fh))
    assert cells[0] == lines[0]  # the same header
    evidence = lines[0].index("Số bằng chứng")
    for got, want in zip(cells[1:], lines[1:], strict=True):
        assert isinstance(got[evidence], int)  # a number, not text
        # the same content; the workbook needs no apostrophe before formula-like text
        assert [("" if v is None else str(v)) for v in got] == [
            w[1:] if w.startswith("'") else w for w in want
        ]
    by_id = {row[0]: row for row in cells[1:]}
    assert by_id["P04"][2] == "Phòng Tài chính - Kế hoạch"  # Vietnamese text intact


def test_a_waiver_lifts_exactly_its_cap(data_dir, tmp_path):
    waivers = [
        Waiver("P04", MONTH, "PUBLIC_MAIL_FOR_WORK", "Gửi nhầm, đã giải trình", "Chủ tịch UBND"),
        Waiver("P06", MONTH, "PUBLIC_MAIL_FOR_WORK", "không liên quan", "Chủ tịch UBND"),
        Waiver("P06", "2026-10", "NOT_USING_OFFICIAL_MAIL", "tháng khác", "Chủ tịch UBND"),
    ]
    rows = {
        r["employee_id"]: r
        for r in evaluate_month(inputs(data_dir, waivers=waivers), MONTH).hr_rows
    }
    assert rows["P04"]["max_rating"] == "Không giới hạn"
    assert rows["P04"]["waiver"] == "PUBLIC_MAIL_FOR_WORK: Gửi nhầm, đã giải trình (Chủ tịch UBND)"
    assert rows["P04"]["evidence_count"] == 1  # the evidence stays visible
    assert rows["P06"]["max_rating"] == "Hoàn thành khá nhiệm vụ"  # other code, other month
    assert rows["P06"]["waiver"] == ""


def test_outputs_are_excel_friendly_and_reproducible(data_dir, result):
    hr = result.paths["hr_ratings"].read_bytes()
    assert hr.startswith(b"\xef\xbb\xbf")  # UTF-8 BOM
    header = hr.decode("utf-8-sig").splitlines()[0]
    assert header.startswith("Mã cán bộ,Họ và tên,Đơn vị,Tháng")
    before = {k: p.read_bytes() for k, p in result.paths.items()}
    again = evaluate_month(inputs(data_dir), MONTH, out_dir=data_dir / "reports")
    assert {k: p.read_bytes() for k, p in again.paths.items()} == before
    en = evaluate_month(inputs(data_dir), MONTH, out_dir=data_dir / "reports-en", lang="en")
    assert en.paths["hr_ratings"].read_text("utf-8-sig").startswith("Employee ID,Full name")


def test_hostile_unit_name_and_month(data_dir, tmp_path):
    hostile = "=cmd|' /C calc'!A0'); drop table roster; --"
    rows = [(*r[:3], hostile, *r[4:]) if r[2] == "B" else r for r in ROSTER]
    out = evaluate_month(inputs(data_dir, rows=rows), MONTH, out_dir=tmp_path)
    ranking = list(csv.reader(out.paths["unit_ranking"].read_text("utf-8-sig").splitlines()))
    names = {row[2] for row in ranking[1:]}
    assert "'" + hostile in names  # kept as data, neutralised for Excel
    assert len(out.hr_rows) == 11  # the roster table is still there
    for month in ("2026-11'; drop table roster; --", "2026-13", "11-2026"):
        with pytest.raises(PolicyError, match="month must be YYYY-MM"):
            evaluate_month(inputs(data_dir), month)


def test_phu_giao_preset_reports_without_capping(data_dir):
    out = evaluate_month(inputs(data_dir, policy="phu-giao-2018"), MONTH)
    rows = {r["employee_id"]: r for r in out.hr_rows}
    assert rows["P05"]["violation_codes"] == "OFFICIAL_ADDRESS_REGISTERED"
    assert all(r["max_rating"] == "Không giới hạn" for r in rows.values())


def test_unknown_policy_is_a_clear_error():
    with pytest.raises(PolicyError, match="presets: \\['lien-chieu-2014', 'phu-giao-2018'\\]"):
        load_policy("hanoi-2030")


def test_mailbox_status_rows_only_from_collected_mailboxes(result):
    p08 = next(r for r in result.person_month.to_pylist() if r["employee_id"] == "P08")
    assert p08["mailbox"] == addr("P08") and p08["quota_used_bytes"] is None


def test_cli_evaluate_runs_the_flow_and_writes_reports(data_dir, tmp_path, capsys, prefect_harness):
    from mailusage.cli import main

    people(tmp_path)  # writes roster.csv
    (tmp_path / "waivers.csv").write_text(
        "employee_id,month,code,reason,approved_by\n"
        "P04,2026-11,PUBLIC_MAIL_FOR_WORK,Đã giải trình,Chủ tịch\n",
        encoding="utf-8",
    )
    cfg = tmp_path / "mailusage.toml"
    cfg.write_text(
        f"""
[agency]
official_domains = ["danang.gov.vn"]
[storage]
data_dir = "{data_dir / "data"}"
[roster]
path = "roster.csv"
[evaluation]
policy = "lien-chieu-2014"
waivers = "waivers.csv"
reports_dir = "reports"
[[sources]]
host = "127.0.0.1"
master_user = "admin"
password = {{ env = "UNUSED_HERE" }}
""",
        encoding="utf-8",
    )
    assert main(["evaluate", "--config", str(cfg), "--month", MONTH]) == 0
    out = capsys.readouterr().out
    assert "regular users: 33% (Bình Dương baseline 30%)" in out  # 3 of the 9 rated
    # November was collected every night; December only on night 2 Dec (the fixture's
    # last), which covers 1 December: the output says the month is partial, and by how much.
    assert "partial month" not in out
    assert main(["evaluate", "--config", str(cfg), "--month", "2026-12", "--partial"]) == 0
    assert "partial month: 1 of 31 days collected" in capsys.readouterr().out
    hr = (tmp_path / "reports" / MONTH / "hr_ratings.csv").read_text("utf-8-sig")
    p04 = ",".join(next(row for row in csv.reader(hr.splitlines()) if row[0] == "P04"))
    assert "Đã giải trình" in p04 and "Hoàn thành khá" not in p04
    # The partial month says so in the report and, per person, in the HR file.
    assert 'id="partial"' not in (tmp_path / "reports" / MONTH / "report.html").read_text()
    december = (tmp_path / "reports" / "2026-12" / "report.html").read_text()
    assert "Tháng chưa đủ dữ liệu: 1/31 ngày được thu thập" in december
    hr12 = {
        r["Mã cán bộ"]: (r["Số ngày có dữ liệu"], r["Mức độ sử dụng"])
        for r in csv.DictReader(
            (tmp_path / "reports" / "2026-12" / "hr_ratings.csv")
            .read_text("utf-8-sig")
            .splitlines()
        )
    }
    hr11 = {
        r["Mã cán bộ"]: (r["Số ngày có dữ liệu"], r["Mức độ sử dụng"])
        for r in csv.DictReader(hr.splitlines())
    }
    assert hr11["P01"] == ("30/30", "Thường xuyên") and hr12["P01"][0] == "1/31"
    assert hr11["P08"] == ("0/30", "Chưa có dữ liệu")  # never collected: no class
    assert hr11["P11"] == ("", "Chưa có hộp thư")
    with pytest.raises(SystemExit) as exit_info:
        main(["evaluate", "--config", str(cfg), "--month", "2026-13"])
    assert exit_info.value.code == 2
    # A month nothing was collected for is refused, not rated "inactive" for everyone.
    assert main(["evaluate", "--config", str(cfg), "--month", "2025-01"]) == 2
    assert "no night of 2025-01 was collected" in capsys.readouterr().err
    assert not (tmp_path / "reports" / "2025-01").exists()


def test_inactivity_is_not_charged_on_too_few_nights(data_dir, tmp_path):
    from dataclasses import replace

    strict = replace(load_policy("lien-chieu-2014"), min_nights_collected=31)
    out = evaluate_month(replace(inputs(data_dir), policy=strict), MONTH)
    codes = {r["code"] for r in out.violations.to_pylist()}
    assert "NOT_USING_OFFICIAL_MAIL" not in codes and "UNIT_MAILBOX_UNATTENDED" not in codes


def test_forwarding_and_contact_scan_data_are_used_when_present(data_dir, tmp_path):
    import shutil
    from datetime import UTC, datetime

    import pyarrow as pa

    from contract.datasets import CONTACTS, FORWARDING
    from pipelines.storage import DataDir

    shutil.copytree(data_dir / "data", tmp_path / "data")
    data = DataDir(tmp_path / "data")
    data.write_table(
        "forwarding",
        "2026-11-30",
        "x",
        pa.Table.from_pylist(
            [
                {"mailbox": addr("P06"), "target": "p06.private@hn.vnn.vn", "rule_name": "fwd"},
                {"mailbox": addr("P01"), "target": "archive@danang.gov.vn", "rule_name": "keep"},
            ],
            schema=FORWARDING,
        ),
    )
    data.write_table(
        "contacts",
        "2026-11-30",
        "x",
        pa.Table.from_pylist(
            [
                {
                    "mailbox": addr("P09"),
                    "uid": 7,
                    "message_id": "<doc@x>",
                    "address": "lienhe@gmail.com",
                    "where_found": "docx",
                    "sent_date": datetime(2026, 11, 5, 2, tzinfo=UTC),
                },
                {
                    "mailbox": addr("P10"),
                    "uid": 8,
                    "message_id": "<old@x>",
                    "address": "a@gmail.com",
                    "where_found": "pdf",
                    "sent_date": datetime(2026, 10, 5, 2, tzinfo=UTC),
                },
            ],
            schema=CONTACTS,
        ),
    )
    out = evaluate_month(inputs(tmp_path), MONTH)
    found = {
        (r["employee_id"], r["code"], r["rule"], r["counterpart"])
        for r in out.violations.to_pylist()
        if r["confidence"] == "confirmed"
    }
    assert ("P06", "PUBLIC_MAIL_FOR_WORK", "forwarding_rule", "p06.private@hn.vnn.vn") in found
    assert ("P09", "PUBLIC_CONTACT_IN_DOCUMENT", "contact_in_docx", "lienhe@gmail.com") in found
    assert not any(e == "P01" for e, *_ in found)  # forwarding to an official address is fine
    assert not any(e == "P10" for e, *_ in found)  # October's document is not November's
    rows = {r["employee_id"]: r for r in out.hr_rows}
    assert rows["P09"]["max_rating"] == "Hoàn thành khá nhiệm vụ"


def test_queries_only_by_allow_listed_name():
    from analytics.queries import sql

    assert "select * from final" in sql("unit_ranking")
    with pytest.raises(ValueError, match="unknown query"):
        sql("../../etc/passwd")


def test_a_code_the_policy_trusts_only_as_suspected_goes_to_review(data_dir, tmp_path):
    text = (Path("analytics/policies/phu-giao-2018.toml")).read_text(encoding="utf-8")
    text = text.replace(
        "[codes.OFFICIAL_ADDRESS_REGISTERED]\ncounts = true",
        "[codes.OFFICIAL_ADDRESS_REGISTERED]\ncounts = true\n"
        'confidence = "suspected"\ncap = "Hoàn thành nhiệm vụ"',
    )
    (tmp_path / "own.toml").write_text(text, encoding="utf-8")
    out = evaluate_month(inputs(data_dir, policy=str(tmp_path / "own.toml")), MONTH)
    p05 = [r for r in out.violations.to_pylist() if r["employee_id"] == "P05"]
    assert p05 and {r["confidence"] for r in p05} == {"suspected"}
    assert (
        next(r for r in out.hr_rows if r["employee_id"] == "P05")["max_rating"] == "Không giới hạn"
    )


def test_report_figures_equal_the_evaluation_outputs(result):
    import re

    html = result.paths["report"].read_text(encoding="utf-8")
    kpi = re.search(
        r'id="kpi-regular">\s*<div class="v [a-z]+">(\d+)%</div>\s*'
        r'<div class="l">[^<]*\((\d+)/(\d+)\)',
        html,
    )
    assert kpi is not None and kpi.groups() == ("33", "3", "9")  # P08 not rated
    assert re.search(r'id="kpi-prev">\s*<div class="v">11%', html)  # October: P01 of 9 rated
    ranking = list(csv.reader(result.paths["unit_ranking"].read_text("utf-8-sig").splitlines()))
    for row in ranking[1:]:
        assert f"<td>{row[2]}</td>" in html  # every unit of the CSV is in the report
    assert (
        '<td title="PUBLIC_MAIL_FOR_WORK">Dùng thư điện tử công cộng cho công việc</td>'
        '<td>Phòng Tài chính - Kế hoạch</td><td class="n">1</td>' in html
    )  # the violation named in Vietnamese, its code kept as the cell's tooltip
    assert "<title>Báo cáo tình hình sử dụng hộp thư điện tử công vụ — Tháng 11/2026" in html
    assert "u" + "a@lienchieu.danang.gov.vn" in html  # the unattended unit mailbox
    assert "8/11 hộp thư được thu thập đủ" not in html
    cov = re.search(r'id="coverage">(\d+)/(\d+) [^:]*: (\d+)', html)
    assert cov is not None and cov.groups() == ("1", "11", "1")  # P01 full; P08 failed
    assert "login failed (wrong password?)" in html
    assert html.count("<svg") == 3  # class split, ranking and 12-month trend charts


@pytest.mark.skipif(
    shutil.which("soffice") is None, reason="LibreOffice is not installed on this machine"
)
def test_libreoffice_opens_the_hr_workbook_without_a_wizard(result, tmp_path):
    # LibreOffice converts the workbook to CSV headless: its reading of the cells must be
    # the CSV mailusage wrote (Vietnamese intact, no mojibake, numbers as numbers).
    subprocess.run(
        ["soffice", "--headless", "--convert-to", "csv:Text - txt - csv (StarCalc):44,34,76",
         "--outdir", str(tmp_path), str(result.paths["hr_ratings_xlsx"])],
        check=True, timeout=120, capture_output=True,
    )  # fmt: skip
    got = list(csv.reader((tmp_path / "hr_ratings.csv").read_text("utf-8").splitlines()))
    want = list(csv.reader(result.paths["hr_ratings"].read_text("utf-8-sig").splitlines()))
    assert [[c.lstrip("'") for c in r] for r in want] == got


def test_reading_the_server_cannot_count_is_unknown_and_confirms_nothing(tmp_path):
    """The fixture agency on a server that counts no reading: P02, who only reads, and
    everyone else below "regular" are rated from what was measured (a lower bound, said
    so), and neither inactivity nor an unattended unit mailbox is charged."""
    build(tmp_path / "data", reads_counted=False)
    result = evaluate_month(inputs(tmp_path), MONTH, out_dir=tmp_path / "reports")
    pm = {r["employee_id"]: r for r in result.person_month.to_pylist()}
    assert pm["P02"]["read_activity"] is None and pm["P02"]["read_nights"] == 0
    assert (pm["P02"]["usage_class"], pm["P02"]["unmeasured"]) == ("inactive", "read_activity")
    assert (pm["P01"]["usage_class"], pm["P01"]["unmeasured"]) == ("regular", "read_activity")
    assert pm["P08"]["unmeasured"] is None and pm["P11"]["unmeasured"] is None  # no data
    by_rule = {
        (r["employee_id"], r["code"]): (r["confidence"], r["rule"])
        for r in result.violations.to_pylist()
        if r["code"] in ("NOT_USING_OFFICIAL_MAIL", "UNIT_MAILBOX_UNATTENDED")
    }
    reading = "inactive_month_reading_not_measured"
    assert by_rule == {  # P07 is on leave: exempt, as when reading is counted
        ("P02", "NOT_USING_OFFICIAL_MAIL"): ("suspected", reading),
        ("P05", "NOT_USING_OFFICIAL_MAIL"): ("suspected", reading),
        ("P06", "NOT_USING_OFFICIAL_MAIL"): ("suspected", reading),
        ("P10", "NOT_USING_OFFICIAL_MAIL"): ("suspected", reading),
        ("UA", "UNIT_MAILBOX_UNATTENDED"): ("suspected", "no_send_reading_not_measured"),
    }
    hr = {r["employee_id"]: r for r in result.hr_rows}
    assert hr["P06"]["max_rating"] == "Không giới hạn" and not hr["P06"]["capped"]
    assert hr["P02"]["usage_class"] == ("Không sử dụng (không đo được trên máy chủ này: đọc thư)")
    assert hr["P01"]["usage_class"] == "Thường xuyên"  # certain whatever was not measured
    ranking = {r["unit_code"]: r for r in result.unit_ranking.to_pylist()}
    # A: P02, P05, P07 inactive and P09 occasional; B: P04 occasional, P06 and P10 inactive
    assert (ranking["A"]["not_measured"], ranking["B"]["not_measured"]) == (4, 3)
    assert ranking["A"]["unit_mailboxes_unattended"] == 0
    html = (tmp_path / "reports" / MONTH / "report.html").read_text(encoding="utf-8")
    assert "7 người được xếp dưới mức thường xuyên" in html
    assert '<table id="unattended">\n  \n  <tr><td>Không có</td></tr>' in html
    # the fixture's source is declared to measure all but folder sizes
    assert html.count('<td class="unknown">không đo được</td>') == 1
    review = (tmp_path / "reports" / MONTH / "review.csv").read_text(encoding="utf-8-sig")
    assert review.count(reading) == 4


def test_inactivity_is_not_confirmed_where_no_login_source_covers_the_mailbox(data_dir, tmp_path):
    unlogged = Signals(read_activity=True, quota=True, forwarding=True, folder_sizes=False)
    result = evaluate_month(inputs(data_dir, signals={"fixture": unlogged}), MONTH)
    p06 = [r for r in result.violations.to_pylist() if r["employee_id"] == "P06"]
    assert [(r["confidence"], r["rule"]) for r in p06] == [
        ("suspected", "inactive_month_logins_not_measured")
    ]
    hr = {r["employee_id"]: r for r in result.hr_rows}
    assert not hr["P06"]["capped"]
    assert hr["P06"]["usage_class"].endswith("(không đo được trên máy chủ này: đăng nhập)")
    ua = [r for r in result.violations.to_pylist() if r["employee_id"] == "UA"]
    assert [r["confidence"] for r in ua] == ["confirmed"]  # reading counted: attendance known
