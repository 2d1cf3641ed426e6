"""`[[mail_logs]]` through the whole night against a real Postfix (devkit.postfix): real mail
submitted (Bcc, public domains, a bounce, a deferral, mail from outside, the collector's own
test mail), the night run on the Postfix log, its dataset read back and compared with what
the test submitted — the independent truth. Then the log is rotated while a message waits,
and the next night assembles that message once: none lost, none duplicated."""

from __future__ import annotations

import gzip
import os
import smtplib
import ssl
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pyarrow.parquet as pq
import pytest

from contract.mail_logs import MAIL_LOG_DELIVERIES
from devkit.dovecot import LocalDovecot
from devkit.postfix import POSTFIX, LocalPostfix
from pipelines.collect import run_collection
from tests.conftest import MASTER_PASSWORD
from tests.pipelines.test_flow_and_cli import write_setup

pytestmark = pytest.mark.skipif(
    not Path(POSTFIX).exists() or os.geteuid() != 0,
    reason="needs Debian's postfix (make setup installs it) and root (Postfix's master runs as root)",
)

HCM = ZoneInfo("Asia/Ho_Chi_Minh")
COLLECTOR = "mailusage@demo.gov.vn"  # the collector's own account: its test mail is not counted
USERS = {
    "an.nv@demo.gov.vn": "pw-an",
    "binh.tt@demo.gov.vn": "pw-binh",
    "chi.lt@demo.gov.vn": "pw-chi",
    COLLECTOR: "pw-collector",
}


@pytest.fixture(scope="module")
def mta(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalDovecot, LocalPostfix]]:
    dovecot = LocalDovecot.start(
        tmp_path_factory.mktemp("ml-dovecot"), master_password=MASTER_PASSWORD, mta=True
    )
    try:
        dovecot.add_users(USERS)
        dovecot.finish_seeding()
        postfix = LocalPostfix.start(
            tmp_path_factory.mktemp("ml-postfix"),
            dovecot,
            domains=["demo.gov.vn"],
            aliases={"vanthu@demo.gov.vn": "binh.tt@demo.gov.vn"},
        )
        try:
            yield dovecot, postfix
        finally:
            postfix.stop()
    finally:
        dovecot.stop()


def submit(pf: LocalPostfix, user: str, rcpts: list[str], msg_id: str, to: str) -> None:
    raw = f"From: {user}\r\nTo: {to}\r\nSubject: t\r\nMessage-ID: {msg_id}\r\n\r\nhi\r\n"
    with smtplib.SMTP("127.0.0.1", pf.submission_port) as smtp:
        smtp.starttls(context=ssl.create_default_context(cafile=str(pf.ca_file)))
        smtp.login(user, USERS[user])
        assert smtp.sendmail(user, rcpts, raw.encode()) == {}


def wait_for(ready: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() > deadline:
            raise TimeoutError(f"not in the log after {timeout}s: {what}")
        time.sleep(0.1)


def log_text(pf: LocalPostfix) -> str:
    return pf.maillog.read_text() if pf.maillog.exists() else ""


def night_rows(cfg: Path, night: str, name: str = "postfix") -> list[dict]:
    path = cfg.parent / "data" / "mail_log_deliveries" / f"night={night}" / f"{name}.parquet"
    table = pq.read_table(path)
    assert table.schema.equals(MAIL_LOG_DELIVERIES)
    return table.to_pylist()


def test_nights_on_a_real_postfix_log_match_what_was_sent_across_a_rotation(
    mta, tmp_path, monkeypatch
):
    dovecot, pf = mta
    monkeypatch.setenv("MU_TEST_MASTER", MASTER_PASSWORD)
    roster = "".join(
        f"NV{i},Người {i},{m},VP,Văn phòng,no\n" for i, m in enumerate(USERS) if m != COLLECTOR
    )
    extra = f"""
[[mail_logs]]
name = "postfix"
kind = "postfix"
path = "{pf.maillog.parent}"
timezone = "{pf.log_tz}"
ignore_accounts = ["{COLLECTOR}"]
[[mail_logs]]
name = "broken"
kind = "postfix"
path = "{tmp_path / "no-such.log"}"
"""
    cfg = Path(write_setup(tmp_path, dovecot, roster, extra=extra))
    pf.sink.refuse.add("nobody@gmail.com")
    pf.sink.defer.add("slow@yahoo.com")
    before = datetime.now(HCM).replace(microsecond=0)
    # What the test submits is the truth the dataset is checked against:
    # (user, message-id) -> {recipient: final status}
    truth: dict[tuple[str | None, str], dict[str, str]] = {}
    # To a colleague, Cc a public address; Bcc a colleague and a public address.
    env1 = ["binh.tt@demo.gov.vn", "friend@gmail.com", "chi.lt@demo.gov.vn", "an.nv@yahoo.com"]
    submit(pf, "an.nv@demo.gov.vn", env1, "<l1@demo.gov.vn>", to="binh.tt@demo.gov.vn")
    truth["an.nv@demo.gov.vn", "<l1@demo.gov.vn>"] = dict.fromkeys(env1, "sent")
    # refused outside: a bounce (and Postfix's notice back to the sender)
    submit(pf, "an.nv@demo.gov.vn", ["nobody@gmail.com"], "<l2@demo.gov.vn>", "nobody@gmail.com")
    truth["an.nv@demo.gov.vn", "<l2@demo.gov.vn>"] = {"nobody@gmail.com": "bounced"}
    # deferred outside: still queued when the first night runs
    submit(pf, "binh.tt@demo.gov.vn", ["slow@yahoo.com"], "<l3@demo.gov.vn>", "slow@yahoo.com")
    # the collector's own test mail: not in the dataset
    submit(pf, COLLECTOR, ["probe@gmail.com"], "<probe@demo.gov.vn>", "probe@gmail.com")
    # from outside, unauthenticated on port 25, to the unit's clerk alias
    with smtplib.SMTP("127.0.0.1", pf.smtp_port) as smtp:
        raw = b"From: n@facebookmail.com\r\nMessage-ID: <l4@facebookmail.com>\r\n\r\nx\r\n"
        smtp.sendmail("notification@facebookmail.com", ["vanthu@demo.gov.vn"], raw)
    truth[None, "<l4@facebookmail.com>"] = {"binh.tt@demo.gov.vn": "sent"}
    pf.wait_idle()
    wait_for(
        lambda: log_text(pf).count(": removed") >= 5 and "status=deferred" in log_text(pf),
        "five messages removed (l1, l2, its notice, the probe, l4) and l3 deferred",
    )

    night1 = (datetime.now(HCM) - timedelta(days=1)).date().isoformat()
    summary = run_collection(cfg, night1, plain=True)
    outcomes = {o.mailbox: o for o in summary.outcomes}
    assert outcomes["mail_logs:postfix"].status == "ok", outcomes["mail_logs:postfix"].reason
    # a failing source is that source's failure, recorded; the night and its mailboxes go on
    assert outcomes["mail_logs:broken"].status == "failed"
    assert "no-such.log not found" in outcomes["mail_logs:broken"].reason
    assert summary.count("ok") == 3 + 1  # three mailboxes and the Postfix log
    assert not (
        cfg.parent / "data" / "mail_log_deliveries" / f"night={night1}" / "broken.parquet"
    ).exists()
    runs = pq.read_table(cfg.parent / "data" / "run_mailboxes" / f"night={night1}").to_pylist()
    assert {r["mailbox"]: r["status"] for r in runs}["mail_logs:broken"] == "failed"

    rows1 = night_rows(cfg, night1)
    got = _by_message(r for r in rows1 if r["notice_of"] is None)
    assert got == truth  # the Bcc ones too; the probe not; l3 not yet (deferred)
    by_id = {r["message_id"]: r for r in rows1}
    assert by_id["<l1@demo.gov.vn>"]["direction"] == "out"
    assert by_id["<l1@demo.gov.vn>"]["nrcpt"] == len(env1)
    l4 = by_id["<l4@facebookmail.com>"]
    assert (l4["direction"], l4["sender_domain"], l4["orig_recipient"]) == (
        "in", "facebookmail.com", "vanthu@demo.gov.vn",
    )  # fmt: skip
    (notice,) = [r for r in rows1 if r["notice_of"] is not None]
    assert notice["notice_of"] == by_id["<l2@demo.gov.vn>"]["queue_id"]
    assert (notice["recipient"], notice["status"]) == ("an.nv@demo.gov.vn", "sent")
    for r in rows1:
        assert r["complete"] and r["removed"]
        assert before <= r["time"] <= datetime.now(HCM) + timedelta(seconds=1)
        assert str(r["log_date"]) == r["time"].astimezone(HCM).date().isoformat()

    # The log is rotated while l3 waits; then the outside accepts it and one more is sent.
    rotated = pf.rotate()
    pf.sink.defer.discard("slow@yahoo.com")
    submit(pf, "chi.lt@demo.gov.vn", ["an.nv@demo.gov.vn", "x@outlook.com"], "<l5@demo.gov.vn>",
           to="an.nv@demo.gov.vn")  # fmt: skip
    pf.flush()
    pf.wait_idle()
    wait_for(lambda: log_text(pf).count(": removed") >= 2, "l3 and l5 removed after the rotation")

    night2 = datetime.now(HCM).date().isoformat()
    summary = run_collection(cfg, night2, plain=True)
    outcome = {o.mailbox: o for o in summary.outcomes}["mail_logs:postfix"]
    # the rotated file was found by its first line (no loss noted), nothing misread
    assert (outcome.status, outcome.reason) == ("ok", "")
    rows2 = night_rows(cfg, night2)
    assert _by_message(rows2) == {
        ("binh.tt@demo.gov.vn", "<l3@demo.gov.vn>"): {"slow@yahoo.com": "sent"},
        ("chi.lt@demo.gov.vn", "<l5@demo.gov.vn>"): dict.fromkeys(
            ["an.nv@demo.gov.vn", "x@outlook.com"], "sent"
        ),
    }
    (l3,) = [r for r in rows2 if r["message_id"] == "<l3@demo.gov.vn>"]
    assert l3["complete"] and l3["deferrals"] >= 1 and l3["time"] <= l3["status_time"]
    old = gzip.decompress(rotated.read_bytes()).decode()
    assert f"{l3['queue_id']}: client=" in old and f"{l3['queue_id']}: removed" in log_text(pf)
    # every queue id once across the two nights: none lost, none twice
    ids = [(r["queue_id"], r["recipient"]) for r in rows1 + rows2]
    assert len(ids) == len(set(ids))
    # and re-running the second night reads the same lines again: the same rows
    run_collection(cfg, night2, plain=True)
    assert night_rows(cfg, night2) == rows2


def _by_message(rows) -> dict[tuple[str | None, str], dict[str, str]]:
    out: dict[tuple[str | None, str], dict[str, str]] = {}
    for r in rows:
        out.setdefault((r["sasl_username"], r["message_id"]), {})[r["recipient"]] = r["status"]
    return out
