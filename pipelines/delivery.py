"""The month's bundles mailed to their recipients over SMTP submission, once each.

A bundle is a directory of evaluation outputs and who receives it (:class:`Bundle`);
:func:`bundles` lists a month's. Each recipient gets one message of their own (its own
Message-ID), in the report's language, naming the agency and the month, with
:data:`ATTACHED`: ``report.pdf`` (the chairman's report), the HR workbook(s)
``hr_ratings*.xlsx`` (the rating input, one per agency once bundles are per scope) and
``violations.csv`` (the confirmed violations with their evidence). Not attached:
``report.html`` (the PDF's text), ``hr_ratings.csv`` (the workbook's rows),
``review.csv`` (suspected only, for the analyst's review, never capped) and
``person_month.parquet`` (for analysts).

What was sent to whom is recorded in the state store (pipelines/outbox.py): a rerun or a
retry sends only what has not gone, per month, bundle and recipient, unless ``resend``.

    >>> report = deliver_month(load_config("mailusage.toml"), "2026-11", dry_run=True)
    >>> [(o.recipient, o.outcome) for o in report.outcomes]
    [('chutich@danang.gov.vn', 'would send'), ('tccb@danang.gov.vn', 'already sent')]
"""

from __future__ import annotations

import calendar
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipelines.config import Config, ConfigError, DeliveryConfig
from pipelines.mailer import Attachment, Mailer, Outgoing, compose
from pipelines.outbox import Outbox, send_recorded
from pipelines.storage import DataDir

# The files of a bundle that are mailed, in this order; a pattern may match several (the
# HR workbooks of a scope with several agencies) and must match at least one.
ATTACHED = ("report.pdf", "hr_ratings*.xlsx", "violations.csv")


@dataclass(frozen=True)
class Bundle:
    """A directory of a month's outputs and who receives it.

    >>> Bundle("all", Path("reports/2026-11"), ("chutich@danang.gov.vn",)).recipients
    ('chutich@danang.gov.vn',)
    """

    name: str  # "all" for the whole roster; a scope's name once scopes make bundles
    directory: Path
    recipients: tuple[str, ...]
    agency: str | None = None  # the name the mail gives (None: the config's agency)


def bundles(cfg: Config, month: str) -> list[Bundle]:
    """The month's bundles: ``reports/YYYY-MM/`` to ``[delivery] recipients`` (when there
    are any, or when no scope is configured), then each ``[[scopes]]`` entry's
    ``reports/YYYY-MM/<scope>/`` to that scope's recipients (a scope without recipients
    is written, not mailed), its mail naming the scope's issuing body.

    >>> bundles(cfg, "2026-11")
    [Bundle(name='all', directory=PosixPath('/var/lib/mailusage/reports/2026-11'), ...)]
    """
    recipients = cfg.delivery.recipients if cfg.delivery is not None else ()
    out = [Bundle("all", cfg.reports_dir / month, recipients)]
    if cfg.scopes and not recipients:
        out = []
    for scope in cfg.scopes:
        if scope.recipients:
            directory = cfg.reports_dir / scope.folder(month)
            agency = scope.letterhead.issuing_body or None
            out.append(Bundle(scope.name, directory, scope.recipients, agency))
    return out


class DeliveryError(Exception):
    """A bundle cannot be sent at all: a file missing, a message too large, no [delivery]."""


@dataclass(frozen=True)
class Outcome:
    """What became of one recipient's message of one bundle."""

    bundle: str
    recipient: str
    # sent | failed | would send | already sent | possibly sent (a killed run's "sending")
    outcome: str
    message_id: str = ""
    detail: str = ""
    transient: bool = False  # failed, and a later try may pass


@dataclass
class DeliveryReport:
    month: str
    outcomes: list[Outcome] = field(default_factory=list)
    # bundle name -> its attachments: (name, bytes, sha256)
    attachments: dict[str, list[tuple[str, int, str]]] = field(default_factory=dict)

    @property
    def failed(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.outcome == "failed"]


def attachments(bundle: Bundle) -> tuple[Attachment, ...]:
    """The bundle's files that are mailed (:data:`ATTACHED`), read whole."""
    out: list[Attachment] = []
    for pattern in ATTACHED:
        found = sorted(bundle.directory.glob(pattern))
        if not found:
            raise DeliveryError(
                f"bundle {bundle.name}: no {pattern} in {bundle.directory}; evaluate the "
                "month first (mailusage evaluate --month YYYY-MM)"
            )
        out += [Attachment(path.name, path.read_bytes()) for path in found]
    return tuple(out)


_ABOUT = {
    "vi": {
        "report.pdf": "báo cáo tình hình sử dụng",
        "hr_ratings": "dữ liệu đầu vào xếp loại (mức xếp loại tối đa và lý do)",
        "violations.csv": "danh sách vi phạm đã xác định, kèm bằng chứng",
    },
    "en": {
        "report.pdf": "the usage report",
        "hr_ratings": "the rating input (the highest rating allowed, and why)",
        "violations.csv": "the confirmed violations, with their evidence",
    },
}


def _month_words(month: str, lang: str) -> str:
    year, number = (int(x) for x in month.split("-"))
    if lang == "vi":
        return f"tháng {number}/{year}"
    return f"{calendar.month_name[number]} {year}"


def message(agency: str, month: str, files: tuple[Attachment, ...], lang: str) -> tuple[str, str]:
    """The subject and body of a bundle's mail.

    >>> message("UBND quận Liên Chiểu", "2026-11", (), "vi")[0]
    'Báo cáo sử dụng thư điện tử công vụ tháng 11/2026 — UBND quận Liên Chiểu'
    """
    when = _month_words(month, lang)
    about = _ABOUT[lang]
    listed = "\n".join(f"- {f.name}: {about.get(f.name) or about['hr_ratings']}" for f in files)
    if lang == "vi":
        subject = f"Báo cáo sử dụng thư điện tử công vụ {when} — {agency}"
        body = (
            f"Kính gửi Quý cơ quan, đơn vị,\n\n"
            f"{agency} gửi kết quả đánh giá tình hình sử dụng hệ thống thư điện tử công vụ "
            f"{when}. Tệp đính kèm:\n{listed}\n\n"
            "Thư này được gửi tự động; đề nghị không trả lời thư này.\n"
        )
    else:
        subject = f"Official mail usage report, {when} — {agency}"
        body = (
            f"{agency} sends the evaluation of official mail use for {when}. Attached:\n"
            f"{listed}\n\nThis message was sent automatically; please do not reply to it.\n"
        )
    return subject, body


def deliver_bundle(
    cfg: Config,
    month: str,
    bundle: Bundle,
    *,
    dry_run: bool = False,
    resend: bool = False,
) -> tuple[list[Outcome], tuple[Attachment, ...]]:
    """Send ``bundle`` to each recipient it has not gone to yet (all with ``resend``)."""
    settings = _settings(cfg)
    files = attachments(bundle)
    agency = bundle.agency or cfg.agency or cfg.letterhead.issuing_body
    subject, body = message(agency, month, files, cfg.language)
    payload = json.dumps(
        [{"name": f.name, "bytes": len(f.data), "sha256": f.sha256} for f in files],
        ensure_ascii=False,
    )
    size = len(
        compose(
            settings.sender, agency, Outgoing("x@x.x", subject, body, files), "<x@x>"
        ).as_bytes()
    )
    box = Outbox(DataDir(cfg.data_dir), "deliveries")
    outcomes: list[Outcome] = []
    todo: list[str] = []
    for rcpt in bundle.recipients:
        done = None if resend else box.done(_key(month, bundle, rcpt))
        if done is None:
            todo.append(rcpt)
            continue
        what = "already sent" if done.outcome == "sent" else "possibly sent"
        detail = (
            f"on {done.finished_at}"
            if done.outcome == "sent"
            else "a run was stopped while sending it: check the recipient's mailbox, "
            "then --resend if it did not arrive"
        )
        outcomes.append(Outcome(bundle.name, rcpt, what, done.message_id, detail))
    if size > settings.max_bytes:
        raise DeliveryError(
            f"bundle {bundle.name}: the message would be {size / 1e6:.1f} MB (attachments "
            f"{', '.join(f.name for f in files)}), above delivery.max_size_mb = "
            f"{settings.max_size_mb:g}; nothing was sent"
        )
    if dry_run:
        return outcomes + [Outcome(bundle.name, r, "would send") for r in todo], files
    if not todo:
        return outcomes, files
    try:
        password = settings.password.resolve()
    except ConfigError as exc:
        raise DeliveryError(f"delivery.password: {exc}") from None
    items = [(_key(month, bundle, r), payload, Outgoing(r, subject, body, files)) for r in todo]
    results = send_recorded(box, items, lambda: Mailer(settings, password), settings.sender, agency)
    outcomes += [
        Outcome(bundle.name, rcpt, r.outcome, r.message_id, r.detail, r.transient)
        for rcpt, r in zip(todo, results, strict=True)
    ]
    return outcomes, files


def _settings(cfg: Config) -> DeliveryConfig:
    if cfg.delivery is None:
        raise DeliveryError(f"{cfg.path}: no [delivery] section: nothing to send through")
    return cfg.delivery


def _key(month: str, bundle: Bundle, recipient: str) -> dict[str, str]:
    return {"month": month, "bundle": bundle.name, "recipient": recipient}


def deliver_month(
    cfg: Config, month: str, *, dry_run: bool = False, resend: bool = False
) -> DeliveryReport:
    """Every bundle of ``month`` to its recipients (see :func:`deliver_bundle`)."""
    report = DeliveryReport(month)
    for bundle in bundles(cfg, month):
        outcomes, files = deliver_bundle(cfg, month, bundle, dry_run=dry_run, resend=resend)
        report.outcomes += outcomes
        report.attachments[bundle.name] = [(f.name, len(f.data), f.sha256) for f in files]
    return report


class DeliveryFailed(Exception):
    """Some message of the month was not sent; ``transient``: a retry may send it."""

    def __init__(self, message: str, *, transient: bool) -> None:
        super().__init__(message)
        self.transient = transient


def check_report(report: DeliveryReport) -> None:
    """Raise :class:`DeliveryFailed` when a recipient's message failed (a flow's task then
    retries when it may help); the messages that went are recorded and not sent again."""
    failed = report.failed
    if failed:
        first = failed[0]
        raise DeliveryFailed(
            f"{len(failed)} message(s) of {report.month} not sent, e.g. {first.bundle} to "
            f"{first.recipient}: {first.detail}",
            transient=any(o.transient for o in failed),
        )


def _retry_when_transient(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect's ``retry_condition_fn``: a refused password or a too-large bundle will
    not pass on a retry; a dropped connection or a 4xx may."""
    return bool(getattr(state.data, "transient", False))


def _deliver_task(config_path: str, month: str, resend: bool = False) -> dict[str, Any]:
    """The delivery step of the evaluate flow: send, record, raise on failure (retried)."""
    from pipelines.config import load_config

    report = deliver_month(load_config(config_path), month, resend=resend)
    check_report(report)
    return summary(report)


def summary(report: DeliveryReport) -> dict[str, Any]:
    counts: dict[str, int] = {}
    for o in report.outcomes:
        counts[o.outcome] = counts.get(o.outcome, 0) + 1
    return {"month": report.month, "outcomes": counts, "attachments": report.attachments}


def delivery_task(cfg: Config) -> Any:
    """The Prefect task of the evaluate flow, its retries from ``[delivery]``."""
    from prefect import task

    settings = _settings(cfg)
    delays: list[float] = [float(d) for d in settings.retry_delay_seconds] or [0.0]
    return task(
        name="deliver",
        retries=settings.retries,
        retry_delay_seconds=delays,
        retry_condition_fn=_retry_when_transient,
    )(_deliver_task)
