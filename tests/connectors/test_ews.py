"""EWS contract tests: exchangelib, unmodified, against the local endpoint (devkit/ews.py).

Ground truth is the endpoint's own in-memory items, never read back through exchangelib.
The endpoint validates every request and response against Microsoft's schema.
"""

from __future__ import annotations

import random
import re
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from connectors.base import AuthError, MailboxMissing
from connectors.ews import EwsSettings, EwsSource, folder_uidvalidity, item_uid
from contract.roster import load_roster
from devkit.ews import MAX_SYNC_CHANGES, EwsEndpoint, Item, Mailbox, Rule
from mailusage.cli import main
from pipelines.collect import run_collection
from pipelines.config import ConfigError, load_config
from pipelines.storage import DataDir
from tests.collect_one import collect_one
from tests.fixtures import ews_release_2026_12_01 as release
from tests.groundtruth import night_status

PASSWORD = "svc-secret-%:!x"
SVC = "svc-mailusage@danang.gov.vn"
NOW = datetime(2026, 11, 23, 18, 0, tzinfo=UTC)  # the collector's clock in these tests
SENDERS = ["vp.ubnd@danang.gov.vn", "dan.nguyen@gmail.com", "tt@yahoo.com", "hr@Danang.gov.vn"]
PEERS = ["phong.tc@danang.gov.vn", "x.partner@gmail.com", "so.tttt@danang.gov.vn"]


@pytest.fixture
def ep():
    endpoint = EwsEndpoint({SVC: PASSWORD}, impersonators={SVC: "*"})
    with endpoint.running():
        yield endpoint


def source(ep: EwsEndpoint, now: datetime = NOW, **overrides) -> EwsSource:
    settings = dict(
        endpoint=ep.url,
        username=SVC,
        auth=ep.auth,
        page_size=50,
        get_item_batch=40,
        retry_wait=0.2,
        max_wait=30,
        settle_seconds=600,
    )
    settings.update(overrides)
    return EwsSource(
        EwsSettings(**settings),  # type: ignore[arg-type]
        password_for=lambda _m: PASSWORD,
        name="exchange",
        clock=lambda: now.timestamp(),
    )


def populate(mbx: Mailbox, n_in: int, n_sent: int, seed: int, until: datetime = NOW) -> None:
    """Random mail over the 20 days before ``until`` (minus the settle time)."""
    rng = random.Random(seed)
    span = int((timedelta(days=20) - timedelta(minutes=11)).total_seconds())
    start = until - timedelta(days=20)
    for k in range(n_in):
        t = start + timedelta(seconds=rng.randrange(span))
        mbx.add(
            "inbox",
            Item(
                received=t,
                sent=t - timedelta(seconds=rng.randrange(5, 900)),
                size=rng.randrange(2_000, 90_000),
                is_read=rng.random() < 0.6,
                sender=rng.choice(SENDERS),
                to=[mbx.address],
                cc=rng.sample(PEERS, rng.randrange(0, 2)),
                message_id=f"<in{k}.{seed}@mail>",
            ),
        )
    for k in range(n_sent):
        t = start + timedelta(seconds=rng.randrange(span))
        mbx.add(
            "sentitems",
            Item(
                received=t,
                sent=t,
                size=rng.randrange(2_000, 400_000),
                is_read=True,
                sender=mbx.address,
                to=rng.sample(PEERS, rng.randrange(1, 3)),
                cc=rng.sample(SENDERS, rng.randrange(0, 2)),
                message_id=f"<out{k}.{seed}@mail>",
            ),
        )


def truth(mbx: Mailbox) -> list[tuple]:
    """Every item of every mail folder, as the datasets should hold it (folder: its path)."""
    return sorted(
        (
            mbx.path(key),
            item_uid(i.item_id),
            int(i.received.timestamp()),
            int((i.sent or i.received).timestamp()),
            i.size,
            i.is_read,
            (i.sender or "").lower() or None,
            tuple(a.lower() for a in i.to),
            tuple(a.lower() for a in i.cc),
            i.message_id,
        )
        for key, f in mbx.folders.items()
        if f.folder_class in ("IPF.Note", None)
        for i in f.items
    )


MAIL_FOLDERS = 5  # a new endpoint mailbox: Inbox, Sent Items, Drafts, Deleted Items, Junk Email


def stored(data: DataDir, mailbox: str) -> list[tuple]:
    return sorted(
        (f, u, r, s, z, seen, fr, tuple(to), tuple(cc), mid)
        for f, u, r, s, z, seen, fr, to, cc, mid in duckdb.execute(
            """select folder, uid, epoch(internal_date)::bigint, epoch(sent_date)::bigint, size,
                      seen, from_addr, to_addrs, cc_addrs, message_id
               from read_parquet($p, hive_partitioning = true) where mailbox = $m""",
            parameters={"p": str(data.root / "messages" / "*" / "*.parquet"), "m": mailbox},
        ).fetchall()
    )


def status(data: DataDir, mailbox: str, night: str) -> dict[str, dict]:
    return night_status(data.root, mailbox, night)


def test_records_equal_the_endpoint_data_and_status_counts(ep, tmp_path):
    mbx = ep.mailbox("an.nv@danang.gov.vn")
    populate(mbx, 230, 61, seed=1)
    data = DataDir(tmp_path / "data")
    outcome = collect_one(source(ep), mbx.address, "2026-11-23", data)
    assert outcome.status == "ok", outcome.reason
    assert outcome.messages_new == 291
    assert stored(data, mbx.address) == truth(mbx)
    st = status(data, mbx.address, "2026-11-23")
    for dist, name in (("inbox", "Inbox"), ("sentitems", "Sent Items")):
        items = mbx.folders[dist].items
        assert st[name]["messages"] == len(items)
        assert st[name]["unseen"] == sum(1 for i in items if not i.is_read)
        assert st[name]["folder_bytes"] == sum(i.size for i in items)  # 0x0E08 as a Long
        assert st[name]["fetched"] == len(items)
        assert st[name]["quota_used_bytes"] is None  # EWS has no quota
    assert st["Sent Items"]["sent_folder"] == "Sent Items"
    assert st["Inbox"]["role"] == "inbox" and st["Sent Items"]["role"] == "sent"


def test_unchanged_mailbox_costs_a_call_per_folder_and_new_mail_is_read_once(ep, tmp_path):
    """The budget of a quiet mailbox: GetFolder (the well-known ids) + FindFolder (one page)
    + one SyncFolderItems per mail folder + GetInboxRules — 2 + 5 + 1 calls here."""
    mbx = ep.mailbox("binh.tt@danang.gov.vn")
    mbx.rules.append(Rule("to home", forward=["binh.home@gmail.com"]))
    populate(mbx, 120, 30, seed=2)
    data = DataDir(tmp_path / "data")
    src1 = source(ep)
    assert collect_one(src1, mbx.address, "2026-11-23", data, forwarding=src1).status == "ok"
    first = len(ep.calls)
    later = NOW + timedelta(days=1)
    src2 = source(ep, now=later)
    outcome = collect_one(src2, mbx.address, "2026-11-24", data, forwarding=src2)
    assert outcome.status == "ok" and outcome.messages_new == 0
    night2 = ep.calls[first:]
    assert [c.service for c in night2] == [
        "GetFolder",
        "FindFolder",
        *["SyncFolderItems"] * MAIL_FOLDERS,
        "GetInboxRules",
    ]
    assert all(c.sync_state for c in night2 if c.service == "SyncFolderItems")  # last night's

    # Mail that arrived since: read on night 3, exactly once.
    src3 = source(ep, now=later + timedelta(days=1))
    for k in range(7):
        mbx.add(
            "inbox",
            Item(later + timedelta(hours=k), later, 5000 + k, False, "a@gmail.com", [mbx.address]),
        )
    outcome = collect_one(src3, mbx.address, "2026-11-25", data, forwarding=src3)
    assert outcome.messages_new == 7
    assert stored(data, mbx.address) == truth(mbx)


def test_mail_delivered_in_the_sub_second_gap_after_a_window_is_collected(ep, tmp_path):
    """Why: DateTimeReceived has sub-second precision; the release's whole-second window
    [last+1, end] never saw a message at end+0.4 s (neither that night nor the next)."""
    mbx = ep.mailbox("an.nv@danang.gov.vn")
    populate(mbx, 10, 2, seed=21)
    settle = 600
    end = NOW - timedelta(seconds=settle)  # where the release's window ended
    gap = mbx.add(
        "inbox",
        Item(end + timedelta(milliseconds=400), end, 321, False, "a@gmail.com", [mbx.address]),
    )
    data = DataDir(tmp_path / "data")
    collect_one(source(ep, settle_seconds=settle), mbx.address, "2026-11-23", data)
    later = source(ep, now=NOW + timedelta(days=1), settle_seconds=settle)
    collect_one(later, mbx.address, "2026-11-24", data)
    assert item_uid(gap.item_id) in {row[1] for row in stored(data, mbx.address)}
    assert stored(data, mbx.address) == truth(mbx)


def test_subfolders_are_collected_and_non_mail_folders_are_not(ep, tmp_path):
    mbx = ep.mailbox("an.nv@danang.gov.vn")
    populate(mbx, 20, 5, seed=22)
    project = mbx.subfolder("inbox", "Dự án")
    deeper = mbx.subfolder(project.distinguished, "2026")
    mbx.subfolder("msgfolderroot", "Lưu trữ", folder_class=None)  # no class: mail
    for key, n in (
        (project.distinguished, 6),
        (deeper.distinguished, 3),
        ("msgfolderroot/Lưu trữ", 2),
    ):
        for k in range(n):
            t = NOW - timedelta(days=2, minutes=k)
            mbx.add(key, Item(t, t, 900 + k, k % 2 == 0, "vp@danang.gov.vn", [mbx.address]))
    for key in ("calendar", "contacts", "tasks"):  # items there are never mail
        mbx.add(key, Item(NOW - timedelta(days=1), None, 50, False, None, []))
    data = DataDir(tmp_path / "data")
    outcome = collect_one(source(ep), mbx.address, "2026-11-23", data)
    assert outcome.status == "ok" and outcome.messages_new == 25 + 6 + 3 + 2
    assert stored(data, mbx.address) == truth(mbx)
    st = status(data, mbx.address, "2026-11-23")
    assert {"Inbox/Dự án", "Inbox/Dự án/2026", "Lưu trữ"} <= st.keys()
    assert st["Inbox/Dự án"]["role"] == "other" and st["Inbox/Dự án"]["messages"] == 6
    assert {"Calendar", "Contacts", "Tasks"}.isdisjoint(st.keys())
    synced = {c.folders[0] for c in ep.calls if c.service == "SyncFolderItems"}
    for key in ("calendar", "contacts", "tasks"):
        assert mbx.folders[key].folder_id not in synced


def test_a_moved_message_is_collected_in_its_new_folder(ep, tmp_path):
    mbx = ep.mailbox("an.nv@danang.gov.vn")
    populate(mbx, 15, 3, seed=23)
    mbx.subfolder("inbox", "Lưu")
    data = DataDir(tmp_path / "data")
    collect_one(source(ep), mbx.address, "2026-11-23", data)
    before = stored(data, mbx.address)
    moved = mbx.move(mbx.folders["inbox"].items[4], "inbox/Lưu")  # new ItemId, old date
    later = source(ep, now=NOW + timedelta(days=1))
    assert collect_one(later, mbx.address, "2026-11-24", data).messages_new == 1
    rows = stored(data, mbx.address)
    assert [r for r in rows if r[0] == "Inbox/Lưu"] == [
        r for r in truth(mbx) if r[0] == "Inbox/Lưu"
    ]
    assert item_uid(moved.item_id) in {r[1] for r in rows if r[0] == "Inbox/Lưu"}
    assert sorted(set(before) | set(truth(mbx))) == rows  # the Inbox row stays, as in IMAP


def test_many_messages_are_collected_exactly_with_the_find_count_limit_active(ep, tmp_path):
    """900 received and 300 sent: the release's FindItem over both folders (a restricted
    search, capped at 250 items a request) lost mail; the sync reads every item once.
    The count to expect is computed from the endpoint's items, not from our records."""
    mbx = ep.mailbox("an.nv@danang.gov.vn")
    populate(mbx, 900, 300, seed=24)
    expected = {(k, i.item_id) for k in ("inbox", "sentitems") for i in mbx.folders[k].items}
    assert len(expected) == 1200
    data = DataDir(tmp_path / "data")
    outcome = collect_one(source(ep, page_size=1000), mbx.address, "2026-11-23", data)
    assert outcome.status == "ok" and outcome.messages_new == len(expected)
    rows = stored(data, mbx.address)
    assert len(rows) == len({(r[0], r[1]) for r in rows}) == len(expected)  # no duplicates
    assert rows == truth(mbx)
    old = release.EwsSource(
        release.EwsSettings(endpoint=ep.url, username=SVC, auth="basic", settle_seconds=600),
        password_for=lambda _m: PASSWORD,
        clock=lambda: NOW.timestamp(),
    )
    old_data = DataDir(tmp_path / "old")
    collect_one(old, mbx.address, "2026-11-23", old_data)
    assert len(stored(old_data, mbx.address)) < len(expected)  # the release lost mail here
    assert any(c.service == "FindItem" and c.items == 250 for c in ep.calls)


def test_read_state_changes_are_read_activity_and_never_stored_twice(ep, tmp_path):
    mbx = ep.mailbox("an.nv@danang.gov.vn")
    populate(mbx, 40, 6, seed=25)
    data = DataDir(tmp_path / "data")
    collect_one(source(ep), mbx.address, "2026-11-23", data)
    unread = [i for i in mbx.folders["inbox"].items if not i.is_read]
    for item in unread[:5]:
        mbx.mark_read(item)
    mbx.touch(mbx.folders["inbox"].items[0])  # an Update: not counted (IsRead unknown)
    later = source(ep, now=NOW + timedelta(days=1))
    assert collect_one(later, mbx.address, "2026-11-24", data).messages_new == 0
    st = status(data, mbx.address, "2026-11-24")
    assert st["Inbox"]["read_activity"] == 5
    assert st["Sent Items"]["read_activity"] == 0
    rows = stored(data, mbx.address)
    assert len(rows) == len({(r[0], r[1]) for r in rows}) == 46


def test_an_expired_sync_state_rereads_the_folder_with_its_rows_replaced(ep, tmp_path):
    mbx = ep.mailbox("an.nv@danang.gov.vn")
    populate(mbx, 30, 6, seed=26)
    data = DataDir(tmp_path / "data")
    collect_one(source(ep), mbx.address, "2026-11-23", data)
    night1 = status(data, mbx.address, "2026-11-23")
    assert ep.expire_sync(mbx.address, "inbox") > 0
    mbx.add("inbox", Item(NOW, NOW, 1234, False, "new@gmail.com", [mbx.address]))
    later = source(ep, now=NOW + timedelta(days=1))
    outcome = collect_one(later, mbx.address, "2026-11-24", data)
    assert outcome.status == "ok" and outcome.messages_new == 31  # the Inbox, read whole
    st = status(data, mbx.address, "2026-11-24")
    assert st["Inbox"]["full_reread"] is True and st["Sent Items"]["full_reread"] is False
    assert st["Inbox"]["uidvalidity"] == folder_uidvalidity(mbx.folders["inbox"].folder_id, 1)
    assert st["Inbox"]["uidvalidity"] != night1["Inbox"]["uidvalidity"]
    assert stored(data, mbx.address) == truth(mbx)  # no duplicates: old rows replaced
    assert [c.fault for c in ep.calls if c.fault] == ["ErrorInvalidSyncStateData"]


def test_sync_pages_hold_at_most_512_changes(ep, tmp_path):
    mbx = ep.mailbox("an.nv@danang.gov.vn")
    populate(mbx, 1100, 20, seed=27)
    data = DataDir(tmp_path / "data")
    src = source(ep, get_item_batch=23)
    assert collect_one(src, mbx.address, "2026-11-23", data).messages_new == 1120
    inbox = mbx.folders["inbox"].folder_id
    syncs = [c for c in ep.calls if c.service == "SyncFolderItems" and c.folders == (inbox,)]
    assert [c.items for c in syncs] == [MAX_SYNC_CHANGES, MAX_SYNC_CHANGES, 1100 - 1024]
    assert syncs[0].sync_state is None and all(c.sync_state for c in syncs[1:])
    gets = [c.items for c in ep.calls if c.service == "GetItem"]
    assert max(gets) == 23 and sum(gets) == 1120
    assert stored(data, mbx.address) == truth(mbx)


def test_an_alias_is_collected_through_its_primary_mailbox(ep, tmp_path):
    """Why: impersonation takes the primary SMTP address only ("Proxy or alternative
    addresses are not accepted", EWS reference: PrimarySmtpAddress)."""
    mbx = ep.mailbox("an.nv@danang.gov.vn")
    ep.alias("an.nguyen@danang.gov.vn", mbx.address)
    mbx.rules.append(Rule("fw", forward=["an.home@gmail.com"]))
    populate(mbx, 12, 3, seed=28)
    data = DataDir(tmp_path / "data")
    src = source(ep)
    outcome = collect_one(src, "an.nguyen@danang.gov.vn", "2026-11-23", data, forwarding=src)
    assert outcome.status == "ok", outcome.reason
    assert stored(data, "an.nguyen@danang.gov.vn") == truth(mbx)
    services = [(c.service, c.impersonated, c.fault) for c in ep.calls]
    assert services[:2] == [
        ("GetFolder", "an.nguyen@danang.gov.vn", "ErrorNonExistentMailbox"),
        ("ResolveNames", None, None),
    ]
    assert all(who == mbx.address for _, who, _ in services[2:])
    assert [s for s, _, _ in services].count("ResolveNames") == 1
    with (
        pytest.raises(MailboxMissing, match="ErrorNonExistentMailbox"),
        src.open("ghost@danang.gov.vn") as s,
    ):
        s.folders()


def test_a_store_of_the_released_connector_moves_to_sync_states_without_loss(ep, tmp_path):
    """The migration, on a store the release of 2026-12-01 wrote (night 1 with its frozen
    copy, tests/fixtures/ews_release_2026_12_01.py), then night 2 with this connector: every
    message of every mail folder stored exactly once — the sub-second-gap message and the
    subfolder's included — and the old date-watermark rows replaced."""
    mbx = ep.mailbox("an.nv@danang.gov.vn")
    populate(mbx, 60, 15, seed=29)
    mbx.subfolder("inbox", "Dự án")
    for k in range(4):
        t = NOW - timedelta(days=3, hours=k)
        mbx.add(
            "inbox/Dự án",
            Item(t, t, 700 + k, True, "vp@danang.gov.vn", [mbx.address], message_id=f"<p{k}@x>"),
        )
    settle = 600
    end = NOW - timedelta(seconds=settle)
    mbx.add(
        "inbox",
        Item(
            end + timedelta(milliseconds=400),
            end,
            99,
            False,
            "g@gmail.com",
            [mbx.address],
            message_id="<gap@x>",
        ),
    )
    data = DataDir(tmp_path / "data")
    old = release.EwsSource(
        release.EwsSettings(
            endpoint=ep.url, username=SVC, auth="basic", page_size=50, settle_seconds=settle
        ),
        password_for=lambda _m: PASSWORD,
        clock=lambda: NOW.timestamp(),
    )
    assert collect_one(old, mbx.address, "2026-11-23", data).status == "ok"
    cursors = data.state(mbx.address).after
    assert set(cursors) == {"Inbox", "Sent Items"}
    assert cursors["Inbox"].token is None
    assert cursors["Inbox"].uidvalidity == release.folder_uidvalidity(
        mbx.folders["inbox"].folder_id
    )
    night1 = {r[9] for r in stored(data, mbx.address)}
    assert "<gap@x>" not in night1 and "<p0@x>" not in night1  # what the release missed
    for k in range(3):  # mail of the day between
        t = NOW + timedelta(hours=k)
        mbx.add(
            "sentitems",
            Item(t, t, 500 + k, True, mbx.address, ["x@gmail.com"], message_id=f"<d{k}@x>"),
        )
    outcome = collect_one(source(ep, now=NOW + timedelta(days=1)), mbx.address, "2026-11-24", data)
    assert outcome.status == "ok", outcome.reason
    rows = stored(data, mbx.address)
    ids = Counter((r[0], r[9]) for r in rows)
    assert all(n == 1 for n in ids.values()), [k for k, n in ids.items() if n > 1]
    assert rows == truth(mbx)
    st = status(data, mbx.address, "2026-11-24")
    assert st["Inbox"]["full_reread"] is True and st["Sent Items"]["full_reread"] is True
    assert st["Inbox/Dự án"]["fetched"] == 4
    tokens = data.state(mbx.address).after
    assert all(tokens[name].token for name in ("Inbox", "Sent Items", "Inbox/Dự án"))


def test_every_call_impersonates_the_mailbox_and_nothing_else_is_asked(ep, tmp_path):
    mailboxes = [ep.mailbox(f"u{i}@danang.gov.vn") for i in range(3)]
    for i, m in enumerate(mailboxes):
        populate(m, 40 + i, 9, seed=10 + i)
    data = DataDir(tmp_path / "data")
    src = source(ep)
    for m in mailboxes:
        assert collect_one(src, m.address, "2026-11-23", data, forwarding=src).status == "ok"
    assert ep.calls, "no SOAP call reached the endpoint"
    assert all(c.path == "/EWS/Exchange.asmx" for c in ep.calls), "autodiscover or other URL"
    assert {c.service for c in ep.calls} <= {
        "GetFolder",
        "FindFolder",
        "SyncFolderItems",
        "GetItem",
        "GetInboxRules",
    }
    for c in ep.calls:
        assert c.user == SVC
        assert c.impersonated is not None and c.impersonated == c.anchor
    well_known = ("inbox", "sentitems", "drafts", "deleteditems", "junkemail")
    assert all(c.folders == well_known for c in ep.calls if c.service == "GetFolder")
    for m in mailboxes:
        assert len([c for c in ep.calls_for(m.address) if c.service == "GetFolder"]) == 1


def test_page_sizes_are_the_configured_ones(ep, tmp_path):
    mbx = ep.mailbox("an.nv@danang.gov.vn")
    for k in range(7):
        mbx.subfolder("inbox", f"P{k}")
    populate(mbx, 95, 20, seed=3)
    data = DataDir(tmp_path / "data")
    src = source(ep, page_size=4, get_item_batch=23, max_changes=17)
    assert collect_one(src, mbx.address, "2026-11-23", data).messages_new == 115
    finds = [c for c in ep.calls if c.service == "FindFolder"]
    folders = len(mbx.folders) - 1  # every folder below msgfolderroot
    assert [c.offset for c in finds] == list(range(0, folders, 4))
    assert {c.page_size for c in finds} == {4}
    syncs = [c.items for c in ep.calls if c.service == "SyncFolderItems"]
    assert max(syncs) == 17 and sum(syncs) == 115
    gets = [c.items for c in ep.calls if c.service == "GetItem"]
    assert max(gets) == 23 and sum(gets) == 115


def test_server_busy_back_off_is_honoured_and_the_run_completes(ep, tmp_path):
    mbx = ep.mailbox("an.nv@danang.gov.vn")
    populate(mbx, 80, 10, seed=4)
    ep.inject("busy", times=2, service="SyncFolderItems", back_off_ms=700)
    data = DataDir(tmp_path / "data")
    outcome = collect_one(source(ep), mbx.address, "2026-11-23", data)
    assert outcome.status == "ok" and stored(data, mbx.address) == truth(mbx)
    busy = [i for i, c in enumerate(ep.calls) if c.fault == "busy"]
    assert len(busy) == 2
    for i in busy:  # the next request waited at least BackOffMilliseconds
        assert ep.calls[i + 1].at - ep.calls[i].at >= 0.7


def test_503_is_retried_and_exceeded_connection_count_is_transient(ep, tmp_path):
    mbx = ep.mailbox("an.nv@danang.gov.vn")
    populate(mbx, 30, 5, seed=5)
    ep.inject("503", service="GetItem")
    data = DataDir(tmp_path / "data")
    outcome = collect_one(source(ep), mbx.address, "2026-11-23", data)
    assert outcome.status == "ok" and stored(data, mbx.address) == truth(mbx)
    assert [c.fault for c in ep.calls if c.fault] == ["503"]
    # Too many connections with our pool already at one: the task's retry, not a failure.
    more = ep.mailbox("binh.tt@danang.gov.vn")
    populate(more, 12, 3, seed=55)
    # Twice: the night's own second try (the lead's, then its shard's) meets it too.
    ep.inject("connections", service="SyncFolderItems", times=2)
    failed = collect_one(source(ep), more.address, "2026-11-23", data)
    assert failed.status == "failed" and failed.transient
    assert "ErrorExceededConnectionCount" in failed.reason
    assert collect_one(source(ep), more.address, "2026-11-23", data).status == "ok"
    assert stored(data, more.address) == truth(more)


def test_401_fails_the_mailbox_at_once_as_an_auth_error(ep, tmp_path):
    mbx = ep.mailbox("an.nv@danang.gov.vn")
    populate(mbx, 5, 1, seed=6)
    ep.inject("401", times=100)
    outcome = collect_one(source(ep), mbx.address, "2026-11-23", DataDir(tmp_path / "d"))
    assert outcome.status == "failed" and "401" in outcome.reason
    assert len(ep.calls) == 1  # not retried as throttling


def test_slow_reply_past_the_timeout_is_transient_and_loses_nothing(ep, tmp_path):
    mbx = ep.mailbox("an.nv@danang.gov.vn")
    populate(mbx, 60, 12, seed=7)
    data = DataDir(tmp_path / "data")
    ep.inject("slow", service="GetItem", delay=2.0, times=2)  # the lead's try, the shard's
    failed = collect_one(source(ep, timeout=0.5), mbx.address, "2026-11-23", data)
    assert failed.status == "failed" and failed.transient
    assert data.state(mbx.address) is None
    ep.inject("slow", service="SyncFolderItems", delay=0.3)  # slow but within the timeout
    outcome = collect_one(source(ep, timeout=5), mbx.address, "2026-11-23", data)
    assert outcome.status == "ok" and stored(data, mbx.address) == truth(mbx)


def test_denied_and_missing_mailboxes_are_errors_of_their_own(tmp_path):
    ep = EwsEndpoint({SVC: PASSWORD}, impersonators={SVC: {"an.nv@danang.gov.vn"}})
    ep.mailbox("an.nv@danang.gov.vn")
    ep.mailbox("giamdoc@danang.gov.vn")
    with ep.running():
        src = source(ep)
        with (
            pytest.raises(AuthError, match="ErrorImpersonateUserDenied"),
            src.open("giamdoc@danang.gov.vn") as s,
        ):
            s.folders()
        with pytest.raises(AuthError):  # not in the service account's management scope
            src.forwards("giamdoc@danang.gov.vn")
        ep.impersonators[SVC] = "*"
        with (
            pytest.raises(MailboxMissing, match="ErrorNonExistentMailbox"),
            src.open("nobody@danang.gov.vn") as s,
        ):
            s.folders()


def test_inbox_rules_become_forwarding_rows(ep):
    mbx = ep.mailbox("an.nv@danang.gov.vn")
    mbx.rules += [
        Rule("Chuyển về Gmail", forward=["An.Home@Gmail.com"]),
        Rule(
            "redirect boss", redirect=["sec@danang.gov.vn"], from_addresses=["boss@danang.gov.vn"]
        ),
        Rule("old", forward=["old@yahoo.com"], enabled=False),
        Rule("attach", forward_as_attachment=["archive@outlook.com"]),
    ]
    got = {
        (f.target, f.rule_name, f.keeps_copy, f.conditional)
        for f in source(ep).forwards(mbx.address)
    }
    assert got == {
        ("an.home@gmail.com", "Chuyển về Gmail", True, False),
        ("sec@danang.gov.vn", "redirect boss", True, True),
        ("archive@outlook.com", "attach", True, False),
    }


def test_recreated_folder_is_read_again_without_duplicates(ep, tmp_path):
    mbx = ep.mailbox("an.nv@danang.gov.vn")
    populate(mbx, 40, 8, seed=8)
    data = DataDir(tmp_path / "data")
    collect_one(source(ep), mbx.address, "2026-11-23", data)
    mbx.recreate("inbox")
    populate(mbx, 0, 0, seed=9)
    mbx.add("inbox", Item(NOW - timedelta(days=3), None, 777, True, "z@gmail.com", [mbx.address]))
    later = source(ep, now=NOW + timedelta(days=1))
    outcome = collect_one(later, mbx.address, "2026-11-24", data)
    assert outcome.messages_new == 1  # an old date, found because the folder is new
    assert stored(data, mbx.address) == truth(mbx)
    assert status(data, mbx.address, "2026-11-24")["Inbox"]["full_reread"] is True


def test_ntlm_login_and_a_wrong_password(tmp_path):
    user = "DANANG\\svc-mailusage"
    ep = EwsEndpoint(
        {user: PASSWORD}, auth="ntlm", impersonators={user: "*"}, ntlm_user_file=tmp_path / "ntlm"
    )
    mbx = ep.mailbox("an.nv@danang.gov.vn")
    populate(mbx, 25, 4, seed=11)
    with ep.running():
        data = DataDir(tmp_path / "data")
        outcome = collect_one(source(ep, username=user), mbx.address, "2026-11-23", data)
        assert outcome.status == "ok" and stored(data, mbx.address) == truth(mbx)
        assert all(c.user == user for c in ep.calls)
        bad = EwsSource(
            EwsSettings(endpoint=ep.url, username=user, auth="ntlm", max_wait=30),
            password_for=lambda _m: "wrong",
        )
        with pytest.raises(AuthError, match="401"), bad.open(mbx.address) as s:
            s.folders()


def write_config(tmp_path, ep: EwsEndpoint, extra: str = "") -> str:
    cfg = tmp_path / "mailusage.toml"
    cfg.write_text(
        f"""
[agency]
official_domains = ["danang.gov.vn"]
[roster]
path = "roster.csv"
[collect]
retries = 0
concurrency = 2
[[sources]]
name = "exchange"
kind = "ews"
endpoint = "{ep.url}"
auth = "basic"
username = "{SVC}"
password = {{ env = "MU_TEST_EWS" }}
retry_wait = 0.2
settle_seconds = 60
{extra}
""",
        encoding="utf-8",
    )
    return str(cfg)


ROSTER = """employee_id,full_name,email,unit_code,unit_name
1,Nguyễn Văn An,an.nv@danang.gov.vn,VP,Văn phòng
2,Trần Thị Bình,binh.tt@danang.gov.vn,VP,Văn phòng
3,Lê Giám Đốc,giamdoc@danang.gov.vn,BGD,Ban giám đốc
4,Người Không Có,nobody@danang.gov.vn,VP,Văn phòng
"""


def test_doctor_checks_endpoint_login_impersonation_folders_and_rules(
    tmp_path, monkeypatch, capsys
):
    ep = EwsEndpoint({SVC: PASSWORD}, impersonators={SVC: {"binh.tt@danang.gov.vn"}})
    populate(ep.mailbox("an.nv@danang.gov.vn"), 4, 2, seed=40)
    monkeypatch.setenv("MU_TEST_EWS", PASSWORD)
    (tmp_path / "roster.csv").write_text(ROSTER, encoding="utf-8")
    with ep.running():
        cfg = write_config(tmp_path, ep)
        assert main(["doctor", "--config", cfg]) != 0  # an.nv is outside the scope
        out = capsys.readouterr().out
        assert "ErrorImpersonateUserDenied" in out
        ep.impersonators[SVC] = "*"
        code = main(["doctor", "--config", cfg])
        out = capsys.readouterr().out
        assert code == 0, out
        for check in ("endpoint", "login", "impersonation", "inbox-folder", "sent-folder"):
            assert check in out
        assert "inbox-rules" in out and "EWS inbox rules from exchange" in out
        monkeypatch.setenv("MU_TEST_EWS", "wrong")
        assert main(["doctor", "--config", cfg]) != 0
        assert "401" in capsys.readouterr().out
    assert all(c.path == "/EWS/Exchange.asmx" for c in ep.calls if c.service != "(not EWS)")


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ('endpoint = "mail.danang.gov.vn"', "endpoint is required"),
        ('auth = "kerberos"', "auth must be one of"),
        ('access = "sudo"', "access must be one of"),
        ('version = "Exchange2016"', "Exchange build like"),
        ("page_size = 5000", "page_size must be between 1 and 1000"),
        ('password = "hunter2"', "passwords are never written in the config"),
        ('host = "x"', "sources[0]: unknown key 'host'"),
        ('timeout = "slow"', "sources[0].timeout must be an integer or a number, not 'slow'"),
    ],
)
def test_bad_ews_source_config_names_the_key(tmp_path, extra, message):
    ep = EwsEndpoint({SVC: PASSWORD})
    key = extra.split(" ")[0]
    cfg = Path(write_config(tmp_path, ep))
    lines = cfg.read_text(encoding="utf-8").splitlines()
    text = "\n".join(line for line in lines if not line.startswith(key))
    (tmp_path / "roster.csv").write_text(ROSTER, encoding="utf-8")
    cfg.write_text(text.replace('kind = "ews"', f'kind = "ews"\n{extra}'), encoding="utf-8")
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config(cfg)


def test_collection_flow_over_an_ews_source_records_each_mailbox(tmp_path, monkeypatch):
    allowed = {"an.nv@danang.gov.vn", "binh.tt@danang.gov.vn"}
    ep = EwsEndpoint({SVC: PASSWORD}, impersonators={SVC: allowed})
    for i, address in enumerate(sorted(allowed)):
        populate(ep.mailbox(address), 20 + i, 5, seed=30 + i, until=datetime.now(UTC))
    ep.mailbox("giamdoc@danang.gov.vn")  # exists, but outside the impersonation scope
    ep.mailbox("an.nv@danang.gov.vn").rules.append(Rule("fw", redirect=["an@gmail.com"]))
    monkeypatch.setenv("MU_TEST_EWS", PASSWORD)
    (tmp_path / "roster.csv").write_text(ROSTER, encoding="utf-8")
    with ep.running():
        # Two mailboxes at a time, one connection: the pool bounds what reaches Exchange.
        ep.inject("slow", service="GetFolder", times=4, delay=0.3)  # calls would overlap
        cfg = write_config(tmp_path, ep, "max_connections = 1")
        summary = run_collection(cfg, night="2026-11-23", plain=True)
    by = {o.mailbox: o for o in summary.outcomes}
    assert by["an.nv@danang.gov.vn"].status == by["binh.tt@danang.gov.vn"].status == "ok"
    assert by["giamdoc@danang.gov.vn"].status == "failed"
    assert "ErrorImpersonateUserDenied" in by["giamdoc@danang.gov.vn"].reason
    assert by["nobody@danang.gov.vn"].status == "failed"
    assert "no mailbox" in by["nobody@danang.gov.vn"].reason
    data = DataDir(tmp_path / "data")
    for address in allowed:
        assert stored(data, address) == truth(ep.mailbox(address))
    fw = pq.read_table(tmp_path / "data" / "forwarding").to_pylist()
    assert [(r["mailbox"], r["target"]) for r in fw] == [("an.nv@danang.gov.vn", "an@gmail.com")]
    assert PASSWORD not in "".join(p.read_text(errors="ignore") for p in tmp_path.rglob("*.json"))
    assert ep.max_active == 1
    counts = Counter(c.service for c in ep.calls)
    assert counts["GetInboxRules"] == 2  # only for mailboxes that could be opened


def test_a_refused_service_account_stops_the_source_for_the_night(tmp_path, monkeypatch):
    """HTTP 401 under impersonation is the service account's own login: the first mailbox
    says so, the others are not tried (each try would be refused too, and count towards
    the account's lockout). The next night, with the password fixed, collects them all."""
    ep = EwsEndpoint({SVC: PASSWORD}, impersonators={SVC: "*"})
    for i, address in enumerate(["an.nv@danang.gov.vn", "binh.tt@danang.gov.vn"]):
        populate(ep.mailbox(address), 5, 2, seed=50 + i)
    (tmp_path / "roster.csv").write_text(ROSTER, encoding="utf-8")
    monkeypatch.setenv("MU_TEST_EWS", "expired-password")
    with ep.running():
        cfg = write_config(tmp_path, ep, "max_connections = 1")
        summary = run_collection(cfg, night="2026-11-23", plain=True)
        assert summary.count("failed") == len(summary.outcomes) == 4
        reasons = [o.reason for o in summary.outcomes]
        assert all("service account" in r and "401" in r for r in reasons), reasons
        assert sum(r.startswith("not tried") for r in reasons) == 3
        assert ep.refused == 1, ep.refused  # the first mailbox goes alone: one refusal
        monkeypatch.setenv("MU_TEST_EWS", PASSWORD)
        again = run_collection(cfg, night="2026-11-23", plain=True)
    assert {o.mailbox for o in again.outcomes if o.status == "ok"} == {
        "an.nv@danang.gov.vn",
        "binh.tt@danang.gov.vn",
    }


def test_exceeded_find_count_limit_on_the_folder_list_does_not_fail_the_mailbox(ep, tmp_path):
    """Why: ErrorExceededFindCountLimit (EWS throttling, Table 3) is a budget, not a fault of
    the mailbox: the folder list is asked again in smaller pages."""
    mbx = ep.mailbox("an.nv@danang.gov.vn")
    populate(mbx, 8, 2, seed=30)
    ep.inject("findcount", service="FindFolder")
    data = DataDir(tmp_path / "data")
    outcome = collect_one(source(ep, page_size=1000), mbx.address, "2026-11-23", data)
    assert outcome.status == "ok", outcome.reason
    assert stored(data, mbx.address) == truth(mbx)
    finds = [(c.fault, c.page_size) for c in ep.calls if c.service == "FindFolder"]
    assert finds == [("findcount", None), (None, 250)]  # refused, then a page of 250


def _read_daily_unit_mailbox(ep: EwsEndpoint, tmp_path: Path, make_source) -> list[dict]:
    """A unit mailbox on Exchange, read every day and never sending, collected on the
    nights 2-18 November (days 1-17, more than the policy's 15); then its month."""
    from analytics.evaluate import EvaluationInputs, evaluate_month
    from analytics.policy import load_policy
    from tests.analytics.fixture import write_roster

    start = datetime(2026, 11, 1, 18, 0, tzinfo=UTC)
    mbx = ep.mailbox("vanthu@danang.gov.vn")
    populate(mbx, 40, 0, seed=31, until=start)
    for item in mbx.folders["inbox"].items:
        item.is_read = False
    data = DataDir(tmp_path / "data")
    for day in range(17):
        now = start + timedelta(days=day)
        night = (now + timedelta(hours=7)).date().isoformat()
        if day:  # the day before this night: one message of earlier nights read
            mbx.mark_read(mbx.folders["inbox"].items[day])
        outcome = collect_one(make_source(now), mbx.address, night, data)
        assert outcome.status == "ok", outcome.reason
    roster = tmp_path / "roster.csv"
    write_roster(roster, [("U1", "Văn thư", "A", "UBND phường", mbx.address, "yes", "", "no")])
    result = evaluate_month(
        EvaluationInputs(
            data_dir=data.root,
            people=load_roster(roster),
            timezone="Asia/Ho_Chi_Minh",
            official_domains=("danang.gov.vn",),
            policy=load_policy("lien-chieu-2014"),
            signals={"exchange": EwsSource.SIGNALS},
        ),
        "2026-11",
    )
    (pm,) = result.person_month.to_pylist()
    charged = result.violations.filter(pc.equal(result.violations["confidence"], "confirmed"))
    return [pm, charged.to_pylist(), result.violations.to_pylist()]


def test_an_exchange_unit_mailbox_read_daily_and_never_sending_is_not_charged(ep, tmp_path):
    pm, charged, _ = _read_daily_unit_mailbox(ep, tmp_path, lambda now: source(ep, now=now))
    assert pm["sent"] == 0 and pm["nights_collected"] == 17
    assert pm["read_activity"] == 16  # one read a day, counted the night after
    assert pm["active_days"] == 16
    assert charged == []


def test_a_server_that_cannot_count_reading_confirms_nothing_on_it(ep, tmp_path):
    """The release of 2026-12-01 could not see reading on EWS (its read_activity is null):
    the month is then unknown, sent to review with the reason, and charged to no one."""

    def old(now: datetime) -> release.EwsSource:
        return release.EwsSource(
            release.EwsSettings(endpoint=ep.url, username=SVC, auth="basic", page_size=50),
            password_for=lambda _m: PASSWORD,
            clock=lambda: now.timestamp(),
        )

    pm, charged, violations = _read_daily_unit_mailbox(ep, tmp_path, old)
    assert pm["read_activity"] is None and pm["read_nights"] == 0
    assert pm["unmeasured"] == "read_activity,logins"
    assert charged == []
    assert [(v["code"], v["confidence"], v["rule"]) for v in violations] == [
        ("UNIT_MAILBOX_UNATTENDED", "suspected", "no_send_reading_not_measured")
    ]


def test_probe_shows_every_request_of_a_mailbox_night_and_stores_nothing(
    tmp_path, monkeypatch, capsys
):
    ep = EwsEndpoint({SVC: PASSWORD}, impersonators={SVC: {"an.nv@danang.gov.vn"}})
    mbx = ep.mailbox("an.nv@danang.gov.vn")
    populate(mbx, 6, 2, seed=41)
    ep.mailbox("binh.tt@danang.gov.vn")
    monkeypatch.setenv("MU_TEST_EWS", PASSWORD)
    (tmp_path / "roster.csv").write_text(ROSTER, encoding="utf-8")
    with ep.running():
        cfg = write_config(tmp_path, ep)
        before = len(ep.calls)
        code = main(["doctor", "--config", cfg, "--probe", "an.nv@danang.gov.vn"])
        out = capsys.readouterr().out
        made = [c.service for c in ep.calls[before:]]
        assert code == 0, out
        # every call the endpoint saw is a row of the probe's table, in order
        shown = re.findall(r"\[(\w+)\]", out)
        assert shown == made and {"FindFolder", "SyncFolderItems", "GetInboxRules"} <= set(made)
        assert "nothing stored" in out and PASSWORD not in out
        assert not (tmp_path / "data").exists()
        # outside the impersonation scope: Exchange's refusal, word for word, and exit 1
        assert main(["doctor", "--config", cfg, "--probe", "binh.tt@danang.gov.vn"]) == 1
        out = capsys.readouterr().out
        assert "ErrorImpersonateUserDenied" in out
        assert "the night would fail this mailbox" in out
