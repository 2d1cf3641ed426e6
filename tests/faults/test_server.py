"""Server-side faults: Dovecot restarted mid-night, credentials changed or revoked, quota
not answered, and mailboxes changed between nights (expunge, folder deleted or renamed,
UIDVALIDITY reset) with the network failing on top."""

from __future__ import annotations

import random
import threading

import duckdb
import pytest

from pipelines.collect import MailboxOutcome
from tests.faults.conftest import NIGHT, SECRET, World
from tests.faults.invariant import check_night
from tests.faults.proxy import Fault, FaultProxy
from tests.faults.world import USER_PASSWORD, Setup, add_mailboxes, seed_mail, truth


def test_dovecot_restarted_mid_night(world: World) -> None:
    setup = world.setup("dovecot restarted mid-night")
    restarts: list[threading.Thread] = []

    def progress(outcome: MailboxOutcome) -> None:
        if len(restarts) == 0 and outcome.mailbox == world.mailboxes[10]:
            restarts.append(threading.Thread(target=world.server.restart))
            restarts[0].start()

    from pipelines.collect import run_collection

    faulty = run_collection(str(setup.config), NIGHT, progress=progress, plain=True)
    restarts[0].join()
    world.check(
        "Dovecot stopped and restarted mid-night",
        setup,
        faulty,
    )


def test_user_passwords_changed(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    # Dovecot delays every login from an address for up to 15 s after failed ones, so
    # this night is 8 mailboxes with a patient timeout.
    mailboxes = world.mailboxes[:8]
    for m in mailboxes:
        local = m.split("@")[0].upper()
        monkeypatch.setenv(f"MU_FAULTS_PW_{local}", USER_PASSWORD)
    setup = Setup(world.root / "passwords", world.server, mailboxes, auth="user", timeout=30)
    changed = mailboxes[3:5]
    for m in changed:
        world.server.set_password(m, "changed-in-webmail")
    try:
        faulty = setup.collect(NIGHT)
    finally:
        for m in changed:
            world.server.set_password(m, USER_PASSWORD)
    entry = world.check(
        "2 of 8 users changed their password (per-user login)",
        setup,
        faulty,
        kind="auth",
        only=set(mailboxes),
    )
    assert entry.failed == 2
    assert {o.mailbox for o in faulty.outcomes if o.status == "failed"} == set(changed)


def test_master_user_revoked(world: World) -> None:
    setup = world.setup("master revoked", timeout=20)  # Dovecot's login penalty: <= 15 s
    world.server.set_master_password(None)
    try:
        faulty = setup.collect(NIGHT)
    finally:
        world.server.set_master_password(SECRET)
    entry = world.check(
        "master user revoked",
        setup,
        faulty,
        kind="auth",
    )
    assert entry.failed == len(world.mailboxes)
    # One mailbox goes first, alone: its refusal stops the night's logins with that
    # account, so the account meets exactly one failed login, whatever the concurrency.
    assert all("master user" in o.reason for o in faulty.outcomes)
    tried = [o for o in faulty.outcomes if not o.reason.startswith("not tried")]
    assert len(tried) == 1, [o.reason for o in tried]


def test_quota_not_answered(world: World) -> None:
    """GETQUOTAROOT answered NO: the mailbox is collected, its quota recorded as unknown
    (it used to fail the whole mailbox)."""
    with FaultProxy(world.server.imap_port, {0: Fault("no_quota", every=True)}) as proxy:
        setup = world.setup("quota missing", port=proxy.port)
        faulty = setup.collect(NIGHT)
        world.check(
            "GETQUOTAROOT answered NO",
            setup,
            faulty,
            kind="none",
            min_failed=0,
        )
        assert len(proxy.stats.fired) >= len(world.mailboxes)
    assert faulty.count("ok") == len(world.mailboxes)
    unknown = duckdb.sql(
        f"SELECT count(*) FROM read_parquet('{setup.data}/mailbox_status/*/*.parquet') "
        "WHERE quota_used_bytes IS NULL"
    ).fetchall()
    assert unknown[0][0] > 0


def test_mailboxes_changed_between_nights(world: World) -> None:
    """Night 1 clean; then a message expunged, a folder deleted, one renamed, a UIDVALIDITY
    reset and new mail; night 2 with connections cut inside FETCH, then again clean."""
    server = world.server
    rng = random.Random(33)
    mbx = add_mailboxes(server, [f"st{i:02d}" for i in range(8)])
    for m in mbx:  # at least two messages in each folder, so that every change bites
        for night in range(2):
            seed_mail(server, [m], rng, night=night, most=6)
    server.finish_seeding()
    root = world.root / "changed between nights"
    with FaultProxy(server.imap_port) as proxy:
        reference = Setup(root / "reference", server, mbx)
        faulty_setup = Setup(root / "faulty", server, mbx, port=proxy.port)
        n1, n2 = "2026-11-20", "2026-11-21"
        for s in (reference, faulty_setup):
            assert s.collect(n1).count("ok") == len(mbx)
        before = truth(server, mbx)
        inbox0 = sorted(r[3] for r in before if (r[0], r[1]) == (mbx[0], "INBOX"))
        server.doveadm("expunge", "-u", mbx[0], "mailbox", "INBOX", "uid", str(inbox0[0]))
        server.doveadm("mailbox", "delete", "-u", mbx[1], "Dự án")
        server.doveadm("mailbox", "rename", "-u", mbx[2], "Dự án", "Lưu trữ")
        server.reset_uidvalidity(mbx[3], "INBOX")
        seed_mail(server, [mbx[0], *mbx[3:]], rng, night=2, most=3)
        seed_mail(server, mbx[1:3], rng, night=2, most=3, folders=("INBOX", "Sent"))
        server.finish_seeding()
        proxy.faults.update({n: Fault("cut_in_fetch", seed=n) for n in range(1, 20, 2)})
        faulty = faulty_setup.collect(n2)
        proxy.faults.clear()
        assert reference.collect(n2).count("ok") == len(mbx)
        after = truth(server, mbx)
        # Kept: what night 1 saw (an expunged message and a deleted folder were real mail).
        # Replaced: a folder whose name now carries another UIDVALIDITY (reset, or deleted
        # and made again: its old UIDs mean nothing now), and a renamed folder's old name.
        now = {(r[0], r[1]): r[2] for r in after}
        dropped = {r for r in before if now.get((r[0], r[1]), r[2]) != r[2]}
        dropped |= {r for r in before if (r[0], r[1]) == (mbx[2], "Dự án")}
        assert {(r[0], r[1]) for r in dropped} == {(mbx[2], "Dự án"), (mbx[3], "INBOX")}
        expected = (before - dropped) | after
        check_night(
            "between nights: expunge, folder deleted, renamed, UIDVALIDITY reset, new mail "
            "— then night 2 cut inside FETCH",
            faulty_setup.data,
            faulty,
            lambda: faulty_setup.collect(n2),
            reference.data,
            expected,
            nights=2,
        )
    status = duckdb.sql(
        f"SELECT mailbox, folder, folder_status FROM read_parquet('{reference.data}/"
        f"mailbox_status/night={n2}/*.parquet') WHERE folder_status <> 'ok' ORDER BY 1"
    ).fetchall()
    assert status == [(mbx[1], "Dự án", "vanished"), (mbx[2], "Dự án", "renamed")]
