"""The datasets of the data directory: their schemas and where a reader finds their files.

    data/<dataset>/night=YYYY-MM-DD/part-0.parquet   one file per dataset per night
    data/runs/night=…/<run_id>.parquet                one file per run (also run_mailboxes)
    data/logins/night=…/<source>.parquet              one file per login source per night
    data/mail_log_deliveries/night=…/<source>.parquet one file per mail log source per night

Every file under ``<dataset>/night=*/`` ending in ``.parquet`` is committed data in the
dataset's current schema: plain DuckDB, pandas or Spark read a dataset with a glob
(``read_parquet('data/messages/*/*.parquet', hive_partitioning = true)``).
Everything the collector keeps for itself lives under ``data/_state/``; readers never need it.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pyarrow as pa

from contract.mail_logs import MAIL_LOG_DELIVERIES

NIGHT_FILE = "part-0.parquet"

MESSAGES = pa.schema(
    [
        ("source", pa.string()),
        ("mailbox", pa.string()),
        ("folder", pa.string()),
        ("role", pa.string()),
        ("uidvalidity", pa.int64()),
        ("uid", pa.int64()),
        ("internal_date", pa.timestamp("s", tz="UTC")),
        ("sent_date", pa.timestamp("s", tz="UTC")),
        ("date_source", pa.string()),
        ("size", pa.int64()),
        ("seen", pa.bool_()),
        ("from_addr", pa.string()),
        ("to_addrs", pa.list_(pa.string())),
        ("cc_addrs", pa.list_(pa.string())),
        ("message_id", pa.string()),
        ("address_invalid", pa.bool_()),
    ]
)

MAILBOX_STATUS = pa.schema(
    [
        ("source", pa.string()),
        ("mailbox", pa.string()),
        ("folder", pa.string()),
        ("role", pa.string()),
        ("folder_status", pa.string()),
        ("messages", pa.int64()),
        ("unseen", pa.int64()),
        ("uidnext", pa.int64()),
        ("uidvalidity", pa.int64()),
        ("highestmodseq", pa.int64()),
        ("last_uid", pa.int64()),
        ("fetched", pa.int64()),
        ("full_reread", pa.bool_()),
        ("read_activity", pa.int64()),
        ("folder_bytes", pa.int64()),
        ("unreadable", pa.int64()),
        ("quota_used_bytes", pa.int64()),
        ("quota_limit_bytes", pa.int64()),
        ("sent_folder", pa.string()),
    ]
)

# Server-side signals. Absent datasets mean "unknown" to the evaluation.
LOGINS = pa.schema(
    [
        ("mailbox", pa.string()),
        ("login_at", pa.timestamp("s", tz="UTC")),
        ("protocol", pa.string()),
        ("remote_addr", pa.string()),
        ("source", pa.string()),
    ]
)
FORWARDING = pa.schema(
    [
        ("mailbox", pa.string()),
        ("target", pa.string()),
        ("rule_name", pa.string()),
        ("keeps_copy", pa.bool_()),
        ("conditional", pa.bool_()),
    ]
)
CONTACTS = pa.schema(
    [
        ("mailbox", pa.string()),
        ("uid", pa.int64()),
        ("message_id", pa.string()),
        ("address", pa.string()),
        ("where_found", pa.string()),
        ("sent_date", pa.timestamp("s", tz="UTC")),
        ("skipped", pa.string()),  # why this message was not scanned (address is then null)
    ]
)

RUNS = pa.schema(
    [
        ("run_id", pa.string()),
        ("started_at", pa.timestamp("s", tz="UTC")),
        ("finished_at", pa.timestamp("s", tz="UTC")),
        ("mailboxes", pa.int64()),
        ("ok", pa.int64()),
        ("failed", pa.int64()),
        ("skipped", pa.int64()),
        ("messages_new", pa.int64()),
        ("config_sha256", pa.string()),
    ]
)

RUN_MAILBOXES = pa.schema(
    [
        ("run_id", pa.string()),
        ("source", pa.string()),
        ("mailbox", pa.string()),
        ("status", pa.string()),
        ("reason", pa.string()),
        ("messages_new", pa.int64()),
        ("folders", pa.int64()),
        ("seconds", pa.float64()),
    ]
)


DATASETS: dict[str, pa.Schema] = {
    "messages": MESSAGES,
    "mailbox_status": MAILBOX_STATUS,
    "logins": LOGINS,
    "forwarding": FORWARDING,
    "contacts": CONTACTS,
    "runs": RUNS,
    "run_mailboxes": RUN_MAILBOXES,
    "mail_log_deliveries": MAIL_LOG_DELIVERIES,
}


# Written as one file per night by the collector, always in the current schema (a layout-1
# directory is converted); the others keep one file per run or per login or mail log source.
NIGHTLY = ("messages", "mailbox_status", "forwarding", "contacts")
# Keyed by the night that collected them, not by when things happened: a month reads only
# its own nights of these. (messages, contacts and logins carry their own dates, and a
# month reads every night's file, skipping row groups by date statistics.)
BY_NIGHT = ("mailbox_status", "run_mailboxes", "forwarding", "runs")


def night_of(path: Path) -> str:
    """The night of a dataset file: ``…/night=2026-11-23/part-0.parquet`` -> ``2026-11-23``."""
    return path.parent.name.removeprefix("night=")


def dataset_files(
    root: Path, dataset: str, first: date | None = None, last: date | None = None
) -> list[Path]:
    """The committed files of a dataset, optionally only nights ``first <= night <= last``.

    One directory listing per night, whatever the number of mailboxes: a month's reader
    lists the dataset's night directories and opens only the nights it needs.
    """
    if dataset not in DATASETS:
        raise ValueError(f"unknown dataset {dataset!r}")
    base = root / dataset
    if not base.is_dir():
        return []
    files: list[Path] = []
    for night_dir in sorted(base.iterdir()):
        name = night_dir.name
        if not name.startswith("night=") or not night_dir.is_dir():
            continue
        try:
            night = date.fromisoformat(name.removeprefix("night="))
        except ValueError:
            continue
        if (first is not None and night < first) or (last is not None and night > last):
            continue
        files.extend(
            sorted(
                p for p in night_dir.iterdir() if p.suffix == ".parquet" and p.name[0] not in "._"
            )
        )
    return files
