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


LIEN_CHIEU = "Chỉ thị 01/CT-UBND ngày 20/6/2014 của UBND quận Liên Chiểu"


def test_every_listed_code_has_its_name_its_facts_and_its_reason(result):
    """HR reads what happened without opening violations.csv: the fixture's facts, counted
    by hand (tests/analytics/fixture.py), in the reason."""
    rows = {r["employee_id"]: r for r in result.hr_rows}
    assert rows["P04"]["violations"] == "Dùng thư điện tử công cộng cho công việc"
    # one mail on 15 Nov (09:00 local) to the declared p04.home@gmail.com
    assert rows["P04"]["reason"] == (
        "Dùng thư điện tử công cộng cho công việc: 1 thư trao đổi với địa chỉ cá nhân đã khai "
        "báo p04.home@gmail.com, ngày 15/11/2026 — tính vào xếp loại: tối đa Hoàn thành khá "
        "nhiệm vụ"
    )
    # nothing sent, read or logged in on any of the 30 collected nights of November
    assert rows["P06"]["reason"] == (
        "Không sử dụng hộp thư công vụ: 0 ngày có hoạt động (gửi thư, đọc thư hoặc đăng nhập) "
        "trong 30 ngày có dữ liệu — tính vào xếp loại: tối đa Hoàn thành khá nhiệm vụ"
    )
    # listed but not capped: two facebookmail.com senders (3 and 4 Nov), one service;
    # the reason says why it does not count (lien-chieu-2014)
    assert rows["P05"]["reason"] == (
        "Dùng địa chỉ công vụ đăng ký dịch vụ trực tuyến: nhận 2 thư từ facebookmail.com, lần "
        f"đầu ngày 03/11/2026 — không tính vào xếp loại theo {LIEN_CHIEU}"
    )
    for r in rows.values():
        codes = [c for c in r["violation_codes"].split(";") if c]
        assert len(r["reason"].split("; ")) == len(codes) or not codes
        assert r["max_rating"] and (r["capped"] or r["max_rating"] == "Không giới hạn")


def test_the_reason_in_english(data_dir):
    rows = {r["employee_id"]: r for r in evaluate_month(inputs(data_dir), MONTH, lang="en").hr_rows}
    assert rows["P04"]["reason"] == (
        "Public mail used for official work: 1 message with the declared personal address "
        "p04.home@gmail.com, on 2026-11-15 — counts: at most Fairly well completed duties "
        "('good')"
    )
    assert rows["P06"]["reason"].startswith(
        "Official mailbox not used: 0 active days (sending, reading or logging in) of 30 days "
        "with data — counts"
    )
    assert rows["P05"]["reason"].startswith(
        "Official address used to register online services: 2 messages received from "
        "facebookmail.com, first on 2026-11-03 — does not count"
    )


def test_a_reason_names_three_addresses_and_counts_the_rest():
    from dataclasses import replace
    from datetime import date

    from analytics.evaluate import _facts

    policy = load_policy("lien-chieu-2014")
    rows = [
        {
            "rule": "declared_personal_address",
            "counterpart": f"a{i}@gmail.com",
            "day": date(2026, 11, 10 - i),
            "seen_night": None,
        }
        for i in range(5)
    ]
    assert _facts("PUBLIC_MAIL_FOR_WORK", rows + rows[4:], {}, policy, "vi") == (
        "2 thư trao đổi với địa chỉ cá nhân đã khai báo a4@gmail.com, lần đầu ngày 06/11/2026, "
        "1 thư trao đổi với địa chỉ cá nhân đã khai báo a3@gmail.com, ngày 07/11/2026, "
        "1 thư trao đổi với địa chỉ cá nhân đã khai báo a2@gmail.com, ngày 08/11/2026, "
        "và 2 địa chỉ khác"
    )
    # inactive with an active day, under a policy that wants two: the threshold is said
    strict = replace(policy, occasional_min_active_days=2)
    person = {"active_days": 1, "nights_collected": 28}
    assert _facts("NOT_USING_OFFICIAL_MAIL", [], person, strict, "vi") == (
        "1 ngày có hoạt động (gửi thư, đọc thư hoặc đăng nhập) trong 28 ngày có dữ liệu, "
        "dưới mức tối thiểu 2 ngày"
    )


def _evidence(path: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(path.read_text("utf-8-sig").splitlines()))


def test_evidence_values_in_the_report_language_and_codes_stable(data_dir, result):
    confirmed = {r["Mã cán bộ"]: r for r in _evidence(result.paths["violations"])}
    p04, p06 = confirmed["P04"], confirmed["P06"]
    assert p04["Mã vi phạm"] == "PUBLIC_MAIL_FOR_WORK"  # the code column keeps the code
    assert (p04["Mức tin cậy"], p04["Tính vào xếp loại"], p04["Quy tắc phát hiện"]) == (
        "xác nhận",
        "có",
        "Trao đổi thư với địa chỉ cá nhân đã khai báo",
    )
    assert p06["Quy tắc phát hiện"] == "Không có hoạt động cả tháng"
    assert confirmed["P05"]["Tính vào xếp loại"] == "không"  # not counted in lien-chieu-2014
    assert confirmed["UA"]["Quy tắc phát hiện"] == "Không có thư được đọc hay gửi cả tháng"
    review = _evidence(result.paths["review"])
    assert {(r["Mức tin cậy"], r["Tính vào xếp loại"], r["Quy tắc phát hiện"]) for r in review} == {
        ("cần xem xét", "không", "Địa chỉ công cộng trao đổi thư với nhiều hộp thư ở nhiều đơn vị")
    }
    en = evaluate_month(inputs(data_dir), MONTH, out_dir=data_dir / "reports-en-ev", lang="en")
    p04 = next(r for r in _evidence(en.paths["violations"]) if r["Employee ID"] == "P04")
    assert (p04["Confidence"], p04["Counts toward the cap"], p04["Detection rule"]) == (
        "confirmed",
        "yes",
        "declared_personal_address",
    )


def _sheet_rows(sheet) -> dict[str, dict[str, str]]:
    """A sheet's rows by employee ID, each {header: text} ("" for an empty cell)."""
    cells = [[c.value for c in row] for row in sheet.iter_rows()]
    return {
        str(row[0]): {h: "" if v is None else str(v) for h, v in zip(cells[0], row, strict=True)}
        for row in cells[1:]
    }


def test_hr_workbook_reads_back_like_the_csv(result):
    """Two sheets, the rating with its reason and the details: together every column of
    hr_ratings.csv, the same content (no apostrophe needed before formula-like text)."""
    from openpyxl import load_workbook

    book = load_workbook(result.paths["hr_ratings_xlsx"])
    assert book.sheetnames == ["Xếp loại", "Chi tiết"]
    assert book.properties.title == "Tháng 11/2026"
    with result.paths["hr_ratings"].open(encoding="utf-8-sig", newline="") as fh:
        want = {
            r["Mã cán bộ"]: {h: v[1:] if v.startswith("'") else v for h, v in r.items()}
            for r in csv.DictReader(fh)
        }
    headers = list(next(iter(want.values())))
    seen: set[str] = set()
    for sheet in book.worksheets:
        got = _sheet_rows(sheet)
        assert got.keys() == want.keys()  # every person on every sheet, one row each
        for eid, row in got.items():
            assert row == {h: want[eid][h] for h in row}, eid
        seen |= set(next(iter(got.values())))
        assert sheet.freeze_panes == "A2"
        assert sheet.auto_filter.ref == f"A1:{sheet.cell(1, sheet.max_column).column_letter}12"
    assert seen == set(headers)  # no column lost in the split
    rating = book["Xếp loại"]
    assert [c.value for c in rating[1]][-2:] == ["Lý do", "Trường hợp loại trừ"]
    evidence = [c.value for c in book["Chi tiết"][1]].index("Số bằng chứng")
    assert all(isinstance(r[evidence].value, int) for r in book["Chi tiết"].iter_rows(min_row=2))
    assert _sheet_rows(rating)["P04"]["Đơn vị"] == "Phòng Tài chính - Kế hoạch"  # Vietnamese


def _liberation_sans():
    """Liberation Sans (what LibreOffice prints Arial with) as advance widths in em, or skip."""
    import unicodedata

    fonts = Path("/usr/share/fonts/truetype/liberation2")
    if not (fonts / "LiberationSans-Regular.ttf").exists():
        pytest.skip("fonts-liberation2 is not installed")
    from fontTools.ttLib import TTFont

    def measure(name: str):
        font = TTFont(fonts / name)
        cmap, hmtx, em = font.getBestCmap(), font["hmtx"], font["head"].unitsPerEm
        return lambda text: sum(
            hmtx[cmap[ord(c)]][0] / em for c in unicodedata.normalize("NFC", text)
        )

    return measure("LiberationSans-Regular.ttf"), measure("LiberationSans-Bold.ttf")


def _lines(text: str, room_px: float, advance) -> int:
    """Lines ``text`` wraps to at ``room_px`` in 10 pt at 96 dpi, word by word (a word wider
    than the line is broken between letters), measured with the font itself."""
    px = 10 * 96 / 72
    lines, used = 1, 0.0
    for word in text.split(" "):
        size = advance(word) * px
        if used and used + advance(" ") * px + size <= room_px:
            used += advance(" ") * px + size
            continue
        if used:
            lines += 1
        used = 0.0
        if size <= room_px:
            used = size
            continue
        for ch in word:
            if used and used + advance(ch) * px > room_px:
                lines, used = lines + 1, 0.0
            used += advance(ch) * px
    return lines


def test_hr_workbook_prints_legibly(result):
    """Every row as tall as the lines its text wraps to (measured with the font LibreOffice
    prints with, one line of Liberation Sans 10 pt being 11.5 pt); A4 landscape, one page
    wide at a readable scale, the header row repeated on every page."""
    from openpyxl import load_workbook

    regular, bold = _liberation_sans()
    book = load_workbook(result.paths["hr_ratings_xlsx"])
    a4_landscape_pt = 841.9
    for sheet in book.worksheets:
        setup = sheet.page_setup
        assert setup.paperSize == 9 and setup.orientation == "landscape"
        assert sheet.sheet_properties.pageSetUpPr.fitToPage and setup.fitToHeight == 0
        assert setup.fitToWidth in (None, 1)  # 1, the default, is left out of the file
        assert sheet.print_title_rows == "$1:$1"
        assert "Tháng 11/2026" in sheet.oddHeader.center.text
        # the text stays readable: one page wide takes at most a 15% shrink (10 pt -> 8.5)
        room = a4_landscape_pt - (sheet.page_margins.left + sheet.page_margins.right) * 72
        letters = [c.column_letter for c in sheet[1]]
        # a column's pixels as Excel draws them: stored width (chars + 5/7 padding) × 7
        px = {x: round(sheet.column_dimensions[x].width * 7) for x in letters}
        assert room / (sum(px.values()) * 0.75) >= 0.85, sheet.title
        assert all(c.font.name == "Arial" and c.font.sz == 10 for c in sheet[2])
        for row in sheet.iter_rows():
            needed = max(
                _lines(str(c.value), px[c.column_letter] - 9, bold if c.row == 1 else regular)
                for c in row
                if c.value is not None
            )
            height = sheet.row_dimensions[row[0].row].height
            assert height is not None and height >= needed * 11.5, (sheet.title, row[0].row)
    # the fixture's longest reason (P04's) wraps: its row is several lines tall
    rating = book["Xếp loại"]
    p04 = next(r[0].row for r in rating.iter_rows(min_row=2) if r[0].value == "P04")
    assert rating.row_dimensions[p04].height >= 3 * 11.5
    assert rating.row_dimensions[1].height >= 2 * 11.5  # two-line headers fit too


def test_the_row_height_estimate_never_falls_short_of_the_font(result):
    """The workbook's line estimate (a few width classes of Arial) against Liberation Sans
    itself, on every text an HR file holds, capitals and addresses included, at every
    width: never fewer lines than the font needs (with 1 px less room than the estimate gives,
    for the cell's margins)."""
    from analytics.evaluate import HEADERS, RULE_LABELS
    from analytics.policy import CODE_NAMES
    from analytics.workbook import column_px, wrapped_lines

    regular, bold = _liberation_sans()
    texts = [v for r in result.hr_rows for k, v in r.items() if isinstance(v, str)]
    texts += [n for pair in CODE_NAMES.values() for n in pair] + list(CODE_NAMES)
    texts += [*RULE_LABELS["vi"].values(), "OFFICIAL_ADDRESS_REGISTERED;NOT_USING_OFFICIAL_MAIL"]
    texts += [
        "Nguyễn Thị Ngọc Huyền",
        "WWW MMM @@@ Ưng Ước",
        "nguyen.thi.ngoc.huyen@lienchieu.danang.gov.vn",
    ]
    heads = [h[lang] for h in HEADERS.values() for lang in ("vi", "en")]
    for width in range(8, 61):
        room = column_px(width) - 9
        for text in texts:
            assert wrapped_lines(text, width) >= _lines(text, room, regular), (text, width)
        for text in heads:
            assert wrapped_lines(text, width, bold=True) >= _lines(text, room, bold), (text, width)


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
    # the reason names the address and when: the rule by the night it was seen (30 Nov),
    # the document by its date (5 Nov, 09:00 local)
    assert rows["P06"]["reason"].split("; ")[1] == (
        "Dùng thư điện tử công cộng cho công việc: quy tắc chuyển tiếp thư đến "
        "p06.private@hn.vnn.vn, phát hiện đêm thu thập 30/11/2026 — tính vào xếp loại: tối "
        "đa Hoàn thành khá nhiệm vụ"
    )
    assert rows["P09"]["reason"] == (
        "Văn bản ghi địa chỉ thư công cộng làm đầu mối liên hệ: lienhe@gmail.com trong 1 thư "
        "gửi đi, ngày 05/11/2026 — tính vào xếp loại: tối đa Hoàn thành khá nhiệm vụ"
    )
    out = evaluate_month(inputs(tmp_path), MONTH, out_dir=tmp_path / "reports")
    by_id = {(r["Mã cán bộ"], r["Mã vi phạm"]): r for r in _evidence(out.paths["violations"])}
    forward = by_id[("P06", "PUBLIC_MAIL_FOR_WORK")]
    assert (forward["Đêm thu thập phát hiện"], forward["Thời điểm"]) == ("2026-11-30", "")
    assert by_id[("P09", "PUBLIC_CONTACT_IN_DOCUMENT")]["Quy tắc phát hiện"] == (
        "Địa chỉ công cộng làm đầu mối liên hệ trong tệp đính kèm DOCX"
    )


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
    # LibreOffice converts the workbook's first sheet to CSV headless: its reading of the
    # cells must be the CSV mailusage wrote (Vietnamese intact, no mojibake, numbers as
    # numbers), in the first sheet's columns.
    subprocess.run(
        ["soffice", "--headless", "--convert-to", "csv:Text - txt - csv (StarCalc):44,34,76",
         "--outdir", str(tmp_path), str(result.paths["hr_ratings_xlsx"])],
        check=True, timeout=120, capture_output=True,
    )  # fmt: skip
    got = list(csv.reader((tmp_path / "hr_ratings.csv").read_text("utf-8").splitlines()))
    want = list(csv.reader(result.paths["hr_ratings"].read_text("utf-8-sig").splitlines()))
    keep = [want[0].index(h) for h in got[0]]
    assert got[0][-2:] == ["Lý do", "Trường hợp loại trừ"]
    assert [[r[i].lstrip("'") for i in keep] for r in want] == got


@pytest.mark.skipif(
    shutil.which("soffice") is None, reason="LibreOffice is not installed on this machine"
)
def test_libreoffice_prints_each_sheet_on_one_landscape_a4_page(result, tmp_path):
    from pypdf import PdfReader

    subprocess.run(
        ["soffice", "--headless", "--convert-to", "pdf", "--outdir", str(tmp_path),
         str(result.paths["hr_ratings_xlsx"])],
        check=True, timeout=120, capture_output=True,
    )  # fmt: skip
    pages = PdfReader(tmp_path / "hr_ratings.pdf").pages
    # 11 people fit one page tall; each sheet one page wide: nothing spills onto a page of
    # its own columns
    assert len(pages) == 2
    for page in pages:
        width, height = float(page.mediabox.width), float(page.mediabox.height)
        assert (round(width), round(height)) == (842, 595)  # A4 landscape, in points
        text = page.extract_text()
        assert "Mã cán bộ" in text and "Tháng 11/2026" in text
    assert "p04.home@gmail.com" in pages[0].extract_text()  # the reason, not cut off


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
    assert "Không phát hiện hộp thư đơn vị nào không có người theo dõi." in html  # II.3
    assert 'id="unattended"' not in html  # no table of none
    # the fixture's source is declared to measure all but folder sizes
    assert html.count('<td class="unknown">không đo được</td>') == 1
    review = _evidence(tmp_path / "reports" / MONTH / "review.csv")
    assert [r["Mã vi phạm"] for r in review].count("NOT_USING_OFFICIAL_MAIL") == 4
    assert {r["Quy tắc phát hiện"] for r in review} >= {
        "Không có hoạt động cả tháng, máy chủ không đo được việc đọc thư",
        "Không có thư được gửi, máy chủ không đo được việc đọc thư",
    }


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
