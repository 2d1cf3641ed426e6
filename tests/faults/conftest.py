"""The fault suite's fixtures: its own Dovecot (faults stop it, revoke its master user),
a night of 50 mailboxes, and the clean collection every fault is compared with."""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from devkit.dovecot import LocalDovecot
from pipelines.collect import RunSummary
from tests.faults.invariant import LEDGER, Entry, check_night, report_path, write_table
from tests.faults.world import PASSWORD_ENV, Setup, add_mailboxes, seed_mail, truth

SECRET = "Fault-Suite-master-7Qx"  # searched for in every file the suite leaves behind
NIGHT = "2026-11-20"
FULL = os.environ.get("MAILUSAGE_FAULTS") == "full"  # `make faults`; `make test` runs fewer


@dataclass
class World:
    server: LocalDovecot
    mailboxes: list[str]
    reference: Setup
    expected: set[tuple[Any, ...]]
    root: Path

    def setup(self, name: str, **kwargs: Any) -> Setup:
        return Setup(self.root / name, self.server, self.mailboxes, **kwargs)

    def check(self, fault: str, setup: Setup, faulty: RunSummary, **kwargs: Any) -> Entry:
        """The invariant for a fault on this world's night: rerun, compare, ledger."""
        return check_night(
            fault,
            setup.data,
            faulty,
            lambda: setup.collect(NIGHT),
            self.reference.data,
            self.expected,
            **kwargs,
        )


@pytest.fixture(scope="package")
def fault_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalDovecot]:
    os.environ[PASSWORD_ENV] = SECRET
    server = LocalDovecot.start(tmp_path_factory.mktemp("fault-dovecot"), master_password=SECRET)
    try:
        yield server
    finally:
        server.stop()
        os.environ.pop(PASSWORD_ENV, None)


@pytest.fixture(scope="package")
def world(fault_server: LocalDovecot, tmp_path_factory: pytest.TempPathFactory) -> World:
    """50 mailboxes, 1-8 messages each over INBOX, Sent and 'Dự án', collected once cleanly."""
    mailboxes = add_mailboxes(fault_server, [f"cb{i:02d}" for i in range(50)])
    seed_mail(fault_server, mailboxes, random.Random(20), night=0)
    fault_server.finish_seeding()
    root = tmp_path_factory.mktemp("faults")
    reference = Setup(root / "reference", fault_server, mailboxes)
    summary = reference.collect(NIGHT)
    assert summary.count("ok") == 50, [o for o in summary.outcomes if o.status != "ok"]
    return World(fault_server, mailboxes, reference, truth(fault_server, mailboxes), root)


@pytest.fixture(scope="package", autouse=True)
def ledger(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    yield
    if LEDGER:
        target = report_path() or tmp_path_factory.getbasetemp() / "fault-suite.md"
        print("\n" + write_table(target))
