"""`mailusage doctor`: check every source and the roster, say exactly what is wrong.

>>> checks = run_doctor(load_config("mailusage.toml"))
>>> [(c.subject, c.check, c.status) for c in checks][:2]
[('dovecot', 'tcp', 'ok'), ('dovecot', 'tls', 'ok')]
"""

from __future__ import annotations

import re
import sqlite3
from contextlib import closing
from dataclasses import MISSING, fields
from zoneinfo import ZoneInfo

import pyarrow.parquet as pq

from analytics.policy import PolicyError, load_policy
from connectors.base import Check as Check  # one line of the report; re-exported
from connectors.base import Probe
from connectors.logfiles import LogFileError, LogRead, current_file
from connectors.logins import LogCursor, LoginSourceError
from connectors.postfix_log import LogState, LogStats, read_chunk
from contract.people import Person
from contract.roster import RosterError, RosterNotes, load_roster
from contract.units import UnitsError, load_tree
from pipelines.config import (
    Config,
    ConfigError,
    MailLogConfig,
    SourceConfig,
)
from pipelines.secrets import export_key, secret_problems
from pipelines.signals import LOG_KINDS, read_source
from pipelines.sources import build_source


def _source_checks(src: SourceConfig, probe: Probe) -> list[Check]:
    """The source's own checks (each connector knows its protocol's), on a source opened
    for them and closed after."""
    with closing(build_source(src)) as source:
        return source.diagnose(probe)


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


def _tree_checks(cfg: Config, people: list[Person], notes: RosterNotes) -> list[Check]:
    """The unit tree (`[roster] units`) against the roster, and each scope's root in it."""
    out: list[Check] = []
    try:
        tree = load_tree(cfg.units_path, people, cfg.roster_path, notes.lines)
    except UnitsError as exc:
        return [Check("roster", "units", "fail", str(exc))]
    if cfg.units_path is not None:
        out.append(
            Check("roster", "units", "ok", f"{len(tree.units)} units on {tree.levels} levels")
        )
    for i, scope in enumerate(cfg.scopes):
        if scope.root is not None and scope.root not in tree.units:
            where = cfg.units_path.name if cfg.units_path else "the roster's units"
            detail = f"scopes[{i}].root {scope.root!r} is not a unit of {where}"
            out.append(Check("scopes", scope.name, "fail", detail))
        else:
            size = len(tree.subtree(scope.root)) if scope.root else len(tree.units)
            out.append(Check("scopes", scope.name, "ok", f"{size} unit(s)"))
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
    if roster_read:
        checks.extend(_tree_checks(cfg, people, roster_notes))
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
            checks.extend(_source_checks(src, Probe(probe, roster_read, blocking)))
        except ConfigError as exc:  # a secret resolved late (never a traceback)
            checks.append(Check(src.name, "login", "fail", str(exc)))
    checks.extend(_signal_checks(cfg))
    checks.extend(mail_log_check(m, cfg.timezone) for m in cfg.mail_logs)
    checks.extend(_delivery_checks(cfg, people if roster_read else None))
    if cfg.export is not None:  # the key of pseudonymised exports (mailusage export)
        try:
            export_key(cfg)
            detail = f"set, by reference ({cfg.export.key.describe()})"
            checks.append(Check("export", "key", "ok", detail))
        except ConfigError as exc:
            checks.append(Check("export", "key", "fail", str(exc)))
    return checks


def mail_log_check(src: MailLogConfig, timezone: str) -> Check:
    """The mail log is there, readable by this account, and Postfix's: its last MiB is
    parsed (nothing is written or committed)."""
    subject = f"mail_logs:{src.name}"
    try:
        current = current_file(src.path)
        if not current.exists():
            raise LogFileError(f"log file {current} not found")
        st = current.stat()
        tail = max(0, st.st_size - 2**20)
        stats, state = LogStats(), LogState(year=2000)
        for piece in LogRead(current, LogCursor(st.st_ino, tail)):
            data = piece.data
            if tail:  # begun in the middle of a line: its end is a fragment
                data, tail = data[data.index(b"\n") + 1 :], 0
            r = read_chunk(data, state, tz=ZoneInfo(timezone), log_tz=ZoneInfo(src.timezone))
            stats.add(r.stats)
    except (LogFileError, OSError) as exc:
        return Check(subject, "read", "fail", f"{src.kind}: {exc}")
    if stats.lines and not stats.used:
        return Check(
            subject, "read", "warn",
            f"{src.kind}: {current} is readable but its last {stats.lines} line(s) hold no "
            "Postfix message line: is it the mail log?",
        )  # fmt: skip
    return Check(
        subject, "read", "ok",
        f"{src.kind}: {current} readable; {stats.used} of its last {stats.lines} line(s) are "
        "Postfix's message lines",
    )  # fmt: skip


def _delivery_checks(cfg: Config, people: list[Person] | None) -> list[Check]:
    """[delivery]: the password set, STARTTLS and the login accepted (nothing is sent);
    [reminders]: every head's unit in the roster, and which units have no head."""
    if cfg.delivery is None:
        return []
    from pipelines.mailer import Mailer, SendFailed

    d = cfg.delivery
    out: list[Check] = []
    problem = d.password.problem()
    if problem:
        return [Check("delivery", "secret", "fail", problem)]
    out.append(Check("delivery", "secret", "ok", f"set, by reference ({d.password.describe()})"))
    try:
        with Mailer(d, d.password.resolve()) as mailer:
            size = mailer.size_limit
        limit = f"; the server takes messages up to {size:,} bytes" if size else ""
        out.append(
            Check(
                "delivery",
                "login",
                "ok",
                f"STARTTLS and login as {d.user} accepted by {d.host}:{d.port}{limit} "
                "(nothing sent)",
            )
        )
    except SendFailed as exc:
        out.append(Check("delivery", "login", "fail", str(exc)))
    out.append(
        Check("delivery", "recipients", "ok", ", ".join(d.recipients))
        if d.recipients
        else Check("delivery", "recipients", "warn", "none: the month's bundle is not mailed")
    )
    if cfg.reminders is None or people is None:
        return out
    from pipelines.remind import unit_heads

    try:
        heads = {h.unit_code for h in unit_heads(cfg, people)}
    except ConfigError as exc:
        return [*out, Check("reminders", "heads", "fail", str(exc))]
    units = sorted({p.unit_code for p in people if p.email and not p.is_unit_mailbox})
    headless = [u for u in units if u not in heads]
    out.append(
        Check(
            "reminders",
            "heads",
            "warn" if headless else "ok",
            f"{len(heads)} unit head(s); days {', '.join(map(str, cfg.reminders.days))}"
            + (f"; no head for {', '.join(headless)}: not reminded" if headless else ""),
        )
    )
    return out


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
