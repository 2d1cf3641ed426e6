"""The monthly evaluation: SQL results + policy + waivers -> the files under reports/YYYY-MM/.

    >>> result = evaluate_month(inputs, "2026-11", out_dir=Path("reports"))
    >>> result.paths["hr_ratings"]
    PosixPath('reports/2026-11/hr_ratings.csv')

Every output is sorted and free of run timestamps, so re-running a month reproduces the
same files byte for byte.
"""

from __future__ import annotations

import csv
import functools
import io
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from analytics.pdf import PdfRenderer
from analytics.policy import Policy, Waiver, check_month, code_name
from analytics.queries import (
    MAIL_LOGS,
    Workspace,
    covering_nights,
    mail_log_nights,
    month_nights,
    month_params,
)
from analytics.report import month_label, render_report
from analytics.workbook import hr_workbook
from contract.arrays import array, from_columns, from_rows, scalar
from contract.datasets import dataset_files
from contract.domains import public_domains
from contract.files import atomic_write
from contract.letterhead import Letterhead
from contract.months import days_in, previous_month
from contract.people import Person
from contract.signals import Signals
from contract.units import UnitTree
from contract.usage import RATED_CLASSES, regular_share

LANGS = ("vi", "en")
CLASS_LABELS = {
    "vi": {
        "regular": "Thường xuyên",
        "occasional": "Thỉnh thoảng",
        "inactive": "Không sử dụng",
        "no_mailbox": "Chưa có hộp thư",
        "not_collected": "Chưa có dữ liệu",
    },
    "en": {
        "regular": "regular",
        "occasional": "occasional",
        "inactive": "inactive",
        "no_mailbox": "no mailbox",
        "not_collected": "no data collected",
    },
}
UNMEASURED_LABELS = {
    "vi": {"read_activity": "đọc thư", "logins": "đăng nhập"},
    "en": {"read_activity": "read activity", "logins": "logins"},
}
EXEMPTION_LABELS = {
    "vi": {
        "no_mailbox": "Chưa được cấp hộp thư",
        "on_leave": "Nghỉ phép/nghỉ dài ngày",
        "joined_mid_month": "Mới nhận công tác trong tháng",
    },
    "en": {
        "no_mailbox": "no mailbox issued",
        "on_leave": "on leave",
        "joined_mid_month": "joined mid-month",
    },
}
# The evidence files' values as HR reads them (lang="vi"); in English the stable values
# themselves are written. The `code` column always keeps the stable code.
CONFIDENCE_LABELS = {"vi": {"confirmed": "xác nhận", "suspected": "cần xem xét"}}
COUNTS_LABELS = {"vi": {"yes": "có", "no": "không"}, "en": {"yes": "yes", "no": "no"}}
RULE_LABELS = {
    "vi": {
        "declared_personal_address": "Trao đổi thư với địa chỉ cá nhân đã khai báo",
        "forwarding_rule": "Quy tắc chuyển tiếp thư đến địa chỉ công cộng",
        "public_address_across_units": (
            "Địa chỉ công cộng trao đổi thư với nhiều hộp thư ở nhiều đơn vị"
        ),
        "registration_sender": "Thư từ mạng xã hội hoặc ngân hàng điện tử",
        "inactive_month": "Không có hoạt động cả tháng",
        "inactive_month_reading_not_measured": (
            "Không có hoạt động cả tháng, máy chủ không đo được việc đọc thư"
        ),
        "inactive_month_logins_not_measured": (
            "Không có hoạt động cả tháng, không có nguồn dữ liệu đăng nhập"
        ),
        "no_read_no_send": "Không có thư được đọc hay gửi cả tháng",
        "no_send_reading_not_measured": (
            "Không có thư được gửi, máy chủ không đo được việc đọc thư"
        ),
    }
}
# evidence_source: where a piece of evidence was found (with mail logs only)
SOURCE_LABELS = {
    "vi": {
        "mailbox": "hộp thư",
        "mail_log": "nhật ký máy chủ thư",
        "mailbox+mail_log": "hộp thư và nhật ký máy chủ thư",
    }
}
# where_found of the contact scan (rule contact_in_<where>)
FOUND_IN_LABELS = {
    "vi": {
        "body": "nội dung thư",
        "txt": "tệp đính kèm TXT",
        "html": "tệp đính kèm HTML",
        "docx": "tệp đính kèm DOCX",
        "pdf": "tệp đính kèm PDF",
    }
}


def rule_label(rule: str, lang: str) -> str:
    """A detection rule as HR reads it; an unknown rule, and every rule in English, as it is.

    >>> rule_label("contact_in_docx", "vi")
    'Địa chỉ công cộng làm đầu mối liên hệ trong tệp đính kèm DOCX'
    """
    labels = RULE_LABELS.get(lang, {})
    if rule in labels:
        return labels[rule]
    where = rule.removeprefix("contact_in_")
    if where != rule and where in FOUND_IN_LABELS.get(lang, {}):
        return f"Địa chỉ công cộng làm đầu mối liên hệ trong {FOUND_IN_LABELS[lang][where]}"
    return rule


# Column headers: the only identifiers that reach an output, from this fixed table.
HEADERS: dict[str, dict[str, str]] = {
    "employee_id": {"vi": "Mã cán bộ", "en": "Employee ID"},
    "full_name": {"vi": "Họ và tên", "en": "Full name"},
    "unit": {"vi": "Đơn vị", "en": "Unit"},
    "month": {"vi": "Tháng", "en": "Month"},
    "usage_class": {"vi": "Mức độ sử dụng", "en": "Usage class"},
    "violation_codes": {"vi": "Mã vi phạm", "en": "Violation codes"},
    "max_rating": {"vi": "Mức xếp loại tối đa", "en": "Maximum rating"},
    "violations": {"vi": "Vi phạm", "en": "Violations"},
    "reason": {"vi": "Lý do", "en": "Reason"},
    "evidence_count": {"vi": "Số bằng chứng", "en": "Evidence count"},
    "waiver": {"vi": "Miễn trừ", "en": "Waiver"},
    "exemption": {"vi": "Trường hợp loại trừ", "en": "Exemption"},
    "mailbox": {"vi": "Hộp thư", "en": "Mailbox"},
    "code": {"vi": "Mã vi phạm", "en": "Code"},
    "confidence": {"vi": "Mức tin cậy", "en": "Confidence"},
    "counts": {"vi": "Tính vào xếp loại", "en": "Counts toward the cap"},
    "rule": {"vi": "Quy tắc phát hiện", "en": "Detection rule"},
    "folder": {"vi": "Thư mục", "en": "Folder"},
    "uid": {"vi": "UID", "en": "UID"},
    "message_id": {"vi": "Message-ID", "en": "Message-ID"},
    "date": {"vi": "Thời điểm", "en": "Date"},
    "counterpart": {"vi": "Địa chỉ liên quan", "en": "Counterpart address"},
    "seen_night": {"vi": "Đêm thu thập phát hiện", "en": "Night first seen"},
    "evidence_source": {"vi": "Nguồn bằng chứng", "en": "Evidence source"},
    "queue_id": {"vi": "Mã hàng đợi (nhật ký máy chủ thư)", "en": "Queue ID (mail log)"},
    "rank": {"vi": "Hạng", "en": "Rank"},
    "unit_code": {"vi": "Mã đơn vị", "en": "Unit code"},
    "unit_name": {"vi": "Tên đơn vị", "en": "Unit name"},
    "headcount": {"vi": "Số cán bộ", "en": "Headcount"},
    "mailboxes": {"vi": "Số hộp thư", "en": "Mailboxes"},
    "regular": {"vi": "Thường xuyên", "en": "Regular"},
    "occasional": {"vi": "Thỉnh thoảng", "en": "Occasional"},
    "inactive": {"vi": "Không sử dụng", "en": "Inactive"},
    "no_mailbox": {"vi": "Chưa có hộp thư", "en": "No mailbox"},
    "not_collected": {"vi": "Chưa có dữ liệu", "en": "No data collected"},
    "not_measured": {
        "vi": "Xếp mức khi không đo được đủ tín hiệu",
        "en": "Rated with a signal not measurable",
    },
    "days_collected": {"vi": "Số ngày có dữ liệu", "en": "Days with data"},
    "share_regular": {"vi": "Tỷ lệ thường xuyên", "en": "Share regular"},
    "share_occasional": {"vi": "Tỷ lệ thỉnh thoảng", "en": "Share occasional"},
    "share_inactive": {"vi": "Tỷ lệ không sử dụng", "en": "Share inactive"},
    "share_regular_prev": {
        "vi": "Tỷ lệ thường xuyên tháng trước",
        "en": "Share regular, last month",
    },
    "share_regular_change": {"vi": "Thay đổi so với tháng trước", "en": "Change from last month"},
    "unit_mailboxes": {"vi": "Hộp thư đơn vị", "en": "Unit mailboxes"},
    "unit_mailboxes_unattended": {
        "vi": "Hộp thư đơn vị không được theo dõi",
        "en": "Unit mailboxes unattended",
    },
}
UNIT_COLUMNS = (
    "rank",
    "unit_code",
    "unit_name",
    "headcount",
    "mailboxes",
    "regular",
    "occasional",
    "inactive",
    "no_mailbox",
    "not_collected",
    "not_measured",
    "share_regular",
    "share_occasional",
    "share_inactive",
    "share_regular_prev",
    "share_regular_change",
    "unit_mailboxes",
    "unit_mailboxes_unattended",
)
EVIDENCE_COLUMNS = (
    "employee_id",
    "full_name",
    "unit",
    "mailbox",
    "code",
    "confidence",
    "counts",
    "rule",
    "folder",
    "uid",
    "message_id",
    "date",
    "counterpart",
    "seen_night",
)
# with mail logs: where each piece came from, and the log's queue id beside the UID
EVIDENCE_COLUMNS_MAIL_LOGS = (
    *EVIDENCE_COLUMNS[: EVIDENCE_COLUMNS.index("rule") + 1],
    "evidence_source",
    *EVIDENCE_COLUMNS[EVIDENCE_COLUMNS.index("folder") : EVIDENCE_COLUMNS.index("uid") + 1],
    "queue_id",
    *EVIDENCE_COLUMNS[EVIDENCE_COLUMNS.index("message_id") :],
)
HR_COLUMNS = (
    "employee_id",
    "full_name",
    "unit",
    "month",
    "usage_class",
    "days_collected",
    "violation_codes",
    "violations",
    "max_rating",
    "reason",
    "evidence_count",
    "waiver",
    "exemption",
)
# hr_ratings.xlsx prints each sheet one A4 page wide: the rating with its reason, then the
# rest (all thirteen columns across one page were unreadable).
HR_SHEETS = (
    (
        {"vi": "Xếp loại", "en": "Ratings"},
        ("employee_id", "full_name", "unit", "usage_class", "days_collected", "max_rating",
         "reason", "exemption"),
    ),
    (
        {"vi": "Chi tiết", "en": "Details"},
        ("employee_id", "full_name", "month", "violation_codes", "violations",
         "evidence_count", "waiver"),
    ),
)  # fmt: skip
_HR_SCHEMA = pa.schema(
    [(c, pa.int64() if c == "evidence_count" else pa.string()) for c in HR_COLUMNS]
)
NO_CAP = {"vi": "Không giới hạn", "en": "No cap"}
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
# compute's arguments as Arrow scalars: a Python value would make pyarrow import pandas
# (contract/arrays.py)
_APOSTROPHE, _NOTHING = scalar("'", pa.string()), scalar("", pa.string())
OUTPUT_FILES = (
    "person_month.parquet",
    "unit_month.parquet",
    "unit_ranking.csv",
    "violations.csv",
    "review.csv",
    "hr_ratings.csv",
    "hr_ratings.xlsx",
    "report.html",
    "report.pdf",
)


# person_month's columns that exist only for a month the mail log covers (the data
# dictionary's "Mail log" columns); without it the table is the one it always was
MAIL_LOG_COLUMNS = ("sent_folder", "sent_submitted", "sent_folder_logged", "submission_days")
# violations.csv / review.csv: where each piece of evidence came from, and its queue id
MAIL_LOG_EVIDENCE = ("evidence_source", "queue_id")


class MonthNotCollected(Exception):
    """No night of the month was collected for any roster mailbox: rating everyone
    "inactive" from no data would be wrong, so there is nothing to evaluate."""


@dataclass(frozen=True)
class EvaluationInputs:
    data_dir: Path
    people: Sequence[Person]
    timezone: str
    official_domains: tuple[str, ...]
    policy: Policy
    waivers: Sequence[Waiver] = ()
    public_domains_extra: tuple[str, ...] = ()
    letterhead: Letterhead = field(default_factory=Letterhead)
    # What each source measures (Config.signals()); the first is the source of roster rows
    # that name none. A source missing here measures no login and no forwarding: unknown.
    signals: Mapping[str, Signals] = field(default_factory=dict)
    # the unit tree (contract/units.py); None: the roster's units, one flat level
    units: UnitTree | None = None

    def tree(self) -> UnitTree:
        """The unit tree the figures are summed over."""
        return self.units if self.units is not None else UnitTree.flat(self.people)

    def signals_of(self, person: Person) -> Signals | None:
        """What the person's source measures (None: a source this run does not know)."""
        name = person.source or next(iter(self.signals), None)
        return self.signals.get(name) if name is not None else None


@dataclass
class EvaluationResult:
    month: str
    person_month: pa.Table
    unit_ranking: pa.Table
    violations: pa.Table
    hr_rows: list[dict[str, Any]]
    coverage: pa.Table
    regular_share_prev: float | None
    # every unit of the tree: own and subtree figures, rank among siblings, head (unit_month.sql)
    unit_month: pa.Table
    paths: dict[str, Path] = field(default_factory=dict)
    # the mail log covered this month for some roster source (MAIL_LOG_COLUMNS are there)
    mail_logs: bool = False


def roster_table(
    people: Sequence[Person], signals: Callable[[Person], Signals | None] | None = None
) -> pa.Table:
    """The roster as the SQL sees it (bound as data, never as SQL text), with what each
    person's source measures: logins and forwarding are unknown without ``signals``."""
    measures = [signals(p) if signals else None for p in people]
    columns: dict[str, list[Any]] = {
        "employee_id": [p.employee_id for p in people],
        "full_name": [p.full_name for p in people],
        "email": [p.email for p in people],
        "unit_code": [p.unit_code for p in people],
        "unit_name": [p.unit_name for p in people],
        "is_unit_mailbox": [p.is_unit_mailbox for p in people],
        "personal_emails": [list(p.personal_emails) for p in people],
        "on_leave": [p.on_leave for p in people],
        "start_date": [p.start_date for p in people],
        "mailbox_issued": [p.mailbox_issued for p in people],
        "logins_measured": [bool(m and m.logins) for m in measures],
        "forwarding_measured": [bool(m and m.forwarding) for m in measures],
        "submissions_measured": [bool(m and m.submissions) for m in measures],
    }
    schema = pa.schema(
        [
            ("employee_id", pa.string()),
            ("full_name", pa.string()),
            ("email", pa.string()),
            ("unit_code", pa.string()),
            ("unit_name", pa.string()),
            ("is_unit_mailbox", pa.bool_()),
            ("personal_emails", pa.list_(pa.string())),
            ("on_leave", pa.bool_()),
            ("start_date", pa.date32()),
            ("mailbox_issued", pa.bool_()),
            ("logins_measured", pa.bool_()),
            ("forwarding_measured", pa.bool_()),
            ("submissions_measured", pa.bool_()),
        ]
    )
    return from_columns(columns, schema)


def evaluate_month(
    inputs: EvaluationInputs, month: str, *, out_dir: Path | None = None, lang: str = "vi"
) -> EvaluationResult:
    check_month(month)
    if lang not in LANGS:
        raise ValueError(f"lang must be one of {LANGS}")
    if out_dir is None:
        return _evaluate(inputs, month, lang)
    # report.pdf's own process starts importing WeasyPrint now, on the other core, while
    # this one computes the month (analytics/pdf.py)
    with PdfRenderer() as pdf:
        result = _evaluate(inputs, month, lang)
        result.paths = _write(result, out_dir / month, inputs, lang, pdf)
    return result


def _evaluate(inputs: EvaluationInputs, month: str, lang: str) -> EvaluationResult:
    """The month's tables: usage per person, ranking, violations, HR rows, coverage."""
    policy = inputs.policy
    roster = roster_table(inputs.people, inputs.signals_of)
    logs = mail_log_files(inputs, month, roster)
    ws = Workspace.open(
        inputs.data_dir,
        roster,
        official=list(inputs.official_domains),
        public=public_domains(inputs.public_domains_extra),
        registration=list(policy.registration_domains),
        nights=month_nights(month),
        mail_logs=logs,
    )
    usage = {
        "regular_days": policy.regular_min_active_days,
        "occasional_days": policy.occasional_min_active_days,
    }
    params = month_params(month, inputs.timezone)
    prev = ws.run("person_month", **month_params(previous_month(month), inputs.timezone), **usage)
    ws.register("person_month_prev", prev)
    person_month = ws.materialise("person_month", **params, **usage)
    if not pc.max(person_month["nights_collected"]).as_py():
        raise MonthNotCollected(
            f"no night of {month} was collected for any roster mailbox in "
            f"{inputs.data_dir}: nothing to evaluate (wrong month, or data directory?)"
        )
    ws.materialise("counterpart_addresses", **params)
    counterparts = ws.run("counterparts")
    ranking = ws.run("unit_ranking", min_nights_collected=policy.min_nights_collected)
    violations = ws.run(
        "violations",
        **params,
        mandatory_use=policy.mandatory_use,
        min_nights_collected=policy.min_nights_collected,
        suspected_min_mailboxes=policy.suspected_min_mailboxes,
        suspected_min_units=policy.suspected_min_units,
    )
    violations = _apply_confidence(violations, policy)
    coverage = ws.run("coverage", **params)
    person_month = _with_counterparts(person_month, counterparts)
    if not logs:  # exactly the tables of an evaluation without mail logs
        person_month = person_month.drop_columns(list(MAIL_LOG_COLUMNS))
        violations = violations.drop_columns(list(MAIL_LOG_EVIDENCE))
    hr_rows = _hr_rows(inputs, month, person_month, violations, lang)
    ws.load_units(inputs.tree())
    unit_month = ws.run("unit_month", rated_classes=sorted(RATED_CLASSES))
    return EvaluationResult(
        month,
        person_month,
        ranking,
        violations,
        hr_rows,
        coverage,
        _regular_share(prev),
        unit_month,
        mail_logs=bool(logs),
    )


def mail_log_files(inputs: EvaluationInputs, month: str, roster: pa.Table) -> list[Path]:
    """The ``mail_log_deliveries`` files the month reads, or none: the mail log is used
    only when a roster person's source submits through it (``Signals.submissions``, from
    the config's ``[[mail_logs]]``) and the store holds a file of a night covering the
    month. Otherwise the month is evaluated exactly as without mail logs."""
    if not any(roster["submissions_measured"].to_pylist()):
        return []
    files = dataset_files(inputs.data_dir, MAIL_LOGS, *mail_log_nights(month))
    return files if covering_nights(files, month) else []


def rated(pm: pa.Table) -> pa.Table:
    """The people a share of regular users is of: not unit mailboxes, with a mailbox
    collected on at least one night of the month (as in the ranking, report and CLI)."""
    return pm.filter(
        pc.and_(
            pc.invert(pm["is_unit_mailbox"]),
            pc.is_in(pm["usage_class"], array(sorted(RATED_CLASSES), pa.string())),
        )
    )


def _regular_share(pm: pa.Table) -> float | None:
    """Regular users among the rated people; None without data (unknown, not 0%)."""
    return regular_share(rated(pm)["usage_class"].to_pylist())


def _apply_confidence(violations: pa.Table, policy: Policy) -> pa.Table:
    """Codes the policy trusts only as "suspected" go to the review list, whatever the rule."""
    downgrade = [c for c, rule in policy.codes.items() if rule.suspected_only]
    if not downgrade:
        return violations
    mask = pc.is_in(violations["code"], array(downgrade, pa.string()))
    confidence = pc.if_else(mask, scalar("suspected", pa.string()), violations["confidence"])
    index = violations.schema.get_field_index("confidence")
    return violations.set_column(index, "confidence", confidence)


def _with_counterparts(pm: pa.Table, cp: pa.Table) -> pa.Table:
    by_mailbox = {r["mailbox"]: r for r in cp.to_pylist()}
    for col in ("msgs_official", "msgs_public", "msgs_other", "public_addresses"):
        values = [by_mailbox.get(m, {}).get(col, 0) for m in pm["mailbox"].to_pylist()]
        pm = pm.append_column(col, array(values, pa.int64()))
    return pm


def _hr_rows(
    inputs: EvaluationInputs, month: str, pm: pa.Table, violations: pa.Table, lang: str
) -> list[dict[str, Any]]:
    """One row per roster person (unit mailboxes are not people)."""
    policy = inputs.policy
    confirmed: dict[str, list[dict[str, Any]]] = defaultdict(list)  # employee -> evidence
    mine = violations.filter(pc.equal(violations["confidence"], scalar("confirmed", pa.string())))
    local = pa.timestamp("s", tz=inputs.timezone)
    days_local = pc.cast(pc.cast(mine["evidence_date"], local), pa.date32())
    facts = mine.select(["employee_id", "code", "rule", "counterpart", "seen_night"])
    for row in facts.append_column("day", days_local).to_pylist():
        confirmed[row["employee_id"]].append(row)
    waivers = {(w.employee_id, w.code): w for w in inputs.waivers if w.month == month}
    rows = []
    days = days_in(month)
    wanted = ["employee_id", "full_name", "unit_name", "usage_class", "exemption"]
    wanted += ["has_mailbox", "nights_collected", "unmeasured", "active_days"]
    for p in pm.filter(pc.invert(pm["is_unit_mailbox"])).select(wanted).to_pylist():
        evidence = confirmed.get(p["employee_id"], [])
        codes = sorted({e["code"] for e in evidence})
        counting = {c for c in codes if c in policy.codes and policy.codes[c].counts}
        waived = sorted(c for c in counting if (p["employee_id"], c) in waivers)
        cap = policy.cap_for(counting - set(waived))
        rows.append(
            {
                "employee_id": p["employee_id"],
                "full_name": p["full_name"],
                "unit": p["unit_name"],
                "month": month,
                "usage_class": usage_label(p["usage_class"], p["unmeasured"], lang),
                # days of the month with a collected night: a partial month shows here
                "days_collected": f"{p['nights_collected']}/{days}" if p["has_mailbox"] else "",
                "violation_codes": ";".join(codes),
                "violations": "; ".join(code_name(c, lang) for c in codes),
                "max_rating": (cap.vi if lang == "vi" else cap.en) if cap else NO_CAP[lang],
                "reason": "; ".join(
                    _reason(
                        c,
                        _facts(c, [e for e in evidence if e["code"] == c], p, policy, lang),
                        policy,
                        waivers.get((p["employee_id"], c)),
                        lang,
                    )
                    for c in codes
                ),
                "evidence_count": len(evidence),
                "waiver": "; ".join(
                    f"{c}: {waivers[(p['employee_id'], c)].reason} "
                    f"({waivers[(p['employee_id'], c)].approved_by})"
                    for c in waived
                ),
                "exemption": EXEMPTION_LABELS[lang].get(p["exemption"] or "", ""),
                "capped": cap is not None,  # not a column: what the counts are of
            }
        )
    return rows


MAX_LISTED = 3  # addresses or senders named in one reason; the rest are counted


def _day(value: date, lang: str) -> str:
    """``_day(date(2026, 11, 15), "vi")`` -> ``'15/11/2026'``; in English ``'2026-11-15'``."""
    return value.strftime("%d/%m/%Y") if lang == "vi" else value.isoformat()


def _facts(
    code: str, evidence: list[dict[str, Any]], person: dict[str, Any], policy: Policy, lang: str
) -> str:
    """What was seen for one code of one person, in words, from its evidence rows (each
    with ``rule``, ``counterpart``, ``day`` in the agency's zone and ``seen_night``).

    >>> from analytics.policy import load_policy
    >>> row = {"rule": "declared_personal_address", "counterpart": "a@gmail.com",
    ...        "day": date(2026, 11, 15), "seen_night": None}
    >>> _facts("PUBLIC_MAIL_FOR_WORK", [row], {}, load_policy("lien-chieu-2014"), "vi")
    '1 thư trao đổi với địa chỉ cá nhân đã khai báo a@gmail.com, ngày 15/11/2026'
    """
    vi = lang == "vi"
    if code in ("NOT_USING_OFFICIAL_MAIL", "UNIT_MAILBOX_UNATTENDED"):
        active, nights = person.get("active_days") or 0, person.get("nights_collected") or 0
        if code == "UNIT_MAILBOX_UNATTENDED":
            return (
                f"không có thư được đọc hay gửi trong {nights} ngày có dữ liệu"
                if vi
                else f"nothing read or sent on {nights} days with data"
            )
        text = (
            f"{active} ngày có hoạt động (gửi thư, đọc thư hoặc đăng nhập) "
            f"trong {nights} ngày có dữ liệu"
            if vi
            else f"{active} active days (sending, reading or logging in) of {nights} days with data"
        )
        if active:  # below the policy's threshold, yet not none: say which threshold
            need = policy.occasional_min_active_days
            text += f", dưới mức tối thiểu {need} ngày" if vi else f", fewer than {need} required"
        return text
    groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for e in evidence:
        who = (e["counterpart"] or "").lower()
        if code == "OFFICIAL_ADDRESS_REGISTERED":
            who = who.rsplit("@", 1)[-1]  # the sender's domain: one service, many senders
        groups[(e["rule"], who)].append(e)

    def earliest(rows: list[dict[str, Any]]) -> date:
        return min((e["day"] or e["seen_night"] or date.max for e in rows), default=date.max)

    ordered = sorted(groups.items(), key=lambda kv: (earliest(kv[1]), kv[0]))
    clauses = [_clause(code, rule, who, rows, lang) for (rule, who), rows in ordered[:MAX_LISTED]]
    if len(ordered) > MAX_LISTED:
        more = len(ordered) - MAX_LISTED
        clauses.append(f"và {more} địa chỉ khác" if vi else f"and {more} more addresses")
    return ", ".join(clauses)


def _clause(code: str, rule: str, who: str, rows: list[dict[str, Any]], lang: str) -> str:
    """One address (or sender domain) of a code: by which rule, how often, since when."""
    vi, n = lang == "vi", len(rows)
    if rule == "forwarding_rule":  # no message: the night the rule was first seen
        nights = sorted(e["seen_night"] for e in rows if e["seen_night"] is not None)
        text = f"quy tắc chuyển tiếp thư đến {who}" if vi else f"a forwarding rule to {who}"
        if not nights:
            return text
        seen = _day(nights[0], lang)
        return text + (f", phát hiện đêm thu thập {seen}" if vi else f", seen on night {seen}")
    noun = "thư" if vi else f"message{'s' if n > 1 else ''}"
    messages = f"{n} {noun}"
    if rule == "declared_personal_address":
        text = (
            f"{messages} trao đổi với địa chỉ cá nhân đã khai báo {who}"
            if vi
            else f"{messages} with the declared personal address {who}"
        )
    elif code == "OFFICIAL_ADDRESS_REGISTERED":
        text = f"nhận {messages} từ {who}" if vi else f"{messages} received from {who}"
    elif code == "PUBLIC_CONTACT_IN_DOCUMENT":
        text = f"{who} trong {messages} gửi đi" if vi else f"{who} in {n} sent {noun}"
    else:
        text = f"{messages}: {who}" if who else messages
    days = sorted(e["day"] for e in rows if e["day"] is not None)
    if not days:
        return text
    when = _day(days[0], lang)
    if n > 1:
        return text + (f", lần đầu ngày {when}" if vi else f", first on {when}")
    return text + (f", ngày {when}" if vi else f", on {when}")


def usage_label(usage_class: str, unmeasured: str | None, lang: str) -> str:
    """The class as HR reads it; below "regular", with what the server could not measure
    (the class is then a lower bound, and no violation is confirmed on it).

    >>> usage_label("inactive", "read_activity,logins", "en")
    'inactive (not measurable on this server: read activity, logins)'
    """
    label = CLASS_LABELS[lang][usage_class]
    if not unmeasured or usage_class not in ("occasional", "inactive"):
        return label
    names = ", ".join(UNMEASURED_LABELS[lang][s] for s in unmeasured.split(","))
    if lang == "vi":
        return f"{label} (không đo được trên máy chủ này: {names})"
    return f"{label} (not measurable on this server: {names})"


def _reason(code: str, facts: str, policy: Policy, waiver: Waiver | None, lang: str) -> str:
    """Why a listed code caps the rating or does not, in the reader's language: its name,
    what was seen (``facts``), and whether it counts and up to which rating.

    >>> from analytics.policy import load_policy
    >>> lc = load_policy("lien-chieu-2014")
    >>> _reason("PUBLIC_MAIL_FOR_WORK", "2 messages …", lc, None, "en").split(": ", 1)[1]
    "2 messages … — counts: at most Fairly well completed duties ('good')"
    """
    name = code_name(code, lang)
    basis = policy.title or policy.name
    rule = policy.codes.get(code)
    vi = lang == "vi"
    if waiver is not None and rule is not None and rule.counts:
        why = (
            f"miễn trừ: {waiver.reason} ({waiver.approved_by})"
            if vi
            else f"waived: {waiver.reason} ({waiver.approved_by})"
        )
    elif rule is None or not rule.counts:
        why = f"không tính vào xếp loại theo {basis}" if vi else f"does not count under {basis}"
    elif rule.cap is None:
        why = (
            f"tính vào xếp loại, không có mức giới hạn theo {basis}"
            if vi
            else f"counts, no cap under {basis}"
        )
    else:
        cap = rule.cap.vi if vi else rule.cap.en
        why = f"tính vào xếp loại: tối đa {cap}" if vi else f"counts: at most {cap}"
    return f"{name}: {facts} — {why}" if facts else f"{name} — {why}"


def neutralise(column: pa.ChunkedArray | pa.Array) -> pa.ChunkedArray | pa.Array:
    """A column with a leading apostrophe on text that Excel would run as a formula; other
    types pass through.

    >>> neutralise(pa.array(['=HYPERLINK("http://x")', "An", None])).to_pylist()
    ['\\'=HYPERLINK("http://x")', 'An', None]
    """
    if not pa.types.is_string(column.type):
        return column
    risky = functools.reduce(pc.or_, (pc.starts_with(column, p) for p in _FORMULA_START))
    quoted = pc.binary_join_element_wise(_APOSTROPHE, column, _NOTHING)
    return pc.if_else(risky, quoted, column)


def _csv_bytes(columns: Sequence[str], table: pa.Table, lang: str) -> bytes:
    """Header row, then the table's columns in this order; null is an empty cell. The rows
    are written by Arrow's CSV writer, which quotes all text: 60,000 evidence rows in
    ~30 ms, where Python's csv module took ~0.2 s."""
    empty = pa.nulls(table.num_rows, pa.string())
    out = pa.table(
        [neutralise(table[c]) if c in table.column_names else empty for c in columns],
        names=list(columns),
    )
    header = io.StringIO()
    csv.writer(header, lineterminator="\r\n").writerow([HEADERS[c][lang] for c in columns])
    sink = pa.BufferOutputStream()
    sink.write(("\ufeff" + header.getvalue()).encode("utf-8"))  # BOM: Excel reads UTF-8
    pa_csv.write_csv(out, sink, pa_csv.WriteOptions(include_header=False, eol="\r\n"))
    return bytes(sink.getvalue().to_pybytes())


def _mapped(column: pa.ChunkedArray | pa.Array, words: Callable[[Any], str]) -> pa.Array:
    """``column`` as text through ``words``, called once per distinct value; null stays null.

    >>> _mapped(pa.array(["yes", None, "yes"]), {"yes": "có"}.get).to_pylist()
    ['có', None, 'có']
    """
    values = pc.drop_null(pc.unique(column))
    text = array([words(v) for v in values.to_pylist()], pa.string())
    return pc.take(text, pc.index_in(column, value_set=values))


def _evidence_table(
    inputs: EvaluationInputs, violations: pa.Table, confidence: str, lang: str = "en"
) -> pa.Table:
    """The evidence of one confidence with the person's name and unit, whether it counts
    toward the cap, and its time in the agency's zone (ISO 8601 with the offset);
    ``confidence``, ``counts`` and ``rule`` in ``lang`` (``code`` stays the stable code)."""
    mine = violations.filter(pc.equal(violations["confidence"], scalar(confidence, pa.string())))
    ids = array([p.employee_id for p in inputs.people], pa.string())
    where = pc.index_in(mine["employee_id"], value_set=ids)

    def roster(values: list[str]) -> pa.ChunkedArray | pa.Array:
        return pc.fill_null(pc.take(array(values, pa.string()), where), _NOTHING)

    counting = [c for c, rule in inputs.policy.codes.items() if rule.counts]
    counts = pc.is_in(mine["code"], value_set=array(counting, pa.string()))
    if confidence != "confirmed":
        counts = pc.and_(counts, scalar(False, pa.bool_()))
    local = pa.timestamp("s", tz=inputs.timezone)
    when = pc.floor_temporal(mine["evidence_date"], unit="second").cast(local)
    counted = pc.fill_null(counts, scalar(False, pa.bool_()))
    counts = pc.if_else(counted, scalar("yes", pa.string()), scalar("no", pa.string()))
    table = (
        mine.append_column("full_name", roster([p.full_name for p in inputs.people]))
        .append_column("unit", roster([p.unit_name for p in inputs.people]))
        .append_column("counts", counts)
        .append_column("date", pc.strftime(when, format="%Y-%m-%dT%H:%M:%S%Ez"))
    )
    words: dict[str, Callable[[Any], str]] = {
        "confidence": lambda v: CONFIDENCE_LABELS.get(lang, {}).get(v, v),
        "counts": lambda v: COUNTS_LABELS[lang][v],
        "rule": lambda v: rule_label(v, lang),
        "seen_night": lambda v: v.isoformat(),
        "evidence_source": lambda v: SOURCE_LABELS.get(lang, {}).get(v, v),
    }
    for name, word in words.items():
        index = table.schema.get_field_index(name)
        if index < 0:  # evidence_source: only with mail logs
            continue
        table = table.set_column(index, name, _mapped(table[name], word))
    return table


def hr_table(rows: Sequence[Mapping[str, Any]]) -> pa.Table:
    """HR rows (:func:`_hr_rows`) as the table the CSV and the workbook are written from."""
    return from_rows(list(rows), _HR_SCHEMA)


def _write(
    result: EvaluationResult, folder: Path, inputs: EvaluationInputs, lang: str, pdf: PdfRenderer
) -> dict[str, Path]:
    paths = {name: folder / name for name in OUTPUT_FILES}
    # the report first: its PDF is laid out in the child while the other files are written
    html = render_report(result, inputs, lang, reports_dir=folder.parent)
    pdf.submit(html)
    sink = pa.BufferOutputStream()
    pq.write_table(result.person_month, sink, compression="zstd")
    atomic_write(paths["person_month.parquet"], sink.getvalue().to_pybytes())
    sink = pa.BufferOutputStream()
    pq.write_table(result.unit_month, sink, compression="zstd")
    atomic_write(paths["unit_month.parquet"], sink.getvalue().to_pybytes())
    atomic_write(paths["unit_ranking.csv"], _csv_bytes(UNIT_COLUMNS, result.unit_ranking, lang))
    columns = EVIDENCE_COLUMNS_MAIL_LOGS if result.mail_logs else EVIDENCE_COLUMNS
    for name, confidence in (("violations.csv", "confirmed"), ("review.csv", "suspected")):
        evidence = _evidence_table(inputs, result.violations, confidence, lang)
        atomic_write(paths[name], _csv_bytes(columns, evidence, lang))
    hr = hr_table(result.hr_rows)
    atomic_write(paths["hr_ratings.csv"], _csv_bytes(HR_COLUMNS, hr, lang))
    title = f"{HEADERS['month'][lang]} {month_label(result.month, lang)}"
    headers = {c: HEADERS[c][lang] for c in HR_COLUMNS}
    sheets = [(names[lang], columns) for names, columns in HR_SHEETS]
    atomic_write(paths["hr_ratings.xlsx"], hr_workbook(hr, headers, sheets, title=title))
    atomic_write(paths["report.html"], html.encode("utf-8"))
    atomic_write(paths["report.pdf"], pdf.result())
    # hr_ratings.csv is "hr_ratings", the workbook "hr_ratings_xlsx"; report.pdf "report_pdf"
    return {
        k.replace(".xlsx", "_xlsx").replace(".pdf", "_pdf").rsplit(".", 1)[0]: v
        for k, v in paths.items()
    }
