"""The mail system's own logs as a dataset (issue 25): Postfix's submissions and deliveries.

``mail_log_deliveries`` has one row per recipient of each message Postfix was done with
(``removed`` from its queue), built by ``connectors.postfix_log.delivery_rows``; message-level
columns repeat on each recipient's row. A message with no recipient line has one row with a
null ``recipient``: it was still submitted. Collected every night from each ``[[mail_logs]]``
source (pipelines/mail_logs.py) into ``mail_log_deliveries/night=YYYY-MM-DD/<source>.parquet``:
the messages Postfix was done with in the lines read that night. A night that read the log
and found nothing has a file with no rows; a night whose read failed has no file (and a
failed ``mail_logs:<source>`` outcome in ``run_mailboxes``). docs/data-dictionary.md
describes each column.

Domain classes (official / public / other) are not stored: the evaluation computes them from
``sender_domain`` and ``recipient_domain`` with the one domain rule every query uses.
"""

from __future__ import annotations

import pyarrow as pa

MAIL_LOG_DELIVERIES = pa.schema(
    [
        # the message (repeated on each of its recipients' rows)
        ("log_date", pa.date32()),  # the date of `time` in the agency's zone
        ("queue_id", pa.string()),
        ("time", pa.timestamp("us", tz="UTC")),  # its first line: when Postfix received it
        ("direction", pa.string()),  # out / in / local; null when its first lines were not read
        ("sasl_username", pa.string()),
        ("client", pa.string()),
        ("sender", pa.string()),  # "" for the null sender <> of bounces
        ("sender_domain", pa.string()),
        ("size", pa.int64()),
        ("message_id", pa.string()),
        ("nrcpt", pa.int64()),
        ("notice_of", pa.string()),
        ("via_queue_id", pa.string()),
        ("complete", pa.bool_()),
        ("removed", pa.bool_()),
        # the recipient (envelope: Bcc included)
        ("recipient", pa.string()),
        ("orig_recipient", pa.string()),
        ("recipient_domain", pa.string()),
        ("status", pa.string()),  # sent / bounced / expired / deferred
        ("relay", pa.string()),
        ("dsn", pa.string()),
        ("status_time", pa.timestamp("us", tz="UTC")),
        ("deferrals", pa.int64()),
        ("handed_to", pa.string()),
    ]
)

MAIL_LOG_DATASETS: dict[str, pa.Schema] = {"mail_log_deliveries": MAIL_LOG_DELIVERIES}
