"""The monthly report to the chairman: `reports/YYYY-MM/report.html`, Vietnamese by default.

Figures come from the same evaluation tables as the CSVs; the charts (analytics/charts.py)
are SVG inlined in one self-contained HTML file (no network, opens from a USB stick).
Rendering the same month twice gives the same bytes.
"""

from __future__ import annotations

import calendar
import os
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from jinja2 import Environment, FileSystemLoader, select_autoescape

from analytics import charts
from analytics.policy import code_name
from analytics.queries import days_in, months_back, next_month
from contract.signals import SIGNAL_NAMES

RATED = {"regular", "occasional", "inactive"}  # classes of a mailbox collected that month
TREND_MONTHS = 12
PDF_DATE = "2000-01-01T00:00:00Z"
BASELINE = 0.30  # the Bình Dương check: 30% regular, 70% rarely or never
TEMPLATES = Path(__file__).parent / "templates"
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
    },
}


def _ranking_chart(ranking: list[dict[str, Any]], t: dict[str, Any]) -> str:
    rows = [(r["unit_name"], r["share_regular"]) for r in ranking if r["share_regular"] is not None]
    return charts.ranking_chart(
        rows, baseline=BASELINE, axis=t["share_axis"] + " (%)", baseline_label=t["baseline"]
    )


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


def report_context(result: Any, inputs: Any, lang: str) -> dict[str, Any]:
    """Every figure the report shows, computed from the evaluation tables."""
    t = TEXT[lang]
    wanted = ["employee_id", "mailbox", "unit_name", "is_unit_mailbox", "has_mailbox"]
    rows = result.person_month.select([*wanted, "usage_class"]).to_pylist()
    people = [r for r in rows if not r["is_unit_mailbox"] and r["usage_class"] in RATED]
    regular = sum(r["usage_class"] == "regular" for r in people)
    classes = Counter(r["usage_class"] for r in rows if not r["is_unit_mailbox"])
    units = {p.employee_id: p.unit_name for p in inputs.people}
    by_code: dict[str, set[str]] = defaultdict(set)
    by_code_unit: dict[tuple[str, str], set[str]] = defaultdict(set)
    v = result.violations
    confirmed = v.filter(pc.equal(v["confidence"], "confirmed")).select(["employee_id", "code"])
    for employee_id, code in zip(*confirmed.to_pydict().values(), strict=True):
        if code == "UNIT_MAILBOX_UNATTENDED":
            continue
        by_code[code].add(employee_id)
        by_code_unit[(code, units.get(employee_id, ""))].add(employee_id)
    unattended_ids = set(
        v.filter(
            pc.and_(
                pc.equal(v["code"], "UNIT_MAILBOX_UNATTENDED"),
                pc.equal(v["confidence"], "confirmed"),
            )
        )["employee_id"].to_pylist()
    )
    below = result.person_month.filter(
        pc.and_(
            pc.invert(result.person_month["is_unit_mailbox"]),
            pc.is_in(result.person_month["usage_class"], pa.array(["occasional", "inactive"])),
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
        "ranking_chart": _ranking_chart(ranking, t) if ranking else "",
        "class_chart": _class_chart(dict(classes), t),
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
    }


def month_label(month: str, lang: str) -> str:
    """``month_label("2026-10", "vi")`` -> ``'10/2026'``; in English ``'October 2026'``."""
    year, number = (int(x) for x in month.split("-"))
    if lang == "vi":
        return f"{number}/{year}"
    return f"{calendar.month_name[number]} {year}"


def _shares(pm: pa.Table) -> tuple[float | None, dict[str, float]]:
    """The share of regular users among the rated people: overall and per unit code."""
    rows = pm.select(["unit_code", "is_unit_mailbox", "usage_class"]).to_pylist()
    rated: dict[str, list[bool]] = defaultdict(list)
    for r in rows:
        if not r["is_unit_mailbox"] and r["usage_class"] in RATED:
            rated[r["unit_code"]].append(r["usage_class"] == "regular")
    flat = [x for xs in rated.values() for x in xs]
    overall = sum(flat) / len(flat) if flat else None
    return overall, {u: sum(xs) / len(xs) for u, xs in rated.items()}


def trend(reports_dir: Path | None, month: str, current: pa.Table) -> dict[str, Any]:
    """The last 12 months' shares of regular users, overall and per unit, from the months
    evaluated before (their ``person_month.parquet``) and this one; a month never
    evaluated is None ("—"), never 0%."""
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
        share, by_unit = _shares(tables[m])
        overall.append(share)
        for unit, value in by_unit.items():
            units[unit][i] = value
    return {"months": months, "overall": overall, "units": dict(units)}


def render_report(
    result: Any, inputs: Any, lang: str = "vi", reports_dir: Path | None = None
) -> str:
    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["j2"]))
    env.filters["code_name"] = lambda code: code_name(code, lang)
    env.filters["pct"] = lambda v: "—" if v is None else f"{v * 100:.0f}%"
    env.filters["pp"] = lambda v: (
        "—" if v is None else f"{v * 100:+.0f} điểm %" if lang == "vi" else f"{v * 100:+.0f} pp"
    )
    context = report_context(result, inputs, lang)
    history = trend(reports_dir, result.month, result.person_month)
    labels = [month_label(m, lang) for m in history["months"]]
    context["trend"] = history
    context["trend_labels"] = labels
    context["trend_chart"] = charts.trend_chart(
        list(zip(labels, history["overall"], strict=True)),
        baseline=BASELINE,
        axis=str(context["t"]["share_axis"]),
    )
    return env.get_template("report.html.j2").render(**context)


def report_pdf(html: str) -> bytes:
    """The report as an A4 PDF, laid out by WeasyPrint from the same HTML (its print
    styles: A4, an administrative document's margins, no chart split across pages).
    Fixed dates and identifier, so the same month gives the same bytes."""
    from weasyprint import HTML  # imported here: only the evaluation needs it

    document = HTML(string=html).render()
    document.metadata.created = PDF_DATE
    document.metadata.modified = PDF_DATE
    # fontTools stamps each embedded font subset with the time, unless SOURCE_DATE_EPOCH
    # (the reproducible-builds convention) says otherwise
    saved = os.environ.get("SOURCE_DATE_EPOCH")
    os.environ["SOURCE_DATE_EPOCH"] = saved or "946684800"  # 2000-01-01
    try:
        return bytes(document.write_pdf(pdf_identifier=b"mailusage-report"))
    finally:
        if saved is None:
            del os.environ["SOURCE_DATE_EPOCH"]
