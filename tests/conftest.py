"""Shared fixtures: one real Dovecot per test session, on 127.0.0.1, stopped at the end."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")
os.environ.setdefault("DO_NOT_TRACK", "1")
# Tasks run outside a flow in some tests (run_collection); their logs stay local.
os.environ.setdefault("PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW", "ignore")

from connectors.imap import ImapSettings, ImapSource
from devkit.dovecot import MASTER_USER, LocalDovecot

MASTER_PASSWORD = "test-master-secret"


@pytest.fixture(scope="session")
def dovecot(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalDovecot]:
    """A private Dovecot (IMAP + IMAPS, master user, quota 5G, CONDSTORE)."""
    server = LocalDovecot.start(tmp_path_factory.mktemp("dovecot"), master_password=MASTER_PASSWORD)
    try:
        yield server
    finally:
        server.stop()
    assert not (server.run_dir / "master.pid").exists(), "dovecot left running"


@pytest.fixture(scope="session")
def prefect_harness() -> Iterator[None]:
    """One temporary Prefect server for every flow test (startup costs ~10-20 s here)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


def maildir_files(path: Path) -> list[Path]:
    return sorted(p for p in (path / "cur").iterdir() if p.is_file())


def imap_source(server: LocalDovecot, **overrides: object) -> ImapSource:
    """The collector's source for the test Dovecot: IMAPS, our CA, the master user."""
    settings: dict[str, object] = dict(
        host="127.0.0.1",
        port=server.imaps_port,
        ca_file=str(server.ca_file),
        master_user=MASTER_USER,
    )
    settings.update(overrides)
    return ImapSource(
        ImapSettings(**settings),  # type: ignore[arg-type]
        password_for=lambda _m: MASTER_PASSWORD,
        name="test",
    )
