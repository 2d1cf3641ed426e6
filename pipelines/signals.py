"""Server-side signals collected with the nightly run: the `logins` dataset, and the
night's step that reads every login and mail log source (:func:`collect_signals`), with
what their lines say changed (pipelines/quiet.py).

Each `[[logins]]` source writes `logins/night=N/<source>.parquet`. A log source keeps its
read position in the state database beside the mailboxes' cursors (`DataDir.commit_log`:
{night, before, after}), committed after the file is written, so re-running a night
re-reads the same lines and a killed run loses none.
"""

from __future__ import annotations

import time
from contextlib import closing
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pyarrow as pa

from connectors.base import SourceError
from connectors.graph import GraphSource
from connectors.logfiles import Seen
from connectors.logins import (
    LogCursor,
    Login,
    LoginSourceError,
    read_dovecot_dict,
    read_exchange_export,
    read_log,
    read_zimbra_export,
)
from connectors.zimbra import read_audit_log
from contract.datasets import LOGINS
from pipelines.config import CHANGE_LOG_KINDS, LoginSourceConfig, MailLogConfig
from pipelines.mail_logs import MailLogError, collect_mail_log
from pipelines.mailbox import MailboxOutcome
from pipelines.night import Night
from pipelines.quiet import LogEvidence
from pipelines.sources import OpenSource, build_source
from pipelines.storage import DataDir, LogState, NightConflict

LOG_KINDS = ("dovecot-log", "zimbra-audit")  # read on from a cursor, night by night


def read_source(
    src: LoginSourceConfig,
    cursor: LogCursor | None = None,
    graph: OpenSource | None = None,
    seen: Seen | None = None,
) -> tuple[list[Login], LogCursor | None]:
    """Every login a source gives now; for a log, those after ``cursor`` and the new cursor
    (and, given ``seen``, what else its lines say: pipelines/quiet.py). ``graph``: for
    graph-signin, the night's open Graph source (its token); without it, one is opened for
    this read and closed after."""
    tz = ZoneInfo(src.timezone)
    if src.kind == "graph-signin":
        assert src.graph is not None
        if graph is not None:
            return read_graph_sign_ins(graph.connector, src.name), None  # type: ignore[arg-type]
        with closing(build_source(src.graph)) as opened:
            return read_graph_sign_ins(opened.connector, src.name), None  # type: ignore[arg-type]
    if src.kind == "dovecot-dict":
        return read_dovecot_dict(src.doveadm, src.dict_uri, src.name), None
    if src.path is None:
        raise LoginSourceError(f"{src.name}: no path configured")
    if src.kind == "dovecot-log":
        return read_log(
            src.path, cursor, tz=tz, source=src.name, ignore_remote=src.ignore_remote, seen=seen
        )
    if src.kind == "zimbra-audit":
        return read_audit_log(
            src.path, cursor, tz=tz, source=src.name,
            ignore_accounts=src.ignore_accounts, ignore_remote=src.ignore_remote, seen=seen,
        )  # fmt: skip
    if src.kind == "exchange-csv":
        return read_exchange_export(src.path, tz=tz, source=src.name, day_first=src.day_first), None
    return read_zimbra_export(src.path, source=src.name), None


def read_graph_sign_ins(graph: GraphSource, name: str) -> list[Login]:
    """Each user's last successful sign-in (Entra ID signInActivity)."""
    try:
        return [
            Login(who, datetime.fromtimestamp(when, UTC), kind, None, name)
            for who, kind, when in graph.sign_ins()
        ]
    except SourceError as exc:
        hint = ""
        if "NonPremium" in exc.reason:
            hint = " (signInActivity needs an Entra ID P1 or P2 licence in the tenant)"
        elif "Authorization_RequestDenied" in exc.reason or "AccessDenied" in exc.reason:
            hint = " (the app needs AuditLog.Read.All and User.Read.All, admin-consented)"
        raise LoginSourceError(f"{name}: {exc.reason}{hint}") from exc


def collect_logins(
    src: LoginSourceConfig,
    night: str,
    data: DataDir,
    graph: OpenSource | None = None,
    seen: Seen | None = None,
) -> int:
    """Read one login source for one night and write its rows; returns how many
    (``graph``: the night's open Graph source, for graph-signin; ``seen``: told what
    else a log's lines say, pipelines/quiet.py)."""
    before = None
    if src.kind in LOG_KINDS:
        state = data.log_state(src.name)
        if state is not None:
            before = state.start(src.name, night)  # NightConflict: a later night is read
        data.drop_uncommitted("logins", src.name, state.night if state else "", night)
    logins, after = read_source(src, before, graph, seen)
    rows = sorted(
        {(x.mailbox, x.login_at, x.protocol, x.remote_addr, x.source) for x in logins},
        key=lambda r: (r[0], r[1], r[2] or "", r[3] or ""),
    )
    table = pa.Table.from_pylist(
        [dict(zip(LOGINS.names, r, strict=True)) for r in rows], schema=LOGINS
    )
    data.write_table("logins", night, src.name, table)
    if after is not None:
        data.commit_log(src.name, LogState(night, before, after))
    return int(table.num_rows)


# -- the night's signal sources, each a step of its own ------------------------------------


def collect_signals(nt: Night) -> tuple[list[MailboxOutcome], list[LogEvidence]]:
    """The night's login and mail log sources (each writes its own file and cursor); a
    source that fails is that source's recorded failure, never the night's end. With
    ``nt.changed_only``, each log's evidence of which mailboxes changed (a source that
    failed: evidence that is not ok, so every mailbox is read)."""
    outcomes, evidence = [], []
    for src in nt.logins:
        label = f"logins:{src.name}"
        log = nt.changed_only and src.kind in CHANGE_LOG_KINDS
        try:
            graph = nt.sources[src.graph.name].source if src.graph is not None else None
            opened = graph if isinstance(graph, OpenSource) else None  # graph-signin's token
            step = nt.step(collect_login_source, "collect-logins", "logins-{src.name}")
            outcome, seen = step(src, nt.night, nt.data, opened, log)
        except Exception as exc:  # a signal source failing never stops the night
            outcome = MailboxOutcome(src.name, label, "failed", f"{type(exc).__name__}: {exc}")
            seen = None
        outcomes.append(outcome)
        if log:
            evidence.append(_evidence(outcome, _dated(nt.data, label, seen)))
    for mail_log in nt.mail_logs:
        label = f"mail_logs:{mail_log.name}"
        try:
            step = nt.step(collect_mail_log_source, "collect-mail-log", "mail-log-{src.name}")
            outcome, seen = step(mail_log, nt.night, nt.data, nt.timezone)
        except Exception as exc:  # a bug, say: recorded against the source, the night goes on
            outcome = MailboxOutcome(mail_log.name, label, "failed", f"{type(exc).__name__}: {exc}")
            seen = None
        outcomes.append(outcome)
        if nt.changed_only:
            evidence.append(_evidence(outcome, _dated(nt.data, label, seen)))
    return outcomes, evidence


def _dated(data: DataDir, label: str, seen: Seen | None) -> Seen | None:
    """``seen`` with the newest line any night read from this log: a night that found no
    new line is silent only once the last line is older than the silence allowed."""
    if seen is None:
        return None
    key = f"latest_line:{label}"
    if seen.latest is not None:
        data.set_meta(key, seen.latest.isoformat())
    elif (known := data.meta(key)) is not None:
        seen.latest = datetime.fromisoformat(known)
    return seen


def _evidence(outcome: MailboxOutcome, seen: Seen | None) -> LogEvidence:
    """One log source's evidence for pipelines/quiet.py: its mailboxes with an event, or
    why it cannot be trusted tonight."""
    name = outcome.mailbox
    if outcome.status != "ok" or seen is None:
        return LogEvidence(name, frozenset(), False, outcome.reason or outcome.status)
    if seen.rotation_lost:
        return LogEvidence(name, frozenset(), False, "the file read last night was not found")
    if seen.dropped:
        return LogEvidence(
            name, frozenset(), False, f"{seen.dropped} byte(s) of an unfinished line dropped"
        )
    if seen.first:
        return LogEvidence(
            name, frozenset(), False, "its first read: nothing says what came before"
        )
    return LogEvidence(name, frozenset(seen.changed), True, "", seen.latest, frozenset(seen.named))


def collect_login_source(
    src: LoginSourceConfig,
    night: str,
    data: DataDir,
    graph: OpenSource | None = None,
    log: bool = False,
) -> tuple[MailboxOutcome, Seen | None]:
    """One login source's night; with ``log``, what its lines say besides (``Seen``)."""
    name, started = src.name, time.monotonic()
    seen = Seen(logins=not src.mail_log_plugin) if log else None
    try:
        rows = collect_logins(src, night, data, graph, seen)
    except NightConflict as exc:
        return MailboxOutcome(name, f"logins:{name}", "skipped", str(exc)), None
    except LoginSourceError as exc:
        return MailboxOutcome(name, f"logins:{name}", "failed", str(exc)), None
    seconds = time.monotonic() - started
    return MailboxOutcome(name, f"logins:{name}", "ok", "", rows, 0, seconds), seen


def collect_mail_log_source(
    src: MailLogConfig, night: str, data: DataDir, timezone: str
) -> tuple[MailboxOutcome, Seen | None]:
    """One mail log's night: its rows in ``messages_new`` (not counted as messages), what
    an operator should know (a rotation not found, lines not understood) as the reason,
    and what its lines say changed (``Seen``)."""
    name, label, started = src.name, f"mail_logs:{src.name}", time.monotonic()
    try:
        read = collect_mail_log(src, night, data, timezone)
    except NightConflict as exc:
        return MailboxOutcome(name, label, "skipped", str(exc)), None
    except MailLogError as exc:
        return MailboxOutcome(name, label, "failed", str(exc)), None
    seconds = time.monotonic() - started
    return MailboxOutcome(name, label, "ok", read.notes(), read.rows, 0, seconds), read.seen
