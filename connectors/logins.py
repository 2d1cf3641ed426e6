"""Login recency from what the server records: it cannot be read from a mailbox over IMAP.

Four sources, each yielding :class:`Login` records:

* Dovecot's ``last_login`` plugin dict, read as an operator would: ``doveadm dict iter``.
* Dovecot log lines (``imap-login: Login: user=<…>``), read incrementally by byte offset,
  surviving rotation (``dovecot.log`` -> ``dovecot.log.1``), skipping lines it does not know.
* ``Get-MailboxStatistics | Export-Csv`` from Exchange (LastLogonTime, LastUserActionTime,
  TotalItemSize, ItemCount — by header name, any column order, US or day-first dates).
* Zimbra account exports with ``zimbraLastLogonTimestamp`` (LDAP generalized time), as CSV
  or as ``zmprov -l gaa -v`` / LDIF text.

The collector's own logins never count: its master-user logins are written under another
dict key (``userdb_last_login_key`` on the master passdb entry) and its remote addresses
are ignored in logs.
"""

from __future__ import annotations

import csv
import re
import subprocess
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from connectors.dovecot_events import parse_change_line
from connectors.logfiles import LogCursor as LogCursor  # where the cursor was defined before
from connectors.logfiles import LogFileError, LogRead, Seen, iter_lines


@dataclass(frozen=True, slots=True)
class Login:
    """One observed login. ``login_at`` is aware (UTC).

    >>> login = Login("an.nv@danang.gov.vn", datetime(2026, 11, 23, 1, 15, tzinfo=UTC), "imap",
    ...               "10.1.2.3", "dovecot-log")
    >>> login.mailbox, login.login_at.isoformat()
    ('an.nv@danang.gov.vn', '2026-11-23T01:15:00+00:00')
    """

    mailbox: str
    login_at: datetime
    protocol: str | None
    remote_addr: str | None
    source: str


class LoginSourceError(Exception):
    """A login source cannot be read; the message names the file or command and why."""


# -- Dovecot last_login dict -------------------------------------------------------------


def parse_dict_iter(output: str, prefix: str = "shared/last-login/") -> Iterator[tuple[str, int]]:
    """(user, epoch) pairs from ``doveadm dict iter`` output (``key<TAB>value`` or
    ``key value`` per line; the plugin stores a UNIX time).

    >>> list(parse_dict_iter("shared/last-login/a@x.vn\\t1795446000\\n"))
    [('a@x.vn', 1795446000)]
    """
    for line in output.splitlines():
        parts = line.split(None, 1) if "\t" not in line else line.split("\t", 1)
        if len(parts) != 2:
            continue
        key, value = parts[0].strip(), parts[1].strip()
        if not key.startswith(prefix) or not value.isdigit():
            continue
        yield key[len(prefix) :].lower(), int(value)


def read_dovecot_dict(
    doveadm: Sequence[str], dict_uri: str, source: str, prefix: str = "shared/last-login/"
) -> list[Login]:
    """Run ``doveadm dict iter <dict_uri> <prefix>`` and turn it into logins."""
    cmd = [*doveadm, "dict", "iter", dict_uri, prefix]
    try:
        out = subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=120)
    except FileNotFoundError as exc:
        raise LoginSourceError(f"{cmd[0]} not found") from exc
    except subprocess.CalledProcessError as exc:
        raise LoginSourceError(f"{' '.join(cmd)} failed: {exc.stderr.strip()}") from exc
    return [
        Login(user, datetime.fromtimestamp(ts, UTC), None, None, source)
        for user, ts in parse_dict_iter(out.stdout, prefix)
    ]


# -- Dovecot log --------------------------------------------------------------------------

_LOGIN_LINE = re.compile(
    r"^(?P<ts>\w{3} +\d{1,2} \d\d:\d\d:\d\d|\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d)"
    r".*?\b(?P<proto>imap|pop3|managesieve|submission)-login: (?:Info: )?Login: "
    r"user=<(?P<user>[^>]*)>, method=(?P<method>[^,]+), rip=(?P<rip>[^,\s]+)"
)
_MONTHS = {
    m: i
    for i, m in enumerate(
        ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), 1
    )
}


def parse_log_line(line: str, *, year: int, tz: ZoneInfo, source: str) -> Login | None:
    """A Login from one Dovecot log line, or None for any other line.

    Syslog-style stamps have no year: ``year`` is the year the line was written in.

    >>> login = parse_log_line("Nov 23 08:15:02 imap-login: Info: Login: user=<a@x.vn>, "
    ...     "method=PLAIN, rip=10.0.0.7, lip=10.0.0.1", year=2026, tz=ZoneInfo("UTC"), source="log")
    >>> login.mailbox, login.login_at.isoformat(), login.remote_addr
    ('a@x.vn', '2026-11-23T08:15:02+00:00', '10.0.0.7')
    """
    m = _LOGIN_LINE.match(line)
    if m is None or not m.group("user"):
        return None
    ts = m.group("ts")
    try:
        if ts[0].isdigit():
            local = datetime.fromisoformat(ts.replace(" ", "T"))
        else:
            mon, day, clock = ts.split()
            hh, mm, ss = (int(x) for x in clock.split(":"))
            local = datetime(year, _MONTHS[mon], int(day), hh, mm, ss)
    except (KeyError, ValueError):
        return None
    return Login(
        m.group("user").lower(),
        local.replace(tzinfo=tz).astimezone(UTC),
        m.group("proto"),
        m.group("rip"),
        source,
    )


def read_log(
    path: Path,
    cursor: LogCursor | None,
    *,
    tz: ZoneInfo,
    source: str,
    ignore_remote: Iterable[str] = (),
    seen: Seen | None = None,
) -> tuple[list[Login], LogCursor]:
    """New logins since ``cursor``, and the cursor to save once they are written.
    ``seen``, when given, is told what else the lines say (:class:`Seen`): the mailboxes
    they name as changed (a login, a delivery, a mail_log event:
    connectors/dovecot_events.py), the newest line's time, lines that may be missing.

    Read through the one log reader (:class:`connectors.logfiles.LogRead`): a rotation
    (``dovecot.log`` -> ``dovecot.log.1``, later ``dovecot.log.2.gz``) is followed — the
    rest of the old file first, then the new file from its start; a truncated file is read
    from the start; a partial last line waits for the next run.
    """
    ignore = set(ignore_remote)
    read = LogRead(path, cursor)
    out: list[Login] = []
    try:
        for piece in read:
            written = piece.written
            year = written.astimezone(tz).year  # syslog stamps carry no year
            for raw in iter_lines(piece.data):
                text = raw.decode("utf-8", "replace")
                login = parse_log_line(text, year=year, tz=tz, source=source)
                if login is not None:
                    login = _in_year_written(login, written)
                    if login.remote_addr not in ignore:
                        out.append(login)
                    if seen is not None:
                        _seen_login(seen, login, login.remote_addr not in ignore)
                elif seen is not None and (event := parse_change_line(text, year=year, tz=tz)):
                    at = _before(event.at, written)
                    seen.changed.add(event.mailbox)
                    seen.named.add(event.mailbox)
                    if event.owner:
                        seen.changed.add(event.owner)
                    seen.dated(at)
    except LogFileError as exc:
        raise LoginSourceError(str(exc)) from exc
    assert read.cursor is not None
    if seen is not None:
        seen.after(read)
    return out, read.cursor


# A login by POP3 reads and deletes, and one by ManageSieve edits forwarding rules: neither
# is in what Dovecot's mail_log plugin logs of an IMAP session, so they are changes always.
_ALWAYS_CHANGES = ("pop3", "managesieve")


def _seen_login(seen: Seen, login: Login, counted: bool) -> None:
    seen.named.add(login.mailbox)
    seen.dated(login.login_at)
    if counted and (seen.logins or login.protocol in _ALWAYS_CHANGES):
        seen.changed.add(login.mailbox)


def _before(at: datetime, written: datetime) -> datetime:
    """A syslog stamp dated in the file's year that falls after the file was written
    belongs to the year before (a line of 31 December read in January)."""
    if at > written + timedelta(days=1):
        try:
            return at.replace(year=at.year - 1)
        except ValueError:  # 29 February
            return at - timedelta(days=365)
    return at


def _in_year_written(login: Login, written: datetime) -> Login:
    at = _before(login.login_at, written)
    return login if at == login.login_at else replace(login, login_at=at)


# -- exports from other servers -----------------------------------------------------------

_ADDRESS_HEADERS = (
    "primarysmtpaddress",
    "emailaddress",
    "windowsemailaddress",
    "userprincipalname",
    "mail",
    "zimbramaildeliveryaddress",
    "name",
)


def _rows(path: Path) -> list[dict[str, str]]:
    """CSV rows keyed by lower-cased header; leading ``#`` lines (``#TYPE``) are skipped."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError as exc:
        raise LoginSourceError(f"export {path} not found") from exc
    except UnicodeDecodeError:
        text = path.read_text(encoding="utf-16")  # Export-Csv -Encoding Unicode
    lines = text.splitlines()
    while lines and lines[0].startswith("#"):  # PowerShell's "#TYPE …", a note on the export
        lines.pop(0)
    reader = csv.DictReader(lines)
    return [
        {(k or "").strip().lower(): (v or "").strip() for k, v in row.items()} for row in reader
    ]


def _address(row: dict[str, str], path: Path, line: int) -> str:
    for key in _ADDRESS_HEADERS:
        value = row.get(key, "")
        if "@" in value:
            return value.lower()
    raise LoginSourceError(
        f"{path} line {line}: no address column (one of {', '.join(_ADDRESS_HEADERS)})"
    )


_US = re.compile(r"^(\d{1,2})/(\d{1,2})/(\d{4})[ T](\d{1,2}):(\d\d)(?::(\d\d))?\s*([AaPp][Mm])?$")


def parse_export_time(value: str, *, tz: ZoneInfo, day_first: bool = False) -> datetime | None:
    """Dates as Exchange exports carry them: ``11/23/2026 8:15:02 AM``, ``23/11/2026 08:15:02``
    (``day_first``), ISO 8601 with or without zone. Empty or ``never``: None.

    >>> parse_export_time("11/23/2026 8:15:02 PM", tz=ZoneInfo("UTC"))
    datetime.datetime(2026, 11, 23, 20, 15, 2, tzinfo=datetime.timezone.utc)
    """
    value = value.strip()
    if not value or value.lower() in ("never", "null", "none"):
        return None
    m = _US.match(value)
    if m is not None:
        a, b, y, hh, mm, ss, ampm = m.groups()
        month, day = (int(b), int(a)) if day_first else (int(a), int(b))
        hour = int(hh)
        if ampm:
            hour = hour % 12 + (12 if ampm.lower() == "pm" else 0)
        local = datetime(int(y), month, day, hour, int(mm), int(ss or 0))
        return local.replace(tzinfo=tz).astimezone(UTC)
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=tz)
    return parsed.astimezone(UTC)


def read_exchange_export(
    path: Path, *, tz: ZoneInfo, source: str, day_first: bool = False
) -> list[Login]:
    """``Get-MailboxStatistics | Export-Csv`` rows: LastLogonTime (else LastUserActionTime)."""
    out = []
    for line, row in enumerate(_rows(path), start=2):
        if not row:
            continue
        when = None
        for key in ("lastlogontime", "lastuseractiontime"):
            raw = row.get(key, "")
            when = parse_export_time(raw, tz=tz, day_first=day_first)
            if raw and when is None and raw.lower() not in ("never", "null", "none"):
                raise LoginSourceError(f"{path} line {line}: {key} {raw!r} is not a date")
            if when is not None:
                break
        if when is not None:
            out.append(Login(_address(row, path, line), when, None, None, source))
    return out


def parse_generalized_time(value: str) -> datetime | None:
    """LDAP generalized time: ``20261123081502Z`` or ``20261123081502.123Z``."""
    m = re.match(r"^(\d{4})(\d\d)(\d\d)(\d\d)(\d\d)(\d\d)?(?:[.,]\d+)?Z$", value.strip())
    if m is None:
        return None
    y, mo, d, hh, mm, ss = m.groups()
    return datetime(int(y), int(mo), int(d), int(hh), int(mm), int(ss or 0), tzinfo=UTC)


def read_zimbra_export(path: Path, *, source: str) -> list[Login]:
    """Accounts with ``zimbraLastLogonTimestamp``: a CSV, or ``zmprov -l gaa -v`` / LDIF."""
    try:
        head = path.read_text(encoding="utf-8-sig")[:4096]
    except FileNotFoundError as exc:
        raise LoginSourceError(f"export {path} not found") from exc
    if "zimbraLastLogonTimestamp:" in head or "\n# name " in f"\n{head}" or "\ndn:" in head:
        return _zimbra_ldif(path, source)
    out = []
    for line, row in enumerate(_rows(path), start=2):
        raw = row.get("zimbralastlogontimestamp", "")
        when = parse_generalized_time(raw) if raw else None
        if raw and when is None:
            raise LoginSourceError(f"{path} line {line}: {raw!r} is not LDAP generalized time")
        if when is not None:
            out.append(Login(_address(row, path, line), when, None, None, source))
    return out


def _zimbra_ldif(path: Path, source: str) -> list[Login]:
    out, who, when = [], None, None
    for raw in [*path.read_text(encoding="utf-8-sig").splitlines(), ""]:
        line = raw.strip()
        if not line or line.startswith("# name ") or line.startswith("dn:"):
            if who and when:
                out.append(Login(who, when, None, None, source))
            who, when = None, None
            if line.startswith("# name "):
                who = line[len("# name ") :].strip().lower()
            continue
        if line.startswith("#"):
            continue
        key, _, value = line.partition(":")
        key, value = key.strip().lower(), value.strip()
        if key in ("mail", "zimbramaildeliveryaddress") and who is None:
            who = value.lower()
        elif key == "zimbralastlogontimestamp":
            when = parse_generalized_time(value)
    return out
