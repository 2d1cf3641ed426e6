"""The invariant every fault is held to, and the ledger the suite writes its table from.

After a faulty night, run the night again without the fault: the `messages` dataset must
equal, row for row and column for column, what a clean collection of the same server
history gives (0 lost, 0 duplicated), that clean result must equal the truth read from
the seeded files, and every mailbox that failed must carry a reason a person can act on.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from pipelines.collect import RunSummary
from tests.faults.world import as_truth, messages, run_rows

# What a failed mailbox's reason must say for each kind of fault: the words an operator
# acts on (the server is down, a password is wrong, the network dropped...).
REASONS = {
    "network": ("cannot connect", "connection lost", "connection closed", "timed out"),
    "auth": ("login failed", "no answer to the login"),
    "tls": ("certificate",),
    "none": (),
}


@dataclass
class Entry:
    fault: str
    nights: int
    rows: int
    lost: int
    duplicated: int
    failed: int
    skipped: int
    reasons: str


LEDGER: list[Entry] = []


def failed_rows(data: Path, summary: RunSummary) -> list[dict[str, Any]]:
    return [
        r
        for r in run_rows(data, summary.night)
        if r["run_id"] == summary.run_id and r["status"] != "ok"
    ]


def check_reasons(data: Path, summary: RunSummary, kind: str) -> list[dict[str, Any]]:
    """Every mailbox that did not finish has a run_mailboxes row whose reason says why."""
    rows = failed_rows(data, summary)
    assert len(rows) == summary.count("failed") + summary.count("skipped")
    words = REASONS[kind]
    for r in rows:
        assert r["reason"], f"{r['mailbox']} {r['status']} without a reason"
        assert any(w in r["reason"].lower() for w in words), (
            f"{r['mailbox']}: reason {r['reason']!r} names none of {words}"
        )
    return rows


def check_night(
    fault: str,
    data: Path,
    faulty: RunSummary,
    rerun: Callable[[], RunSummary],
    reference: Path,
    expected: set[tuple[Any, ...]] | None,
    *,
    kind: str = "network",
    nights: int = 1,
    min_failed: int = 1,
    only: set[str] | None = None,
) -> Entry:
    """The invariant, then a ledger entry. ``min_failed``: the fault must have bitten."""
    bad = check_reasons(data, faulty, kind)
    assert len(bad) >= min_failed, f"{fault}: the fault did not bite ({len(bad)} failed)"
    again = rerun()
    assert again.count("failed") == 0, [o for o in again.outcomes if o.status != "ok"]
    got, want = messages(data), messages(reference)
    if only is not None:  # a setup over some of the reference's mailboxes
        want = [r for r in want if r[0] in only]
        expected = expected and {r for r in expected if r[0] in only}
    lost = Counter(want) - Counter(got)
    duplicated = Counter(got) - Counter(want)
    entry = Entry(
        fault,
        nights + 1,
        len(want),
        sum(lost.values()),
        sum(duplicated.values()),
        len(bad),
        0,
        "; ".join(sorted({_short(r["reason"]) for r in bad}))[:160],
    )
    LEDGER.append(entry)
    assert not lost, f"{fault}: {len(lost)} rows lost, e.g. {next(iter(lost))}"
    assert not duplicated, f"{fault}: {len(duplicated)} rows duplicated"
    if expected is not None:
        stored = as_truth(want)
        assert len(want) == len(stored), f"{fault}: rows that differ only outside the truth"
        assert stored == expected, (
            f"{fault}: stored but not true {sorted(stored - expected)[:3]}; "
            f"true but not stored {sorted(expected - stored)[:3]}"
        )
    return entry


def _short(reason: str) -> str:
    return reason.split(":", 1)[0] if len(reason) > 60 else reason


def write_table(path: Path) -> str:
    head = (
        "| fault | nights run | rows compared | rows lost | rows duplicated "
        "| mailboxes failed (all with a reason) | skips with a reason | reasons seen |\n"
        "|---|---:|---:|---:|---:|---:|---:|---|\n"
    )
    body = "".join(
        f"| {e.fault} | {e.nights} | {e.rows:,} | {e.lost} | {e.duplicated} | {e.failed} "
        f"| {e.skipped} | {e.reasons.replace('|', '/')} |\n"
        for e in LEDGER
    )
    total = (
        f"| **{len(LEDGER)} faults** | {sum(e.nights for e in LEDGER)} "
        f"| {sum(e.rows for e in LEDGER):,} | {sum(e.lost for e in LEDGER)} "
        f"| {sum(e.duplicated for e in LEDGER)} | {sum(e.failed for e in LEDGER)} "
        f"| {sum(e.skipped for e in LEDGER)} | |\n"
    )
    mode = "full (`make faults`)" if os.environ.get("MAILUSAGE_FAULTS") == "full" else "bounded"
    text = (
        "# Fault suite: what was tried, and what it cost\n\n"
        "Written by the suite itself (`tests/faults/`, run as `make faults`; `make test` runs "
        f"a bounded form) on {date.today().isoformat()}, mode {mode}, against a private "
        "Dovecot 2.3.19 on 127.0.0.1.\n\n"
        "After each fault the night is run again without it; the `messages` dataset must then "
        "equal, row for row and in every column, a clean collection of the same server "
        "history, and that must equal the truth read from the seeded Maildir files and "
        "Dovecot's uidlists with the standard library. *Mailboxes failed* counts those the "
        "fault made fail; each has a `run_mailboxes` row with the reason shown.\n\n"
        + head
        + body
        + total
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return text


def report_path() -> Path | None:
    target = os.environ.get("MAILUSAGE_FAULTS_REPORT")
    return Path(target) if target else None
