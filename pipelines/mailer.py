"""Mail out over SMTP submission: STARTTLS, then AUTH, one connection for a run's messages,
at most so many a minute. The standard library only (smtplib, email, ssl).

    >>> with Mailer(cfg.delivery, password) as mailer:
    ...     mailer.send(compose(cfg.delivery.sender, "UBND quận Liên Chiểu", out, msgid))

A failure is a :class:`SendFailed` saying what the server answered and whether trying
again later can help (``transient``: a 4xx, a dropped connection) or not (a refused login,
a refused recipient, a message above the server's SIZE). No password is ever in it.
"""

from __future__ import annotations

import hashlib
import smtplib
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from email.header import Header
from email.message import EmailMessage
from email.utils import formatdate
from types import TracebackType

from pipelines.config import DeliveryConfig

# Why these types: each is the one a delivery reads or records, whole (pipelines/delivery.py).
MIME_TYPES = {
    ".pdf": ("application", "pdf"),
    ".xlsx": ("application", "vnd.openxmlformats-officedocument.spreadsheetml.sheet"),
    ".csv": ("text", "csv"),
}


@dataclass(frozen=True)
class Attachment:
    """One file as it is attached: its name and bytes.

    >>> Attachment("violations.csv", b"a,b\\n").sha256[:12]
    '5be08c9684a1'
    """

    name: str
    data: bytes

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


@dataclass(frozen=True)
class Outgoing:
    """One message to one recipient, before it has a Message-ID."""

    to: str
    subject: str
    body: str
    attachments: tuple[Attachment, ...] = ()


class SendFailed(Exception):
    """The server did not take a message (or the session); ``transient``: a later try may."""

    def __init__(self, message: str, *, transient: bool) -> None:
        super().__init__(message)
        self.transient = transient


def compose(sender: str, sender_name: str, out: Outgoing, message_id: str) -> EmailMessage:
    """The message as sent: UTF-8 text (Vietnamese subject and body), each attachment as
    its own MIME part, base64 (a CSV too: its BOM and CRLFs arrive byte for byte).

    >>> msg = compose("bc@danang.gov.vn", "UBND", Outgoing("a@x.vn", "Báo cáo", "Kính gửi"),
    ...               "<1@danang.gov.vn>")
    >>> msg["Subject"], msg["Message-ID"]
    ('Báo cáo', '<1@danang.gov.vn>')
    """
    msg = EmailMessage()
    msg.set_raw("From", f"{_encoded(sender_name, 'From')} <{sender}>" if sender_name else sender)
    msg["To"] = out.to
    msg.set_raw("Subject", _encoded(out.subject, "Subject"))
    msg["Date"] = formatdate(localtime=False)
    msg["Message-ID"] = message_id
    msg.set_content(out.body, charset="utf-8")
    for item in out.attachments:
        suffix = item.name[item.name.rfind(".") :].lower() if "." in item.name else ""
        maintype, subtype = MIME_TYPES.get(suffix, ("application", "octet-stream"))
        msg.add_attachment(
            item.data, maintype=maintype, subtype=subtype, filename=item.name, cte="base64"
        )
    return msg


def _encoded(text: str, name: str) -> str:
    """``text`` as RFC 2047 encoded words, folded under 78 columns, every space kept.

    Why not ``msg["Subject"] = text``: CPython 3.11's header folder drops the space between
    two encoded words where it folds a long non-ASCII value (seen through Postfix and
    Dovecot: "thư điện tử công vụ" arrived as "thư điện tửcông vụ"); the legacy
    ``email.header.Header`` encodes each space inside a word, and ``set_raw`` stores the
    folded lines as they are (the generator does not fold lines that fit).

    >>> _encoded("Báo cáo tháng 11/2026", "Subject")
    '=?utf-8?b?QsOhbyBjw6FvIHRow6FuZyAxMS8yMDI2?='
    """
    return Header(text, "utf-8", header_name=name).encode(linesep="\n")


class RateLimit:
    """At most ``per_minute`` calls of :meth:`wait` a minute, evenly spaced (the first at
    once). The clock and the sleep are parameters so a test need not wait.

    >>> slept = []
    >>> limit = RateLimit(30, sleep=slept.append, clock=lambda: 100.0)
    >>> limit.wait(); limit.wait(); slept
    [2.0]
    """

    def __init__(
        self,
        per_minute: int | None,
        *,
        sleep: Callable[[float], object] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.interval = 60.0 / per_minute if per_minute else 0.0
        self.sleep, self.clock = sleep, clock
        self.last: float | None = None

    def wait(self) -> None:
        now = self.clock()
        if self.last is not None and self.interval:
            delay = self.last + self.interval - now
            if delay > 0:
                self.sleep(delay)
                now += delay
        self.last = now


class Mailer:
    """One SMTP submission session: connect, STARTTLS (verified against ``ca_file`` or the
    system's CAs), AUTH; then :meth:`send` as often as needed; QUIT on leaving."""

    def __init__(
        self,
        settings: DeliveryConfig,
        password: str,
        *,
        per_minute: int | None = None,
        sleep: Callable[[float], object] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self._password = password
        self.limit = RateLimit(per_minute, sleep=sleep, clock=clock)
        self._smtp: smtplib.SMTP | None = None

    @property
    def where(self) -> str:
        return f"{self.settings.host}:{self.settings.port}"

    def __enter__(self) -> Mailer:
        s = self.settings
        try:
            smtp = smtplib.SMTP(s.host, s.port, timeout=s.timeout)
        except (OSError, smtplib.SMTPException) as exc:
            raise SendFailed(f"cannot connect to {self.where}: {exc}", transient=True) from None
        try:
            smtp.ehlo()
            if not smtp.has_extn("starttls"):
                raise SendFailed(
                    f"{self.where} offers no STARTTLS: the password is not sent in clear "
                    "(delivery.port is the submission port, usually 587)",
                    transient=False,
                )
            context = ssl.create_default_context(cafile=s.ca_file)
            smtp.starttls(context=context)
            smtp.ehlo()
            smtp.login(s.user, self._password)
        except smtplib.SMTPAuthenticationError as exc:
            smtp.close()
            raise SendFailed(
                f"{self.where} refused the login of {s.user}: {exc.smtp_code} "
                f"{_text(exc.smtp_error)} (check delivery.password)",
                transient=False,
            ) from None
        except ssl.SSLError as exc:
            smtp.close()
            raise SendFailed(
                f"{self.where}: TLS failed ({exc.reason or exc}); if the server's certificate "
                "is from the agency's own CA, set delivery.ca_file",
                transient=False,
            ) from None
        except SendFailed:
            smtp.close()
            raise
        except (OSError, smtplib.SMTPException) as exc:
            smtp.close()
            raise SendFailed(f"{self.where}: {_describe(exc)}", transient=_transient(exc)) from None
        self._smtp = smtp
        return self

    @property
    def size_limit(self) -> int | None:
        """The largest message the server takes (its EHLO SIZE), None when it says none."""
        assert self._smtp is not None, "use Mailer as a context manager"
        limit = self._smtp.esmtp_features.get("size", "")
        return int(limit) if limit.isdigit() and int(limit) else None

    def send(self, msg: EmailMessage) -> None:
        """Send one message (waiting its turn under the rate limit)."""
        assert self._smtp is not None, "use Mailer as a context manager"
        limit = self.size_limit
        size = len(msg.as_bytes())
        if limit is not None and size > limit:
            raise SendFailed(
                f"{self.where} takes messages up to {limit:,} bytes (its SIZE); this one "
                f"is {size:,}",
                transient=False,
            )
        self.limit.wait()
        try:
            refused = self._smtp.send_message(msg)
        except (OSError, smtplib.SMTPException) as exc:
            raise SendFailed(f"{self.where}: {_describe(exc)}", transient=_transient(exc)) from None
        if refused:  # several recipients, some refused: never the case here (one per message)
            raise SendFailed(f"{self.where} refused {sorted(refused)}", transient=False)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._smtp is not None:
            try:
                self._smtp.quit()
            except (OSError, smtplib.SMTPException):
                self._smtp.close()
            self._smtp = None


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        return "; ".join(
            f"{rcpt} refused: {code} {_text(text)}" for rcpt, (code, text) in exc.recipients.items()
        )
    if isinstance(exc, smtplib.SMTPResponseException):
        return f"{exc.smtp_code} {_text(exc.smtp_error)}"
    return f"{type(exc).__name__}: {exc}"


def _transient(exc: BaseException) -> bool:
    """A 4xx reply or a dropped connection may pass; a 5xx will not (RFC 5321 §4.2.1)."""
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        return all(400 <= code < 500 for code, _ in exc.recipients.values())
    if isinstance(exc, smtplib.SMTPResponseException):
        return 400 <= exc.smtp_code < 500
    return isinstance(exc, OSError | smtplib.SMTPServerDisconnected)
