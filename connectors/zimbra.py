"""Zimbra's own signals: what its IMAP cannot say.

* **Logins** from ``audit.log`` (``security - cmd=Auth; account=…; protocol=imap|soap|…``),
  every login rather than ``zimbraLastLogonTimestamp``'s one a week, read on from a
  cursor across rotations (``audit.log.1``, ``audit.log.2.gz``, ``audit.log.2026-11-22.gz``),
  the collector's own logins left out by its account or address; with the standalone
  ``zimbra-imapd``, IMAP logins from ``imapd-audit.log`` beside it, in the same format.
* **Forwarding** from account attributes — Zimbra has no ManageSieve forwarding:
  ``zimbraPrefMailForwardingAddress`` (the user's), ``zimbraMailForwardingAddress`` (set by
  an admin), ``zimbraPrefMailLocalDeliveryDisabled`` (no copy kept) and the ``redirect``
  actions of the web client's filters (``zimbraMailSieveScript``) — read with the admin
  SOAP API (``GetAccountRequest``) or from a ``zmprov`` export.
* **Quota and mailbox size** from ``GetQuotaUsageRequest`` (one listing a night per mail
  domain, across every mailbox server) when IMAP QUOTA is not answered.

    >>> admin = ZimbraAdmin(ZimbraAdminSettings("https://mail.tiengiang.gov.vn:7071/service/admin/soap",
    ...                                         "admin@tiengiang.gov.vn"), password=lambda: pw)
    >>> admin.forwards("an.nv@tiengiang.gov.vn")
    [Forward(mailbox='an.nv@tiengiang.gov.vn', target='an.nv@gmail.com', ...)]
"""

from __future__ import annotations

import csv
import io
import re
import threading
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape, quoteattr
from zoneinfo import ZoneInfo

import requests

from connectors.base import (
    AuthError,
    Check,
    CredentialsRejected,
    Forward,
    MailboxMissing,
    MailboxSession,
    MailboxSource,
    Quota,
    SourceError,
    TransientError,
)
from connectors.logfiles import LogCursor, LogFileError, LogRead, Seen, iter_lines
from connectors.logins import Login, LoginSourceError
from connectors.settings import IMAPD_AUDIT_LOG as IMAPD_AUDIT_LOG
from connectors.settings import ZimbraAdminSettings as ZimbraAdminSettings
from connectors.settings import imapd_audit_log as imapd_audit_log
from connectors.sieve import redirects

FORWARD_ATTRS = ("zimbraPrefMailForwardingAddress", "zimbraMailForwardingAddress")
NO_COPY_ATTR = "zimbraPrefMailLocalDeliveryDisabled"
SIEVE_ATTR = "zimbraMailSieveScript"  # the web client's filters (Preferences > Filters)
MULTILINE_ATTRS = (SIEVE_ATTR,)

# -- audit.log ------------------------------------------------------------------------------

_AUDIT = re.compile(
    r"^(?P<ts>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)(?:[,.]\d+)?\s+\w+\s+\[[^\]]*\]\s+"
    r"\[(?P<ctx>[^\]]*)\]\s+security - (?P<msg>.*)$"
)


def _fields(text: str, sep: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for part in text.split(sep):
        key, eq, value = part.strip().partition("=")
        if eq:
            out.setdefault(key.strip(), value.strip())
    return out


def parse_audit_line(
    line: str, *, tz: ZoneInfo, source: str, ignore_accounts: set[str], ignore_remote: set[str]
) -> Login | None:
    """A Login from one audit.log line: a successful ``cmd=Auth`` (never AdminAuth, never a
    line with ``error=``), unless the collector's own account or address made it.

    >>> parse_audit_line("2026-11-23 08:15:02,123 INFO  [ImapSSLServer-4] [ip=10.0.0.7;] "
    ...     "security - cmd=Auth; account=an.nv@x.vn; protocol=imap;", tz=ZoneInfo("UTC"),
    ...     source="zimbra", ignore_accounts=set(), ignore_remote=set())
    Login(mailbox='an.nv@x.vn', login_at=datetime.datetime(2026, 11, 23, 8, 15, 2, ...), ...)
    """
    m = _AUDIT.match(line.rstrip("\r\n"))
    if m is None:
        return None
    msg = _fields(m.group("msg"), ";")
    if msg.get("cmd") != "Auth" or "error" in msg or not msg.get("account"):
        return None
    ctx = _fields(m.group("ctx"), ";")
    account = msg["account"].lower()
    actors = {account, msg.get("authId", "").lower(), ctx.get("name", "").lower()}
    if actors & ignore_accounts:
        return None
    remote = ctx.get("oip") or ctx.get("ip") or None
    if {ctx.get("ip"), ctx.get("oip")} & ignore_remote:
        return None
    try:
        local = datetime.fromisoformat(m.group("ts"))
    except ValueError:
        return None
    return Login(
        account, local.replace(tzinfo=tz).astimezone(UTC), msg.get("protocol"), remote, source
    )


def read_audit_log(
    path: Path,
    cursor: LogCursor | None,
    *,
    tz: ZoneInfo,
    source: str,
    ignore_accounts: Iterable[str] = (),
    ignore_remote: Iterable[str] = (),
    seen: Seen | None = None,
) -> tuple[list[Login], LogCursor]:
    """Logins since ``cursor`` and the cursor to save once they are written (``seen``,
    when given: the mailboxes logged in to, a lost rotation, when the log was written).

    Read through the one log reader (:class:`connectors.logfiles.LogRead`): the file read
    last is found again by its first line, wherever rotation moved it and whether or not it
    was compressed; the rest of it is read, then every file rotated after it, then the
    current one. A partial last line waits for the next run.
    """
    accounts = {a.lower() for a in ignore_accounts}
    remote = set(ignore_remote)
    read = LogRead(path, cursor)
    logins: list[Login] = []
    try:
        for piece in read:
            for raw in iter_lines(piece.data):
                login = parse_audit_line(
                    raw.decode("utf-8", "replace"),
                    tz=tz, source=source, ignore_accounts=accounts, ignore_remote=remote,
                )  # fmt: skip
                if login is not None:
                    logins.append(login)
                    if seen is not None:
                        seen.changed.add(login.mailbox)
                        seen.named.add(login.mailbox)
                        seen.dated(login.login_at)
    except LogFileError as exc:
        raise LoginSourceError(str(exc).replace("log file", "audit log", 1)) from exc
    assert read.cursor is not None
    if seen is not None:
        seen.after(read)
    return logins, read.cursor


# -- zmprov exports -------------------------------------------------------------------------


_ATTR_LINE = re.compile(r"([A-Za-z][A-Za-z0-9-]*):(.*)")


def zmprov_accounts(text: str) -> dict[str, dict[str, list[str]]]:
    """Account -> attribute -> values from ``zmprov -l gaa -v`` / ``zmprov ga`` output
    (``# name <address>`` then ``attr: value`` lines) or from a CSV with attribute headers.

    zmprov prints a value as it is (ProvUtil.printAttr: ``attrName + ": " + value``), so the
    later lines of a ``zimbraMailSieveScript`` follow unprefixed; they are kept with it.

    >>> zmprov_accounts("# name an@x.vn\\nzimbraPrefMailForwardingAddress: an@gmail.com\\n")
    {'an@x.vn': {'zimbraPrefMailForwardingAddress': ['an@gmail.com']}}
    """
    first = next((ln for ln in text.splitlines() if ln and not ln.startswith("#")), "")
    if "," in first and ":" not in first.split(",")[0]:
        return _csv_accounts(text)
    out: dict[str, dict[str, list[str]]] = {}
    who: str | None = None
    script: list[str] | None = None  # the multi-line value later lines belong to
    for raw in text.splitlines():
        if raw.startswith("# name "):
            who, script = raw[len("# name ") :].strip().lower(), None
            out.setdefault(who, {})
            continue
        m = _ATTR_LINE.fullmatch(raw.strip())
        if script is not None and (m is None or raw[:1].isspace()):
            script[-1] += "\n" + raw
            continue
        if m is None:
            continue
        key, value = m.group(1), m.group(2).strip()
        script = None
        if key.lower() == "dn" or who is None:
            if key.lower() in ("mail", "zimbramaildeliveryaddress") and who is None:
                who = value.lower()
                out.setdefault(who, {})
            continue
        values = out[who].setdefault(key, [])
        values.append(value)
        if key in MULTILINE_ATTRS:
            script = values
    return out


def _csv_accounts(text: str) -> dict[str, dict[str, list[str]]]:
    """A CSV export: one account a row; a cell lists values separated by commas, but a
    script (``zimbraMailSieveScript``) is one value, commas and newlines included."""
    lines = io.StringIO(text).readlines()
    while lines and lines[0].startswith("#"):  # a comment above the header
        del lines[0]
    out: dict[str, dict[str, list[str]]] = {}
    for row in csv.DictReader(lines):
        attrs = {(k or "").strip(): (v or "").strip() for k, v in row.items()}
        lowered = {k.lower(): v for k, v in attrs.items()}
        who = next(
            (lowered[k] for k in ("name", "mail", "zimbramaildeliveryaddress") if lowered.get(k)),
            None,
        )
        if who:
            out[who.lower()] = {
                k: [v] if k in MULTILINE_ATTRS else [p.strip() for p in v.split(",") if p.strip()]
                for k, v in attrs.items()
                if v
            }
    return out


def forwards_from_attrs(mailbox: str, attrs: dict[str, list[str]]) -> list[Forward]:
    """Forward records from an account's forwarding attributes and filter script.

    >>> forwards_from_attrs("an@x.vn", {"zimbraPrefMailForwardingAddress": ["a@gmail.com"],
    ...                                 "zimbraPrefMailLocalDeliveryDisabled": ["TRUE"]})
    [Forward(mailbox='an@x.vn', target='a@gmail.com', ..., keeps_copy=False, ...)]
    """
    no_copy = any(v.upper() == "TRUE" for v in attrs.get(NO_COPY_ATTR, []))
    out = []
    for attr in FORWARD_ATTRS:
        for value in attrs.get(attr, []):
            for target in re.split(r"[,\s]+", value):
                if "@" in target:
                    # the admin's address keeps a local copy unless delivery is disabled too
                    out.append(Forward(mailbox, target.lower(), attr, not no_copy, False))
    for script in attrs.get(SIEVE_ATTR, []):
        for target, copy, conditional in zimbra_redirects(script):
            out.append(Forward(mailbox, target, SIEVE_ATTR, copy, conditional))
    return out


# -- zimbraMailSieveScript ------------------------------------------------------------------
#
# Zimbra's filters are Sieve with Zimbra's own commands (zm-mailbox
# store/src/java/com/zimbra/cs/filter/SoapToSieve.java writes them): `disabled_if` for a rule
# turned off, `tag` and `flag` actions, tests such as `addressbook`, `me`, `invite`,
# `current_time`. sievelib, which reads Dovecot's scripts (connectors/sieve.py), refuses
# those, so the script is first reduced to what decides forwarding: every `redirect`, in the
# blocks it sits in, each condition replaced by `true`; then sieve.redirects reads that.

_SIEVE_TOKEN = re.compile(
    r"""(?P<skip>\s+|\#[^\n]*|/\*.*?\*/)
      | (?P<word>text:.*?\n\.\r?\n        # a multi-line string (RFC 5228 2.4.2)
               | "(?:[^"\\]|\\.)*"          # a quoted string
               | :?[A-Za-z_][A-Za-z0-9_]*  # an identifier or a :tag
               | \d+[KMGkmg]?
               | [\[\](),])
      | (?P<end>[;{}])""",
    re.S | re.X,
)


@dataclass
class _Command:
    name: str
    args: list[str]  # the tokens between the name and ";" or "{", as written
    block: list[_Command] | None  # the commands in its "{ … }", None for "…;"


def _sieve_tokens(script: str) -> Iterator[str]:
    at = 0
    while at < len(script):
        m = _SIEVE_TOKEN.match(script, at)
        if m is None:
            raise SourceError(f"{SIEVE_ATTR} does not parse near {script[at : at + 30]!r}")
        if m.lastgroup != "skip":
            yield m.group()
        at = m.end()


def _sieve_commands(tokens: Iterator[str], nested: bool = False) -> list[_Command]:
    """RFC 5228's structure: ``name args… ;`` or ``name args… { commands }``."""
    out: list[_Command] = []
    for name in tokens:
        if name == "}" and nested:
            return out
        args: list[str] = []
        for token in tokens:
            if token in (";", "{", "}"):
                break
            args.append(token)
        else:
            token = ""
        if token == "}" or not re.fullmatch(r"[A-Za-z_]\w*", name):
            raise SourceError(f"{SIEVE_ATTR} does not parse at {name!r}")
        block = _sieve_commands(tokens, True) if token == "{" else None
        if token == "" and block is None:
            raise SourceError(f"{SIEVE_ATTR} ends inside {name!r}")
        out.append(_Command(name.lower(), args, block))
    if nested:
        raise SourceError(f"{SIEVE_ATTR} ends inside a block")
    return out


_ALWAYS = (["true"], ["anyof", "(", "true", ")"], ["allof", "(", "true", ")"])


def _forwarding_only(commands: list[_Command]) -> Iterator[str]:
    """Standard Sieve keeping only the redirects and the blocks around them."""
    for cmd in commands:
        if cmd.block is None:
            if cmd.name == "redirect":
                yield " ".join(["redirect", *cmd.args]) + ";"
            continue
        if cmd.name == "disabled_if":  # a rule turned off in the web client never runs
            continue
        inner = list(_forwarding_only(cmd.block))
        if not inner:
            continue
        if cmd.name == "if" and cmd.args in _ALWAYS:  # "every message": no condition
            yield from inner
        else:  # a condition (elsif, else or anything else with a block: conditional too)
            yield "if true {"
            yield from inner
            yield "}"


def zimbra_redirects(script: str) -> list[tuple[str, bool, bool]]:
    """(target, keeps_copy, conditional) for each ``redirect`` a Zimbra filter script runs.

    >>> zimbra_redirects('require ["copy", "tag"];\\n# fw\\nif anyof (header :contains '
    ...     '["subject"] "x") {\\n    redirect :copy "A@gmail.com";\\n    tag "t";\\n}\\n')
    [('a@gmail.com', True, True)]
    """
    kept = list(_forwarding_only(_sieve_commands(_sieve_tokens(script))))
    if not kept:
        return []
    return list(redirects('require ["copy"];\n' + "\n".join(kept)))


class ZimbraExport:
    """Forwarding read from a ``zmprov`` export the operator refreshes (no admin login).
    The file is parsed once while it is unchanged (a `gaa -v` of 6,500 accounts is tens of
    MB: parsed per mailbox, a night would read it 6,500 times); the parse is this object's,
    kept for as long as its source is open."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._parsed: tuple[tuple[int, int], dict[str, dict[str, list[str]]]] | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"ZimbraExport({str(self.path)!r})"

    def accounts(self) -> dict[str, dict[str, list[str]]]:
        try:
            st = self.path.stat()
        except FileNotFoundError as exc:
            raise SourceError(f"zmprov export {self.path} not found") from exc
        stamp = (st.st_mtime_ns, st.st_size)
        with self._lock:
            if self._parsed is None or self._parsed[0] != stamp:
                text = self.path.read_text(encoding="utf-8-sig")
                self._parsed = (stamp, zmprov_accounts(text))
            return self._parsed[1]

    def close(self) -> None:
        """Forget the parse (a night's end)."""
        with self._lock:
            self._parsed = None

    def forwards(self, mailbox: str) -> list[Forward]:
        return forwards_from_attrs(mailbox, self.accounts().get(mailbox.lower(), {}))

    def check_forwarding(self, subject: str, mailbox: str) -> list[Check]:
        """``doctor``: ``mailbox``'s forwarding can be read from the export."""
        return _check_forwarding(self, subject, mailbox, f"zmprov export {self.path}")


def _check_forwarding(
    reader: ZimbraExport | ZimbraAdmin, subject: str, mailbox: str, how: str
) -> list[Check]:
    try:
        rules = reader.forwards(mailbox)
    except SourceError as exc:
        return [Check(subject, "zimbra-forwarding", "fail", f"{how}: {exc.reason}")]
    detail = f"{how}: {len(rules)} forwarding address(es) of {mailbox}"
    return [Check(subject, "zimbra-forwarding", "ok", detail)]


# -- the admin SOAP API ---------------------------------------------------------------------

SOAP12 = "http://www.w3.org/2003/05/soap-envelope"
ADMIN = "urn:zimbraAdmin"
ZIMBRA = "urn:zimbra"


class ZimbraAdmin:
    """The admin SOAP API, read-only: AuthRequest once, then GetAccountRequest and
    GetQuotaUsageRequest. One object per opened source (its token, HTTP pool and the
    night's quota listings are shared by every mailbox of it), closed with the night."""

    def __init__(self, settings: ZimbraAdminSettings, password: Callable[[], str]) -> None:
        self.settings = settings
        self._password = password
        self._token: str | None = None
        self._quota: dict[str, dict[str, Quota]] = {}  # domain -> account -> quota
        self._quota_day: date | None = None
        self._lock = threading.Lock()
        self._quota_lock = threading.Lock()  # one listing per domain at a time
        self.http = requests.Session()

    def __enter__(self) -> ZimbraAdmin:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the HTTP pool and forget the token and listings; a later call logs in again."""
        with self._lock:
            self._token = None
        with self._quota_lock:
            self._quota, self._quota_day = {}, None
        self.http.close()

    def _post(self, body: str, token: str | None) -> ET.Element:
        context = f"<authToken>{escape(token)}</authToken>" if token else ""
        envelope = (
            f'<soap:Envelope xmlns:soap="{SOAP12}"><soap:Header><context xmlns="{ZIMBRA}">'
            f"{context}<nosession/></context></soap:Header><soap:Body>{body}</soap:Body>"
            "</soap:Envelope>"
        )
        try:
            resp = self.http.post(
                self.settings.url,
                data=envelope.encode(),
                headers={"Content-Type": "application/soap+xml; charset=utf-8"},
                timeout=self.settings.timeout,
                verify=self.settings.ca_file or True,
            )
        except requests.RequestException as exc:
            raise TransientError(f"Zimbra admin API {self.settings.url}: {exc}") from exc
        try:
            root = ET.fromstring(resp.content)
        except ET.ParseError as exc:
            if resp.status_code >= 500:
                raise TransientError(f"Zimbra admin API: HTTP {resp.status_code}") from exc
            raise SourceError(f"Zimbra admin API: HTTP {resp.status_code}, not SOAP") from exc
        body_el = root.find(f"{{{SOAP12}}}Body")
        if body_el is None or not len(body_el):
            raise SourceError("Zimbra admin API: no SOAP body")
        answer = body_el[0]
        if answer.tag == f"{{{SOAP12}}}Fault":
            code = answer.findtext(f".//{{{ZIMBRA}}}Code") or ""
            text = answer.findtext(f".//{{{SOAP12}}}Text") or code
            raise _fault(code, text)
        return answer

    def _token_now(self) -> str:
        with self._lock:
            if self._token is None:
                s = self.settings
                answer = self._post(
                    f'<AuthRequest xmlns="{ADMIN}"><name>{escape(s.admin_user)}</name>'
                    f"<password>{escape(self._password())}</password></AuthRequest>",
                    None,
                )
                self._token = answer.findtext(f"{{{ADMIN}}}authToken")
                if not self._token:
                    raise CredentialsRejected("Zimbra AuthResponse carried no authToken")
            return self._token

    def call(self, body: str) -> ET.Element:
        """A request with the admin token; an expired token is renewed once."""
        try:
            return self._post(body, self._token_now())
        except AuthError as exc:
            if "AUTH_EXPIRED" not in exc.reason and "AUTH_REQUIRED" not in exc.reason:
                raise
            with self._lock:
                self._token = None
            return self._post(body, self._token_now())

    def account_attrs(self, mailbox: str, attrs: Iterable[str]) -> dict[str, list[str]]:
        answer = self.call(
            f'<GetAccountRequest xmlns="{ADMIN}" applyCos="0" attrs={quoteattr(",".join(attrs))}>'
            f'<account by="name">{escape(mailbox)}</account></GetAccountRequest>'
        )
        out: dict[str, list[str]] = {}
        for a in answer.iter(f"{{{ADMIN}}}a"):
            out.setdefault(a.get("n", ""), []).append(a.text or "")
        return out

    def forwards(self, mailbox: str) -> list[Forward]:
        mailbox = mailbox.lower()
        return forwards_from_attrs(
            mailbox, self.account_attrs(mailbox, (*FORWARD_ATTRS, NO_COPY_ATTR, SIEVE_ATTR))
        )

    def check_forwarding(self, subject: str, mailbox: str) -> list[Check]:
        """``doctor``: ``mailbox``'s forwarding attributes can be read."""
        return _check_forwarding(self, subject, mailbox, "admin SOAP GetAccountRequest")

    def check_quota(self, subject: str, mailbox: str) -> list[Check]:
        """``doctor``: tonight's quota listing has ``mailbox``."""
        try:
            q = self.quota(mailbox)
        except SourceError as exc:
            return [Check(subject, "zimbra-quota", "fail", exc.reason)]
        if q.used_bytes is None:
            detail = f"GetQuotaUsageRequest does not list {mailbox}"
            return [Check(subject, "zimbra-quota", "warn", detail)]
        detail = f"GetQuotaUsageRequest: {mailbox} uses {q.used_bytes} bytes"
        return [Check(subject, "zimbra-quota", "ok", detail)]

    def quota(self, mailbox: str) -> Quota:
        """Used and limit bytes from tonight's listing of the mailbox's domain (0 = no limit).

        >>> admin.quota("an.nv@tiengiang.gov.vn")
        Quota(used_bytes=73400320, limit_bytes=5368709120)
        """
        mailbox = mailbox.lower()
        domain = mailbox.rpartition("@")[2]
        today = datetime.now(UTC).date()
        with self._quota_lock:
            if self._quota_day != today:
                self._quota, self._quota_day = {}, today
            if domain not in self._quota:
                self._quota[domain] = self._domain_quota(domain)
            listing = self._quota[domain]
        return listing.get(mailbox, Quota(None, None))

    def _domain_quota(self, domain: str) -> dict[str, Quota]:
        """Every account of ``domain`` on every mailbox server, in one GetQuotaUsageRequest.

        Why this shape (zm-mailbox ``store/src/java/com/zimbra/cs/service/admin/
        GetQuotaUsage.java``):

        * ``allServers`` counts only with ``domain`` (``allServers = d != null && …``);
          without one the server lists only its own accounts.
        * No ``limit`` (Integer.MAX_VALUE), so no paging: without an admin session (we send
          ``<nosession/>``) each request searches again and sorts by the sizes of that
          moment, so pages can skip or repeat accounts. The server gathers the whole list
          for ``allServers`` anyway (the delegated requests carry ``limit="0"``), so one
          answer costs it no more than the first of many pages.
        * ``sortBy="account"`` (name, ignoring case) keeps the answer's order stable.

        A domain Zimbra does not know (``account.NO_SUCH_DOMAIN``) lists no account.
        """
        try:
            answer = self.call(
                f'<GetQuotaUsageRequest xmlns="{ADMIN}" domain={quoteattr(domain)} '
                'allServers="1" sortBy="account" sortAscending="1"/>'
            )
        except SourceError as exc:
            if "account.NO_SUCH_DOMAIN" in exc.reason:
                return {}
            raise
        if answer.get("more") in ("1", "true"):  # cannot happen without a limit
            raise SourceError(f"GetQuotaUsageResponse for {domain} was cut short (more=1)")
        out: dict[str, Quota] = {}
        for acc in answer.iter(f"{{{ADMIN}}}account"):
            limit = int(acc.get("limit") or 0)
            used = int(acc.get("used") or 0)
            out[(acc.get("name") or "").lower()] = Quota(used, limit if limit > 0 else None)
        return out


def _fault(code: str, text: str) -> SourceError:
    reason = f"Zimbra: {code} {text}".strip()
    if code in ("account.NO_SUCH_ACCOUNT",):
        return MailboxMissing(reason)
    if code.startswith("account.AUTH_FAILED") or code == "account.CHANGE_PASSWORD":
        return CredentialsRejected(reason)
    if code.startswith("service.PERM_DENIED") or code.startswith("service.AUTH_"):
        return AuthError(reason)
    if code in ("service.TEMPORARILY_UNAVAILABLE", "service.RESOURCE_UNREACHABLE"):
        return TransientError(reason)
    return SourceError(reason)


class QuotaFallback:
    """A mail source whose sessions ask Zimbra's admin API for the quota when IMAP QUOTA
    answers nothing (Zimbra without the quota extension enabled over IMAP)."""

    def __init__(self, inner: MailboxSource, admin: ZimbraAdmin) -> None:
        self.inner = inner
        self.admin = admin
        self.name = inner.name
        self.kind = inner.kind

    @contextmanager
    def open(self, mailbox: str) -> Iterator[MailboxSession]:
        with self.inner.open(mailbox) as session:
            yield _WithQuota(session, self.admin, mailbox)


class _WithQuota:
    def __init__(self, session: MailboxSession, admin: ZimbraAdmin, mailbox: str) -> None:
        self._session = session
        self._admin = admin
        self._mailbox = mailbox

    def __getattr__(self, name: str) -> Any:
        return getattr(self._session, name)

    def quota(self) -> Quota:
        q = self._session.quota()
        if q.used_bytes is None and q.limit_bytes is None:
            return self._admin.quota(self._mailbox)
        return q
