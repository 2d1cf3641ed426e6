"""Nightly collection: every roster mailbox's metadata into the data directory.

Reads like its table of contents:
    config + roster -> one task per mailbox (bounded concurrency, retried when transient)
    -> messages + mailbox_status per mailbox -> a runs record with ok / failed / skipped.
"""

from __future__ import annotations

import hashlib
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.task_runners import ThreadPoolTaskRunner

from analytics.policy import load_policy, public_matcher
from connectors.base import (
    CredentialsRejected,
    FolderCursor,
    FolderState,
    ForwardingSource,
    MailboxSource,
    Message,
    SourceError,
    plan_folder,
)
from connectors.contacts import find_contacts
from connectors.logins import LoginSourceError
from pipelines.config import Config, Person, load_config, load_roster
from pipelines.signals import collect_logins
from pipelines.storage import (
    CONTACTS,
    FORWARDING,
    RUN_MAILBOXES,
    RUNS,
    DataDir,
    MailboxState,
    NightConflict,
    mailbox_key,
    messages_table,
)


@dataclass(frozen=True)
class MailboxOutcome:
    """What happened to one mailbox tonight.

    >>> MailboxOutcome("dovecot", "an.nv@danang.gov.vn", "ok", "", 120, 4, 0.8)
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


def collect_mailbox(
    source: MailboxSource,
    mailbox: str,
    night: str,
    data: DataDir,
    forwarding: ForwardingSource | None = None,
    scan: ContactScan | None = None,
) -> MailboxOutcome:
    """Collect one mailbox for one night and commit it. Transient errors propagate (the
    task retries them); other source errors come back as a failed outcome."""
    started = time.monotonic()
    try:
        start = data.start_cursors(mailbox, night)
    except NightConflict as exc:
        return MailboxOutcome(source.name, mailbox, "skipped", str(exc))
    try:
        with source.open(mailbox) as session:
            folders = session.folders()
            quota = session.quota()
            sent = next((f.name for f in folders if f.role == "sent"), None)
            roles = {f.name: f.role for f in folders}
            uidvalidity = {f.name: f.uidvalidity for f in folders}
            after: dict[str, FolderCursor] = {}
            rows: list[dict[str, Any]] = []
            rereads: list[tuple[str, int]] = []
            to_scan: list[tuple[FolderState, Message]] = []
            by_name = {f.name: f for f in folders}
            renamed = _renamed(start, folders)
            plans = {f.name: plan_folder(f, start.get(f.name)) for f in folders}
            activity = {
                f.name: session.count_changed(f, p.changed_since, p.previous_last_uid)
                for f in folders
                if (p := plans[f.name]).changed_since is not None
            }
            fetched: Counter[str] = Counter()
            with data.messages_writer(mailbox, night) as writer:
                wanted = [(f, plans[f.name].from_uid, plans[f.name].to_uid) for f in folders]
                for batch in session.fetch(wanted):
                    writer.write(messages_table(source.name, mailbox, uidvalidity, roles, batch))
                    fetched.update(m.folder for m in batch)
                    if scan is not None:
                        to_scan.extend(
                            (by_name[m.folder], m) for m in batch if roles[m.folder] == "sent"
                        )
                unreadable = session.unreadable
                for folder in folders:
                    plan = plans[folder.name]
                    after[folder.name] = FolderCursor(
                        folder.uidvalidity, max(folder.uidnext - 1, 0), folder.highestmodseq
                    )
                    if plan.full_reread:
                        rereads.append((folder.name, folder.uidvalidity))
                    rows.append(
                        {
                            "folder": folder.name,
                            "role": folder.role,
                            "folder_status": "ok",
                            "messages": folder.messages,
                            "unseen": folder.unseen,
                            "uidnext": folder.uidnext,
                            "uidvalidity": folder.uidvalidity,
                            "highestmodseq": folder.highestmodseq,
                            "last_uid": after[folder.name].last_uid,
                            "fetched": fetched[folder.name],
                            "full_reread": plan.full_reread,
                            "read_activity": activity.get(folder.name),
                            "folder_bytes": folder.size_bytes,
                            "unreadable": unreadable.get(folder.name, 0),
                        }
                    )
                # A folder we knew that the server no longer lists: recorded, its rows and
                # cursor kept (if it comes back with the same UIDVALIDITY we go on from it).
                # Renamed (the same UIDVALIDITY under a new name): read whole under the new
                # name tonight, its rows under the old name dropped once tonight commits.
                for name in sorted(start.keys() - after.keys()):
                    if name not in renamed:
                        after[name] = start[name]
                    rows.append(
                        {
                            "folder": name,
                            "folder_status": "renamed" if name in renamed else "vanished",
                            "uidvalidity": start[name].uidvalidity,
                            "last_uid": start[name].last_uid,
                            "fetched": 0,
                        }
                    )
                fetched_total = writer.rows
            contacts = _scan_contacts(session, mailbox, to_scan, scan) if scan else None
    except SourceError as exc:
        if exc.transient:
            raise
        return MailboxOutcome(
            source.name,
            mailbox,
            "failed",
            exc.reason,
            seconds=time.monotonic() - started,
            account_refused=isinstance(exc, CredentialsRejected),
        )
    notes = [] if sent else ["no Sent folder found"]
    if sum(unreadable.values()):
        notes.append(f"{sum(unreadable.values())} FETCH responses unreadable (not stored)")
    if forwarding is not None:
        try:
            rules = forwarding.forwards(mailbox)
            data.write_table(
                "forwarding",
                night,
                mailbox_key(mailbox),
                pa.Table.from_pylist([asdict(r) for r in rules], schema=FORWARDING),
            )
        except SourceError as exc:  # the messages are safe; say what is missing
            notes.append(f"forwarding rules not read: {exc.reason}")
    if contacts is not None:
        data.write_table("contacts", night, mailbox_key(mailbox), contacts)
    for name, uv in rereads:
        data.drop_folder_rows(mailbox, name, uv, except_night=night)
    for name in renamed:
        data.drop_folder_rows(mailbox, name, None, except_night=night)
    for row in rows:
        row.update(
            source=source.name,
            mailbox=mailbox,
            quota_used_bytes=quota.used_bytes,
            quota_limit_bytes=quota.limit_bytes,
            sent_folder=sent,
        )
    data.write_status(mailbox, night, rows)
    data.commit(mailbox, MailboxState(night, start, after))
    return MailboxOutcome(
        source.name,
        mailbox,
        "ok",
        "; ".join(notes),
        fetched_total,
        len(folders),
        time.monotonic() - started,
    )


def _renamed(start: dict[str, FolderCursor], folders: list[FolderState]) -> dict[str, str]:
    """Folders known last night that are gone under their name but whose UIDVALIDITY a new
    folder now carries: old name -> new name.

    >>> _renamed({"Dự án": FolderCursor(7, 9, None)}, [FolderState("Lưu", "other", 9, 0, 10, 7)])
    {'Dự án': 'Lưu'}
    """
    names = {f.name for f in folders}
    new = {f.uidvalidity: f.name for f in folders if f.name not in start}
    return {
        old: new[c.uidvalidity]
        for old, c in start.items()
        if old not in names and c.uidvalidity in new
    }


@dataclass(frozen=True)
class ContactScan:
    """The opt-in contact scan (policy `[contact_scan] enabled = true`)."""

    is_public: Callable[[str], bool]
    max_bytes: int


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
        if m.size > scan.max_bytes:
            rows.append({**base, "skipped": f"larger than {scan.max_bytes} bytes ({m.size})"})
            continue
        raw = session.raw_message(folder, m.uid)
        if raw is None:
            rows.append({**base, "skipped": "gone before it could be read"})
            continue
        for address, where in find_contacts(raw, scan.is_public):
            rows.append({**base, "address": address, "where_found": where})
    return pa.Table.from_pylist(rows, schema=CONTACTS)


def _retry_transient(task: Any, task_run: Any, state: Any) -> bool:
    """Retry dropped connections and timeouts, not wrong passwords."""
    exc = state.result(raise_on_failure=False)
    return isinstance(exc, SourceError) and exc.transient


@task(
    name="collect-mailbox",
    cache_policy=NO_CACHE,
    retry_condition_fn=_retry_transient,
    task_run_name="{mailbox}",
)
def collect_mailbox_task(
    config_path: str, source_name: str, mailbox: str, night: str
) -> MailboxOutcome:
    cfg = _config(config_path)
    src = cfg.source(source_name)
    policy = load_policy(cfg.policy)
    scan = (  # bodies are read over IMAP only (see docs/operator-guide.md, Exchange)
        ContactScan(public_matcher(cfg.public_domains_extra), policy.contact_scan_max_bytes)
        if policy.contact_scan and src.kind == "imap"
        else None
    )
    refused = (config_path, source_name, night)
    if refused in _REFUSED:
        return MailboxOutcome(source_name, mailbox, "failed", f"not tried: {_REFUSED[refused]}")
    outcome = collect_mailbox(
        src.build(), mailbox, night, DataDir(cfg.data_dir), src.forwarding(), scan
    )
    if outcome.account_refused:
        # Every further login would be refused too, and each refused one makes a server
        # slow all logins from our address (Dovecot: up to 15 s) or lock the account.
        _REFUSED[refused] = outcome.reason
    return outcome


# (config path, source, night) whose own account was refused in the current run.
_REFUSED: dict[tuple[str, str, str], str] = {}


@task(name="collect-logins", cache_policy=NO_CACHE, task_run_name="logins-{name}")
def collect_logins_task(config_path: str, name: str, night: str) -> MailboxOutcome:
    cfg = _config(config_path)
    src = next(s for s in cfg.logins if s.name == name)
    started = time.monotonic()
    try:
        rows = collect_logins(src, night, DataDir(cfg.data_dir))
    except NightConflict as exc:
        return MailboxOutcome(name, f"logins:{name}", "skipped", str(exc))
    except LoginSourceError as exc:
        return MailboxOutcome(name, f"logins:{name}", "failed", str(exc))
    return MailboxOutcome(name, f"logins:{name}", "ok", "", rows, 0, time.monotonic() - started)


_CONFIGS: dict[str, Config] = {}


def _config(path: str) -> Config:
    # Tasks get the config path, not the object: nothing secret-adjacent is a task input.
    if path not in _CONFIGS:
        _CONFIGS[path] = load_config(path)
    return _CONFIGS[path]


def tonight(cfg: Config) -> str:
    """The night being collected: today's date in the agency's time zone."""
    return datetime.now(cfg.tz).date().isoformat()


def run_collection(
    config_path: str,
    night: str | None = None,
    progress: Callable[[MailboxOutcome], None] | None = None,
    plain: bool = False,
) -> RunSummary:
    """The body of the flow, callable on its own: one night, every roster mailbox.

    ``plain`` runs the same task functions on a plain thread pool, without Prefect's task
    bookkeeping or retries (the demo's simulated nights; ~40 ms less per mailbox).
    """
    _CONFIGS.pop(str(Path(config_path).resolve()), None)
    config_path = str(Path(config_path).resolve())
    cfg = _config(config_path)
    people = load_roster(cfg.roster_path, lambda: [s.name for s in cfg.sources])
    night = night or tonight(cfg)
    datetime.strptime(night, "%Y-%m-%d")  # a clear ValueError for a bad --date
    started = datetime.now(UTC)
    run_id = (
        started.strftime("%Y%m%dT%H%M%SZ-")
        + hashlib.sha256(f"{config_path}{time.time_ns()}".encode()).hexdigest()[:6]
    )
    with DataDir(cfg.data_dir).collect_lock(night):
        summary = _run(cfg, config_path, people, night, run_id, progress, plain)
        _write_run(cfg, summary, started)
    return summary


def _run(
    cfg: Config,
    config_path: str,
    people: list[Person],
    night: str,
    run_id: str,
    progress: Callable[[MailboxOutcome], None] | None,
    plain: bool,
) -> RunSummary:
    summary = RunSummary(run_id, night)
    for key in [k for k in _REFUSED if k[0] == config_path]:
        del _REFUSED[key]
    task_ = collect_mailbox_task.with_options(
        retries=cfg.retries, retry_delay_seconds=list(cfg.retry_delay_seconds)
    )
    work = [(p.source or cfg.sources[0].name, p.email) for p in people if p.email]
    runner: Any  # Prefect's submit() overloads do not type a sync task's result
    pool: Any = (
        _PlainRunner(cfg.concurrency)
        if plain
        else ThreadPoolTaskRunner(max_workers=cfg.concurrency)
    )
    with pool as runner:
        futures = [
            (
                src,
                mbx,
                runner.submit(
                    task_,
                    {
                        "config_path": config_path,
                        "source_name": src,
                        "mailbox": mbx,
                        "night": night,
                    },
                ),
            )
            for src, mbx in work
        ]
        logins = [
            (
                f"logins:{src.name}",
                runner.submit(
                    collect_logins_task,
                    {"config_path": config_path, "name": src.name, "night": night},
                ),
            )
            for src in cfg.logins
        ]
        for src, mbx, future in futures:
            try:
                outcome = future.result()
            except Exception as exc:  # retries exhausted: record it, the night goes on
                reason = (
                    exc.reason if isinstance(exc, SourceError) else f"{type(exc).__name__}: {exc}"
                )
                outcome = MailboxOutcome(src, mbx, "failed", reason)
            summary.outcomes.append(outcome)
            if progress:
                progress(outcome)
        for label, future in logins:
            try:
                outcome = future.result()
            except Exception as exc:  # a signal source failing never stops the night
                outcome = MailboxOutcome(
                    label.split(":", 1)[1], label, "failed", f"{type(exc).__name__}: {exc}"
                )
            summary.outcomes.append(outcome)
    return summary


class _PlainRunner:
    """The subset of a Prefect task runner run_collection uses, on plain threads."""

    def __init__(self, workers: int) -> None:
        self._pool = ThreadPoolExecutor(max_workers=workers)

    def __enter__(self) -> _PlainRunner:
        return self

    def __exit__(self, *exc: object) -> None:
        self._pool.shutdown(wait=True)

    def submit(self, task: Any, parameters: dict[str, Any]) -> Future[Any]:
        return self._pool.submit(task.fn, **parameters)


def _write_run(cfg: Config, summary: RunSummary, started: datetime) -> None:
    data = DataDir(cfg.data_dir)
    digest = hashlib.sha256(cfg.path.read_bytes()).hexdigest()
    run = pa.Table.from_pylist(
        [
            {
                "run_id": summary.run_id,
                "started_at": started,
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
    data.write_table("runs", summary.night, summary.run_id, run)
    rows = pa.Table.from_pylist(
        [{"run_id": summary.run_id, **o.__dict__} for o in summary.outcomes], schema=RUN_MAILBOXES
    )
    data.write_table("run_mailboxes", summary.night, summary.run_id, rows)


# Set by the CLI to draw a progress bar; a flow parameter cannot carry a callable.
progress_hook: Callable[[MailboxOutcome], None] | None = None


@flow(name="collect", log_prints=False)
def collect(config_path: str, night: str | None = None) -> dict[str, Any]:
    """Nightly collection flow (deployment: 01:30 Asia/Ho_Chi_Minh).

    Returns ``{"run_id", "night", "ok", "failed", "skipped", "messages_new", "outcomes"}``.
    """
    logger = get_run_logger()
    summary = run_collection(config_path, night, progress_hook)
    for o in summary.outcomes:
        if o.status != "ok":
            logger.warning("%s %s: %s", o.mailbox, o.status, o.reason)
    result = {
        "run_id": summary.run_id,
        "night": summary.night,
        "ok": summary.count("ok"),
        "failed": summary.count("failed"),
        "skipped": summary.count("skipped"),
        "messages_new": summary.messages_new,
    }
    logger.info("collection %s", result)
    return {**result, "outcomes": [o.__dict__ for o in summary.outcomes]}
