"""Graph contract tests: requests + MSAL, unmodified, against the local endpoint
(devkit/graph.py). Ground truth is the endpoint's in-memory tenant."""

from __future__ import annotations

import json
import random
from collections import Counter
from contextlib import closing
from datetime import UTC, datetime, timedelta

import duckdb
import pyarrow.parquet as pq
import pytest

from connectors.base import CredentialsRejected
from connectors.graph import GraphSettings, GraphSource, message_uid, parse_usage_csv
from devkit.graph import ALL_ROLES, CLIENT_ID, TENANT, GMessage, GraphWorld, graph_endpoint
from pipelines.collect import run_collection
from pipelines.config import ConfigError, load_config
from pipelines.signals import read_source
from pipelines.sources import build_source
from pipelines.storage import DataDir
from tests.collect_one import collect_one
from tests.groundtruth import night_status

AN = "an.nv@danang.gov.vn"
BINH = "binh.tt@danang.gov.vn"
T0 = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)
PEERS = ["vp.ubnd@danang.gov.vn", "dan.nguyen@gmail.com", "so.tttt@danang.gov.vn"]


@pytest.fixture
def tenant(tmp_path):
    with graph_endpoint(tmp_path) as (base, world, ca):
        yield base, world, ca


def source(tenant, **overrides) -> GraphSource:
    base, world, ca = tenant
    settings = dict(
        tenant_id=TENANT,
        client_id=CLIENT_ID,
        authority=base,
        graph_url=f"{base}/v1.0",
        ca_file=str(ca),
        page_size=7,
        retry_wait=0.05,
        max_wait=20,
    )
    settings.update(overrides)
    return GraphSource(GraphSettings(**settings), secret=lambda: world.secret, name="m365")  # type: ignore[arg-type]


def populate(world: GraphWorld, address: str, n_in: int, n_sent: int, seed: int, start=T0) -> None:
    rng = random.Random(seed)
    for i in range(n_in + n_sent):
        when = start + timedelta(minutes=17 * i + rng.randint(0, 9))
        sent_folder = i >= n_in
        world.deliver(
            address,
            "Sent Items" if sent_folder else "Inbox",
            GMessage(
                id="",
                created=when,
                received=when,
                sent=when - timedelta(seconds=rng.randint(1, 90)),
                sender=address if sent_folder else rng.choice(PEERS),
                to=[rng.choice(PEERS)] if sent_folder else [address],
                cc=[rng.choice(PEERS)] if rng.random() < 0.3 else [],
                is_read=rng.random() < 0.6,
                message_id=f"<{seed}.{i}@danang.gov.vn>",
            ),
        )


def truth(world: GraphWorld, address: str) -> list[tuple]:
    u = world.users[address]
    names = {f.id: f.name for f in u.folders}
    paths = {}
    for f in u.folders:
        paths[f.id] = f.name if f.parent is None else f"{names[f.parent]}/{f.name}"
    return sorted(
        (
            paths[f.id],
            message_uid(m.id),
            int(m.received.timestamp()),
            int((m.sent or m.received).timestamp()),
            m.sender,
            tuple(m.to),
            tuple(m.cc),
            m.message_id,
        )
        for f in u.folders
        for m in f.messages
    )


def stored(data: DataDir, address: str) -> list[tuple]:
    return sorted(
        (f, u, r, s, fr, tuple(to), tuple(cc), mid)
        for f, u, r, s, fr, to, cc, mid in duckdb.execute(
            """select folder, uid, epoch(internal_date)::bigint, epoch(sent_date)::bigint,
                      from_addr, to_addrs, cc_addrs, message_id
               from read_parquet($p, hive_partitioning = true) where mailbox = $m""",
            parameters={"p": str(data.root / "messages" / "*" / "*.parquet"), "m": address},
        ).fetchall()
    )


def status(data: DataDir, address: str, night: str) -> dict[str, dict]:
    return night_status(data.root, address, night)


def test_records_equal_the_tenant_and_status_counts(tenant, tmp_path):
    _, world, _ = tenant
    populate(world, AN, 40, 12, seed=1)
    world.deliver(AN, "Dự án", GMessage("", T0, T0, T0, "x@gmail.com", [AN]), parent=f"{AN}:inbox")
    world.users[AN].storage_used = 123_456
    data = DataDir(tmp_path / "data")
    outcome = collect_one(source(tenant), AN, "2026-11-20", data, source(tenant))
    assert outcome.status == "ok", outcome.reason
    assert outcome.messages_new == 53
    assert stored(data, AN) == truth(world, AN)
    st = status(data, AN, "2026-11-20")
    assert st["Inbox"]["role"] == "inbox" and st["Sent Items"]["role"] == "sent"
    assert st["Inbox/Dự án"]["role"] == "other" and st["Inbox/Dự án"]["fetched"] == 1
    assert st["Inbox"]["messages"] == 40
    assert st["Inbox"]["unseen"] == sum(
        1 for m in world.folder(AN, "Inbox").messages if not m.is_read
    )
    assert st["Inbox"]["quota_used_bytes"] == 123_456
    assert st["Inbox"]["quota_limit_bytes"] == world.users[AN].quota
    # ReadBasic: only the selected fields were asked for, never a body or a subject
    deltas = [p for p in world.parts if "/messages/delta" in p]
    assert deltas and all("subject" not in p and "body" not in p for p in deltas)
    # no changeType: Graph then leaves out updates, and reading would never be seen
    assert all("changeType" not in p for p in deltas)
    folder_lists = [
        p
        for p in world.parts
        if p.endswith("/mailFolders?$top=250") or "$select=id,displayName" in p
    ]
    assert folder_lists and all("sizeInBytes" not in p for p in folder_lists)


def test_quiet_night_costs_two_requests_and_new_mail_is_stored_once(tenant, tmp_path):
    _, world, _ = tenant
    populate(world, AN, 25, 6, seed=2)
    data = DataDir(tmp_path / "data")
    src = source(tenant)
    assert collect_one(src, AN, "2026-11-20", data, src).status == "ok"
    world.calls.clear()
    quiet = collect_one(src, AN, "2026-11-21", data, src)
    assert quiet.status == "ok" and quiet.messages_new == 0
    graph_calls = [c for c in world.calls if "/v1.0/" in c[1]]
    assert len(graph_calls) == 2, graph_calls  # the folder batch and the delta batch
    assert all(c[1].endswith("/$batch") for c in graph_calls)
    # read-state changes and a deletion come back through delta: nothing stored twice
    before = truth(world, AN)
    world.mark_read(AN, "Inbox", 0)
    world.mark_read(AN, "Inbox", 3)
    world.delete(AN, "Inbox", 5)
    populate(world, AN, 9, 2, seed=3, start=T0 + timedelta(days=2))
    night3 = collect_one(src, AN, "2026-11-22", data, src)
    assert night3.messages_new == 11
    st = status(data, AN, "2026-11-22")
    assert st["Inbox"]["read_activity"] == 2 and st["Sent Items"]["read_activity"] == 0
    assert status(data, AN, "2026-11-21")["Inbox"]["read_activity"] == 0
    assert status(data, AN, "2026-11-20")["Inbox"]["read_activity"] is None  # first night
    rows = stored(data, AN)
    assert len(rows) == len(set(rows)) == 31 + 11
    assert set(before) | set(truth(world, AN)) == set(rows)  # the deleted one stays stored


def test_page_boundaries_and_a_same_second_arrival_are_exact(tenant, tmp_path):
    _, world, _ = tenant
    for i in range(15):  # 15 messages over pages of 7, several in the same second
        when = T0 + timedelta(seconds=i // 4)
        world.deliver(AN, "Inbox", GMessage("", when, when, when, PEERS[0], [AN]))
    data = DataDir(tmp_path / "data")
    src = source(tenant)
    collect_one(src, AN, "2026-11-20", data, src)
    last = T0 + timedelta(seconds=14 // 4)  # a new message in the mark's own second
    world.deliver(AN, "Inbox", GMessage("", last, last, last, PEERS[1], [AN]))
    world.mark_read(AN, "Inbox", 14)  # and an old one of that second changes
    assert collect_one(src, AN, "2026-11-21", data, src).messages_new == 1
    assert stored(data, AN) == truth(world, AN)


def test_expired_delta_state_rereads_the_folder_and_replaces_its_rows(tenant, tmp_path):
    _, world, _ = tenant
    populate(world, AN, 20, 4, seed=4)
    data = DataDir(tmp_path / "data")
    src = source(tenant)
    collect_one(src, AN, "2026-11-20", data, src)
    populate(world, AN, 3, 0, seed=5, start=T0 + timedelta(days=1))
    collect_one(src, AN, "2026-11-21", data, src)
    world.folder(AN, "Inbox").generation += 1  # Graph forgot the delta state: 410
    world.delete(AN, "Inbox", 0)
    populate(world, AN, 2, 0, seed=6, start=T0 + timedelta(days=2))
    outcome = collect_one(src, AN, "2026-11-22", data, src)
    assert outcome.status == "ok", outcome.reason
    assert stored(data, AN) == truth(world, AN)  # the re-read replaced, nothing twice
    st = status(data, AN, "2026-11-22")
    assert st["Inbox"]["full_reread"] and not st["Sent Items"]["full_reread"]
    assert any(p for p in world.parts if "$deltatoken" in p)


def test_renamed_and_recreated_folders_keep_no_stale_rows(tenant, tmp_path):
    _, world, _ = tenant
    populate(world, AN, 5, 1, seed=7)
    for i in range(4):
        world.deliver(AN, "Dự án", GMessage("", T0, T0 + timedelta(minutes=i), T0, PEERS[2], [AN]))
    data = DataDir(tmp_path / "data")
    src = source(tenant)
    collect_one(src, AN, "2026-11-20", data, src)
    world.folder(AN, "Dự án").name = "Lưu trữ"  # same id, new name
    collect_one(src, AN, "2026-11-21", data, src)
    assert stored(data, AN) == truth(world, AN)
    st = status(data, AN, "2026-11-21")
    assert st["Dự án"]["folder_status"] == "renamed" and st["Lưu trữ"]["fetched"] == 4


@pytest.mark.parametrize("status_code", [429, 503])
def test_throttling_waits_retry_after_for_requests_and_batch_parts(tenant, tmp_path, status_code):
    _, world, _ = tenant
    populate(world, AN, 12, 3, seed=8)
    world.throttle_requests, world.throttle_parts, world.retry_after = 2, 3, 1
    world.throttle_status = status_code
    data = DataDir(tmp_path / "data")
    src = source(tenant)
    started = datetime.now(UTC)
    outcome = collect_one(src, AN, "2026-11-20", data, src)
    assert outcome.status == "ok", outcome.reason
    assert stored(data, AN) == truth(world, AN)
    # two whole requests and one round of parts throttled, each waited out: >= 3 s
    assert (datetime.now(UTC) - started).total_seconds() >= 3
    assert world.throttle_requests == world.throttle_parts == 0


def test_throttled_past_max_wait_is_transient_and_commits_nothing(tenant, tmp_path):
    _, world, _ = tenant
    populate(world, AN, 3, 1, seed=9)
    world.throttle_requests, world.retry_after = 100, 1
    data = DataDir(tmp_path / "data")
    src = source(tenant, max_wait=2)
    out = collect_one(src, AN, "2026-11-20", data, src)  # the lead's try, then the shard's
    assert out.status == "failed" and out.transient, out
    assert not (tmp_path / "data" / "messages").exists()


def test_connection_dropped_mid_folder_commits_nothing_and_the_retry_is_exact(tenant, tmp_path):
    _, world, _ = tenant
    populate(world, AN, 30, 5, seed=19)  # pages of 7: the Inbox has later pages
    data = DataDir(tmp_path / "data")
    src = source(tenant)
    collect_one(src, AN, "2026-11-20", data, src)
    populate(world, AN, 20, 0, seed=20, start=T0 + timedelta(days=1))
    world.drop_pages = 2  # the lead's try, then the shard's
    out = collect_one(src, AN, "2026-11-21", data, src)
    assert out.status == "failed" and out.transient, out
    assert data.state(AN).night == "2026-11-20"  # the cursor did not move
    assert collect_one(src, AN, "2026-11-21", data, src).messages_new == 20
    assert stored(data, AN) == truth(world, AN)


def test_a_folder_without_delta_is_a_recorded_skip_not_a_failed_mailbox(tenant, tmp_path):
    _, world, _ = tenant
    populate(world, AN, 5, 2, seed=21)
    odd = world.folder(AN, "Sync Issues")
    world.deliver(AN, "Sync Issues", GMessage("", T0, T0, T0, PEERS[0], [AN]))
    odd.no_delta = True
    data = DataDir(tmp_path / "data")
    src = source(tenant)
    for night in ("2026-11-20", "2026-11-21"):
        out = collect_one(src, AN, night, data, src)
        assert out.status == "ok" and "unreadable" in out.reason
        st = status(data, AN, night)
        assert st["Sync Issues"]["fetched"] == 0 and st["Sync Issues"]["unreadable"] == 1
    assert stored(data, AN) == [r for r in truth(world, AN) if r[0] != "Sync Issues"]
    odd.no_delta = False  # it reads again once Graph answers: nothing lost, nothing twice
    collect_one(src, AN, "2026-11-22", data, src)
    assert stored(data, AN) == truth(world, AN)


def test_inbox_rules_become_forwarding_rows_without_another_call(tenant, tmp_path):
    _, world, _ = tenant
    populate(world, AN, 2, 0, seed=10)
    addr = lambda a: {"emailAddress": {"address": a, "name": a}}  # noqa: E731
    world.users[AN].rules = [
        {
            "id": "1",
            "displayName": "to gmail",
            "sequence": 1,
            "isEnabled": True,
            "conditions": {},
            "actions": {"forwardTo": [addr("An.NV@Gmail.com")], "stopProcessingRules": True},
        },
        {
            "id": "2",
            "displayName": "boss only",
            "sequence": 2,
            "isEnabled": True,
            "conditions": {"fromAddresses": [addr("gd@danang.gov.vn")]},
            "actions": {"redirectTo": [addr("an@yahoo.com")], "delete": True},
        },
        {
            "id": "3",
            "displayName": "off",
            "sequence": 3,
            "isEnabled": False,
            "actions": {"forwardAsAttachmentTo": [addr("x@gmail.com")]},
        },
    ]
    data = DataDir(tmp_path / "data")
    src = source(tenant)
    world.calls.clear()
    collect_one(src, AN, "2026-11-20", data, src)
    rows = sorted(
        pq.read_table(tmp_path / "data" / "forwarding").to_pylist(), key=lambda r: r["target"]
    )
    assert [(r["target"], r["rule_name"], r["keeps_copy"], r["conditional"]) for r in rows] == [
        ("an.nv@gmail.com", "to gmail", True, False),
        ("an@yahoo.com", "boss only", False, True),
    ]
    assert not any("messageRules" in c[1] for c in world.calls)  # it rode in the batch


def test_missing_denied_and_refused(tenant, tmp_path):
    _, world, _ = tenant
    populate(world, AN, 2, 0, seed=11)
    populate(world, BINH, 2, 0, seed=12)
    data = DataDir(tmp_path / "data")
    src = source(tenant)
    out = collect_one(src, "nobody@danang.gov.vn", "2026-11-20", data, src)
    assert out.status == "failed" and "no such mailbox" in out.reason
    # RBAC for Applications, as the operator guide sets it up: no tenant-wide mail role in
    # the token, the mail roles granted for AN's scope only
    world.roles = [r for r in ALL_ROLES if not r.startswith("Mail")]
    world.scope = {AN}
    src = source(tenant)
    out = collect_one(src, BINH, "2026-11-20", data, src)
    assert out.status == "failed" and "ErrorAccessDenied" in out.reason
    assert collect_one(src, AN, "2026-11-20", data, src).status == "ok"
    # a tenant-wide mail role adds to the scoped grants: every mailbox is readable again
    world.roles = list(ALL_ROLES)
    wide = source(tenant)
    assert collect_one(wide, BINH, "2026-11-20", data, wide).status == "ok"
    bad = source(tenant)
    bad._secret = lambda: "a-secret-entra-id-does-not-know-at-all"
    with pytest.raises(CredentialsRejected, match="AADSTS7000215"):
        bad.tenant.token()
    out = collect_one(bad, AN, "2026-11-21", data, None)
    assert out.status == "failed" and out.account_refused  # the night stops using it


def test_certificate_credential_signs_in(tenant, tmp_path):
    from cryptography import x509

    _, world, ca = tenant
    pem = ca.parent / "key-and-cert.pem"
    world.certificate = x509.load_pem_x509_certificate(ca.read_bytes())
    base = tenant[0]
    (tmp_path / "r.csv").write_text("employee_id,full_name,email,unit_code,unit_name\n")
    (tmp_path / "m.toml").write_text(
        f'[roster]\npath = "r.csv"\n[[sources]]\nname = "m365"\nkind = "graph"\n'
        f'tenant_id = "{TENANT}"\nclient_id = "{CLIENT_ID}"\ncertificate_path = "{pem}"\n'
        f'authority = "{base}"\ngraph_url = "{base}/v1.0"\nca_file = "{ca}"\n',
        encoding="utf-8",
    )
    src = load_config(tmp_path / "m.toml").sources[0]
    assert "unencrypted" in src.password.describe()  # no passphrase to name
    with closing(build_source(src)) as opened:
        token = opened.connector.tenant.token()  # a signed client assertion, checked by the tenant
    assert token and world.tokens_issued == 1


def test_server_paging_of_folders_child_folders_and_users(tenant, tmp_path):
    _, world, _ = tenant
    world.page_cap = 2  # Graph pages by its own size, whatever $top asks
    populate(world, AN, 4, 2, seed=18)
    for name in ("A", "B", "C"):
        world.deliver(AN, name, GMessage("", T0, T0, T0, PEERS[0], [AN]), parent=f"{AN}:inbox")
    world.users[AN].sign_in = {"lastSuccessfulSignInDateTime": "2026-11-19T01:02:03Z"}
    for i in range(4):
        world.user(f"x{i}@danang.gov.vn").sign_in = {
            "lastSuccessfulSignInDateTime": "2026-11-18T00:00:00Z"
        }
    data = DataDir(tmp_path / "data")
    src = source(tenant)
    assert collect_one(src, AN, "2026-11-20", data, src).status == "ok"
    assert stored(data, AN) == truth(world, AN)
    assert set(status(data, AN, "2026-11-20")) == {
        "Inbox",
        "Sent Items",
        "Drafts",
        "Deleted Items",
        "Junk Email",
        "Inbox/A",
        "Inbox/B",
        "Inbox/C",
    }
    assert any("$skip=" in c[1] for c in world.calls)  # the nextLinks were followed
    who = sorted({m for m, _, _ in src.sign_ins()})
    assert who == sorted([AN, *(f"x{i}@danang.gov.vn" for i in range(4))])


def test_sign_ins_of_more_users_than_signinactivitys_page_of_120(tenant):
    """Graph serves signInActivity 120 users a page at most, with a $skiptoken ($skip is
    not supported on /users): 300 users, all their sign-ins read, no page over 120."""
    _, world, _ = tenant
    for i in range(300):
        world.user(f"u{i:03d}@danang.gov.vn").sign_in = {
            "lastSuccessfulSignInDateTime": f"2026-11-{1 + i % 28:02d}T00:00:00Z"
        }
    src = source(tenant)
    who = {m for m, _, _ in src.sign_ins()}
    assert who == {f"u{i:03d}@danang.gov.vn" for i in range(300)}
    pages = [c[1] for c in world.calls if "signInActivity" in c[1]]
    assert len(pages) == 3 and all("$skip=" not in p for p in pages)


def test_usage_report_columns_are_read_by_name():
    text = (
        "Report Period,Storage Used (Byte),Display Name,User Principal Name,Item Count,"
        "Prohibit Send/Receive Quota (Byte)\n7,2048,An,AN@x.vn,3,4096\n7,,B,b@x.vn,0,\n"
    )
    got = parse_usage_csv(text)
    assert got["an@x.vn"].used_bytes == 2048 and got["an@x.vn"].limit_bytes == 4096
    assert got["b@x.vn"].used_bytes is None


def write_config(tmp_path, base: str, ca, extra: str = "") -> str:
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
name = "m365"
kind = "graph"
tenant_id = "{TENANT}"
client_id = "{CLIENT_ID}"
client_secret = {{ env = "MU_TEST_GRAPH" }}
authority = "{base}"
graph_url = "{base}/v1.0"
ca_file = "{ca}"
retry_wait = 0.05
[[logins]]
name = "entra"
kind = "graph-signin"
source = "m365"
{extra}
""",
        encoding="utf-8",
    )
    (tmp_path / "roster.csv").write_text(
        "employee_id,full_name,email,unit_code,unit_name\n"
        f"1,Nguyễn Văn An,{AN},VP,Văn phòng\n2,Trần Thị Bình,{BINH},VP,Văn phòng\n",
        encoding="utf-8",
    )
    return str(cfg)


def test_collection_over_a_graph_source_with_sign_ins(tenant, tmp_path, monkeypatch):
    base, world, ca = tenant
    populate(world, AN, 6, 2, seed=13)
    populate(world, BINH, 3, 1, seed=14)
    world.users[AN].sign_in = {
        "lastSignInDateTime": "2026-11-20T03:00:00Z",  # a failed attempt after the success
        "lastSuccessfulSignInDateTime": "2026-11-19T01:02:03Z",
        "lastNonInteractiveSignInDateTime": "2026-11-20T00:30:00Z",
    }
    # attempts only (a password spray): no successful sign-in, so no login at all
    world.users[BINH].sign_in = {
        "lastSignInDateTime": "2026-11-20T02:00:00Z",
        "lastNonInteractiveSignInDateTime": "2026-11-20T02:00:01Z",
        "lastSuccessfulSignInDateTime": None,
    }
    monkeypatch.setenv("MU_TEST_GRAPH", world.secret)
    cfg_path = write_config(tmp_path, base, ca)
    summary = run_collection(cfg_path, night="2026-11-20", plain=True)
    by = {o.mailbox: o for o in summary.outcomes}
    assert by[AN].status == by[BINH].status == "ok"
    assert by["logins:entra"].status == "ok" and by["logins:entra"].messages_new == 1
    data = DataDir(tmp_path / "data")
    assert stored(data, AN) == truth(world, AN) and stored(data, BINH) == truth(world, BINH)
    logins = pq.read_table(tmp_path / "data" / "logins").to_pylist()
    assert [(r["mailbox"], r["protocol"]) for r in logins] == [(AN, "successful")]
    assert world.tokens_issued == 1  # one token for the night, every mailbox
    assert world.secret not in "".join(
        p.read_text(errors="ignore") for p in tmp_path.rglob("*.json")
    )
    # without Entra ID P1 the login source fails and says why; the night goes on
    world.premium = False
    cfg = load_config(cfg_path)
    with pytest.raises(Exception, match="Entra ID P1"):
        read_source(cfg.logins[0])


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ('client_secret = "plain"', "passwords are never written"),
        ('authority = "http://login.example"', "https://"),
        ("page_size = 5000", "page_size"),
    ],
)
def test_bad_graph_config_names_the_key(tmp_path, extra, message):
    lines = [
        "[roster]",
        'path = "r.csv"',
        "[[sources]]",
        'kind = "graph"',
        'tenant_id = "t"',
        'client_id = "c"',
    ]
    if "client_secret" not in extra:
        lines.append('client_secret = { env = "X" }')
    lines.append(extra)
    (tmp_path / "m.toml").write_text("\n".join(lines), encoding="utf-8")
    with pytest.raises(ConfigError, match=message):
        load_config(tmp_path / "m.toml")


def test_token_cursor_survives_the_state_file(tenant, tmp_path):
    _, world, _ = tenant
    populate(world, AN, 3, 1, seed=15)
    data = DataDir(tmp_path / "data")
    src = source(tenant)
    collect_one(src, AN, "2026-11-20", data, src)
    state = data.state(AN)
    assert state is not None
    token = json.loads(state.after["Inbox"].token or "{}")
    assert token["folder"] == f"{AN}:inbox" and "$deltatoken=" in token["delta"]
    assert world.secret not in (state.to_json())
    assert Counter(c.last_uid for c in state.after.values()) == Counter({1: len(state.after)})


def test_doctor_checks_token_permissions_mailbox_rules_and_report(
    tenant, tmp_path, monkeypatch, capsys
):
    from mailusage.cli import main

    base, world, ca = tenant
    populate(world, AN, 3, 1, seed=16)
    populate(world, BINH, 1, 0, seed=17)
    monkeypatch.setenv("MU_TEST_GRAPH", world.secret)
    cfg = write_config(tmp_path, base, ca)
    code = main(["doctor", "--config", cfg])
    out = capsys.readouterr().out
    assert code == 0, out
    for check in ("token", "permissions", "mailbox", "inbox-rules", "usage-report"):
        assert check in out
    assert "Mail.ReadBasic.All" in out and "Graph inbox rules from m365" in out
    # an app without Reports.Read.All: a warning naming what is lost, not a failure
    world.roles = ["Mail.ReadBasic.All", "MailboxSettings.Read"]
    world.users[AN].sign_in = None
    code = main(["doctor", "--config", cfg])
    out = capsys.readouterr().out
    assert "permission:Reports.Read.All" in out and "storage used and quota" in out
    assert code != 0  # the graph-signin source cannot be read without AuditLog.Read.All
    assert "AuditLog.Read.All" in out
    # outside the app's RBAC scope: the mailbox check fails and says where to look
    world.roles = [r for r in ALL_ROLES if not r.startswith("Mail")]
    world.scope = {BINH}
    assert main(["doctor", "--config", cfg]) != 0
    assert "RBAC scope" in capsys.readouterr().out
    monkeypatch.setenv("MU_TEST_GRAPH", "not-the-secret-of-this-application")
    assert main(["doctor", "--config", cfg]) != 0
    assert "AADSTS7000215" in capsys.readouterr().out


def test_a_revoked_token_gets_one_fresh_token_and_the_night_goes_on(tenant, tmp_path):
    _, world, _ = tenant
    populate(world, AN, 4, 1, seed=21)
    data = DataDir(tmp_path / "data")
    src = source(tenant)
    assert collect_one(src, AN, "2026-11-20", data, src).status == "ok"
    world.revoked_upto = world.tokens_issued  # MSAL's cached token now answers 401
    populate(world, AN, 2, 0, seed=22, start=T0 + timedelta(days=1))
    again = collect_one(src, AN, "2026-11-21", data, src)
    assert again.status == "ok" and again.messages_new == 2, again.reason
    assert world.tokens_issued == 2
    assert stored(data, AN) == truth(world, AN)


def test_usage_report_by_upn_reaches_a_roster_address_that_differs(tenant, tmp_path):
    _, world, _ = tenant
    populate(world, AN, 2, 1, seed=23)
    world.users[AN].upn = "an.nv@danang.onmicrosoft.com"
    world.users[AN].storage_used = 777_000
    data = DataDir(tmp_path / "data")
    src = source(tenant)
    assert collect_one(src, AN, "2026-11-20", data, src).status == "ok"
    assert status(data, AN, "2026-11-20")["Inbox"]["quota_used_bytes"] == 777_000
    # without User.Read.All the UPN cannot be mapped: the quota is unknown, the night ok
    world.roles = [r for r in ALL_ROLES if r != "User.Read.All"]
    src = source(tenant)
    assert collect_one(src, AN, "2026-11-21", data, src).status == "ok"
    assert status(data, AN, "2026-11-21")["Inbox"]["quota_used_bytes"] is None


def test_message_sizes_match_the_size_property_however_graph_spells_it(tenant, tmp_path):
    _, world, _ = tenant
    populate(world, AN, 3, 1, seed=24)
    for i, m in enumerate(world.folder(AN, "Inbox").messages):
        m.size = 1000 + i
    data = DataDir(tmp_path / "data")
    src = source(tenant, read_size=True)
    assert collect_one(src, AN, "2026-11-20", data, src).status == "ok"
    sizes = duckdb.execute(
        "select size from read_parquet($p, hive_partitioning = true) where folder = 'Inbox' order by size",
        parameters={"p": str(data.root / "messages" / "*" / "*.parquet")},
    ).fetchall()
    assert [s for (s,) in sizes] == [1000, 1001, 1002]
    # without Mail.Read (read_size off) the size is unknown: null, never 0
    other = DataDir(tmp_path / "basic")
    src = source(tenant)
    assert collect_one(src, AN, "2026-11-20", other, src).status == "ok"
    sizes = duckdb.execute(
        "select distinct size from read_parquet($p, hive_partitioning = true)",
        parameters={"p": str(other.root / "messages" / "*" / "*.parquet")},
    ).fetchall()
    assert sizes == [(None,)]


def test_unknown_select_names_get_graphs_400():
    from devkit.graph import unknown_property

    assert unknown_property("mailFolder", {"$select": "id,sizeInBytes"}) == "sizeInBytes"
    assert unknown_property("message", {"$select": "isRead,createdDateTime"}) is None
    assert unknown_property("user", {"$select": "signInActivity,proxyAddresses"}) is None


def test_filter_names_are_checked_against_their_own_type():
    """$filter too, and an $expand's own $filter against the expanded type (the message
    size property the collector expands is a singleValueLegacyExtendedProperty's id)."""
    from devkit.graph import unknown_name

    size = "singleValueExtendedProperties($filter=id eq 'Integer 0xe08')"
    assert unknown_name("message", {"$expand": size}) is None
    wrong = "singleValueExtendedProperties($filter=propertyId eq 'Integer 0xe08')"
    assert unknown_name("message", {"$expand": wrong}) == (
        "singleValueLegacyExtendedProperty",
        "propertyId",
    )
    assert unknown_name("message", {"$filter": "isRead eq false and size gt 10"}) == (
        "message",
        "size",
    )
    assert unknown_name("message", {"$filter": "subject eq 'x eq y'"}) is None  # a literal


def test_a_token_of_the_release_before_reads_on_without_duplicates(tenant, tmp_path):
    """A delta link saved by the release before (changeType=created, no "v"): the next
    night starts a delta without changeType from the mark — nothing stored twice, that
    night's read activity unknown (not 0), later nights count reads."""
    _, world, _ = tenant
    populate(world, AN, 6, 2, seed=25)
    data = DataDir(tmp_path / "data")
    src = source(tenant)
    assert collect_one(src, AN, "2026-11-20", data, src).status == "ok"
    with data.db() as con, con:
        (text,) = con.execute("select state from cursors where mailbox = ?", (AN,)).fetchone()
        raw = json.loads(text)

        def release_before(node):
            if isinstance(node, dict):
                for k, v in node.items():
                    if k == "token" and isinstance(v, str):
                        tok = json.loads(v)
                        tok.pop("v")
                        node[k] = json.dumps(tok)
                    else:
                        release_before(v)

        release_before(raw)
        con.execute("update cursors set state = ? where mailbox = ?", (json.dumps(raw), AN))
    world.mark_read(AN, "Inbox", 1)
    populate(world, AN, 3, 0, seed=26, start=T0 + timedelta(days=1))
    night2 = collect_one(src, AN, "2026-11-21", data, src)
    assert night2.status == "ok" and night2.messages_new == 3, night2.reason
    assert status(data, AN, "2026-11-21")["Inbox"]["read_activity"] is None
    world.mark_read(AN, "Inbox", 2)
    collect_one(src, AN, "2026-11-22", data, src)
    assert status(data, AN, "2026-11-22")["Inbox"]["read_activity"] == 1
    rows = stored(data, AN)
    assert len(rows) == len(set(rows)) and rows == truth(world, AN)


def test_probe_shows_each_graph_request_and_what_the_tenant_refused(
    tenant, tmp_path, monkeypatch, capsys
):
    from mailusage.cli import main
    from mailusage.probe import probe

    base, world, ca = tenant
    populate(world, AN, 4, 2, seed=18)
    monkeypatch.setenv("MU_TEST_GRAPH", world.secret)
    cfg = write_config(tmp_path, base, ca)
    assert main(["doctor", "--config", cfg, "--probe", AN]) == 0
    out = capsys.readouterr().out
    assert "nothing stored" in out and "0 refused or unexpected" in out
    assert world.secret not in out and not (tmp_path / "data").exists()
    # (the rows themselves from the probe's result: the table wraps long URLs anywhere)
    rows = probe(load_config(cfg), AN).exchanges
    assert any(r.request.endswith("/$batch (8 parts)") for r in rows)
    assert any("/delta" in r.request for r in rows if r.protocol == "batch")
    # the batch's parts are rows of their own; a missing Archive is a 404 the night expects
    (archive,) = [r for r in rows if "mailFolders/archive?" in r.request]
    assert (archive.status, archive.expected) == ("404", True)
    assert "ErrorItemNotFound" in archive.refused
    world.roles = [r for r in ALL_ROLES if not r.startswith("Mail")]
    world.scope = {BINH}  # AN outside the app's RBAC scope: what Graph says, shown as is
    assert main(["doctor", "--config", cfg, "--probe", AN]) == 1
    out = capsys.readouterr().out
    assert "ErrorAccessDenied" in out and "the night would fail this mailbox" in out
