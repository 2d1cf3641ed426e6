"""What one night of collection carries and decides before and after its mailboxes are
read: the :class:`Night` (its sources, store and settings, passed down instead of kept in
globals), the plan (:func:`plan`: each roster mailbox and the cursors it starts from),
the one retry helper (:func:`in_passes`), and the night's summary as the CLI and the flow
report it.
"""

from __future__ import annotations

import functools
import hashlib
import re
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import closing
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import pyarrow as pa

from analytics.policy import load_policy
from connectors.base import FolderCursor, ForwardingSource, MailboxSource, SourceError
from contract.datasets import FORWARDING, RUN_MAILBOXES, RUNS
from contract.domains import public_matcher
from contract.people import Person
from pipelines.config import (
    CHANGE_LOG_KINDS,
    Config,
    ConfigError,
    LoginSourceConfig,
    MailLogConfig,
)
from pipelines.mailbox import Collection, ContactScan, MailboxOutcome, read_mailbox
from pipelines.quiet import Changes, carried_rows, read_reason
from pipelines.secrets import secret_problems
from pipelines.storage import (
    Collected,
    DataDir,
    MailboxRows,
    MailboxState,
    NightConflict,
    NightWriter,
    ShardWriter,
)


@dataclass(frozen=True)
class NightSource:
    """One mail source as the night uses it: where mailboxes are read, where forwarding
    rules are read, and whether bodies are scanned for contacts."""

    source: MailboxSource
    # A separate forwarding reader, asked when the source's sessions read none (tests).
    forwarding: ForwardingSource | None = None
    scan: ContactScan | None = None
    # One password for every mailbox (not per-mailbox `env_prefix`): when it resolves to
    # nothing, no mailbox of the source will log in tonight.
    one_password: bool = True


def night_sources(
    cfg: Config, opened: Mapping[str, MailboxSource], scan: ContactScan | None
) -> dict[str, NightSource]:
    """The config's sources as the night uses them (``opened``: each source opened for
    the night, :func:`pipelines.sources.open_sources`), the roster's default first."""
    return {
        s.name: NightSource(
            opened[s.name],  # its sessions read forwarding themselves
            None,
            scan if s.kind == "imap" else None,  # bodies over IMAP only (operator guide)
            s.password.env_prefix is None,
        )
        for s in cfg.sources
    }


@dataclass(frozen=True)
class Work:
    """One mailbox to collect tonight and the cursors it starts from."""

    source: str
    mailbox: str
    start: dict[str, FolderCursor]
    # Messages of tonight already stored, which a re-collection of tonight replaces: they
    # are not new again (runs.messages_new summed over runs counts each message once).
    replaces: int = 0
    # A mailbox with no log event since its last night (pipelines/quiet.py): its rows of
    # tonight, carried from that night; it is not logged in to.
    carried: MailboxRows | None = None
    carried_from: str | None = None


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

    def records(self, started: datetime, config_sha256: str | None) -> tuple[pa.Table, pa.Table]:
        """The run's ``runs`` row and its ``run_mailboxes`` rows, as the commit writes them."""
        run = {
            "run_id": self.run_id,
            "started_at": started,
            "finished_at": datetime.now(UTC),
            "mailboxes": sum(1 for o in self.outcomes if not o.is_signal),
            "ok": self.count("ok"),
            "failed": self.count("failed"),
            "skipped": self.count("skipped"),
            "messages_new": self.messages_new,
            "config_sha256": config_sha256,
        }
        outcomes = [o.row(self.run_id) for o in self.outcomes]
        return (
            pa.Table.from_pylist([run], schema=RUNS),
            pa.Table.from_pylist(outcomes, schema=RUN_MAILBOXES),
        )


@dataclass
class Night:
    """Everything one night's collection carries, passed down instead of kept in globals."""

    night: str
    run_id: str
    started: datetime
    data: DataDir
    sources: dict[str, NightSource]  # the first is the roster's default
    concurrency: int = 8
    retries: int = 2
    retry_delays: tuple[float, ...] = (10, 60)
    logins: tuple[LoginSourceConfig, ...] = ()
    config_sha256: str | None = None
    mail_logs: tuple[MailLogConfig, ...] = ()
    timezone: str = "Asia/Ho_Chi_Minh"  # the agency's: the zone of mail log rows' dates
    tasks: bool = False  # shards and login sources run as Prefect tasks (in a flow run)
    progress: Callable[[MailboxOutcome], None] | None = None
    # source -> why its own account was refused tonight (its other mailboxes are not tried)
    refused: dict[str, str] = field(default_factory=dict)
    writer: NightWriter | None = None
    # What the logs say changed since the last night (None: every mailbox is read) and
    # every how many nights each mailbox is read anyway (pipelines/quiet.py).
    changes: Changes | None = None
    sweep_every: int = 7
    # `collect.changed_only`: the logs are read first and decide `changes`; a log silent
    # for longer than `log_silence` means every mailbox is read
    changed_only: bool = False
    log_silence: timedelta = timedelta(hours=12)
    # the change logs record reading itself (Dovecot's mail_log plugin): a carried night
    # then read nothing; otherwise its reading is unknown (pipelines/quiet.py)
    reading_logged: bool = True

    @classmethod
    def begin(
        cls,
        cfg: Config,
        night: str | None,
        sources: Mapping[str, MailboxSource],
        progress: Callable[[MailboxOutcome], None] | None = None,
        tasks: bool = False,
    ) -> Night:
        """The night of ``cfg`` on its opened ``sources``, not started yet."""
        night = night or tonight(cfg)
        datetime.strptime(night, "%Y-%m-%d")  # a clear ValueError for a bad --date
        policy = load_policy(cfg.policy)
        scan = (
            ContactScan(public_matcher(cfg.public_domains_extra), policy.contact_scan_max_bytes)
            if policy.contact_scan
            else None
        )
        return cls(
            night,
            new_run_id(str(cfg.path)),
            datetime.now(UTC),
            DataDir(cfg.data_dir),
            night_sources(cfg, sources, scan),
            cfg.concurrency,
            cfg.retries,
            tuple(cfg.retry_delay_seconds) or (0,),
            cfg.logins,
            hashlib.sha256(cfg.path.read_bytes()).hexdigest(),
            cfg.mail_logs,
            cfg.timezone,
            tasks,
            progress,
            sweep_every=cfg.sweep_every,
            changed_only=cfg.changed_only,
            log_silence=timedelta(hours=cfg.log_silence_hours),
            reading_logged=all(
                lg.kind == "dovecot-log" and lg.mail_log_plugin
                for lg in cfg.logins
                if lg.kind in CHANGE_LOG_KINDS
            ),
        )

    def step(self, fn: Callable[..., Any], name: str, run_name: str) -> Callable[..., Any]:
        """``fn`` as this night runs its steps: a Prefect task named ``name`` in a flow run
        (one task run per shard in the UI, each named ``run_name`` of its arguments), the
        plain function outside one, where Prefect is then never imported."""
        return _as_task(fn, name, run_name) if self.tasks else fn

    def staged(self, shard: str) -> closing[ShardWriter]:
        """Where one shard stages its mailboxes' rows, closed when the shard ends."""
        assert self.writer is not None
        return closing(self.writer.shard(shard))

    def report(self, outcome: MailboxOutcome) -> None:
        if self.progress is not None:
            self.progress(outcome)


@functools.cache  # one Prefect task per step and process
def _as_task(fn: Callable[..., Any], name: str, run_name: str) -> Any:
    from prefect import task
    from prefect.cache_policies import NO_CACHE

    return task(name=name, cache_policy=NO_CACHE, task_run_name=run_name)(fn)


def in_flow_run() -> bool:
    """Whether this runs inside a Prefect flow run; never without Prefect imported (a flow
    run imports it), so asking does not import it."""
    if "prefect.context" not in sys.modules:
        return False
    from prefect.context import FlowRunContext

    return FlowRunContext.get() is not None


def new_run_id(salt: str) -> str:
    """``20261203T183000Z-1a2b3c``: when the run started, and six hex digits apart."""
    started = datetime.now(UTC)
    digest = hashlib.sha256(f"{salt}{time.time_ns()}".encode()).hexdigest()[:6]
    return started.strftime("%Y%m%dT%H%M%SZ-") + digest


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
    if night is not None:
        datetime.strptime(night, "%Y-%m-%d")  # a clear ValueError for a bad --date
    today = tonight(cfg)
    if night is not None and night > today:
        raise NightRefused(
            f"night {night} is after today ({today} in {cfg.timezone}): a night is collected "
            "on or after its date, never before; nothing was written"
        )
    blocking = [p for p in secret_problems(cfg, people) if p.blocking]
    if blocking:
        raise NightRefused(f"{blocking[0]}; nothing was collected")


def plan(
    nt: Night, mailboxes: Iterable[tuple[str, str | None]]
) -> tuple[list[Work], list[MailboxOutcome]]:
    """The mailboxes to read tonight, (address, source or None for the default), with
    their start cursors (one state query), and those skipped because a later night is
    already committed for them. With ``nt.changes``, a mailbox the logs saw no event in
    since its last night is carried from that night instead (:func:`carry_plan`)."""
    states = nt.data.states()
    again = [m for m, state in states.items() if state.night == nt.night]  # a re-collection
    stored = nt.data.stored_rows(again, nt.night) if again else {}
    default = next(iter(nt.sources))
    work, skipped = [], []
    for mailbox, source in mailboxes:
        src = source or default
        state = states.get(mailbox)
        try:
            start = state.start(mailbox, nt.night) if state else {}
        except NightConflict as exc:
            outcome = MailboxOutcome(src, mailbox, "skipped", str(exc))
            skipped.append(outcome)
            nt.report(outcome)
            continue
        work.append(Work(src, mailbox, start, stored.get(mailbox, 0)))
    if nt.changes is not None and nt.changes.changed is not None:
        work = carry_plan(nt, work, {m: s.night for m, s in states.items()})
    return work, skipped


CARRIED = "carried"  # run_mailboxes.reason of a mailbox carried from its last night
FORWARDS_NOT_READ = "forwarding rules not read"  # pipelines/mailbox.py's note


def carry_plan(nt: Night, work: list[Work], last: dict[str, str]) -> list[Work]:
    """``work`` with each mailbox that need not be read given the rows it carries: its
    last night's ``mailbox_status`` and ``forwarding`` rows (one read of each night file)."""
    quiet = {
        w.mailbox for w in work
        if read_reason(w.mailbox, nt.night, last.get(w.mailbox), nt.changes, nt.sweep_every) is None
    }  # fmt: skip
    by_night: dict[str, list[str]] = {}
    for mailbox in quiet:
        by_night.setdefault(last[mailbox], []).append(mailbox)
    status: dict[str, list[dict[str, Any]]] = {}
    forwards: dict[str, list[dict[str, Any]]] = {}
    for night, names in by_night.items():
        status.update(nt.data.rows_of("mailbox_status", night, names))
        forwards.update(nt.data.rows_of("forwarding", night, names))
        # rules not read that night: "none" would be carried as if known
        reasons = nt.data.last_reasons(night, names)
        quiet -= {m for m, why in reasons.items() if FORWARDS_NOT_READ in why}
    planned = []
    for w in work:
        rows = (
            carried_rows(status.get(w.mailbox, []), w.start, w.source, nt.reading_logged)
            if w.mailbox in quiet
            else None
        )
        if rows is not None:
            fwd = forwards.get(w.mailbox)
            table = pa.Table.from_pylist(fwd, schema=FORWARDING) if fwd else None
            w = replace(w, carried=MailboxRows([], rows, table), carried_from=last[w.mailbox])
        planned.append(w)
    return planned


def carry(nt: Night, work: list[Work]) -> list[Collection]:
    """Stage the carried mailboxes' rows: no login, the cursors committed as they were."""
    done = []
    with nt.staged("carried") as writer:
        for w in work:
            assert w.carried is not None
            writer.add(w.carried)
            folders = sum(1 for r in w.carried.mailbox_status if r["folder_status"] == "ok")
            reason = f"{CARRIED} from {w.carried_from}: no log event since"
            outcome = MailboxOutcome(w.source, w.mailbox, "ok", reason, 0, folders, 0.0)
            state = MailboxState(nt.night, dict(w.start), dict(w.start))
            done.append(Collection(outcome, None, Collected(w.mailbox, state, {}, [])))
            nt.report(outcome)
    return done


def read_one(nt: Night, w: Work, last: bool) -> Collection | None:
    """One try at one mailbox (:func:`read_mailbox`), its failures made outcomes."""

    def failed(reason: str, transient: bool = False) -> Collection:
        return Collection(
            MailboxOutcome(w.source, w.mailbox, "failed", reason, transient=transient)
        )

    if w.source in nt.refused:
        return failed(f"not tried: {nt.refused[w.source]}")
    src = nt.sources[w.source]
    try:
        result = read_mailbox(src.source, w.mailbox, nt.night, w.start, src.forwarding, src.scan)
    except SourceError as exc:  # transient: read_mailbox returns the others
        return failed(exc.reason, transient=True) if last else None
    except ConfigError as exc:  # the password reference resolves to nothing
        if src.one_password:  # the source's one password: none will log in
            nt.refused[w.source] = str(exc)
        return failed(str(exc))
    except Exception as exc:  # a bug or an unreadable answer: recorded, the night goes on
        return failed(f"{type(exc).__name__}: {exc}")
    if result.outcome.account_refused:
        # Every further login would be refused too, and each refused one makes a server
        # slow all logins from our address (Dovecot: up to 15 s) or lock the account.
        nt.refused[w.source] = result.outcome.reason
    if w.replaces and result.outcome.status == "ok":
        new = max(result.outcome.messages_new - w.replaces, 0)
        result.outcome = replace(result.outcome, messages_new=new)
    return result


def shards(work: list[Work], n: int) -> list[list[Work]]:
    """``work`` dealt round-robin into at most ``n`` shards (balanced, in roster order).

    >>> [len(s) for s in shards([Work("s", str(i), {}) for i in range(10)], 4)]
    [3, 3, 2, 2]
    """
    n = max(1, min(n, len(work)))
    return [work[i::n] for i in range(n)] if work else []


T = TypeVar("T")
R = TypeVar("R")


def in_passes(
    items: Sequence[T],
    attempt: Callable[[T, bool], R | None],
    delays: Sequence[float],
    final: bool = True,
) -> tuple[list[R], list[T]]:
    """The night's one retry rule: try every item once, then those that failed transiently
    (``attempt`` returned None) again after ``delays[0]`` seconds, then after
    ``delays[1]`` …, one pass per delay. ``attempt(item, last)`` is told when its pass is
    the last (``final`` false: no pass is, the caller tries again later). Returns what
    was done and what is still pending.

    >>> in_passes([1, 2], lambda n, last: n if last or n == 1 else None, [0])
    ([1, 2], [])
    """
    done: list[R] = []
    pending = list(items)
    passes = len(delays) + 1
    for n in range(passes):
        if n:
            time.sleep(delays[n - 1])
        retry = []
        for item in pending:
            result = attempt(item, final and n == passes - 1)
            if result is None:
                retry.append(item)
            else:
                done.append(result)
        pending = retry
        if not pending:
            break
    return done, pending


def retry_delays(retries: int, delays: Sequence[float]) -> list[float]:
    """The wait before each of ``retries`` retries, the last delay repeated.

    >>> retry_delays(3, (10, 60))
    [10, 60, 60]
    """
    return [delays[min(i, len(delays) - 1)] for i in range(retries)]


# -- the night's summary -------------------------------------------------------------------


class NightFailed(Exception):
    """More mailboxes failed tonight than `collect.allowed_failures`: the flow run ends
    Failed (red in the UI, the summary as its message), not Completed.

    ``result`` is the night's summary, as :func:`pipelines.collect.collect` would have
    returned it.
    """

    def __init__(self, message: str, result: dict[str, Any]) -> None:
        super().__init__(message, result)  # both in args: the exception survives pickling
        self.result = result

    def __str__(self) -> str:
        return str(self.args[0])


def failed_beyond(result: dict[str, Any], allowed: int) -> str:
    """Why the night fails its flow run ("" when it passes): mailboxes skipped behind a
    later night, or more failures than ``allowed``."""
    line = summary_line(result)
    skipped = skipped_behind(result)
    if skipped:
        return f"{line}; {skipped}"
    failed = [o for o in result["outcomes"] if o["status"] == "failed"]
    if len(failed) <= allowed:
        return ""
    reasons = Counter(o["reason"].removeprefix("not tried: ") for o in failed).most_common(1)
    return (
        f"{line}; more than the {allowed} failures allowed. Most common reason "
        f"({reasons[0][1]}x): {reasons[0][0]}"
    )


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


SIGNAL_KINDS = (("logins:", "login sources"), ("mail_logs:", "mail log sources"))


def summary_line(result: dict[str, Any]) -> str:
    """The night's counts, mailboxes and signal sources apart (``result`` as from
    :func:`summary_dict`):

    ``night 2026-11-20: ok 47, failed 1, skipped 0 of 48 mailboxes; login sources: ok 1
    of 1; mail log sources: ok 0, failed 1 of 1; 105 new messages`` (a kind of source not
    configured has no clause; with ``collect.changed_only``, ``ok 47 (40 carried: no log
    event)``)
    """
    prefixes = tuple(p for p, _ in SIGNAL_KINDS)
    mailboxes = Counter(
        o["status"] for o in result["outcomes"] if not o["mailbox"].startswith(prefixes)
    )
    carried = sum(1 for o in result["outcomes"] if o.get("reason", "").startswith(CARRIED))
    line = (
        f"night {result['night']}: ok {mailboxes['ok']}"
        + (f" ({carried} carried: no log event)" if carried else "")
        + f", failed {mailboxes['failed']}, "
        f"skipped {mailboxes['skipped']} of {mailboxes.total()} mailboxes; "
    )
    for prefix, label in SIGNAL_KINDS:
        got = Counter(o["status"] for o in result["outcomes"] if o["mailbox"].startswith(prefix))
        if got:
            line += f"{label}: ok {got['ok']}" + "".join(
                f", {status} {got[status]}" for status in ("failed", "skipped") if got[status]
            )
            line += f" of {got.total()}; "
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
