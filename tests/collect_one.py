"""One mailbox's night through the collector's one path (:func:`pipelines.collect.run_night`):
the tests' and benchmarks' way to collect a single mailbox from a source object they built
(a test endpoint, a source wrapped to drop its connection), without a config file.

It is the night the CLI and the flow run — lock, recovery, plan, the lead mailbox, its
retry in a shard, staging, the commit with its run records — for a roster of one:

    >>> outcome = collect_one(src, "an.nv@danang.gov.vn", "2026-11-20", DataDir(tmp))
    >>> outcome.status, outcome.messages_new
    ('ok', 50)

A transient failure is tried again as a night would (the lead, then its shard); when it
fails again the outcome is ``failed`` with ``transient`` set, and nothing is committed
for the mailbox but the run's records.
"""

from __future__ import annotations

from datetime import UTC, datetime

from connectors.base import ForwardingSource, MailboxSource
from pipelines.collect import run_night
from pipelines.mailbox import ContactScan, MailboxOutcome
from pipelines.night import Night, NightSource, new_run_id
from pipelines.storage import DataDir


def one_night(
    source: MailboxSource,
    night: str,
    data: DataDir,
    forwarding: ForwardingSource | None = None,
    scan: ContactScan | None = None,
    retries: int = 0,
) -> Night:
    """A night of ``source`` alone, with no login sources and no retry delay."""
    return Night(
        night,
        new_run_id(str(data.root)),
        datetime.now(UTC),
        data,
        {source.name: NightSource(source, forwarding, scan)},
        concurrency=1,
        retries=retries,
        retry_delays=(0,),
    )


def collect_one(
    source: MailboxSource,
    mailbox: str,
    night: str,
    data: DataDir,
    forwarding: ForwardingSource | None = None,
    scan: ContactScan | None = None,
    retries: int = 0,
) -> MailboxOutcome:
    """Collect ``mailbox`` of ``source`` for ``night`` into ``data``; its outcome."""
    nt = one_night(source, night, data, forwarding, scan, retries)
    summary = run_night(nt, [(mailbox, source.name)])
    (outcome,) = summary.outcomes
    return outcome
