"""The store's own pieces, on literal inputs: the messages table built by column name and
the one atomic writer."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from connectors.base import Message
from contract.datasets import MESSAGES
from contract.files import atomic_path, atomic_write
from pipelines.storage import messages_table


def test_messages_table_fills_each_column_by_name():
    batch = [
        Message("INBOX", 7, 1_763_860_000, 1_763_859_990, "header", 5120, True,
                "an.nv@danang.gov.vn", ("b@gmail.com",), (), "<x@y>", False),
        Message("Sent", 3, 1_763_870_000, 1_763_870_000, "internaldate", None, False,
                None, ("c@x.vn", "d@x.vn"), ("e@x.vn",), None, True),
    ]  # fmt: skip
    table = messages_table("mail1", "an.nv@danang.gov.vn", {"INBOX": 11, "Sent": 12},
                           {"INBOX": "inbox", "Sent": "sent"}, batch)  # fmt: skip
    assert table.schema == MESSAGES
    rows = table.to_pylist()
    for row, message in zip(rows, batch, strict=True):
        for name in Message._fields:
            value = row[name]
            if isinstance(value, datetime):
                value = int(value.replace(tzinfo=UTC).timestamp())
            if isinstance(value, list):
                value = tuple(value)
            assert value == getattr(message, name), name
    assert [r["uidvalidity"] for r in rows] == [11, 12]
    assert [r["role"] for r in rows] == ["inbox", "sent"]
    assert {r["source"] for r in rows} == {"mail1"}
    # every column of the schema is either a Message field or one of the mailbox's four
    assert set(MESSAGES.names) == set(Message._fields) | {
        "source",
        "mailbox",
        "role",
        "uidvalidity",
    }


def test_atomic_write_replaces_whole_or_leaves_the_old_file(tmp_path):
    target = tmp_path / "out" / "report.csv"
    atomic_write(target, b"old\n")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_bytes(b"half of the ne")
        raise RuntimeError("killed midway")
    assert target.read_bytes() == b"old\n"
    assert sorted(p.name for p in target.parent.iterdir()) == ["report.csv"]  # no temp left
    atomic_write(target, b"new\n")
    assert target.read_bytes() == b"new\n"
    assert sorted(p.name for p in target.parent.iterdir()) == ["report.csv"]
