"""Nightly collection: every roster mailbox's metadata into the data directory.

One path for the CLI, the Prefect flow, the tests and the benchmarks (:func:`run_night`):
    plan    the roster's mailboxes and the cursors each starts from (one state query)
    fetch   one mailbox of each source alone (a refused account is refused once), then
            shards of mailboxes on one thread pool, each shard a Prefect task in a flow
            run; each mailbox read by :func:`pipelines.mailbox.read_mailbox`; transient
            failures tried again in passes (:func:`pipelines.night.in_passes`)
    write   each mailbox's rows staged in its shard's files once it is read whole
    commit  the night's files built; cursors, folder index and run records committed in
            one transaction, then published

Prefect is imported only when a flow runs: the flow (``pipelines.collect.collect``,
prefect.yaml's entrypoint) is built on first use and the steps become tasks only in its
run, so `mailusage collect` without a Prefect API does not pay Prefect's import.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from contextvars import copy_context
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from contract.roster import load_roster
from pipelines.config import (
    Config,
    load_config,
)
from pipelines.mailbox import Collection, MailboxOutcome
from pipelines.migrate import migrate_if_old
from pipelines.night import (
    Night,
    NightFailed,
    RunSummary,
    Work,
    carry,
    failed_beyond,
    in_flow_run,
    in_passes,
    plan,
    preflight,
    read_one,
    retry_delays,
    shards,
    summary_dict,
    summary_line,
)
from pipelines.quiet import Changes, changes_from
from pipelines.signals import collect_signals
from pipelines.sources import open_sources
from pipelines.storage import ShardWriter


def run_collection(
    config: Config | str | Path,
    night: str | None = None,
    progress: Callable[[MailboxOutcome], None] | None = None,
    plain: bool | None = None,
) -> RunSummary:
    """One night of the config's roster. ``plain`` runs the shards as plain functions; by
    default they are Prefect tasks inside a flow run (the deployment), plain outside."""
    cfg = config if isinstance(config, Config) else load_config(Path(config).resolve())
    people = load_roster(cfg.roster_path, lambda: [s.name for s in cfg.sources])
    preflight(cfg, people, night)
    tasks = in_flow_run() if plain is None else not plain
    mailboxes = [(p.email, p.source) for p in people if p.email]  # "": none issued
    with open_sources(cfg) as sources:  # each opened once for the night, closed after it
        return run_night(Night.begin(cfg, night, sources, progress, tasks), mailboxes)


def run_night(nt: Night, mailboxes: Iterable[tuple[str, str | None]]) -> RunSummary:
    """plan -> fetch -> write -> commit, under the data directory's lock; ``mailboxes``
    are (address, source name or None for the first source)."""
    data = nt.data
    with data.collect_lock(nt.night):
        data.recover(nt.night)
        migrate_if_old(data)
        signals: list[MailboxOutcome] = []
        mailboxes = list(mailboxes)
        since = data.changed_only_since()
        if not nt.changed_only and since is not None:  # cleared first: a kill after the
            data.set_changed_only_since(None)  # commit must not leave it standing
        if nt.changed_only:  # the logs first: they say which mailboxes changed since
            signals, evidence = collect_signals(nt)
            roster = frozenset(m.lower() for m, _ in mailboxes)
            nt.changes = changes_from(
                evidence, now=datetime.now(UTC), silence=nt.log_silence, roster=roster
            )
            if since is None or since >= nt.night:  # the nights before read the logs after
                nt.changes = Changes(None, "the first night read from the logs first")
            _logger().info("changed only: %s", nt.changes.why)
        work, skipped = plan(nt, mailboxes)
        nt.writer = data.begin(nt.run_id, nt.night)
        try:
            collections = fetch(nt, work)
            if not nt.changed_only:
                signals, _ = collect_signals(nt)
            outcomes = [c.outcome for c in collections] + skipped + signals
            summary = RunSummary(nt.run_id, nt.night, outcomes)
            commit(nt, summary, collections)
            if nt.changed_only and since is None:  # from the first such night on, once
                data.set_changed_only_since(nt.night)  # it is committed
        except BaseException:
            nt.writer.abandon()
            raise
    return summary


def fetch(nt: Night, work: list[Work]) -> list[Collection]:
    """Read every mailbox: those with no log event carried from their last night, the
    first of each source alone, then the rest in shards.

    The first mailbox of a source goes alone: a service account that is refused is then
    refused once, not once per connection in flight (Active Directory commonly locks an
    account after five failures), and the source's other mailboxes are not tried. A
    lead that failed transiently goes back to the shards.
    """
    results = carry(nt, [w for w in work if w.carried is not None])
    work = [w for w in work if w.carried is None]
    first = {w.source: w for w in reversed(work)}
    leads = [w for w in work if first.get(w.source) is w]
    with nt.staged("lead") as writer:
        done, again = in_passes(leads, lambda w, last: write(nt, w, writer, last), [], False)
        results += done
    rest = [w for w in work if first.get(w.source) is not w] + again
    parts = shards(rest, nt.concurrency * 4)
    shard = nt.step(collect_shard, "collect-shard", "shard-{shard}")
    with ThreadPoolExecutor(max_workers=nt.concurrency) as pool:
        futures = [
            pool.submit(copy_context().run, shard, nt, f"{i:04d}", s) for i, s in enumerate(parts)
        ]
        for i, future in enumerate(futures, 1):
            done = future.result()
            results.extend(done)
            failed = sum(1 for c in done if c.outcome.status != "ok")
            _logger().info(
                "shard %d/%d: %d mailboxes, %d failed", i, len(futures), len(done), failed
            )
    return results


def collect_shard(nt: Night, shard: str, work: list[Work]) -> list[Collection]:
    """One shard's mailboxes, one connection at a time; transient failures tried again
    after the shard's first pass, with the configured delays."""
    with nt.staged(shard) as writer:
        delays = retry_delays(nt.retries, nt.retry_delays)
        done, _ = in_passes(work, lambda w, last: write(nt, w, writer, last), delays)
    return done


def write(nt: Night, w: Work, writer: ShardWriter, last: bool) -> Collection | None:
    """Read one mailbox and stage its rows; None when it failed transiently and will be
    tried again. Only outcomes and cursors stay in memory for the commit."""
    result = read_one(nt, w, last)
    if result is not None:
        if result.rows is not None:
            writer.add(result.rows)
            result.rows = None
        nt.report(result.outcome)
    return result


def commit(nt: Night, summary: RunSummary, collections: list[Collection]) -> None:
    """Build the night's files, commit cursors and run records together, publish."""
    assert nt.writer is not None
    done = [c.collected for c in collections if c.collected is not None]
    nt.writer.commit(done, *summary.records(nt.started, nt.config_sha256))


def _logger() -> Any:
    """The flow run's logger inside a flow, the module's outside."""
    if not in_flow_run():
        return logging.getLogger(__name__)
    from prefect import get_run_logger

    return get_run_logger()


ARTIFACT_ROWS = 1000  # a night where everything failed lists this many, and says so


def _collect_flow(config_path: str, night: str | None = None) -> dict[str, Any]:
    """Nightly collection flow (deployment: 01:30 Asia/Ho_Chi_Minh).

    Returns ``{"run_id", "night", "ok", "failed", "skipped", "messages_new", "outcomes"}``;
    raises NightFailed (the run ends Failed) when more mailboxes failed than the config's
    `collect.allowed_failures` (default 0), after the night's data is committed. The
    failed mailboxes and their reasons are a table artifact, ``collect-failures``.
    """
    from prefect import get_run_logger
    from prefect.artifacts import create_table_artifact

    logger = get_run_logger()
    cfg = load_config(Path(config_path).resolve())
    summary = run_collection(cfg, night)
    failed = [o for o in summary.outcomes if o.status == "failed"]
    for o in summary.outcomes:
        if o.status != "ok":
            logger.warning("%s %s: %s", o.mailbox, o.status, o.reason)
    result = summary_dict(summary)
    logger.info("collection %s: %s", result["run_id"], summary_line(result))
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
    why = failed_beyond(result, cfg.allowed_failures)
    if why:
        raise NightFailed(why, result)
    return result


def __getattr__(name: str) -> Any:
    """``collect``, the Prefect flow (prefect.yaml's ``pipelines/collect.py:collect``),
    built on first use so that a night run without a flow never imports Prefect."""
    if name != "collect":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from prefect import flow

    built = flow(name="collect", log_prints=False)(_collect_flow)
    globals()["collect"] = built  # one Flow object per process
    return built
