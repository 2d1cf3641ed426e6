"""`mailusage doctor`: check every source and the roster, say exactly what is wrong.

>>> checks = run_doctor(load_config("mailusage.toml"))
>>> [(c.subject, c.check, c.status) for c in checks][:2]
[('dovecot', 'tcp', 'ok'), ('dovecot', 'tls', 'ok')]
"""

from __future__ import annotations

import re
import sqlite3
import ssl
from contextlib import closing
from dataclasses import MISSING, dataclass, fields

import pyarrow.parquet as pq
import requests

from analytics.policy import PolicyError, load_policy
from connectors.base import AuthError, SourceError
from connectors.ews import EwsSettings, EwsSource
from connectors.graph import PERMISSIONS, GraphSettings, GraphSource, token_roles
from connectors.imap import ImapSource, probe_tcp
from connectors.logins import LogCursor, LoginSourceError
from connectors.sieve import SieveSource
from connectors.zimbra import QuotaFallback, ZimbraAdmin, ZimbraExport
from contract.people import Person
from contract.roster import RosterError, RosterNotes, load_roster
from pipelines.config import (
    Config,
    ConfigError,
    SourceConfig,
)
from pipelines.secrets import secret_problems
from pipelines.signals import LOG_KINDS, read_source


@dataclass(frozen=True)
class Check:
    subject: str
    check: str
    status: str  # ok | warn | fail
    detail: str


def _no_probe(roster_read: bool, what: str) -> tuple[str, str]:
    """The login check's status when no roster mailbox can be tried."""
    if not roster_read:  # already a failure of its own, above: not one more per source
        return "warn", "not tried: the roster could not be read"
    return "fail", f"no roster mailbox for this source to {what}"


def _source_checks(
    src: SourceConfig, probe: str | None, roster_read: bool, secret: str | None = None
) -> list[Check]:
    """``secret``: why the source's secret is not there (its checks stop before a login)."""
    if src.graph is not None:
        return _graph_checks(src, src.graph, probe, roster_read, secret)
    if src.ews is not None:
        return _ews_checks(src, src.ews, probe, roster_read, secret)
    s = src.imap
    assert s is not None
    out: list[Check] = []

    def add(check: str, status: str, detail: str) -> None:
        out.append(Check(src.name, check, status, detail))

    try:
        probe_tcp(s.host, s.effective_port, timeout=min(s.timeout, 10))
        add("tcp", "ok", f"{s.host}:{s.effective_port} answers")
    except ConnectionRefusedError:
        add(
            "tcp",
            "fail",
            f"{s.host}:{s.effective_port} refused the connection: nothing listens there "
            '(is the IMAP service running? 993 for security = "tls", 143 for "starttls")',
        )
        return out
    except OSError as exc:
        add("tcp", "fail", f"cannot reach {s.host}:{s.effective_port}: {exc}")
        return out
    built = src.build()
    source = built.inner if isinstance(built, QuotaFallback) else built
    assert isinstance(source, ImapSource)
    try:
        wire = source.connect()
    except SourceError as exc:
        add("tls", "fail", exc.reason)
        return out
    wire.logout()
    if s.security == "plain":
        add("tls", "warn", "plain text: passwords cross the network unencrypted")
    else:
        how = "verified" if s.verify else "NOT verified (verify = false)"
        add("tls", "ok", f"{s.security}, certificate {how}")
    if secret:
        add("login", "warn", f"not tried: {secret}")
        return out
    if probe is None:
        add("login", *_no_probe(roster_read, "log in to"))
        return out
    who = f"as {s.master_user} for {probe}" if s.auth != "user" else f"as {probe}"
    try:
        with source.open(probe) as session:
            add("login", "ok", f"logged in {who} ({s.auth})")
            if s.auth != "user":
                add("master-user", "ok", f"{s.master_user} may open {probe}")
            caps = session.capabilities
            for cap, why in ((b"CONDSTORE", "read activity"), (b"QUOTA", "storage")):
                if cap in caps:
                    add(cap.decode().lower(), "ok", f"{cap.decode()} available ({why})")
                else:
                    add(cap.decode().lower(), "warn", f"no {cap.decode()}: {why} unknown")
            folders = session.list_folders()
            sent = [(n, su) for n, role, su in folders if role == "sent"]
            if sent:
                name, special = sent[0]
                add(
                    "sent-folder",
                    "ok",
                    f"{name!r} ({'SPECIAL-USE' if special else 'by name'}) in {probe}",
                )
            else:
                add("sent-folder", "warn", f"no Sent folder in {probe}: sent counts will be 0")
    except SourceError as exc:
        add("login", "fail", exc.reason)
        return out
    except ssl.SSLError as exc:
        add("login", "fail", f"TLS error: {exc}")
        return out
    forwarding = src.forwarding()
    if isinstance(forwarding, SieveSource):
        try:
            rules = forwarding.forwards(probe)
            add(
                "managesieve",
                "ok",
                f"port {forwarding.settings.port}: {len(rules)} forwarding rule(s) in {probe}",
            )
        except SourceError as exc:
            add("managesieve", "fail", exc.reason)
    elif isinstance(forwarding, ZimbraAdmin | ZimbraExport):
        how = (
            "admin SOAP GetAccountRequest"
            if isinstance(forwarding, ZimbraAdmin)
            else (f"zmprov export {forwarding.path}")
        )
        try:
            rules = forwarding.forwards(probe)
            add("zimbra-forwarding", "ok", f"{how}: {len(rules)} forwarding address(es) of {probe}")
        except SourceError as exc:
            add("zimbra-forwarding", "fail", f"{how}: {exc.reason}")
    admin = src.zimbra_admin()
    if admin is not None:
        try:
            q = admin.quota(probe)
            add(
                "zimbra-quota",
                "ok" if q.used_bytes is not None else "warn",
                f"GetQuotaUsageRequest: {probe} uses {q.used_bytes} bytes"
                if q.used_bytes is not None
                else f"GetQuotaUsageRequest does not list {probe}",
            )
        except SourceError as exc:
            add("zimbra-quota", "fail", exc.reason)
    return out


def _graph_checks(
    src: SourceConfig,
    s: GraphSettings,
    probe: str | None,
    roster_read: bool,
    secret: str | None = None,
) -> list[Check]:
    """Token, the app's permissions, one mailbox's folders, its inbox rules and the usage
    report — stopping where a later check needs an earlier one."""
    out: list[Check] = []

    def add(check: str, status: str, detail: str) -> None:
        out.append(Check(src.name, check, status, detail))

    if secret:
        add("token", "warn", f"not tried: {secret}")
        return out
    source = src.build()
    assert isinstance(source, GraphSource)
    try:
        token = source.tenant.token()
    except SourceError as exc:
        add("token", "fail", exc.reason)
        return out
    add("token", "ok", f"app {s.client_id} signed in to {s.tenant_id} ({s.authority})")
    roles = set(token_roles(token))
    mail = {"Mail.ReadBasic.All", "Mail.Read"} & roles
    # RBAC for Applications (the guide's set-up) grants Mail.ReadBasic per mailbox scope,
    # not in the token's roles: the mailbox check below decides, not this one.
    add(
        "permissions",
        "ok" if mail else "warn",
        f"application permissions: {', '.join(sorted(roles)) or 'none'}"
        + (
            ""
            if mail
            else " — no Mail.ReadBasic.All in the token: fine if RBAC for Applications grants "
            "it for the agency's mailboxes (the mailbox check says)"
        ),
    )
    for perm, why in PERMISSIONS.items():
        if perm != "Mail.ReadBasic.All" and perm not in roles:
            add(f"permission:{perm}", "warn", f"not granted: no {why}")
    if "Mail.Read" in roles or "Mail.ReadWrite" in roles:
        add(
            "least-privilege",
            "warn",
            "Mail.Read(Write) lets the app read bodies: "
            "Mail.ReadBasic.All is enough unless read_size = true",
        )
    if probe is None:
        add("mailbox", *_no_probe(roster_read, "open"))
        return out
    try:
        with source.open(probe) as session:
            session.resume({})
            folders = session.folders()
    except SourceError as exc:
        add("mailbox", "fail", f"{probe}: {exc.reason} (is it inside the app's RBAC scope?)")
        return out
    roles_found = {f.role: f for f in folders}
    add(
        "mailbox",
        "ok",
        f"{probe}: {len(folders)} folders, "
        f"inbox {roles_found['inbox'].messages if 'inbox' in roles_found else '?'} messages",
    )
    if s.forwarding:
        try:
            add("inbox-rules", "ok", f"{len(source.forwards(probe))} forwarding rule(s) in {probe}")
        except SourceError as exc:
            add("inbox-rules", "fail", exc.reason)
    if s.usage_report:
        q = source.tenant.usage_for(probe)
        if q.used_bytes is None:
            add(
                "usage-report",
                "warn",
                source.tenant.usage_note
                or (
                    f"{probe} is not in getMailboxUsageDetail: are user names concealed in "
                    "reports? (Microsoft 365 admin center > Settings > Org settings > Reports)"
                ),
            )
        else:
            add("usage-report", "ok", f"{probe} uses {q.used_bytes} bytes")
    return out


def _ews_checks(
    src: SourceConfig,
    s: EwsSettings,
    probe: str | None,
    roster_read: bool,
    secret: str | None = None,
) -> list[Check]:
    """Endpoint reachable, login, impersonation right, folders, inbox rules — in that order,
    stopping at the first failure (each later check needs the earlier ones)."""
    out: list[Check] = []

    def add(check: str, status: str, detail: str) -> None:
        out.append(Check(src.name, check, status, detail))

    try:
        answer = requests.get(s.endpoint, timeout=min(s.timeout, 10), verify=s.ca_file or True)
        add("endpoint", "ok", f"{s.endpoint} answers (HTTP {answer.status_code}, no autodiscover)")
    except requests.exceptions.SSLError as exc:
        add("endpoint", "fail", f"TLS certificate of {s.endpoint} not trusted: {exc}")
        return out
    except requests.exceptions.RequestException as exc:
        add("endpoint", "fail", f"cannot reach {s.endpoint}: {exc}")
        return out
    if s.endpoint.startswith("http://"):
        add("tls", "warn", "plain http: passwords cross the network unencrypted")
    if secret:
        add("login", "warn", f"not tried: {secret}")
        return out
    if probe is None:
        add("login", *_no_probe(roster_read, "open"))
        return out
    source = src.build()
    assert isinstance(source, EwsSource)
    who = f"{s.username} ({s.auth})" if s.access != "user" else f"{probe} ({s.auth})"
    try:
        with source.open(probe) as session:
            folders = session.folders()
    except AuthError as exc:
        login_refused = "UnauthorizedError" in exc.reason
        add("login", "fail" if login_refused else "ok", exc.reason if login_refused else who)
        if not login_refused:
            add(s.access, "fail", f"{who} may not open {probe}: {exc.reason}")
        return out
    except SourceError as exc:
        add("login", "fail", exc.reason)
        return out
    add("login", "ok", f"logged in as {who}")
    if s.access != "user":
        add(s.access, "ok", f"{s.username} may open {probe} ({s.access})")
    roles = {f.role: f for f in folders}
    for role in ("inbox", "sent"):
        if role in roles:
            f = roles[role]
            add(f"{role}-folder", "ok", f"{f.name}: {f.messages} messages in {probe}")
        else:
            add(f"{role}-folder", "warn", f"no {role} folder in {probe}")
    if src.ews_forwarding:
        try:
            rules = source.forwards(probe)
            add("inbox-rules", "ok", f"GetInboxRules: {len(rules)} forwarding rule(s) in {probe}")
        except SourceError as exc:
            add("inbox-rules", "fail", exc.reason)
    add(
        "logins-quota",
        "warn",
        "EWS gives no last logon and no quota: export Get-MailboxStatistics ([[logins]] "
        "kind = exchange-csv, operator guide)",
    )
    return out


# The settings a night and a month run with, as `doctor` shows them (section.key, field).
SETTINGS = (
    ("agency.timezone", "timezone"),
    ("storage.data_dir", "data_dir"),
    ("collect.concurrency", "concurrency"),
    ("collect.retries", "retries"),
    ("collect.retry_delay_seconds", "retry_delay_seconds"),
    ("collect.allowed_failures", "allowed_failures"),
    ("evaluation.policy", "policy"),
    ("evaluation.language", "language"),
    ("evaluation.reports_dir", "reports_dir"),
)


def settings(cfg: Config) -> list[Check]:
    """The effective settings, each marked "(default)" when the file left it out."""
    defaults = {f.name: f.default for f in fields(Config) if f.default is not MISSING}
    out = []
    for key, name in SETTINGS:
        value = getattr(cfg, name)
        shown = ", ".join(map(str, value)) if isinstance(value, tuple) else str(value)
        default = name in defaults and value == defaults[name]
        out.append(Check("config", key, "ok", shown + (" (default)" if default else "")))
    return out


def run_doctor(cfg: Config) -> list[Check]:
    checks: list[Check] = settings(cfg)
    people: list[Person] = []
    roster_read = True
    roster_notes = RosterNotes(cfg.official_domains)
    try:
        people = load_roster(cfg.roster_path, lambda: [s.name for s in cfg.sources], roster_notes)
        with_mailbox = sum(1 for p in people if p.email)
        sep = {",": "commas", ";": "semicolons", "\t": "tabs"}[roster_notes.delimiter]
        blank = (
            f"; {roster_notes.blank_rows} empty row(s) skipped" if roster_notes.blank_rows else ""
        )
        checks.append(
            Check(
                "roster",
                "rows",
                "ok",
                f"{len(people)} people, {with_mailbox} with a mailbox (cells separated by "
                f"{sep}{blank})",
            )
        )
    except RosterError as exc:
        checks.append(Check("roster", "rows", "fail", str(exc)))
        roster_read = False
    checks.extend(_roster_checks(cfg, roster_notes, people))
    # Secrets first, whether or not a server answers: an unset one is a failure, and the
    # source's checks stop before the login that would need it.
    problems = secret_problems(cfg, people)
    for src in cfg.sources:
        mine = [p for p in problems if p.source == src.name]
        blocking = next((p.detail for p in mine if p.blocking), None)
        if not mine:
            refs = src.password.describe()
            checks.append(Check(src.name, "secret", "ok", f"set, by reference ({refs})"))
        for p in mine[:SHOWN] if not blocking else [p for p in mine if p.blocking]:
            checks.append(Check(src.name, "secret", "fail", p.detail))
        if len(mine) > SHOWN and not blocking:
            checks.append(
                Check(src.name, "secret", "fail", f"and {len(mine) - SHOWN} more mailbox(es)")
            )
        probe = next(
            (p.email for p in people if p.email and (p.source or cfg.sources[0].name) == src.name),
            None,
        )
        try:
            checks.extend(_source_checks(src, probe, roster_read, blocking))
        except ConfigError as exc:  # a secret resolved late (never a traceback)
            checks.append(Check(src.name, "login", "fail", str(exc)))
    checks.extend(_signal_checks(cfg))
    return checks


SHOWN = 10  # per-user secrets and roster warnings listed one by one, then counted


def _roster_checks(cfg: Config, notes: RosterNotes, people: list[Person]) -> list[Check]:
    """Roster rows that are valid but will be rated wrongly: an official address outside
    the official domains, and a blank email on a person whose mailbox has data stored."""
    out: list[Check] = []
    domains = ", ".join(cfg.official_domains)
    for line, emp, email in notes.outside[:SHOWN]:
        out.append(
            Check(
                "roster",
                "official-domain",
                "warn",
                f"line {line}: {emp}'s email {email} is outside the official domains "
                f"({domains}): no such mailbox on the agency's servers, so the evaluation "
                "rates it 'Chưa có dữ liệu' (no data); put the official address here",
            )
        )
    if len(notes.outside) > SHOWN:
        out.append(
            Check("roster", "official-domain", "warn", f"and {len(notes.outside) - SHOWN} more")
        )
    blank = [p for p in people if not p.email]
    if not blank:
        return out
    stored = _stored_mailboxes(cfg)
    if not stored:
        return out
    month, seen = _last_evaluated_addresses(cfg)
    named = [(p, seen[p.employee_id]) for p in blank if seen.get(p.employee_id) in stored]
    for p, email in named[:SHOWN]:
        out.append(
            Check(
                "roster",
                "blank-email",
                "warn",
                f"line {notes.lines.get(p.employee_id, '?')}: {p.full_name} ({p.employee_id}) "
                f"has no email, but their mailbox {email} (the {month} evaluation) has data "
                "in the store: they would be rated 'Chưa có hộp thư' (exempt); "
                "restore the address, or leave it blank only if the mailbox was withdrawn",
            )
        )
    if len(named) > SHOWN:
        out.append(Check("roster", "blank-email", "warn", f"and {len(named) - SHOWN} more"))
    if not named:  # no earlier evaluation names them: the stored mailboxes left unmatched
        orphans = sorted(stored - {p.email for p in people})
        if orphans:
            out.append(
                Check(
                    "roster",
                    "blank-email",
                    "warn",
                    f"{len(blank)} person(s) have no email and {len(orphans)} mailbox(es) with "
                    f"data in the store are not in the roster ({', '.join(orphans[:5])}"
                    f"{', …' if len(orphans) > 5 else ''}): if one is theirs, restore it, or "
                    "they are rated 'Chưa có hộp thư' (exempt)",
                )
            )
    return out


def _stored_mailboxes(cfg: Config) -> set[str]:
    """Mailboxes with a commit record in the store, read without writing to it."""
    path = cfg.data_dir / "_state" / "store.sqlite"
    if not path.exists():
        return set()
    try:
        with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as con:
            return {m for (m,) in con.execute("select mailbox from cursors")}
    except sqlite3.Error:
        return set()


def _last_evaluated_addresses(cfg: Config) -> tuple[str, dict[str, str]]:
    """employee_id -> the address the latest evaluated month knew (its person_month).

    Why this file: the roster keeps no history and the store knows mailboxes, not people;
    the last evaluation's person_month.parquet is the one place that ties the two, and it
    is one small file (two columns read)."""
    months = sorted(
        p.parent.name
        for p in cfg.reports_dir.glob("*/person_month.parquet")
        if re.fullmatch(r"\d{4}-\d\d", p.parent.name)
    )
    if not months:
        return "", {}
    table = pq.read_table(
        cfg.reports_dir / months[-1] / "person_month.parquet", columns=["employee_id", "mailbox"]
    )
    return months[-1], {
        e: m for e, m in zip(*(table[c].to_pylist() for c in table.column_names), strict=True) if m
    }


def _signal_checks(cfg: Config) -> list[Check]:
    """Which server-side signals are configured, and whether each can be read now."""
    out = []
    for src in cfg.logins:
        try:
            if src.kind in LOG_KINDS and src.path is not None and src.path.exists():
                # Only the last 1 MiB: doctor checks the log is readable and understood.
                st = src.path.stat()
                n = len(read_source(src, LogCursor(st.st_ino, max(0, st.st_size - 2**20)))[0])
            else:
                n = len(read_source(src)[0])
            out.append(
                Check(
                    f"logins:{src.name}", "read", "ok", f"{src.kind}: {n} login record(s) readable"
                )
            )
        except (LoginSourceError, OSError) as exc:
            out.append(Check(f"logins:{src.name}", "read", "fail", f"{src.kind}: {exc}"))
    kinds = ", ".join(sorted({s.kind for s in cfg.logins})) or "none configured"
    out.append(
        Check(
            "signals",
            "logins",
            "ok" if cfg.logins else "warn",
            f"login recency from: {kinds}"
            + ("" if cfg.logins else " (last login will be unknown)"),
        )
    )
    with_sieve = [s.name for s in cfg.sources if s.sieve is not None]
    with_rules = [s.name for s in cfg.sources if s.ews is not None and s.ews_forwarding]
    with_graph = [s.name for s in cfg.sources if s.graph is not None and s.graph.forwarding]
    with_zimbra = [s.name for s in cfg.sources if s.zimbra is not None]
    how = [f"ManageSieve from {', '.join(with_sieve)}"] if with_sieve else []
    how += [f"EWS inbox rules from {', '.join(with_rules)}"] if with_rules else []
    how += [f"Graph inbox rules from {', '.join(with_graph)}"] if with_graph else []
    how += [f"Zimbra account attributes from {', '.join(with_zimbra)}"] if with_zimbra else []
    out.append(
        Check(
            "signals",
            "forwarding",
            "ok" if how else "warn",
            f"forwarding rules via {'; '.join(how)}"
            if how
            else "no source has sieve = { … } or EWS rules: forwarding unknown",
        )
    )
    for name, measures in cfg.signals().items():
        missing = measures.unmeasured()
        out.append(
            Check(
                name,
                "measures",
                "warn" if {"read_activity", "logins"} & set(missing) else "ok",
                "not measurable here: "
                + ", ".join(m.replace("_", " ") for m in missing)
                + (
                    " (inactivity goes to review, never to the HR file)"
                    if {"read_activity", "logins"} & set(missing)
                    else ""
                )
                if missing
                else "every signal (read activity, logins, quota, forwarding, folder sizes)",
            )
        )
    try:
        policy = load_policy(cfg.policy)
        out.append(
            Check(
                "signals",
                "contact-scan",
                "ok",
                f"on (policy {policy.name}, messages up to {policy.contact_scan_max_bytes} bytes)"
                if policy.contact_scan
                else f"off (policy {policy.name}; opt-in with [contact_scan])",
            )
        )
    except PolicyError as exc:
        out.append(Check("policy", "load", "fail", str(exc)))
    return out
