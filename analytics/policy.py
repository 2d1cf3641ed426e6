"""Evaluation policies (TOML), rating scales and waivers (the public/official domain lists
are contract.domains').

>>> policy = load_policy("lien-chieu-2014")
>>> policy.cap_for({"PUBLIC_MAIL_FOR_WORK"}).vi
'Hoàn thành khá nhiệm vụ'
"""

from __future__ import annotations

import csv
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from contract import months

PRESETS = Path(__file__).parent / "policies"

CODES = (
    "PUBLIC_MAIL_FOR_WORK",
    "OFFICIAL_ADDRESS_REGISTERED",
    "PUBLIC_CONTACT_IN_DOCUMENT",
    "NOT_USING_OFFICIAL_MAIL",
    "UNIT_MAILBOX_UNATTENDED",
)
# What each code means, for the people who read the outputs (HR, the chairman): vi, en.
CODE_NAMES: dict[str, tuple[str, str]] = {
    "PUBLIC_MAIL_FOR_WORK": (
        "Dùng thư điện tử công cộng cho công việc",
        "Public mail used for official work",
    ),
    "OFFICIAL_ADDRESS_REGISTERED": (
        "Dùng địa chỉ công vụ đăng ký dịch vụ trực tuyến",
        "Official address used to register online services",
    ),
    "PUBLIC_CONTACT_IN_DOCUMENT": (
        "Văn bản ghi địa chỉ thư công cộng làm đầu mối liên hệ",
        "Document giving a public address as the contact",
    ),
    "NOT_USING_OFFICIAL_MAIL": (
        "Không sử dụng hộp thư công vụ",
        "Official mailbox not used",
    ),
    "UNIT_MAILBOX_UNATTENDED": (
        "Hộp thư đơn vị không có người theo dõi",
        "Unit mailbox nobody attends",
    ),
}


def code_name(code: str, lang: str) -> str:
    """``code_name("NOT_USING_OFFICIAL_MAIL", "vi")`` -> ``'Không sử dụng hộp thư công vụ'``;
    an unknown code is shown as it is."""
    vi, en = CODE_NAMES.get(code, (code, code))
    return vi if lang == "vi" else en


@dataclass(frozen=True)
class Rating:
    vi: str
    en: str


# Best first. Nghị định 90/2020/NĐ-CP (annual quality rating of officials), and the monthly
# scale agencies use for monthly ratings, which has the "khá" step the Liên Chiểu cap names.
SCALES: dict[str, tuple[Rating, ...]] = {
    "nd90": (
        Rating("Hoàn thành xuất sắc nhiệm vụ", "Excellently completed duties"),
        Rating("Hoàn thành tốt nhiệm vụ", "Well completed duties"),
        Rating("Hoàn thành nhiệm vụ", "Completed duties"),
        Rating("Không hoàn thành nhiệm vụ", "Did not complete duties"),
    ),
    "monthly": (
        Rating("Hoàn thành xuất sắc nhiệm vụ", "Excellently completed duties"),
        Rating("Hoàn thành tốt nhiệm vụ", "Well completed duties"),
        Rating("Hoàn thành khá nhiệm vụ", "Fairly well completed duties ('good')"),
        Rating("Hoàn thành nhiệm vụ", "Completed duties"),
        Rating("Không hoàn thành nhiệm vụ", "Did not complete duties"),
    ),
}


class PolicyError(Exception):
    """The policy or waivers file is wrong; the message says where."""


@dataclass(frozen=True)
class CodeRule:
    counts: bool
    cap: Rating | None
    suspected_only: bool = False  # confidence = "suspected": review list only, never capped


@dataclass(frozen=True)
class Policy:
    name: str
    title: str
    mandatory_use: bool
    regular_min_active_days: int
    occasional_min_active_days: int
    min_nights_collected: int
    suspected_min_mailboxes: int
    suspected_min_units: int
    registration_domains: tuple[str, ...]
    scale: tuple[Rating, ...]
    codes: dict[str, CodeRule] = field(default_factory=dict)
    contact_scan: bool = False  # opt-in: read sent documents for public contact addresses
    contact_scan_max_bytes: int = 10 * 1024 * 1024

    def cap_for(self, codes: set[str]) -> Rating | None:
        """The lowest cap among ``codes`` (None: uncapped)."""
        caps = [self.codes[c].cap for c in codes if c in self.codes and self.codes[c].counts]
        ranked = [c for c in caps if c is not None]
        if not ranked:
            return None
        return max(ranked, key=self.scale.index)


def _rating(scale: tuple[Rating, ...], label: str, where: str) -> Rating:
    for r in scale:
        if label in (r.vi, r.en):
            return r
    raise PolicyError(f"{where}: {label!r} is not on the rating scale ({[r.vi for r in scale]})")


def load_policy(name_or_path: str | Path) -> Policy:
    """A preset by name (``lien-chieu-2014``, ``phu-giao-2018``) or a TOML file path."""
    path = Path(name_or_path)
    if not path.suffix:
        path = PRESETS / f"{name_or_path}.toml"
    try:
        raw: dict[str, Any] = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        presets = sorted(p.stem for p in PRESETS.glob("*.toml"))
        raise PolicyError(f"policy {name_or_path!r} not found (presets: {presets})") from exc
    except tomllib.TOMLDecodeError as exc:
        raise PolicyError(f"{path}: not valid TOML: {exc}") from exc
    scale_name = raw.get("rating", {}).get("scale", "monthly")
    if scale_name not in SCALES:
        raise PolicyError(f"{path}: rating.scale must be one of {sorted(SCALES)}")
    scale = SCALES[scale_name]
    codes: dict[str, CodeRule] = {}
    for code, rule in raw.get("codes", {}).items():
        if code not in CODES:
            raise PolicyError(f"{path}: unknown code {code!r} (known: {', '.join(CODES)})")
        cap = rule.get("cap")
        confidence = rule.get("confidence", "confirmed")
        if confidence not in ("confirmed", "suspected"):
            raise PolicyError(f"{path}: codes.{code}.confidence must be confirmed or suspected")
        codes[code] = CodeRule(
            bool(rule.get("counts", True)),
            _rating(scale, cap, f"{path}: codes.{code}.cap") if cap else None,
            confidence == "suspected",
        )
    usage, detection = raw.get("usage", {}), raw.get("detection", {})
    policy = Policy(
        name=raw.get("name", path.stem),
        title=raw.get("title", ""),
        mandatory_use=bool(raw.get("mandatory_use", True)),
        regular_min_active_days=int(usage.get("regular_min_active_days", 8)),
        occasional_min_active_days=int(usage.get("occasional_min_active_days", 1)),
        min_nights_collected=int(detection.get("min_nights_collected", 15)),
        suspected_min_mailboxes=int(detection.get("suspected_min_mailboxes", 3)),
        suspected_min_units=int(detection.get("suspected_min_units", 2)),
        registration_domains=tuple(d.lower() for d in detection.get("registration_domains", [])),
        scale=scale,
        codes=codes,
        contact_scan=bool(raw.get("contact_scan", {}).get("enabled", False)),
        contact_scan_max_bytes=int(raw.get("contact_scan", {}).get("max_bytes", 10 * 1024**2)),
    )
    if not 1 <= policy.occasional_min_active_days <= policy.regular_min_active_days <= 31:
        raise PolicyError(
            f"{path}: need 1 <= occasional_min_active_days <= regular_min_active_days <= 31"
        )
    return policy


@dataclass(frozen=True)
class Waiver:
    employee_id: str
    month: str
    code: str
    reason: str
    approved_by: str


def check_month(month: str) -> str:
    """``"2026-11"`` or PolicyError (contract.months' check, as the evaluation's error):
    months reach SQL only after this check."""
    try:
        return months.check_month(month)
    except months.MonthError as exc:
        raise PolicyError(str(exc)) from None


def load_waivers(path: Path | None) -> list[Waiver]:
    """The waivers CSV (employee_id, month, code, reason, approved_by); absent file: none."""
    if path is None or not path.exists():
        return []
    rows = list(csv.DictReader(path.read_text(encoding="utf-8-sig").splitlines()))
    out, problems = [], []
    for line, row in enumerate(rows, start=2):
        values = {k.strip(): (v or "").strip() for k, v in row.items() if k}
        missing = [
            c
            for c in ("employee_id", "month", "code", "reason", "approved_by")
            if not values.get(c)
        ]
        if missing:
            problems.append(f"line {line}: empty {', '.join(missing)}")
            continue
        if not months.is_month(values["month"]):
            problems.append(f"line {line}: month {values['month']!r} is not YYYY-MM")
        if values["code"] not in CODES:
            problems.append(f"line {line}: unknown code {values['code']!r}")
        out.append(
            Waiver(
                values["employee_id"],
                values["month"],
                values["code"],
                values["reason"],
                values["approved_by"],
            )
        )
    if problems:
        raise PolicyError(f"{path}: " + "; ".join(problems))
    return out
