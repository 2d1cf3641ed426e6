"""`mailusage doctor`: check every source and the roster, say exactly what is wrong.

>>> checks = run_doctor(load_config("mailusage.toml"))
>>> [(c.subject, c.check, c.status) for c in checks][:2]
[('dovecot', 'tcp', 'ok'), ('dovecot', 'tls', 'ok')]
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass

from connectors.base import SourceError
from connectors.imap import probe_tcp
from pipelines.config import Config, Person, RosterError, SourceConfig, load_roster


@dataclass(frozen=True)
class Check:
    subject: str
    check: str
    status: str  # ok | warn | fail
    detail: str


def _source_checks(src: SourceConfig, probe: str | None) -> list[Check]:
    s = src.imap
    out: list[Check] = []

    def add(check: str, status: str, detail: str) -> None:
        out.append(Check(src.name, check, status, detail))

    try:
        probe_tcp(s.host, s.effective_port, timeout=min(s.timeout, 10))
        add("tcp", "ok", f"{s.host}:{s.effective_port} answers")
    except OSError as exc:
        add("tcp", "fail", f"cannot reach {s.host}:{s.effective_port}: {exc}")
        return out
    source = src.build()
    try:
        client = source.connect()
    except SourceError as exc:
        add("tls", "fail", exc.reason)
        return out
    client.logout()
    if s.security == "plain":
        add("tls", "warn", "plain text: passwords cross the network unencrypted")
    else:
        how = "verified" if s.verify else "NOT verified (verify = false)"
        add("tls", "ok", f"{s.security}, certificate {how}")
    if probe is None:
        add("login", "fail", "no roster mailbox for this source to log in to")
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
    except ssl.SSLError as exc:
        add("login", "fail", f"TLS error: {exc}")
    return out


def run_doctor(cfg: Config) -> list[Check]:
    checks: list[Check] = []
    people: list[Person] = []
    try:
        people = load_roster(cfg.roster_path, lambda: [s.name for s in cfg.sources])
        with_mailbox = sum(1 for p in people if p.email)
        checks.append(
            Check("roster", "rows", "ok", f"{len(people)} people, {with_mailbox} with a mailbox")
        )
    except RosterError as exc:
        checks.append(Check("roster", "rows", "fail", str(exc)))
    for src in cfg.sources:
        probe = next(
            (p.email for p in people if p.email and (p.source or cfg.sources[0].name) == src.name),
            None,
        )
        checks.extend(_source_checks(src, probe))
    for name, ref in ((s.name, s.password) for s in cfg.sources):
        checks.append(Check(name, "secret", "ok", f"password by reference ({ref.describe()})"))
    return checks
