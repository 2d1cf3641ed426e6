"""Reminders before the caps ("đôn đốc, nhắc nhở"): on the configured days of the month,
each unit head gets the list of their unit's staff not yet active this month so far
(analytics/standing.py: days active, last login; "unknown" where a signal is missing,
never "inactive"), and — with ``notify_staff`` — each inactive person a short note.

A head's message holds only their own unit's people. Messages go through ``[delivery]``'s
server, at most ``rate_per_minute`` a minute, and each is recorded in the state store
(``reminders``: who, when, which day), so a rerun the same day sends nothing new.

Heads come from :func:`unit_heads`: for now ``[reminders] heads`` in the config (unit code
-> address); the unit tree replaces it by returning each unit's head the same way.

Deployment: every day at 08:00 Asia/Ho_Chi_Minh (prefect.yaml's ``daily-remind``); a day
not in ``reminders.days`` does nothing. Prefect is imported only for the flow.

    >>> report = run_reminders(cfg, date(2026, 11, 15), dry_run=True)
    >>> [(m.unit_code, m.recipient, m.outcome) for m in report.messages]
    [('A', 'truong.a@danang.gov.vn', 'would send'), ('B', 'truong.b@danang.gov.vn', 'would send')]
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from contract.people import Person
from contract.units import load_tree
from pipelines.config import Config, ConfigError, ReminderConfig, load_config
from pipelines.delivery import DeliveryFailed, _retry_when_transient
from pipelines.mailer import Mailer, Outgoing
from pipelines.outbox import Outbox, send_recorded
from pipelines.storage import DataDir


@dataclass(frozen=True)
class UnitHead:
    """A unit and where its head's reminders go."""

    unit_code: str
    unit_name: str
    addresses: tuple[str, ...]


def unit_heads(cfg: Config, people: Sequence[Person]) -> list[UnitHead]:
    """Each unit with staff and a head to remind: the unit tree's ``head_email``
    (``[roster] units``), and ``[reminders] heads`` (unit code -> addresses), which wins
    for the units it names.

    >>> unit_heads(cfg, people)
    [UnitHead(unit_code='A', unit_name='UBND phường Hòa Minh', addresses=('truong.a@…',))]
    """
    settings = _settings(cfg)
    names = {p.unit_code: p.unit_name for p in people}
    unknown = sorted(set(settings.heads) - set(names))
    if unknown:
        raise ConfigError(
            f"reminders.heads.{unknown[0]}: no unit {unknown[0]!r} in the roster "
            f"(its unit codes: {', '.join(sorted(names)) or 'none'})"
        )
    heads = dict(settings.heads)
    if cfg.units_path is not None:
        tree = load_tree(cfg.units_path, people, cfg.roster_path)
        for code, unit in tree.units.items():
            if unit.head_email and code in names:  # a unit with staff of its own
                heads.setdefault(code, (unit.head_email,))
    return [UnitHead(code, names[code], heads[code]) for code in sorted(heads)]


def _settings(cfg: Config) -> ReminderConfig:
    if cfg.reminders is None:
        raise ConfigError(f"{cfg.path}: no [reminders] section")
    return cfg.reminders


@dataclass(frozen=True)
class Planned:
    """One reminder: to a head (``kind = "head"``, the unit's list) or to a person
    (``"staff"``, their own note)."""

    kind: str
    unit_code: str
    recipient: str
    people: tuple[str, ...]  # employee ids the message names
    message: Outgoing


@dataclass(frozen=True)
class Sent:
    kind: str
    unit_code: str
    recipient: str
    people: tuple[str, ...]
    outcome: str  # sent | failed | would send | already sent | possibly sent
    message_id: str = ""
    detail: str = ""
    transient: bool = False


@dataclass
class ReminderReport:
    day: date
    reminder_day: bool  # the day is one of reminders.days
    messages: list[Sent] = field(default_factory=list)
    units_without_head: list[str] = field(default_factory=list)

    @property
    def failed(self) -> list[Sent]:
        return [m for m in self.messages if m.outcome == "failed"]


_WORDS = {
    "vi": {
        "head_subject": "Nhắc nhở sử dụng thư điện tử công vụ tháng {m} — {unit}",
        "greeting": "Kính gửi: Thủ trưởng {unit},",
        "intro": (
            "Tính đến hết ngày {last} (theo dữ liệu thu thập hằng đêm), các cán bộ, công "
            "chức sau của đơn vị chưa sử dụng hệ thống thư điện tử công vụ trong tháng {m}:"
        ),
        "unknown_intro": (
            "Chưa xác định được (thiếu dữ liệu — không phải là chưa sử dụng; đề nghị kiểm tra):"
        ),
        "line": "{n}. {name} ({id}) — {email} — số ngày hoạt động: {days} — đăng nhập gần nhất: "
        "{login}",
        "unknown_line": "{n}. {name} ({id}) — {email} — {why}",
        "ask": (
            "Người không sử dụng thư điện tử công vụ trong tháng có thể bị giới hạn mức xếp "
            "loại cuối tháng. Đề nghị đồng chí đôn đốc, nhắc nhở cán bộ thuộc đơn vị sử dụng "
            "thư điện tử công vụ trong công việc."
        ),
        "auto": "Thư này được gửi tự động; đề nghị không trả lời thư này.",
        "no_login": "chưa ghi nhận",
        "login_unknown": "không đo được",
        "not_collected": "chưa thu thập được dữ liệu hộp thư trong tháng",
        "logins": "máy chủ không cho biết lần đăng nhập",
        "read_activity": "máy chủ không đếm được việc đọc thư",
        "staff_subject": "Nhắc nhở sử dụng thư điện tử công vụ tháng {m}",
        "staff_body": (
            "Kính gửi đồng chí {name},\n\n"
            "Tính đến hết ngày {last}, hệ thống chưa ghi nhận đồng chí sử dụng hộp thư công "
            "vụ {email} trong tháng {m}. Đề nghị đồng chí sử dụng thư điện tử công vụ trong "
            "công việc (đăng nhập, đọc và gửi thư) theo quy định.\n\n"
        ),
    },
    "en": {
        "head_subject": "Reminder: official mail use, {m} — {unit}",
        "greeting": "To the head of {unit},",
        "intro": (
            "Up to the end of {last} (from the nights collected), these staff of your unit "
            "have not used official mail in {m}:"
        ),
        "unknown_intro": "Not known (data missing — not the same as unused; please check):",
        "line": "{n}. {name} ({id}) — {email} — active days: {days} — last login: {login}",
        "unknown_line": "{n}. {name} ({id}) — {email} — {why}",
        "ask": (
            "Staff who do not use official mail in the month may have their monthly rating "
            "capped. Please remind them to use official mail for their work."
        ),
        "auto": "This message was sent automatically; please do not reply to it.",
        "no_login": "none recorded",
        "login_unknown": "not measured",
        "not_collected": "their mailbox was not collected this month",
        "logins": "the server does not say when they log in",
        "read_activity": "the server cannot count their reading",
        "staff_subject": "Reminder: official mail use, {m}",
        "staff_body": (
            "Dear {name},\n\n"
            "Up to the end of {last}, no use of your official mailbox {email} has been "
            "recorded in {m}. Please use official mail for your work (log in, read and send) "
            "as required.\n\n"
        ),
    },
}


def _login(row: dict[str, Any], tz: ZoneInfo, words: dict[str, str]) -> str:
    if not row["logins_measured"]:
        return words["login_unknown"]
    when = row["last_login"]
    if when is None:
        return words["no_login"]
    return str(when.astimezone(tz).strftime("%d/%m/%Y %H:%M"))


def _why(row: dict[str, Any], words: dict[str, str]) -> str:
    if row["usage_class"] == "not_collected":
        return words["not_collected"]
    return "; ".join(words[what] for what in (row["unmeasured"] or "").split(",") if what)


def head_message(
    unit_name: str, rows: list[dict[str, Any]], day: date, tz: ZoneInfo, lang: str
) -> Outgoing:
    """One head's reminder: their unit's not-yet-active people (``rows``, one unit's)."""
    w = _WORDS[lang]
    month = f"{day.month}/{day.year}" if lang == "vi" else day.strftime("%B %Y")
    last = _last_day(day)
    inactive = [r for r in rows if r["standing"] == "inactive"]
    unknown = [r for r in rows if r["standing"] == "unknown"]
    parts = [w["greeting"].format(unit=unit_name), ""]
    if inactive:
        parts.append(w["intro"].format(last=last, m=month))
        parts += [
            w["line"].format(
                n=i,
                name=r["full_name"],
                id=r["employee_id"],
                email=r["mailbox"],
                days=r["active_days"],
                login=_login(r, tz, w),
            )
            for i, r in enumerate(inactive, 1)
        ]
        parts.append("")
    if unknown:
        parts.append(w["unknown_intro"])
        parts += [
            w["unknown_line"].format(
                n=i, name=r["full_name"], id=r["employee_id"], email=r["mailbox"], why=_why(r, w)
            )
            for i, r in enumerate(unknown, 1)
        ]
        parts.append("")
    parts += [w["ask"], "", w["auto"], ""]
    subject = w["head_subject"].format(m=month, unit=unit_name)
    return Outgoing("", subject, "\n".join(parts))


def staff_message(row: dict[str, Any], day: date, lang: str) -> Outgoing:
    """A person's own short note (only to the measured inactive, never to the unknown)."""
    w = _WORDS[lang]
    month = f"{day.month}/{day.year}" if lang == "vi" else day.strftime("%B %Y")
    body = (
        w["staff_body"].format(
            name=row["full_name"], last=_last_day(day), email=row["mailbox"], m=month
        )
        + w["auto"]
        + "\n"
    )
    return Outgoing(row["mailbox"], w["staff_subject"].format(m=month), body)


def _last_day(day: date) -> str:
    """The last day the window covers (the day before ``day``), as dd/mm/yyyy."""
    return (day - timedelta(days=1)).strftime("%d/%m/%Y")


def plan(cfg: Config, day: date) -> tuple[list[Planned], list[str]]:
    """The day's reminders, and the units with people to remind but no head to tell."""
    from analytics.standing import month_so_far, not_yet_active
    from pipelines.evaluate import evaluation_inputs

    settings = _settings(cfg)
    inputs = evaluation_inputs(cfg)
    heads = {h.unit_code: h for h in unit_heads(cfg, inputs.people)}
    rows = not_yet_active(month_so_far(inputs, day))
    by_unit: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_unit.setdefault(row["unit_code"], []).append(row)
    out: list[Planned] = []
    for code, unit_rows in sorted(by_unit.items()):
        head = heads.get(code)
        if head is None:
            continue
        message = head_message(head.unit_name, unit_rows, day, cfg.tz, cfg.language)
        ids = tuple(r["employee_id"] for r in unit_rows)
        for address in head.addresses:
            out.append(Planned("head", code, address, ids, _to(message, address)))
    if settings.notify_staff:
        for row in rows:
            if row["standing"] == "inactive" and row["mailbox"]:
                note = staff_message(row, day, cfg.language)
                out.append(
                    Planned("staff", row["unit_code"], row["mailbox"], (row["employee_id"],), note)
                )
    headless = sorted(set(by_unit) - set(heads))
    return out, headless


def _to(message: Outgoing, address: str) -> Outgoing:
    return Outgoing(address, message.subject, message.body, message.attachments)


def run_reminders(
    cfg: Config,
    day: date,
    *,
    dry_run: bool = False,
    sleep: Callable[[float], object] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> ReminderReport:
    """Send ``day``'s reminders not sent yet (nothing on a day not in ``reminders.days``)."""
    settings = _settings(cfg)
    report = ReminderReport(day, day.day in settings.days)
    if not report.reminder_day:
        return report
    planned, report.units_without_head = plan(cfg, day)
    box = Outbox(DataDir(cfg.data_dir), "reminders")
    todo: list[Planned] = []
    for p in planned:
        done = box.done(_key(day, p))
        if done is None:
            todo.append(p)
        else:
            what = "already sent" if done.outcome == "sent" else "possibly sent"
            report.messages.append(
                Sent(
                    p.kind,
                    p.unit_code,
                    p.recipient,
                    p.people,
                    what,
                    done.message_id,
                    f"on {done.finished_at}"
                    if done.outcome == "sent"
                    else "a run was stopped while sending it: not sent again",
                )
            )
    if dry_run:
        report.messages += [
            Sent(p.kind, p.unit_code, p.recipient, p.people, "would send") for p in todo
        ]
        return report
    if not todo:
        return report
    delivery = cfg.delivery
    assert delivery is not None  # load_config requires [delivery] with [reminders]
    password = delivery.password.resolve()
    items = [(_key(day, p), json.dumps(list(p.people)), p.message) for p in todo]
    results = send_recorded(
        box,
        items,
        lambda: Mailer(
            delivery, password, per_minute=settings.rate_per_minute, sleep=sleep, clock=clock
        ),
        delivery.sender,
        cfg.agency or cfg.letterhead.issuing_body,
    )
    report.messages += [
        Sent(
            p.kind,
            p.unit_code,
            p.recipient,
            p.people,
            r.outcome,
            r.message_id,
            r.detail,
            r.transient,
        )
        for p, r in zip(todo, results, strict=True)
    ]
    return report


def _key(day: date, p: Planned) -> dict[str, str]:
    return {
        "day": day.isoformat(),
        "kind": p.kind,
        "unit_code": p.unit_code,
        "recipient": p.recipient,
    }


def check_report(report: ReminderReport) -> None:
    """Raise :class:`~pipelines.delivery.DeliveryFailed` when a reminder failed."""
    failed = report.failed
    if failed:
        first = failed[0]
        raise DeliveryFailed(
            f"{len(failed)} reminder(s) of {report.day} not sent, e.g. to {first.recipient}: "
            f"{first.detail}",
            transient=any(m.transient for m in failed),
        )


def summary(report: ReminderReport) -> dict[str, Any]:
    counts: dict[str, int] = {}
    for m in report.messages:
        counts[m.outcome] = counts.get(m.outcome, 0) + 1
    return {
        "day": report.day.isoformat(),
        "reminder_day": report.reminder_day,
        "outcomes": counts,
        "units_without_head": report.units_without_head,
    }


def reminder_day(cfg: Config, day: str | None) -> date:
    """``day`` (YYYY-MM-DD), or today in the agency's zone."""
    if day is None:
        return datetime.now(cfg.tz).date()
    return date.fromisoformat(day)


def _send_task(config_path: str, day: str) -> dict[str, Any]:
    report = run_reminders(load_config(config_path), date.fromisoformat(day))
    check_report(report)
    return summary(report)


def _remind_flow(config_path: str, day: str | None = None) -> dict[str, Any]:
    """Reminder flow: on a day of ``reminders.days`` (default today, agency zone), each
    unit head's list, and the opt-in staff notes; the sending a task with retries."""
    from prefect import get_run_logger, task

    cfg = load_config(config_path)
    when = reminder_day(cfg, day)
    if when.day not in _settings(cfg).days:
        get_run_logger().info("%s is not a reminder day (%s)", when, list(_settings(cfg).days))
        return summary(ReminderReport(when, False))
    delivery = cfg.delivery
    assert delivery is not None
    send = task(
        name="send-reminders",
        retries=delivery.retries,
        retry_delay_seconds=[float(d) for d in delivery.retry_delay_seconds] or [0.0],
        retry_condition_fn=_retry_when_transient,
    )(_send_task)
    result: dict[str, Any] = send(config_path, when.isoformat())
    get_run_logger().info("reminders of %s: %s", when, result["outcomes"])
    return result


def __getattr__(name: str) -> Any:
    """``remind``, the Prefect flow (prefect.yaml's ``pipelines/remind.py:remind``), built
    on first use so that importing this module does not import Prefect."""
    if name != "remind":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from prefect import flow

    built = flow(name="remind", log_prints=False)(_remind_flow)
    globals()["remind"] = built
    return built
