"""The logins dataset written by the nightly run: idempotent nights, committed cursors."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest

from pipelines.config import LoginSourceConfig
from pipelines.signals import collect_logins
from pipelines.storage import DataDir, NightConflict

LINE = (
    "Nov {d} 08:{m:02d}:00 imap-login: Info: Login: user=<{u}>, method=PLAIN, "
    "rip=10.0.0.{ip}, lip=10.0.0.1, TLS\n"
)


def test_log_source_nights(tmp_path):
    log = tmp_path / "dovecot.log"
    log.write_text(
        LINE.format(d=21, m=1, u="a@x.vn", ip=7) + LINE.format(d=21, m=2, u="b@x.vn", ip=5)
    )
    src = LoginSourceConfig(
        "mail1", "dovecot-log", path=log, ignore_remote=("10.0.0.5",), timezone="UTC"
    )
    data = DataDir(tmp_path / "data")
    assert collect_logins(src, "2026-11-22", data) == 1  # b@ came from the collector's address
    night22 = tmp_path / "data/logins/night=2026-11-22/mail1.parquet"
    first = pq.read_table(night22).column("mailbox").to_pylist()
    assert first == ["a@x.vn"]
    with log.open("a") as fh:
        fh.write(LINE.format(d=22, m=3, u="c@x.vn", ip=8))
    # The same night again starts where that night started: same lines plus the new one.
    assert collect_logins(src, "2026-11-22", data) == 2
    # written atomically over the first file: that night's lines and the new one, once each
    assert sorted(pq.read_table(night22).column("mailbox").to_pylist()) == ["a@x.vn", "c@x.vn"]
    assert collect_logins(src, "2026-11-23", data) == 0  # the next night: nothing new
    with log.open("a") as fh:
        fh.write(LINE.format(d=23, m=4, u="a@x.vn", ip=7))
    assert collect_logins(src, "2026-11-24", data) == 1
    table = pq.read_table(tmp_path / "data/logins/night=2026-11-24/mail1.parquet")
    assert table.column("mailbox").to_pylist() == ["a@x.vn"]
    with pytest.raises(NightConflict):
        collect_logins(src, "2026-11-20", data)
    # the refused night changed nothing already written
    assert sorted(pq.read_table(night22).column("mailbox").to_pylist()) == ["a@x.vn", "c@x.vn"]


def test_a_killed_nights_uncommitted_login_file_is_not_counted_again(tmp_path, monkeypatch):
    log = tmp_path / "dovecot.log"
    log.write_text(LINE.format(d=21, m=1, u="a@x.vn", ip=7))
    src = LoginSourceConfig("mail1", "dovecot-log", path=log, timezone="UTC")
    data = DataDir(tmp_path / "data")
    assert collect_logins(src, "2026-11-22", data) == 1
    with log.open("a") as fh:
        fh.write(LINE.format(d=22, m=2, u="b@x.vn", ip=7))

    def killed(*_args):
        raise KeyboardInterrupt  # the run dies after writing night 23, before its commit

    monkeypatch.setattr(data, "commit_log", killed)
    with pytest.raises(KeyboardInterrupt):
        collect_logins(src, "2026-11-23", data)
    assert (tmp_path / "data/logins/night=2026-11-23/mail1.parquet").exists()
    monkeypatch.undo()
    # The next run is a later night: it reads b@'s line again, and night 23's file goes.
    assert collect_logins(src, "2026-11-24", data) == 1
    files = sorted((tmp_path / "data/logins").glob("night=*/mail1.parquet"))
    rows = [m for f in files for m in pq.read_table(f).column("mailbox").to_pylist()]
    assert sorted(rows) == ["a@x.vn", "b@x.vn"]  # each login once
