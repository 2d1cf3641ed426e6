"""The monthly report to the chairman: `reports/YYYY-MM/report.html`, Vietnamese by default.

Figures come from the same evaluation tables as the CSVs; the charts (analytics/charts.py)
are SVG inlined in one self-contained HTML file (no network, opens from a USB stick).
Rendering the same month twice gives the same bytes.

It is written as an administrative report (Nghị định 30/2020/NĐ-CP, Appendix I): letterhead,
then numbered prose sections built from the month's figures — I. the situation, II. the
assessment (units ranked, violations, unattended unit mailboxes, what could not be
measured, the 12-month trend), III. proposals drawn from the figures — and the signature.
"""

from __future__ import annotations

import calendar
import functools
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from jinja2 import Environment, FileSystemLoader, select_autoescape

from analytics import charts
from analytics.policy import code_name
from contract.arrays import array, scalar
from contract.months import days_in, months_back, next_month
from contract.signals import SIGNAL_NAMES
from contract.usage import is_rated, regular_share

TREND_MONTHS = 12
TREND_COLUMNS = 6  # months per trend table: 12 side by side do not fit an A4 portrait page
RANKING_CHART_UNITS = 25  # units per ranking chart (one chart fits a page)
NAMES_LISTED = 10  # units named in a sentence before "and N other units"
DIFFERENCES_LISTED = 10  # people listed whose Sent folder and mail log counts differ
BASELINE = 0.30  # the Bình Dương check: 30% regular, 70% rarely or never
TEMPLATES = Path(__file__).parent / "templates"
# The unit tree's part of the report (issue 24): each level's ranking among siblings, the
# heads of units apart. Shown only when the tree has them (a flat roster's report is as before).
_TREE_TEXT = {
    "vi": {
        "levels": "Xếp hạng theo cấp (số liệu mỗi đơn vị gồm cả các đơn vị trực thuộc)",
        "within": "Các đơn vị trực thuộc {unit}",
        "top_level": "Các đơn vị cấp cao nhất",
        "kind": "Loại đơn vị",
        "subtree_share": "Tỷ lệ thường xuyên",
        "heads": "Người đứng đầu đơn vị (nêu gương theo Chỉ thị 01/CT-UBND, mục 1a)",
        "head": "Người đứng đầu",
        "head_class": "Mức độ sử dụng",
        "active_days": "Số ngày hoạt động",
        "head_unknown": "{email} (không có trong danh sách cán bộ)",
        "p_heads": "{regular} trên {n} người đứng đầu đơn vị sử dụng hộp thư công vụ thường xuyên.",
    },
    "en": {
        "levels": "Ranking at each level (each unit's figures include the units under it)",
        "within": "The units under {unit}",
        "top_level": "The top-level units",
        "kind": "Kind",
        "subtree_share": "Share regular",
        "heads": "Heads of units (to set the example: Directive 01/CT-UBND, 1a)",
        "head": "Head",
        "head_class": "Usage class",
        "active_days": "Active days",
        "head_unknown": "{email} (not in the roster)",
        "p_heads": "Heads of units using official mail regularly: {regular} of {n}.",
    },
}
TEXT = {
    "vi": {
        "title": "Báo cáo tình hình sử dụng hộp thư điện tử công vụ",
        "doc_kind": "BÁO CÁO",
        "doc_subject": "Tình hình sử dụng hộp thư điện tử công vụ tháng {month}",
        "nation": "CỘNG HÒA XÃ HỘI CHỦ NGHĨA VIỆT NAM",
        "motto": "Độc lập - Tự do - Hạnh phúc",
        "number": "Số",
        "date_line": "{place}ngày      tháng {m} năm {y}",
        "recipients": "Nơi nhận",
        "sign_hint": "(Ký, ghi rõ họ tên)",
        "trend": "Xu hướng 12 tháng: tỷ lệ người dùng thường xuyên",
        "trend_note": "Tháng chưa được đánh giá hiển thị là —.",
        "month": "Tháng",
        "policy": "Căn cứ",
        "regular_share": "Tỷ lệ sử dụng thường xuyên",
        "last_month": "tháng trước",
        "baseline": "mốc kiểm tra Bình Dương (30%)",
        "ranking": "Xếp hạng đơn vị",
        "rank": "Hạng",
        "unit": "Đơn vị",
        "mailboxes": "Số hộp thư",
        "regular": "Thường xuyên",
        "share": "Tỷ lệ",
        "change": "So với tháng trước",
        "violations": "Vi phạm theo mã và đơn vị",
        "code": "Mã vi phạm",
        "people": "Số người",
        "unattended": "Hộp thư đơn vị không có người theo dõi",
        "none": "Không có",
        "coverage": "Độ phủ dữ liệu",
        "signals": "Tín hiệu đo được theo máy chủ",
        "source": "Nguồn",
        "measured": "đo được",
        "not_measured": "không đo được",
        "signal_names": {
            "read_activity": "Đọc thư",
            "logins": "Đăng nhập",
            "quota": "Dung lượng",
            "forwarding": "Chuyển tiếp",
            "folder_sizes": "Dung lượng thư mục",
        },
        "lower_bound": "{n} người được xếp dưới mức thường xuyên trong khi máy chủ không đo "
        "được đọc thư hoặc đăng nhập của họ: mức này là cận dưới, không xác nhận vi phạm "
        "(xem review.csv).",
        "coverage_text": "hộp thư được thu thập đủ; hộp thư có đêm lỗi",
        "failed": "Hộp thư có đêm thu thập lỗi",
        "nights_failed": "Số đêm lỗi",
        "reason": "Lý do lần lỗi gần nhất",
        "capped": "Số người bị giới hạn mức xếp loại",
        "classes": "Phân loại mức độ sử dụng",
        "class_names": {
            "regular": "Thường xuyên",
            "occasional": "Thỉnh thoảng",
            "inactive": "Không sử dụng",
            "no_mailbox": "Chưa có hộp thư",
            "not_collected": "Chưa có dữ liệu",
        },
        "share_axis": "Tỷ lệ người dùng thường xuyên",
        "partial": "Tháng chưa đủ dữ liệu: {n}/{days} ngày được thu thập. Các tỷ lệ chỉ tính "
        "trên những ngày đã thu thập; hộp thư chưa có dữ liệu không được xếp loại.",
        "generated": "Số liệu từ các tệp trong thư mục",
        "mailbox": "Hộp thư",
        "all_units": "Tất cả đơn vị",
        "sections": ("I. TÌNH HÌNH CHUNG", "II. ĐÁNH GIÁ", "III. ĐỀ XUẤT"),
        "measurement": "Dữ liệu và những gì chưa đo được",
        "summary": "Số liệu chính",
        "n_people": ("{n} người", "{n} người"),
        "n_mailboxes": ("{n} hộp thư", "{n} hộp thư"),
        "more": " và {n} đơn vị khác",
        "p_collected": "Trong tháng {month}, dữ liệu được thu thập {n} trên {days} ngày từ "
        "{total} hộp thư; {full} hộp thư đủ mọi đêm, {failed} hộp thư có đêm thu thập lỗi.",
        "p_classes": "Trong {people} cán bộ, công chức có hộp thư được xếp loại, {regular} người "
        "({regular_pct}) sử dụng thường xuyên, {occasional} người ({occasional_pct}) thỉnh "
        "thoảng sử dụng, {inactive} người ({inactive_pct}) không sử dụng.",
        "p_unrated": "{no_mailbox} người chưa có hộp thư và {not_collected} người chưa có dữ "
        "liệu không được xếp loại.",
        "p_none_rated": "Trong tháng chưa có hộp thư nào được xếp loại.",
        "p_above": "Tỷ lệ sử dụng thường xuyên là {share}, cao hơn mốc kiểm tra 30% {d} điểm "
        "phần trăm",
        "p_below": "Tỷ lệ sử dụng thường xuyên là {share}, thấp hơn mốc kiểm tra 30% {d} điểm "
        "phần trăm",
        "p_at": "Tỷ lệ sử dụng thường xuyên là {share}, đạt đúng mốc kiểm tra 30%",
        "p_up": "; tháng trước là {prev}, tăng {d} điểm phần trăm.",
        "p_down": "; tháng trước là {prev}, giảm {d} điểm phần trăm.",
        "p_same": "; tháng trước là {prev}, không thay đổi.",
        "p_no_prev": "; tháng trước chưa được đánh giá.",
        "p_capped": "{n} người có vi phạm được xác nhận bị giới hạn mức xếp loại trong tháng.",
        "p_not_capped": "Không có người nào bị giới hạn mức xếp loại trong tháng.",
        "p_ranking": "{at} trên {ranked} đơn vị đạt mốc kiểm tra 30%. Cao nhất: {best} "
        "({best_pct}); thấp nhất: {worst} ({worst_pct}).",
        "p_unranked": "{n} đơn vị chưa có dữ liệu để tính tỷ lệ.",
        "p_violations": "Có {n} người có vi phạm được xác nhận: {parts}. Bằng chứng của từng "
        "trường hợp ở tệp violations.csv; các trường hợp nghi vấn ở tệp review.csv chờ rà "
        "soát, không tính vào xếp loại.",
        "p_no_violations": "Trong tháng không có vi phạm được xác nhận.",
        "p_unattended": "{n} hộp thư đơn vị không có người theo dõi (cả tháng không đọc, không "
        "gửi thư): {list}.",
        "p_no_unattended": "Không phát hiện hộp thư đơn vị nào không có người theo dõi.",
        "p_unmeasured": "Máy chủ {source} không đo được: {signals}.",
        "p_all_measured": "Các máy chủ đều đo được đủ các tín hiệu.",
        "r_below": "Đề nghị thủ trưởng {n} đơn vị có tỷ lệ sử dụng thường xuyên dưới 30% "
        "({units}) chấn chỉnh, yêu cầu cán bộ, công chức sử dụng hộp thư điện tử công vụ "
        "trong trao đổi công việc hằng ngày.",
        "r_none_below": "Đề nghị các đơn vị tiếp tục duy trì tỷ lệ sử dụng thường xuyên từ 30% "
        "trở lên.",
        "r_violations": "Đề nghị thủ trưởng các đơn vị có người vi phạm ({units}) xem xét mức "
        "xếp loại tháng {month} của {n} người theo danh sách hr_ratings.csv và nhắc nhở chấm "
        "dứt các vi phạm nêu tại mục II.",
        "r_unattended": "Đề nghị {units} phân công người theo dõi hộp thư đơn vị ({mailboxes}).",
        "r_failed": "Đề nghị bộ phận kỹ thuật khắc phục lỗi thu thập của {n} hộp thư để tháng "
        "sau đủ dữ liệu.",
        "r_unmeasured": "Đề nghị bộ phận kỹ thuật bổ sung nguồn dữ liệu ({signals}) cho máy "
        "chủ {source}; đến khi đó, mức xếp loại dưới thường xuyên của người dùng máy chủ này "
        "chỉ là cận dưới.",
        "p_mail_log": "Nhật ký máy chủ thư được đọc đủ {logged} trên {days} ngày của tháng; "
        "trong những ngày đó, số thư gửi đi được đếm từ nhật ký, những ngày còn lại từ thư "
        "mục Thư đã gửi.",
        "p_mail_log_agree": "Đối chiếu hai nguồn trong những ngày có nhật ký, với {compared} "
        "người có cả hai: {agree} người khớp số thư; ở những người nhật ký ghi nhiều hơn, "
        "nhật ký ghi thêm tổng cộng {more} thư (gửi mà không lưu bản trong Thư đã gửi: điện "
        "thoại, máy quét, phần mềm); ở những người Thư đã gửi có nhiều hơn, Thư đã gửi nhiều "
        "hơn tổng cộng {fewer} thư (lưu vào Thư đã gửi mà không gửi, hoặc gửi qua máy chủ "
        "khác); chênh lệch tổng cộng {diff} thư.",
        "p_mail_log_evidence": "Bằng chứng vi phạm được xác nhận: {both} từ cả hộp thư và "
        "nhật ký, {log} chỉ từ nhật ký, {box} chỉ từ hộp thư.",
        "mail_log_table": "Người có số thư gửi đi khác nhau giữa hai nguồn",
        "sent_folder": "Thư đã gửi",
        "sent_submitted": "Nhật ký",
        "difference": "Chênh lệch",
        **_TREE_TEXT["vi"],
    },
    "en": {
        "title": "Official mailbox usage report",
        "doc_kind": "REPORT",
        "doc_subject": "Official mailbox usage, {month}",
        "nation": "SOCIALIST REPUBLIC OF VIETNAM",
        "motto": "Independence - Freedom - Happiness",
        "number": "No.",
        "date_line": "{place}……… {m}/{y}",
        "recipients": "Recipients",
        "sign_hint": "(Signature, full name)",
        "trend": "12-month trend: share of regular users",
        "trend_note": "Months never evaluated show as —.",
        "month": "Month",
        "policy": "Policy",
        "regular_share": "Share of regular users",
        "last_month": "last month",
        "baseline": "Bình Dương check baseline (30%)",
        "ranking": "Unit ranking",
        "rank": "Rank",
        "unit": "Unit",
        "mailboxes": "Mailboxes",
        "regular": "Regular",
        "share": "Share",
        "change": "Change from last month",
        "violations": "Violations by code and unit",
        "code": "Code",
        "people": "People",
        "unattended": "Unit mailboxes nobody attended",
        "none": "None",
        "coverage": "Data coverage",
        "signals": "What each server measures",
        "source": "Source",
        "measured": "measured",
        "not_measured": "not measurable on this server",
        "signal_names": {
            "read_activity": "Reading",
            "logins": "Logins",
            "quota": "Quota",
            "forwarding": "Forwarding",
            "folder_sizes": "Folder sizes",
        },
        "lower_bound": "{n} people are rated below regular while their server could not "
        "measure their reading or logins: the class is a lower bound and confirms no "
        "violation (see review.csv).",
        "coverage_text": "mailboxes fully collected; mailboxes with failed nights",
        "failed": "Mailboxes with failed nights",
        "nights_failed": "Failed nights",
        "reason": "Last failure",
        "capped": "People whose rating is capped",
        "classes": "Usage classes",
        "class_names": {
            "regular": "regular",
            "occasional": "occasional",
            "inactive": "inactive",
            "no_mailbox": "no mailbox",
            "not_collected": "no data collected",
        },
        "share_axis": "Share of regular users",
        "partial": "Partial month: {n} of {days} days collected. Shares count only the days "
        "collected; mailboxes with no data are not rated.",
        "generated": "Figures from the files in",
        "mailbox": "Mailbox",
        "all_units": "All units",
        "sections": ("I. OVERVIEW", "II. ASSESSMENT", "III. PROPOSALS"),
        "measurement": "Data and what could not be measured",
        "summary": "Key figures",
        "n_people": ("{n} person", "{n} people"),
        "n_mailboxes": ("{n} mailbox", "{n} mailboxes"),
        "more": " and {n} other units",
        "p_collected": "In {month}, data was collected on {n} of {days} days from "
        "{total_n}: {full_n} collected every night, {failed_n} with failed nights.",
        "p_classes": "Of the {people} staff whose mailbox could be rated, {regular} "
        "({regular_pct}) used it regularly, {occasional} ({occasional_pct}) occasionally and "
        "{inactive} ({inactive_pct}) not at all.",
        "p_unrated": "Not rated: {no_mailbox_n} with no mailbox and {not_collected_n} with "
        "no data collected.",
        "p_none_rated": "No mailbox could be rated this month.",
        "p_above": "The share of regular users is {share}, {d} points above the 30% baseline",
        "p_below": "The share of regular users is {share}, {d} points below the 30% baseline",
        "p_at": "The share of regular users is {share}, at the 30% baseline",
        "p_up": "; last month it was {prev}, up {d} points.",
        "p_down": "; last month it was {prev}, down {d} points.",
        "p_same": "; last month it was {prev}, unchanged.",
        "p_no_prev": "; last month was not evaluated.",
        "p_capped": "Ratings capped this month for confirmed violations: {n_people}.",
        "p_not_capped": "Nobody's rating is capped this month.",
        "p_ranking": "Units at or above the 30% baseline: {at} of {ranked}. Highest: {best} "
        "({best_pct}); lowest: {worst} ({worst_pct}).",
        "p_unranked": "Units with no data to compute a share from: {n}.",
        "p_violations": "Confirmed violations concern {n_people}: {parts}. The evidence for each "
        "is in violations.csv; suspected cases in review.csv await review and do not count "
        "toward the rating.",
        "p_no_violations": "No violation was confirmed this month.",
        "p_unattended": "Unit mailboxes nobody attended (nothing read or sent all month): {list}.",
        "p_no_unattended": "No unattended unit mailbox was found.",
        "p_unmeasured": "Server {source} cannot measure: {signals}.",
        "p_all_measured": "Every server measures every signal.",
        "r_below": "The heads of the units below the 30% baseline ({units}) should have "
        "their staff use official mail for their daily work.",
        "r_none_below": "Every unit should keep its share of regular users at 30% or above.",
        "r_violations": "The heads of the units with violations ({units}) should review the "
        "{month} rating of the {n_people} listed in hr_ratings.csv and have the violations "
        "in section II stopped.",
        "r_unattended": "{units} should assign someone to attend their unit mailbox ({mailboxes}).",
        "r_failed": "IT should fix the collection of the {n_mailboxes} with failed nights so "
        "that next month is complete.",
        "r_unmeasured": "IT should add a data source for {signals} to server {source}; until "
        "then, a rating below regular of its users is a lower bound.",
        "p_mail_log": "The mail server's log was read for {logged} of {days} days of the "
        "month; on those days sent mail is counted from the log, on the others from the Sent "
        "folder.",
        "p_mail_log_agree": "On the days with the log, of the {compared_n} with both sources: "
        "{agree} agree; where the log counts more, it counts {more} more messages in all "
        "(sent without a copy in the Sent folder: phones, scanners, scripts); where the Sent "
        "folder counts more, {fewer} more (saved to Sent without being sent, or sent through "
        "another server); the total difference is {diff} messages.",
        "p_mail_log_evidence": "Confirmed evidence: {both} found in both the mailbox and the "
        "log, {log} in the log only, {box} in the mailbox only.",
        "mail_log_table": "People whose sent counts differ between the two sources",
        "sent_folder": "Sent folder",
        "sent_submitted": "Mail log",
        "difference": "Difference",
        **_TREE_TEXT["en"],
    },
}


def _ranking_charts(ranking: list[dict[str, Any]], t: dict[str, Any]) -> list[str]:
    """One chart per group of at most RANKING_CHART_UNITS units: an SVG is one picture and
    cannot break across pages, so a province's 90 units take several charts."""
    rows = [(r["unit_name"], r["share_regular"]) for r in ranking if r["share_regular"] is not None]
    return [
        charts.ranking_chart(
            rows[i : i + RANKING_CHART_UNITS],
            baseline=BASELINE,
            axis=t["share_axis"] + " (%)",
            baseline_label=t["baseline"],
        )
        for i in range(0, len(rows), RANKING_CHART_UNITS)
    ]


def _class_chart(counts: dict[str, int], t: dict[str, Any]) -> str:
    """Shares are of the rated people: a mailbox collected at least one night (as in the
    ranking and KPI)."""
    order = ["regular", "occasional", "inactive", "not_collected", "no_mailbox"]
    rated = sum(counts.get(c, 0) for c in order[:3]) or 1
    segments = [
        (c, t["class_names"][c], counts.get(c, 0), counts.get(c, 0) / rated if i < 3 else None)
        for i, c in enumerate(order)
    ]
    return charts.class_chart(segments, title=t["classes"])


def _pct(value: float) -> int:
    """The whole percent the report prints: differences are taken between printed figures,
    so "28%" against the 30% baseline reads "2 points", as the reader would count."""
    return int(f"{value * 100:.0f}")


def _names(names: list[str], t: dict[str, Any]) -> str:
    """``_names(["A", "B"], t)`` -> ``'A, B'``; past NAMES_LISTED, "and N other units"."""
    shown = ", ".join(names[:NAMES_LISTED])
    more = len(names) - NAMES_LISTED
    return shown + (str(t["more"]).format(n=more) if more > 0 else "")


def _count(t: dict[str, Any], noun: str, n: int) -> str:
    """``_count(TEXT["en"], "n_people", 1)`` -> ``'1 person'``; in Vietnamese ``'1 người'``."""
    return str(t[noun][n != 1]).format(n=n)


def _prose(c: dict[str, Any], t: dict[str, Any], code_name: Any) -> dict[str, Any]:
    """The report's sentences, each built from the month's figures in `c` (the context):
    I. the situation, II. the assessment (per part), III. the proposals."""
    classes = c["class_counts"]
    people, share, prev = c["people"], c["regular_share"], c["regular_share_prev"]
    situation = [
        str(t["p_collected"]).format(
            month=c["month_text"],
            n=c["days_collected"],
            days=c["days"],
            total=c["coverage_total"],
            full=c["coverage_full"],
            failed=len(c["coverage_failed"]),
            total_n=_count(t, "n_mailboxes", c["coverage_total"]),
            full_n=_count(t, "n_mailboxes", c["coverage_full"]),
            failed_n=_count(t, "n_mailboxes", len(c["coverage_failed"])),
        )
    ]
    if share is None:
        situation.append(str(t["p_none_rated"]))
    else:
        situation.append(
            str(t["p_classes"]).format(
                people=people,
                **{k: classes.get(k, 0) for k in ("regular", "occasional", "inactive")},
                **{
                    f"{k}_pct": f"{_pct(classes.get(k, 0) / people)}%"
                    for k in ("regular", "occasional", "inactive")
                },
            )
        )
        d = _pct(share) - _pct(BASELINE)
        kind = "p_above" if d > 0 else "p_below" if d < 0 else "p_at"
        sentence = str(t[kind]).format(share=f"{_pct(share)}%", d=abs(d))
        if prev is None:
            sentence += str(t["p_no_prev"])
        else:
            d = _pct(share) - _pct(prev)
            kind = "p_up" if d > 0 else "p_down" if d < 0 else "p_same"
            sentence += str(t[kind]).format(prev=f"{_pct(prev)}%", d=abs(d))
        situation.append(sentence)
    if classes.get("no_mailbox") or classes.get("not_collected"):
        situation.append(
            str(t["p_unrated"]).format(
                no_mailbox=classes.get("no_mailbox", 0),
                not_collected=classes.get("not_collected", 0),
                no_mailbox_n=_count(t, "n_people", classes.get("no_mailbox", 0)),
                not_collected_n=_count(t, "n_people", classes.get("not_collected", 0)),
            )
        )
    capped = c["capped"]
    situation.append(
        str(t["p_capped"]).format(n=capped, n_people=_count(t, "n_people", capped))
        if capped
        else str(t["p_not_capped"])
    )

    ranked = [r for r in c["ranking"] if r["share_regular"] is not None]
    ranking = []
    if ranked:
        top = max(r["share_regular"] for r in ranked)
        low = min(r["share_regular"] for r in ranked)
        ranking.append(
            str(t["p_ranking"]).format(
                at=sum(r["share_regular"] >= BASELINE for r in ranked),
                ranked=len(ranked),
                best=_names([r["unit_name"] for r in ranked if r["share_regular"] == top], t),
                best_pct=f"{_pct(top)}%",
                worst=_names([r["unit_name"] for r in ranked if r["share_regular"] == low], t),
                worst_pct=f"{_pct(low)}%",
            )
        )
    if len(ranked) < len(c["ranking"]):
        ranking.append(str(t["p_unranked"]).format(n=len(c["ranking"]) - len(ranked)))

    if c["violators"]:
        parts = "; ".join(
            f"{code_name(code)}: {_count(t, 'n_people', n)}" for code, n in c["violations_by_code"]
        )
        violations = [
            str(t["p_violations"]).format(
                n=c["violators"], n_people=_count(t, "n_people", c["violators"]), parts=parts
            )
        ]
    else:
        violations = [str(t["p_no_violations"])]

    unattended_list = [f"{mailbox} ({unit})" for unit, mailbox in c["unattended"]]
    unattended = [
        str(t["p_unattended"]).format(n=len(unattended_list), list="; ".join(unattended_list))
        if unattended_list
        else str(t["p_no_unattended"])
    ]

    # per source, the signals it cannot measure: (source, names, whether the class rests on one)
    unmeasured = [
        (
            source,
            ", ".join(str(t["signal_names"][n]).lower() for n, ok in row if not ok),
            any(n in ("read_activity", "logins") and not ok for n, ok in row),
        )
        for source, row in c["signals"]
        if not all(ok for _, ok in row)
    ]
    measurement = [
        str(t["p_unmeasured"]).format(source=source, signals=missing)
        for source, missing, _ in unmeasured
    ] or ([str(t["p_all_measured"])] if c["signals"] else [])

    below = [r["unit_name"] for r in ranked if r["share_regular"] < BASELINE]
    proposals = [
        str(t["r_below"]).format(n=len(below), units=_names(below, t))
        if below
        else str(t["r_none_below"])
    ]
    if c["violators"]:
        units = sorted({u for _, u, _ in c["violations_by_code_unit"] if u})
        proposals.append(
            str(t["r_violations"]).format(
                units=_names(units, t),
                month=c["month_text"],
                n=capped or c["violators"],
                n_people=_count(t, "n_people", capped or c["violators"]),
            )
        )
    if c["unattended"]:
        proposals.append(
            str(t["r_unattended"]).format(
                units=_names(sorted({u for u, _ in c["unattended"]}), t),
                mailboxes=", ".join(m for _, m in c["unattended"]),
            )
        )
    if c["coverage_failed"]:
        failed = len(c["coverage_failed"])
        proposals.append(
            str(t["r_failed"]).format(n=failed, n_mailboxes=_count(t, "n_mailboxes", failed))
        )
    proposals += [  # reading and logins decide the class: without them it is a lower bound
        str(t["r_unmeasured"]).format(source=source, signals=missing)
        for source, missing, decides in unmeasured
        if decides
    ]
    return {
        "situation": situation,
        "ranking": ranking,
        "violations": violations,
        "unattended": unattended,
        "measurement": measurement,
        "proposals": proposals,
    }


def report_context(result: Any, inputs: Any, lang: str) -> dict[str, Any]:
    """Every figure the report shows, computed from the evaluation tables."""
    t = TEXT[lang]
    wanted = ["employee_id", "mailbox", "unit_name", "is_unit_mailbox", "has_mailbox"]
    rows = result.person_month.select([*wanted, "usage_class"]).to_pylist()
    people = [r for r in rows if is_rated(r["is_unit_mailbox"], r["usage_class"])]
    regular = sum(r["usage_class"] == "regular" for r in people)
    classes = Counter(r["usage_class"] for r in rows if not r["is_unit_mailbox"])
    units = {p.employee_id: p.unit_name for p in inputs.people}
    by_code: dict[str, set[str]] = defaultdict(set)
    by_code_unit: dict[tuple[str, str], set[str]] = defaultdict(set)
    unattended_ids: set[str] = set()
    v = result.violations
    confirmed = v.filter(pc.equal(v["confidence"], scalar("confirmed", pa.string())))
    evidence = confirmed.select(["employee_id", "code"]).to_pydict()
    for employee_id, code in zip(evidence["employee_id"], evidence["code"], strict=True):
        if code == "UNIT_MAILBOX_UNATTENDED":
            unattended_ids.add(employee_id)
            continue
        by_code[code].add(employee_id)
        by_code_unit[(code, units.get(employee_id, ""))].add(employee_id)
    below = result.person_month.filter(
        pc.and_(
            pc.invert(result.person_month["is_unit_mailbox"]),
            pc.is_in(
                result.person_month["usage_class"], array(["occasional", "inactive"], pa.string())
            ),
        )
    )
    lower_bound = below.num_rows - below["unmeasured"].null_count
    unattended = [r for r in rows if r["is_unit_mailbox"] and r["employee_id"] in unattended_ids]
    coverage = result.coverage.to_pylist()
    failed = [c for c in coverage if c["nights_failed"]]
    ranking = result.unit_ranking.to_pylist()
    days_collected = pc.max(result.person_month["nights_collected"]).as_py() or 0
    days = days_in(result.month)
    return {
        "t": t,
        "lang": lang,
        "month": result.month,
        "month_text": month_label(result.month, lang),
        "lh": inputs.letterhead,
        # issued the month after: the day is left for the signer, as on paper
        "issue_month": tuple(int(x) for x in next_month(result.month).split("-")),
        "partial": str(t["partial"]).format(n=days_collected, days=days)
        if days_collected < days
        else "",
        "policy": inputs.policy.title or inputs.policy.name,
        "regular_share": regular / len(people) if people else None,
        "regular_share_prev": result.regular_share_prev,
        "baseline": BASELINE,
        "people": len(people),
        "regular": regular,
        "capped": sum(1 for r in result.hr_rows if r["capped"]),
        "ranking": ranking,
        "ranking_charts": _ranking_charts(ranking, t),
        "class_chart": _class_chart(dict(classes), t),
        "class_counts": dict(classes),
        "days_collected": days_collected,
        "days": days,
        "violators": len(set().union(*by_code.values())),
        "violations_by_code": sorted((c, len(p)) for c, p in by_code.items()),
        "violations_by_code_unit": sorted((c, u, len(p)) for (c, u), p in by_code_unit.items()),
        "unattended": [(r["unit_name"], r["mailbox"]) for r in unattended],
        "coverage_full": sum(1 for c in coverage if not c["nights_failed"] and c["nights_ok"]),
        "coverage_failed": failed,
        "coverage_total": len(coverage),
        "signals": [
            (name, [(n, getattr(s, n)) for n in SIGNAL_NAMES]) for name, s in inputs.signals.items()
        ],
        "lower_bound": str(t["lower_bound"]).format(n=lower_bound) if lower_bound else "",
        "mail_log": mail_log_agreement(result, t),
        **tree_context(result.unit_month, t),
    }


def mail_log_agreement(result: Any, t: dict[str, Any]) -> dict[str, Any] | None:
    """How far the Sent folders and the mail log agree on the days the log covered, from
    person_month (``sent_submitted`` against ``sent_folder_logged``) and the evidence's
    sources; None without mail logs.

    People compared: with a mailbox collected this month and a source the log covers.
    """
    if not result.mail_logs:
        return None
    wanted = ["unit_name", "mailbox", "nights_collected", "submission_days"]
    rows = result.person_month.select([*wanted, "sent_submitted", "sent_folder_logged"]).to_pylist()
    both = [r for r in rows if r["sent_submitted"] is not None and r["nights_collected"]]
    diffs = [r["sent_submitted"] - r["sent_folder_logged"] for r in both]
    differ = sorted(
        (r for r in both if r["sent_submitted"] != r["sent_folder_logged"]),
        key=lambda r: (-abs(r["sent_submitted"] - r["sent_folder_logged"]), r["mailbox"]),
    )
    found = result.violations.select(["confidence", "evidence_source"]).to_pylist()
    sources = Counter(r["evidence_source"] for r in found if r["confidence"] == "confirmed")
    logged = max((r["submission_days"] for r in rows), default=0)
    days = days_in(result.month)
    return {
        "text": str(t["p_mail_log"]).format(logged=logged, days=days),
        "agreement": str(t["p_mail_log_agree"]).format(
            compared=len(both),
            compared_n=_count(t, "n_people", len(both)),
            agree=len(both) - len(differ),
            more=sum(d for d in diffs if d > 0),
            fewer=-sum(d for d in diffs if d < 0),
            diff=f"{sum(diffs):+d}",
        )
        if both
        else "",
        "evidence": str(t["p_mail_log_evidence"]).format(
            both=sources["mailbox+mail_log"], log=sources["mail_log"], box=sources["mailbox"]
        ),
        "differ": differ[:DIFFERENCES_LISTED],
    }


def tree_context(unit_month: pa.Table, t: dict[str, Any]) -> dict[str, Any]:
    """The tree's figures for the report, from ``unit_month`` (analytics/sql/unit_month.sql):
    ``levels``, each parent's children ranked among themselves (only for a tree of more
    than one level), and the heads of units with their month."""
    units = unit_month.to_pylist()
    names = {u["unit_code"]: u["unit_name"] for u in units}
    groups: list[tuple[str, list[dict[str, Any]]]] = []
    if any(u["depth"] for u in units):
        children: dict[str | None, list[dict[str, Any]]] = defaultdict(list)
        for u in units:
            children[u["parent_code"]].append(u)
        parents = [None, *(u["unit_code"] for u in units)]  # the tree's order
        for code in parents:
            if code in children and (code is not None or len(children[None]) > 1):
                title = t["within"].format(unit=names[code]) if code else t["top_level"]
                ranked = sorted(
                    children[code], key=lambda u: (u["rank_among_siblings"], u["position"])
                )
                groups.append((title, ranked))
    heads = [
        {
            "unit": u["unit_name"],
            "head": u["head_name"] or str(t["head_unknown"]).format(email=u["head_email"]),
            "usage_class": u["head_usage_class"],
            "active_days": u["head_active_days"],
        }
        for u in units
        if u["head_email"]
    ]
    known = [h for h in heads if h["usage_class"] is not None]
    regular = sum(h["usage_class"] == "regular" for h in known)
    return {
        "tree_groups": groups,
        "heads": heads,
        "heads_text": str(t["p_heads"]).format(regular=regular, n=len(known)) if known else "",
    }


def month_label(month: str, lang: str, short: bool = False) -> str:
    """``month_label("2026-10", "vi")`` -> ``'10/2026'``; in English ``'October 2026'``,
    or ``'Oct 2026'`` when ``short`` (a table's column, a chart's axis)."""
    year, number = (int(x) for x in month.split("-"))
    if lang == "vi":
        return f"{number}/{year}"
    names = calendar.month_abbr if short else calendar.month_name
    return f"{names[number]} {year}"


def _shares(pm: pa.Table, units: set[str] | None = None) -> tuple[float | None, dict[str, float]]:
    """The share of regular users among the rated people: overall and per unit code; with
    ``units``, of those units' people only (a scope's report)."""
    rows = pm.select(["unit_code", "is_unit_mailbox", "usage_class"]).to_pylist()
    rated: dict[str, list[str]] = defaultdict(list)
    for r in rows:
        if units is not None and r["unit_code"] not in units:
            continue
        if is_rated(r["is_unit_mailbox"], r["usage_class"]):
            rated[r["unit_code"]].append(r["usage_class"])
    overall = regular_share(c for cs in rated.values() for c in cs)
    return overall, {
        u: share for u, cs in rated.items() if (share := regular_share(cs)) is not None
    }


def trend(
    reports_dir: Path | None, month: str, current: pa.Table, only: set[str] | None = None
) -> dict[str, Any]:
    """The last 12 months' shares of regular users, overall and per unit, from the months
    evaluated before (their ``person_month.parquet``) and this one; a month never
    evaluated is None ("—"), never 0%. With ``only``, of those units' people only."""
    months = months_back(month, TREND_MONTHS)
    tables: dict[str, pa.Table] = {month: current}
    for m in months[:-1]:
        path = reports_dir / m / "person_month.parquet" if reports_dir else None
        if path is not None and path.exists():
            tables[m] = pq.read_table(path, columns=["unit_code", "is_unit_mailbox", "usage_class"])
    overall, units = [], defaultdict(lambda: [None] * len(months))  # type: ignore[var-annotated]
    for i, m in enumerate(months):
        if m not in tables:
            overall.append(None)
            continue
        share, by_unit = _shares(tables[m], only)
        overall.append(share)
        for unit, value in by_unit.items():
            units[unit][i] = value
    return {"months": months, "overall": overall, "units": dict(units)}


@functools.lru_cache(maxsize=4)  # one per language
def _environment(lang: str) -> Environment:
    """The report template's Jinja environment in ``lang``, made once per process: a
    province's scopes render the template 30 times, and compiling it costs ~0.1 s."""
    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["j2"]))
    env.filters["code_name"] = lambda code: code_name(code, lang)
    env.filters["pct"] = lambda v: "—" if v is None else f"{v * 100:.0f}%"
    env.filters["pp"] = lambda v: (
        "—" if v is None else f"{v * 100:+.0f} điểm %" if lang == "vi" else f"{v * 100:+.0f} pp"
    )
    return env


def render_report(
    result: Any,
    inputs: Any,
    lang: str = "vi",
    reports_dir: Path | None = None,
    units: set[str] | None = None,
) -> str:
    """The report's HTML; ``units``: a scope's units, which its trend is of."""
    env = _environment(lang)
    context = report_context(result, inputs, lang)
    context["prose"] = _prose(context, context["t"], env.filters["code_name"])
    history = trend(reports_dir, result.month, result.person_month, units)
    labels = [month_label(m, lang, short=True) for m in history["months"]]
    context["trend"] = history
    context["trend_labels"] = labels
    # the per-unit trend in tables of TREND_COLUMNS months each, oldest first
    context["trend_chunks"] = [
        range(i, min(i + TREND_COLUMNS, len(labels))) for i in range(0, len(labels), TREND_COLUMNS)
    ]
    context["trend_chart"] = charts.trend_chart(
        list(zip(labels, history["overall"], strict=True)),
        baseline=BASELINE,
        axis=str(context["t"]["share_axis"]),
    )
    return env.get_template("report.html.j2").render(**context)
