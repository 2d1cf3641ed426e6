"""Nightly collection: every roster mailbox's metadata into the data directory.

Reads like its table of contents (:func:`run_collection`):
    plan    the roster's mailboxes and the cursors each starts from (one state query)
    fetch   one mailbox of each source alone (a refused account is refused once), then
            shards of mailboxes, each shard one task; a quiet mailbox costs one login and
            one LIST-STATUS; transient failures retried per mailbox inside the shard
    write   each dataset's night file built from the staged rows
    commit  cursors, folder index and run records in one transaction, then published
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.context import FlowRunContext
from prefect.task_runners import ThreadPoolTaskRunner

from analytics.policy import load_policy
from connectors.base import (
    CredentialsRejected,
    FolderCursor,
    FolderState,
    Forward,
    ForwardingSource,
    MailboxSession,
    MailboxSource,
    Message,
    SourceError,
    plan_folder,
)
from connectors.contacts import find_contacts
from connectors.logins import LoginSourceError
from contract.datasets import CONTACTS, FORWARDING, RUN_MAILBOXES, RUNS
from contract.domains import public_matcher
from contract.people import Person
from contract.roster import load_roster
from pipelines.config import (
    Config,
    ConfigError,
    SourceConfig,
    load_config,
)
from pipelines.migrate import convert_layout
from pipelines.secrets import secret_problems
from pipelines.signals import collect_logins
from pipelines.sources import OpenSource, open_sources
from pipelines.storage import (
    Collected,
    DataDir,
    MailboxRows,
    MailboxState,
    NightConflict,
    NightWriter,
    ShardWriter,
    messages_table,
)


@dataclass(frozen=True)
class MailboxOutcome:
    """What happened to one mailbox tonight.

    >>> outcome = MailboxOutcome("dovecot", "an.nv@danang.gov.vn", "ok", "", 120, 4, 0.8)
    >>> outcome.messages_new, outcome.account_refused
    (120, False)
    """

    source: str
    mailbox: str
    status: str  # ok | failed | skipped
    reason: str
    messages_new: int = 0
    folders: int = 0
    seconds: float = 0.0
    # The source's own account was refused: the night's other mailboxes of this source
    # would fail the same way (not a run_mailboxes column).
    account_refused: bool = False

    @property
    def is_signal(self) -> bool:
        """A server-signal source (``logins:<name>``), not a mailbox."""
        return self.mailbox.startswith("logins:")

    def row(self, run_id: str) -> dict[str, Any]:
        return {"run_id": run_id, **{k: getattr(self, k) for k in RUN_MAILBOXES.names[1:]}}


@dataclass
class RunSummary:
    run_id: str
    night: str
    outcomes: list[MailboxOutcome] = field(default_factory=list)

    def count(self, status: str) -> int:
        return sum(1 for o in self.outcomes if o.status == status)

    @property
    def messages_new(self) -> int:
        """New message rows (login rows of signal sources are not messages)."""
        return sum(o.messages_new for o in self.outcomes if not o.is_signal)


@dataclass
class Collection:
    """One mailbox read in full tonight: its outcome, its rows and what its commit needs."""

    outcome: MailboxOutcome
    rows: MailboxRows | None = None
    collected: Collected | None = None


@dataclass(frozen=True)
class ContactScan:
    """The opt-in contact scan (policy `[contact_scan] enabled = true`)."""

    is_public: Callable[[str], bool]
    max_bytes: int


@dataclass(frozen=True)
class Work:
    """One mailbox to collect tonight and the cursors it starts from."""

    source: str
    mailbox: str
    start: dict[str, FolderCursor]
    # Messages of tonight already stored, which a re-collection of tonight replaces: they
    # are not new again (runs.messages_new summed over runs counts each message once).
    replaces: int = 0


@dataclass
class Night:
    """Everything one night's collection carries, passed down instead of kept in globals."""

    cfg: Config
    night: str
    run_id: str
    started: datetime
    progress: Callable[[MailboxOutcome], None] | None = None
    # source -> why its own account was refused tonight (its other mailboxes are not tried)
    refused: dict[str, str] = field(default_factory=dict)
    writer: NightWriter | None = None
    # the night's opened sources, by name (pipelines/sources.py), closed when it ends
    sources: dict[str, OpenSource] = field(default_factory=dict)
    _scan: ContactScan | None = None

    @classmethod
    def begin(
        cls,
        cfg: Config,
        night: str | None,
        progress: Callable[[MailboxOutcome], None] | None = None,
    ) -> Night:
        night = night or tonight(cfg)
        datetime.strptime(night, "%Y-%m-%d")  # a clear ValueError for a bad --date
        started = datetime.now(UTC)
        run_id = (
            started.strftime("%Y%m%dT%H%M%SZ-")
            + hashlib.sha256(f"{cfg.path}{time.time_ns()}".encode()).hexdigest()[:6]
        )
        policy = load_policy(cfg.policy)
        scan = (
            ContactScan(public_matcher(cfg.public_domains_extra), policy.contact_scan_max_bytes)
            if policy.contact_scan
            else None
        )
        return cls(cfg, night, run_id, started, progress, _scan=scan)

    @property
    def data(self) -> DataDir:
        return DataDir(self.cfg.data_dir)

    def scan_for(self, src: SourceConfig) -> ContactScan | None:
        # Bodies are read over IMAP only (see docs/operator-guide.md, Exchange).
        return self._scan if src.kind == "imap" else None

    def report(self, outcome: MailboxOutcome) -> None:
        if self.progress is not None:
            self.progress(outcome)


def tonight(cfg: Config) -> str:
    """The night being collected: today's date in the agency's time zone."""
    return datetime.now(cfg.tz).date().isoformat()


class NightRefused(ConfigError):
    """The night cannot be run as asked (a date after today, a secret that is not there);
    nothing was written."""


def preflight(cfg: Config, people: list[Person], night: str | None) -> None:
    """Refuse a night before anything is written: a ``--date`` after today in the agency's
    zone (every later night would be skipped behind it), or a secret the night needs
    that resolves to nothing (the night would record every mailbox as failed).

    >>> preflight(cfg, people, "2027-01-15")
    Traceback (most recent call last):
    NightRefused: night 2027-01-15 is after today (2026-12-03 in Asia/Ho_Chi_Minh): ...
    """
    today = tonight(cfg)
    if night is not None and night > today:
        raise NightRefused(
            f"night {night} is after today ({today} in {cfg.timezone}): a night is collected "
            "on or after its date, never before; nothing was written"
        )
    blocking = [p for p in secret_problems(cfg, people) if p.blocking]
    if blocking:
        raise NightRefused(f"{blocking[0]}; nothing was collected")


# -- the run -----------------------------------------------------------------------------


def run_collection(
    config_path: str,
    night: str | None = None,
    progress: Callable[[MailboxOutcome], None] | None = None,
    plain: bool | None = None,
) -> RunSummary:
    """One night, every roster mailbox: plan -> fetch -> write -> commit.

    ``plain`` runs the shards on a plain thread pool instead of Prefect tasks; by default
    they are Prefect tasks inside a flow run (the deployment) and plain threads outside.
    """
    cfg = load_config(str(Path(config_path).resolve()))
    people = load_roster(cfg.roster_path, lambda: [s.name for s in cfg.sources])
    if night is not None:
        datetime.strptime(night, "%Y-%m-%d")  # a clear ValueError for a bad --date
    preflight(cfg, people, night)
    nt = Night.begin(cfg, night, progress)
    data = nt.data
    with data.collect_lock(nt.night), open_sources(cfg) as nt.sources:
        data.recover(nt.night)
        convert_layout(data)
        work, skipped = plan(nt, people, data)
        nt.writer = data.begin(nt.run_id, nt.night)
        try:
            collections = fetch(nt, work, plain)
            summary = RunSummary(nt.run_id, nt.night, [c.outcome for c in collections])
            summary.outcomes.extend(skipped)
            summary.outcomes.extend(collect_signals(nt, plain))
            commit(nt, summary, collections)
        except BaseException:
            nt.writer.abandon()
            raise
    return summary


def plan(nt: Night, people: list[Person], data: DataDir) -> tuple[list[Work], list[MailboxOutcome]]:
    """The mailboxes to read tonight with their start cursors, and those skipped."""
    states = data.states()
    again = [m for m, state in states.items() if state.night == nt.night]  # a re-collection
    stored = data.stored_rows(again, nt.night) if again else {}
    work, skipped = [], []
    for p in people:
        if not p.email:
            continue
        src = p.source or nt.cfg.sources[0].name
        state = states.get(p.email)
        try:
            start = state.start(p.email, nt.night) if state else {}
        except NightConflict as exc:
            outcome = MailboxOutcome(src, p.email, "skipped", str(exc))
            skipped.append(outcome)
            nt.report(outcome)
            continue
        work.append(Work(src, p.email, start, stored.get(p.email, 0)))
    return work, skipped


def shards(work: list[Work], n: int) -> list[list[Work]]:
    """``work`` dealt round-robin into at most ``n`` shards (balanced, in roster order).

    >>> [len(s) for s in shards([Work("s", str(i), {}) for i in range(10)], 4)]
    [3, 3, 2, 2]
    """
    n = max(1, min(n, len(work)))
    return [work[i::n] for i in range(n)] if work else []


def fetch(nt: Night, work: list[Work], plain: bool | None) -> list[Collection]:
    """Read every mailbox, shard by shard; returns one Collection per mailbox.

    One mailbox of each source goes first, alone: a service account that is refused is
    then refused once, not once per connection in flight (Active Directory commonly locks
    an account after five failures), and the source's other mailboxes are not tried.
    """
    if plain is None:
        plain = FlowRunContext.get() is None
    results, rest = lead(nt, work)
    parts = shards(rest, nt.cfg.concurrency * 4)
    if plain:
        with ThreadPoolExecutor(max_workers=nt.cfg.concurrency) as pool:
            for f in [pool.submit(collect_shard, nt, f"{i:04d}", s) for i, s in enumerate(parts)]:
                results.extend(f.result())
        return results
    runner: Any  # Prefect's submit() overloads do not type a sync task's result
    with ThreadPoolTaskRunner(max_workers=nt.cfg.concurrency) as runner:
        futures = [
            runner.submit(collect_shard_task, {"nt": nt, "shard": f"{i:04d}", "work": s})
            for i, s in enumerate(parts)
        ]
        for i, future in enumerate(futures, 1):
            done = future.result()
            results.extend(done)
            _logger().info(
                "shard %d/%d: %d mailboxes, %d failed",
                i,
                len(futures),
                len(done),
                sum(1 for c in done if c.outcome.status != "ok"),
            )
    return results


def lead(nt: Night, work: list[Work]) -> tuple[list[Collection], list[Work]]:
    """Collect the first mailbox of each source, one at a time; returns them and the work
    left for the shards (a lead that failed transiently goes back to it)."""
    assert nt.writer is not None
    first = {w.source: w for w in reversed(work)}
    leads = [w for w in work if first.get(w.source) is w]
    rest = [w for w in work if first.get(w.source) is not w]
    done: list[Collection] = []
    writer = nt.writer.shard("lead")
    try:
        for w in leads:
            result = _attempt(nt, w, writer, last=False)
            if result is None:
                rest.append(w)
                continue
            done.append(result)
            nt.report(result.outcome)
    finally:
        writer.close()
    return done, rest


def _logger() -> Any:
    """The flow run's logger inside a flow, the module's outside."""
    return get_run_logger() if FlowRunContext.get() else logging.getLogger(__name__)


def collect_shard(nt: Night, shard: str, work: list[Work]) -> list[Collection]:
    """Collect one shard's mailboxes on one connection at a time, staging each mailbox's
    rows once it is read in full. A transient failure (dropped connection, time-out) is
    retried after the shard's first pass, with the configured delays."""
    assert nt.writer is not None
    writer = nt.writer.shard(shard)
    done: list[Collection] = []
    pending = list(work)
    delays = nt.cfg.retry_delay_seconds or (0,)
    try:
        for attempt in range(nt.cfg.retries + 1):
            if attempt:
                time.sleep(delays[min(attempt - 1, len(delays) - 1)])
            retry = []
            for w in pending:
                result = _attempt(nt, w, writer, last=attempt == nt.cfg.retries)
                if result is None:
                    retry.append(w)
                    continue
                done.append(result)
                nt.report(result.outcome)
            pending = retry
            if not pending:
                break
    finally:
        writer.close()
    return done


def _attempt(nt: Night, w: Work, writer: ShardWriter, last: bool) -> Collection | None:
    """One try at one mailbox; None when it failed transiently and will be tried again."""
    if w.source in nt.refused:
        return Collection(
            MailboxOutcome(w.source, w.mailbox, "failed", f"not tried: {nt.refused[w.source]}")
        )
    src = nt.sources[w.source]
    try:
        result = collect_mailbox(src, w.mailbox, nt.night, w.start, None, nt.scan_for(src.config))
    except SourceError as exc:  # transient: collect_mailbox returns the others
        if not last:
            return None
        return Collection(MailboxOutcome(w.source, w.mailbox, "failed", exc.reason))
    except ConfigError as exc:  # the password reference resolves to nothing
        if src.config.password.env_prefix is None:  # the source's one password: none will log in
            nt.refused[w.source] = str(exc)
        return Collection(MailboxOutcome(w.source, w.mailbox, "failed", str(exc)))
    except Exception as exc:  # a bug or an unreadable answer: recorded, the night goes on
        return Collection(
            MailboxOutcome(w.source, w.mailbox, "failed", f"{type(exc).__name__}: {exc}")
        )
    if result.outcome.account_refused:
        # Every further login would be refused too, and each refused one makes a server
        # slow all logins from our address (Dovecot: up to 15 s) or lock the account.
        nt.refused[w.source] = result.outcome.reason
    if result.rows is not None:
        writer.add(result.rows)
        result.rows = None  # staged: the night keeps only outcomes and cursors in memory
    if w.replaces and result.outcome.status == "ok":
        new = max(result.outcome.messages_new - w.replaces, 0)
        result.outcome = replace(result.outcome, messages_new=new)
    return result


@task(name="collect-shard", cache_policy=NO_CACHE, task_run_name="shard-{shard}")
def collect_shard_task(nt: Night, shard: str, work: list[Work]) -> list[Collection]:
    return collect_shard(nt, shard, work)


# -- one mailbox -------------------------------------------------------------------------


def collect_mailbox(
    source: MailboxSource,
    mailbox: str,
    night: str,
    start: dict[str, FolderCursor],
    forwarding: ForwardingSource | None = None,
    scan: ContactScan | None = None,
) -> Collection:
    """Read one mailbox from its start cursors into rows to stage. Nothing is written here.

    Transient errors propagate (the shard retries them); other source errors come back
    as a failed outcome.
    """
    started = time.monotonic()
    try:
        with source.open(mailbox) as session:
            session.resume(start)
            folders = session.folders()
            quota = session.quota()
            sent = next((f.name for f in folders if f.role == "sent"), None)
            roles = {f.name: f.role for f in folders}
            uidvalidity = {f.name: f.uidvalidity for f in folders}
            by_name = {f.name: f for f in folders}
            renamed = _renamed(start, folders)
            plans = {f.name: plan_folder(f, start.get(f.name)) for f in folders}
            rows = MailboxRows()
            fetched: Counter[str] = Counter()
            to_scan: list[tuple[FolderState, Message]] = []
            wanted = [(f, p.from_uid, p.to_uid) for f in folders if not (p := plans[f.name]).empty]
            for batch in session.fetch(wanted):
                rows.messages.append(
                    messages_table(source.name, mailbox, uidvalidity, roles, batch)
                )
                fetched.update(m.folder for m in batch)
                if scan is not None:
                    to_scan.extend(
                        (by_name[m.folder], m) for m in batch if roles[m.folder] == "sent"
                    )
            # After the fetch: a Graph folder's changes are known once its delta is read.
            activity = {
                f.name: session.count_changed(f, p.changed_since, p.previous_last_uid)
                for f in folders
                if (p := plans[f.name]).changed_since is not None
            }
            unreadable = session.unreadable
            tokens = {f.name: session.token(f) for f in folders}
            contacts = _scan_contacts(session, mailbox, to_scan, scan) if scan else None
    except SourceError as exc:
        if exc.transient:
            raise
        return Collection(
            MailboxOutcome(
                source.name,
                mailbox,
                "failed",
                exc.reason,
                seconds=time.monotonic() - started,
                account_refused=isinstance(exc, CredentialsRejected),
            )
        )
    # after the IMAP logout, as before: ManageSieve and Zimbra have connections of their own
    forwards, not_read = _forwards(session, mailbox, forwarding)
    after = {
        f.name: FolderCursor(f.uidvalidity, max(f.uidnext - 1, 0), f.highestmodseq, tokens[f.name])
        for f in folders
    }
    status = [
        {
            "folder": f.name,
            "role": f.role,
            "folder_status": "ok",
            "messages": f.messages,
            "unseen": f.unseen,
            "uidnext": f.uidnext,
            "uidvalidity": f.uidvalidity,
            "highestmodseq": f.highestmodseq,
            "last_uid": after[f.name].last_uid,
            "fetched": fetched[f.name],
            "full_reread": plans[f.name].full_reread,
            "read_activity": activity.get(f.name),
            "folder_bytes": f.size_bytes,
            "unreadable": unreadable.get(f.name, 0),
        }
        for f in folders
    ]
    # A folder we knew that the server no longer lists: recorded, its rows and cursor kept
    # (if it comes back with the same UIDVALIDITY we go on from it). Renamed (the same
    # UIDVALIDITY under a new name): read whole under the new name tonight, its rows under
    # the old name dropped when tonight commits.
    for name in sorted(start.keys() - after.keys()):
        if name not in renamed:
            after[name] = start[name]
        status.append(
            {
                "folder": name,
                "folder_status": "renamed" if name in renamed else "vanished",
                "uidvalidity": start[name].uidvalidity,
                "last_uid": start[name].last_uid,
                "fetched": 0,
            }
        )
    for row in status:
        row.update(
            source=source.name,
            mailbox=mailbox,
            quota_used_bytes=quota.used_bytes,
            quota_limit_bytes=quota.limit_bytes,
            sent_folder=sent,
        )
    rows.mailbox_status = status
    rows.contacts = contacts
    notes = [] if sent else ["no Sent folder found"]
    if sum(unreadable.values()):
        notes.append(f"{sum(unreadable.values())} FETCH responses unreadable (not stored)")
    if forwards is not None:
        rows.forwarding = pa.Table.from_pylist([asdict(r) for r in forwards], schema=FORWARDING)
    if not_read:  # the messages are safe; say what is missing
        notes.append(f"forwarding rules not read: {not_read}")
    drops: list[tuple[str, int | None]] = [
        (f.name, f.uidvalidity) for f in folders if plans[f.name].full_reread
    ]
    drops += [(name, None) for name in renamed]
    collected = Collected(
        mailbox,
        MailboxState(night, start, after),
        {(f.name, f.uidvalidity): fetched[f.name] for f in folders},
        drops,
    )
    outcome = MailboxOutcome(
        source.name,
        mailbox,
        "ok",
        "; ".join(notes),
        sum(fetched.values()),
        len(folders),
        time.monotonic() - started,
    )
    return Collection(outcome, rows, collected)


def _forwards(
    session: MailboxSession, mailbox: str, forwarding: ForwardingSource | None
) -> tuple[list[Forward] | None, str]:
    """The mailbox's forwarding rules, read in its session (``forwarding``: a separate
    reader, asked when the session reads none); None when not read, with why if it failed."""
    try:
        rules = session.forwards()
        if rules is None and forwarding is not None:
            rules = forwarding.forwards(mailbox)
    except SourceError as exc:
        return None, exc.reason
    return rules, ""


def _renamed(start: dict[str, FolderCursor], folders: list[FolderState]) -> dict[str, str]:
    """Folders known last night that are gone under their name but whose UIDVALIDITY a new
    folder now carries: old name -> new name.

    >>> _renamed({"Dự án": FolderCursor(7, 9, None)},
    ...          [FolderState("Lưu", "other", 9, 0, 10, 7, None)])
    {'Dự án': 'Lưu'}
    """
    names = {f.name for f in folders}
    new = {f.uidvalidity: f.name for f in folders if f.name not in start}
    return {
        old: new[c.uidvalidity]
        for old, c in start.items()
        if old not in names and c.uidvalidity in new
    }


def _scan_contacts(
    session: Any, mailbox: str, sent: list[tuple[FolderState, Message]], scan: ContactScan
) -> pa.Table:
    """Public contact addresses in tonight's new sent messages; skips recorded with reasons."""
    rows: list[dict[str, Any]] = []
    for folder, m in sent:
        base = {
            "mailbox": mailbox,
            "uid": m.uid,
            "message_id": m.message_id,
            "sent_date": datetime.fromtimestamp(m.sent_date, UTC),
        }
        if m.size is not None and m.size > scan.max_bytes:
            rows.append({**base, "skipped": f"larger than {scan.max_bytes} bytes ({m.size})"})
            continue
        raw = session.raw_message(folder, m.uid)
        if raw is None:
            rows.append({**base, "skipped": "gone before it could be read"})
            continue
        for address, where in find_contacts(raw, scan.is_public):
            rows.append({**base, "address": address, "where_found": where})
    return pa.Table.from_pylist(rows, schema=CONTACTS)


# -- signals -----------------------------------------------------------------------------


def collect_signals(nt: Night, plain: bool | None) -> list[MailboxOutcome]:
    """The night's login sources (each writes its own file and cursor)."""
    if plain is None:
        plain = FlowRunContext.get() is None
    outcomes = []
    for src in nt.cfg.logins:
        label = f"logins:{src.name}"
        try:
            fn = collect_logins_task.fn if plain else collect_logins_task
            graph = nt.sources.get(src.graph.name) if src.graph is not None else None
            outcome = fn(nt.cfg, src.name, nt.night, graph)
        except Exception as exc:  # a signal source failing never stops the night
            outcome = MailboxOutcome(src.name, label, "failed", f"{type(exc).__name__}: {exc}")
        outcomes.append(outcome)
    return outcomes


@task(name="collect-logins", cache_policy=NO_CACHE, task_run_name="logins-{name}")
def collect_logins_task(
    cfg: Config, name: str, night: str, graph: OpenSource | None = None
) -> MailboxOutcome:
    src = next(s for s in cfg.logins if s.name == name)
    started = time.monotonic()
    try:
        rows = collect_logins(src, night, DataDir(cfg.data_dir), graph)
    except NightConflict as exc:
        return MailboxOutcome(name, f"logins:{name}", "skipped", str(exc))
    except LoginSourceError as exc:
        return MailboxOutcome(name, f"logins:{name}", "failed", str(exc))
    return MailboxOutcome(name, f"logins:{name}", "ok", "", rows, 0, time.monotonic() - started)


# -- commit ------------------------------------------------------------------------------


def commit(nt: Night, summary: RunSummary, collections: list[Collection]) -> None:
    """Build the night's files, commit cursors and run records together, publish."""
    assert nt.writer is not None
    digest = hashlib.sha256(nt.cfg.path.read_bytes()).hexdigest()
    run = pa.Table.from_pylist(
        [
            {
                "run_id": summary.run_id,
                "started_at": nt.started,
                "finished_at": datetime.now(UTC),
                "mailboxes": sum(1 for o in summary.outcomes if not o.is_signal),
                "ok": summary.count("ok"),
                "failed": summary.count("failed"),
                "skipped": summary.count("skipped"),
                "messages_new": summary.messages_new,
                "config_sha256": digest,
            }
        ],
        schema=RUNS,
    )
    outcomes = pa.Table.from_pylist(
        [o.row(summary.run_id) for o in summary.outcomes], schema=RUN_MAILBOXES
    )
    done = [c.collected for c in collections if c.collected is not None]
    nt.writer.commit(done, run, outcomes)


def collect_single(
    source: MailboxSource,
    mailbox: str,
    night: str,
    data: DataDir,
    forwarding: ForwardingSource | None = None,
    scan: ContactScan | None = None,
) -> MailboxOutcome:
    """One mailbox's night, start to commit, without a config (tests, the EWS contract).

    Transient errors propagate, as in a shard; nothing is committed then.
    """
    with data.collect_lock(night):
        data.recover(night)
        state = data.state(mailbox)
        try:
            start = state.start(mailbox, night) if state else {}
        except NightConflict as exc:
            return MailboxOutcome(source.name, mailbox, "skipped", str(exc))
        writer = data.begin(f"single-{time.time_ns()}", night)
        try:
            result = collect_mailbox(source, mailbox, night, start, forwarding, scan)
            if result.rows is not None and result.collected is not None:
                shard = writer.shard("0000")
                shard.add(result.rows)
                shard.close()
                writer.commit([result.collected], None, None)
            else:
                writer.abandon()
        except BaseException:
            writer.abandon()
            raise
    return result.outcome


# -- the flow ----------------------------------------------------------------------------


class NightFailed(Exception):
    """More mailboxes failed tonight than `collect.allowed_failures`: the flow run ends
    Failed (red in the UI, the summary as its message), not Completed.

    ``result`` is the night's summary, as :func:`collect` would have returned it.
    """

    def __init__(self, message: str, result: dict[str, Any]) -> None:
        super().__init__(message, result)  # both in args: the exception survives pickling
        self.result = result

    def __str__(self) -> str:
        return str(self.args[0])


@flow(name="collect", log_prints=False)
def collect(config_path: str, night: str | None = None) -> dict[str, Any]:
    """Nightly collection flow (deployment: 01:30 Asia/Ho_Chi_Minh).

    Returns ``{"run_id", "night", "ok", "failed", "skipped", "messages_new", "outcomes"}``;
    raises NightFailed (the run ends Failed) when more mailboxes failed than the config's
    `collect.allowed_failures` (default 0), after the night's data is committed. The
    failed mailboxes and their reasons are a table artifact, ``collect-failures``.
    """
    logger = get_run_logger()
    summary = run_collection(config_path, night)
    failed = [o for o in summary.outcomes if o.status == "failed"]
    for o in summary.outcomes:
        if o.status != "ok":
            logger.warning("%s %s: %s", o.mailbox, o.status, o.reason)
    result = summary_dict(summary)
    line = summary_line(result)
    logger.info("collection %s: %s", result["run_id"], line)
    if failed:
        create_table_artifact(
            table=[
                {"source": o.source, "mailbox": o.mailbox, "reason": o.reason}
                for o in failed[:ARTIFACT_ROWS]
            ],
            key="collect-failures",
            description=f"night {summary.night}: {len(failed)} failed"
            + (f" (the first {ARTIFACT_ROWS} listed)" if len(failed) > ARTIFACT_ROWS else ""),
        )
    skipped = skipped_behind(result)
    if skipped:
        raise NightFailed(f"{line}; {skipped}", result)
    allowed = load_config(config_path).allowed_failures
    if len(failed) > allowed:
        reasons = Counter(o.reason.removeprefix("not tried: ") for o in failed).most_common(1)
        raise NightFailed(
            f"{line}; more than the {allowed} failures allowed. Most common reason "
            f"({reasons[0][1]}x): {reasons[0][0]}",
            result,
        )
    return result


ARTIFACT_ROWS = 1000  # a night where everything failed lists this many, and says so
_LATER = re.compile(r"night (\d{4}-\d\d-\d\d) is already")


def skipped_behind(result: dict[str, Any]) -> str:
    """Why mailboxes were skipped in a night's result (:func:`summary_dict`), naming the
    later nights that hold them and the command that undoes a mistaken one ("" when none
    was skipped): a skipped night is never a passing run.

    >>> skipped_behind(result)
    '48 skipped: night 2027-01-15 is already committed for them, so night 2026-12-03 ...'
    """
    skipped = [o["reason"] for o in result["outcomes"] if o["status"] == "skipped"]
    if not skipped:
        return ""
    later = Counter(m.group(1) for reason in skipped if (m := _LATER.match(reason)))
    if not later:
        return f"{len(skipped)} skipped: {skipped[0]}"
    nights = sorted(later, reverse=True)
    return (
        f"{len(skipped)} skipped: night {', '.join(nights)} is already committed for them, "
        f"so night {result['night']} was not collected for them; if it was a mistake, "
        + "; then ".join(f"mailusage forget-night {n}" for n in nights)
        + f", then collect {result['night']} again (docs/operator-guide.md, §5c)"
    )


def summary_line(result: dict[str, Any]) -> str:
    """The night's counts, mailboxes and login sources apart (``result`` as from
    :func:`summary_dict`):

    ``night 2026-11-20: ok 47, failed 1, skipped 0 of 48 mailboxes; login sources: ok 1
    of 1; 105 new messages`` (without login sources configured, no such clause)
    """
    mailboxes = Counter(
        o["status"] for o in result["outcomes"] if not o["mailbox"].startswith("logins:")
    )
    logins = Counter(o["status"] for o in result["outcomes"] if o["mailbox"].startswith("logins:"))
    line = (
        f"night {result['night']}: ok {mailboxes['ok']}, failed {mailboxes['failed']}, "
        f"skipped {mailboxes['skipped']} of {mailboxes.total()} mailboxes; "
    )
    if logins:
        line += f"login sources: ok {logins['ok']}" + "".join(
            f", {status} {logins[status]}" for status in ("failed", "skipped") if logins[status]
        )
        line += f" of {logins.total()}; "
    return line + f"{result['messages_new']} new messages"


def summary_dict(summary: RunSummary) -> dict[str, Any]:
    return {
        "run_id": summary.run_id,
        "night": summary.night,
        "ok": summary.count("ok"),
        "failed": summary.count("failed"),
        "skipped": summary.count("skipped"),
        "messages_new": summary.messages_new,
        "outcomes": [o.__dict__ for o in summary.outcomes],
    }
