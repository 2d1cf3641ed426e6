"""Zimbra's own signals: audit.log logins across rotations, forwarding from account
attributes (admin SOAP and zmprov export), quota from GetQuotaUsageRequest when IMAP QUOTA
is not answered — against a local admin SOAP endpoint and the test Dovecot."""

from __future__ import annotations

import csv
import gzip
import os
import re
import shutil
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pyarrow.parquet as pq
import pytest

from connectors.base import CredentialsRejected, MailboxMissing
from connectors.zimbra import (
    ZimbraAdmin,
    ZimbraAdminSettings,
    ZimbraExport,
    read_audit_log,
)
from devkit.dovecot import MASTER_USER
from devkit.zimbra import ZimbraWorld, zimbra_admin_endpoint
from mailusage.doctor import run_doctor
from pipelines.collect import run_collection
from pipelines.config import ConfigError, load_config
from pipelines.signals import collect_logins
from pipelines.storage import DataDir
from tests.conftest import MASTER_PASSWORD
from tests.faults.proxy import Fault, FaultProxy

TZ = ZoneInfo("Asia/Ho_Chi_Minh")
ADMIN = "admin@tiengiang.gov.vn"
COLLECTOR_IP = "10.9.9.9"


def line(ts: str, who: str, proto: str = "imap", ip: str = "10.0.0.7", extra: str = "") -> str:
    thread = {"imap": "ImapSSLServer-12", "soap": "qtp5-77:https://mail/service/soap/AuthRequest"}
    ctx = f"ip={ip};" if proto != "soap" else f"name={who};oip={ip};ua=ZimbraWebClient - FF120;"
    return (
        f"{ts},123 INFO  [{thread.get(proto, 'Pop3Server-3')}] [{ctx}] security - "
        f"cmd=Auth; account={who}; protocol={proto};{extra}\n"
    )


NOISE = [
    "2026-11-23 08:00:00,001 INFO  [main] [] security - cmd=AdminAuth; account=admin@tiengiang.gov.vn;\n",
    line(
        "2026-11-23 08:00:01",
        "binh@tiengiang.gov.vn",
        extra=" error=authentication failed for [binh], invalid password;",
    ),
    line("2026-11-23 08:00:02", "an@tiengiang.gov.vn", ip=COLLECTOR_IP),  # the collector
    line("2026-11-23 08:00:03", ADMIN, proto="soap"),
    "2026-11-23 08:00:04,000 INFO  [ImapServer-1] [ip=10.0.0.8;] imap - something else\n",
]


def read(path: Path, cursor=None):
    return read_audit_log(
        path, cursor, tz=TZ, source="zimbra-audit",
        ignore_accounts=[ADMIN], ignore_remote=[COLLECTOR_IP],
    )  # fmt: skip


def test_audit_log_logins_per_protocol_without_the_collector(tmp_path):
    log = tmp_path / "audit.log"
    log.write_text("".join([*NOISE, line("2026-11-23 08:15:02", "An@tiengiang.gov.vn"),
                            line("2026-11-23 09:00:00", "chi@tiengiang.gov.vn", "soap", "113.1.2.3"),
                            line("2026-11-23 09:30:00", "dung@tiengiang.gov.vn", "pop3")]))  # fmt: skip
    logins, cursor = read(log)
    assert [(x.mailbox, x.protocol, x.remote_addr) for x in logins] == [
        ("an@tiengiang.gov.vn", "imap", "10.0.0.7"),
        ("chi@tiengiang.gov.vn", "soap", "113.1.2.3"),
        ("dung@tiengiang.gov.vn", "pop3", "10.0.0.7"),
    ]
    assert logins[0].login_at == datetime(2026, 11, 23, 1, 15, 2, tzinfo=UTC)  # +07:00
    assert cursor.offset == log.stat().st_size


def test_audit_log_rotated_and_compressed_between_runs_loses_and_repeats_nothing(tmp_path):
    log = tmp_path / "audit.log"
    first = [line(f"2026-11-22 1{i}:00:00", f"u{i}@tiengiang.gov.vn") for i in range(3)]
    log.write_text("".join(first))
    got, cursor = read(log)
    assert len(got) == 3
    # more lines, then two rotations (logrotate: .1 then .2.gz) before the next run
    with log.open("a") as fh:
        fh.write(line("2026-11-22 20:00:00", "late@tiengiang.gov.vn"))
    os.rename(log, tmp_path / "audit.log.1")
    log.write_text(line("2026-11-23 07:00:00", "mid@tiengiang.gov.vn"))
    with (
        (tmp_path / "audit.log.1").open("rb") as src,
        gzip.open(tmp_path / "audit.log.2.gz", "wb") as dst,
    ):
        shutil.copyfileobj(src, dst)
    os.utime(tmp_path / "audit.log.2.gz", (1, 1))  # the oldest
    (tmp_path / "audit.log.1").unlink()
    os.rename(log, tmp_path / "audit.log.1")
    os.utime(tmp_path / "audit.log.1", (2, 2))
    log.write_text(
        line("2026-11-23 08:00:00", "new@tiengiang.gov.vn") + "2026-11-23 08:01"
    )  # partial
    got, cursor2 = read(log, cursor)
    assert [x.mailbox for x in got] == [
        "late@tiengiang.gov.vn",
        "mid@tiengiang.gov.vn",
        "new@tiengiang.gov.vn",
    ]
    with log.open("a") as fh:
        fh.write(":00,000 INFO  [ImapServer-2] [ip=10.0.0.5;] security - cmd=Auth; "
                 "account=done@tiengiang.gov.vn; protocol=imap;\n")  # fmt: skip
    got, _ = read(log, cursor2)
    assert [x.mailbox for x in got] == ["done@tiengiang.gov.vn"]


def test_standalone_imapd_logins_from_imapd_audit_log_beside_audit_log(tmp_path):
    # zimbra-imapd (8.8.x+) logs zimbra.security to imapd-audit.log, rotated daily to
    # imapd-audit.log.yyyy-MM-dd, same layout as audit.log (zm-mailbox
    # store-conf/conf/imapd.log4j.properties; audit.log: log4j.properties.production)
    (tmp_path / "audit.log.2026-11-22").write_text(
        line("2026-11-22 07:00:00", "old@tiengiang.gov.vn")
    )
    os.utime(tmp_path / "audit.log.2026-11-22", (1, 1))
    (tmp_path / "audit.log").write_text("".join([*NOISE,
        line("2026-11-23 08:15:02", "chi@tiengiang.gov.vn", "soap", "113.1.2.3")]))  # fmt: skip
    imapd = tmp_path / "imapd-audit.log"
    (tmp_path / "imapd-audit.log.2026-11-22").write_text(
        line("2026-11-22 07:30:00", "x@tiengiang.gov.vn")
    )
    os.utime(tmp_path / "imapd-audit.log.2026-11-22", (1, 1))
    imapd.write_text("".join([
        line("2026-11-23 08:15:02", "chi@tiengiang.gov.vn"),  # same second as her web login
        line("2026-11-23 08:20:00", "an@tiengiang.gov.vn", ip=COLLECTOR_IP),  # the collector
        line("2026-11-23 09:00:00", "dung@tiengiang.gov.vn"),
    ]))  # fmt: skip
    (tmp_path / "m.toml").write_text(f"""
[roster]
path = "r.csv"
[[sources]]
host = "h"
master_user = "m"
password = {{ env = "X" }}
[[logins]]
name = "zimbra-audit"
kind = "zimbra-audit"
path = "audit.log"
ignore_accounts = ["{ADMIN}"]
ignore_remote = ["{COLLECTOR_IP}"]
""", encoding="utf-8")  # fmt: skip
    data = DataDir(tmp_path / "data")

    def night(n: str) -> set[tuple[str, str, str | None]]:
        for src in load_config(tmp_path / "m.toml").logins:
            collect_logins(src, n, data)
        rows = pq.read_table(data.root / "logins" / f"night={n}").to_pylist()
        return {(r["mailbox"], r["login_at"].strftime("%H:%M"), r["protocol"]) for r in rows}

    # audit.log gives chi's web login, imapd-audit.log her IMAP one and dung's: none is lost
    assert night("2026-11-23") == {
        ("chi@tiengiang.gov.vn", "01:15", "soap"),
        ("chi@tiengiang.gov.vn", "01:15", "imap"),
        ("dung@tiengiang.gov.vn", "02:00", "imap"),
    }
    # the next day: one more line, then imapd-audit.log rolls over (renamed, not compressed)
    with imapd.open("a") as fh:
        fh.write(line("2026-11-23 23:59:00", "late@tiengiang.gov.vn"))
    os.rename(imapd, tmp_path / "imapd-audit.log.2026-11-23")
    imapd.write_text(line("2026-11-24 07:00:00", "binh@tiengiang.gov.vn"))
    assert night("2026-11-24") == {
        ("late@tiengiang.gov.vn", "16:59", "imap"),
        ("binh@tiengiang.gov.vn", "00:00", "imap"),
    }
    names = [src.name for src in load_config(tmp_path / "m.toml").logins]
    assert names == ["zimbra-audit", "zimbra-audit.imapd"]  # its own cursor and night file


@pytest.fixture
def admin_api():
    world = ZimbraWorld()
    with zimbra_admin_endpoint(world) as (url, w):
        yield url, w


def test_forwarding_from_account_attributes_over_admin_soap(admin_api):
    url, world = admin_api
    world.account("an@tiengiang.gov.vn", zimbraPrefMailForwardingAddress=["An.Personal@Gmail.com"],
                  zimbraPrefMailLocalDeliveryDisabled=["TRUE"], displayName=["An"])  # fmt: skip
    world.account(
        "binh@tiengiang.gov.vn",
        zimbraMailForwardingAddress=["binh@yahoo.com, archive@tiengiang.gov.vn"],
    )
    world.account("chi@tiengiang.gov.vn")
    admin = ZimbraAdmin(ZimbraAdminSettings(url, world.admin), password=lambda: world.password)
    got = admin.forwards("an@tiengiang.gov.vn")
    assert [(f.target, f.keeps_copy, f.rule_name) for f in got] == [
        ("an.personal@gmail.com", False, "zimbraPrefMailForwardingAddress")
    ]
    assert [f.target for f in admin.forwards("binh@tiengiang.gov.vn")] == [
        "binh@yahoo.com",
        "archive@tiengiang.gov.vn",
    ]
    assert admin.forwards("chi@tiengiang.gov.vn") == []
    assert world.requests.count("AuthRequest") == 1  # one login, the token reused
    world.expire_tokens()
    assert admin.forwards("chi@tiengiang.gov.vn") == []  # renewed once, transparently
    assert world.requests.count("AuthRequest") == 2
    with pytest.raises(MailboxMissing):
        admin.forwards("ghost@tiengiang.gov.vn")
    with pytest.raises(CredentialsRejected):
        ZimbraAdmin(ZimbraAdminSettings(url, world.admin), password=lambda: "wrong").forwards(
            "an@tiengiang.gov.vn"
        )


ZMPROV = """# name an@tiengiang.gov.vn
mail: an@tiengiang.gov.vn
zimbraPrefMailForwardingAddress: an.personal@gmail.com
zimbraPrefMailLocalDeliveryDisabled: FALSE

# name binh@tiengiang.gov.vn
mail: binh@tiengiang.gov.vn
zimbraPrefMailLocalDeliveryDisabled: FALSE
"""


def test_forwarding_from_a_zmprov_export_text_and_csv(tmp_path):
    (tmp_path / "fw.txt").write_text(ZMPROV)
    export = ZimbraExport(tmp_path / "fw.txt")
    assert [(f.target, f.keeps_copy) for f in export.forwards("an@tiengiang.gov.vn")] == [
        ("an.personal@gmail.com", True)
    ]
    assert export.forwards("binh@tiengiang.gov.vn") == []
    (tmp_path / "fw.csv").write_text(
        "name,zimbraPrefMailForwardingAddress,zimbraPrefMailLocalDeliveryDisabled\n"
        'binh@tiengiang.gov.vn,"b@yahoo.com,b2@gmail.com",TRUE\n'
    )
    got = ZimbraExport(tmp_path / "fw.csv").forwards("binh@tiengiang.gov.vn")
    assert [(f.target, f.keeps_copy) for f in got] == [
        ("b@yahoo.com", False),
        ("b2@gmail.com", False),
    ]


MAIL1, MAIL2 = "mail1.tiengiang.gov.vn", "mail2.tiengiang.gov.vn"


# A web-client filter set as Zimbra writes zimbraMailSieveScript (zm-mailbox
# store/src/java/com/zimbra/cs/filter/SoapToSieve.java: the require line, "# <rule name>",
# "if <anyof|allof> (…) {" or "disabled_if …" for a rule turned off, 4-space actions,
# Zimbra's own tag/flag actions and addressbook test, "true" for every message)
SIEVE = """require ["fileinto", "copy", "reject", "tag", "flag", "variables", "log", "enotify", \
"envelope", "body", "ereject", "reject", "relational", "comparator-i;ascii-numeric"];

# Báo cáo: gửi kèm
if anyof (header :contains ["subject"] "báo cáo") {
    redirect :copy "An.Personal@Gmail.com";
    tag "bao-cao";
    stop;
}

# Mọi thư
if anyof (true) {
    redirect "an.home@yahoo.com";
}

# Cũ (đã tắt)
disabled_if anyof (address :all :is :comparator "i;ascii-casemap" ["from"] "sep@x.vn") {
    redirect "old@yahoo.com";
}

# Danh bạ
if anyof (addressbook :in "from") {
    flag "flagged";
}
""".replace("\\\n", "")
# (target, keeps_copy, conditional) read from SIEVE by hand: the disabled rule never runs
SIEVE_FORWARDS = [
    ("an.personal@gmail.com", True, True),
    ("an.home@yahoo.com", False, False),
]


def test_forwarding_from_a_web_client_filter_over_admin_soap(admin_api):
    url, world = admin_api
    world.account("an@tiengiang.gov.vn", zimbraMailSieveScript=[SIEVE],
                  zimbraPrefMailForwardingAddress=["an.personal@gmail.com"])  # fmt: skip
    admin = ZimbraAdmin(ZimbraAdminSettings(url, world.admin), password=lambda: world.password)
    got = [
        (f.rule_name, f.target, f.keeps_copy, f.conditional)
        for f in admin.forwards("an@tiengiang.gov.vn")
    ]
    assert got == [
        ("zimbraPrefMailForwardingAddress", "an.personal@gmail.com", True, False),
        *[("zimbraMailSieveScript", *fw) for fw in SIEVE_FORWARDS],
    ]  # fmt: skip


def test_forwarding_from_a_web_client_filter_in_a_zmprov_export(tmp_path):
    # ProvUtil.printAttr (store/src/java/com/zimbra/cs/account/ProvUtil.java) prints
    # "name: value" with the value as it is: a script's later lines follow unprefixed
    (tmp_path / "fw.txt").write_text(
        "# name an@tiengiang.gov.vn\nmail: an@tiengiang.gov.vn\n"
        f"zimbraMailSieveScript: {SIEVE}zimbraPrefMailLocalDeliveryDisabled: FALSE\n\n"
        "# name binh@tiengiang.gov.vn\nmail: binh@tiengiang.gov.vn\n",
        encoding="utf-8",
    )
    export = ZimbraExport(tmp_path / "fw.txt")
    got = [(f.target, f.keeps_copy, f.conditional) for f in export.forwards("an@tiengiang.gov.vn")]
    assert got == SIEVE_FORWARDS
    assert export.forwards("binh@tiengiang.gov.vn") == []
    with (tmp_path / "fw.csv").open("w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows(
            [["name", "zimbraMailSieveScript"], ["an@tiengiang.gov.vn", SIEVE]]
        )
    got = [
        (f.target, f.keeps_copy, f.conditional)
        for f in ZimbraExport(tmp_path / "fw.csv").forwards("an@tiengiang.gov.vn")
    ]
    assert got == SIEVE_FORWARDS  # the script is one cell, commas and all


def test_quota_of_accounts_on_every_mailbox_server_of_every_roster_domain(admin_api):
    # GetQuotaUsage.java: allServers is honoured only with a domain; without one, only the
    # local server's accounts are listed (a multi-server Zimbra lost the others' quota)
    url, world = admin_api
    world.servers = (MAIL1, MAIL2)
    expected = {}
    for i in range(6):
        domain = "tiengiang.gov.vn" if i % 2 else "sotc.tiengiang.gov.vn"
        acc = world.account(f"u{i}@{domain}")
        acc.server, acc.used, acc.limit = (MAIL1, MAIL2)[i % 3 == 0], 1000 * i + 1, 0
        expected[acc.name] = (acc.used, None)
    world.accounts["u3@tiengiang.gov.vn"].limit = 5_368_709_120
    expected["u3@tiengiang.gov.vn"] = (3001, 5_368_709_120)
    assert {a.server for a in world.accounts.values()} == {MAIL1, MAIL2}  # both servers hold some
    admin = ZimbraAdmin(ZimbraAdminSettings(url, world.admin), password=lambda: world.password)
    got = {name: admin.quota(name) for name in expected}
    assert {k: (q.used_bytes, q.limit_bytes) for k, q in got.items()} == expected
    assert admin.quota("ghost@tiengiang.gov.vn").used_bytes is None  # not an account
    assert admin.quota("x@not-on-zimbra.vn").used_bytes is None  # account.NO_SUCH_DOMAIN
    sent = [attrs for attrs, _ in world.quota_requests]
    # once per domain a night, however many mailboxes ask
    domains = sorted(a.get("domain", "") for a in sent)
    assert domains == ["not-on-zimbra.vn", "sotc.tiengiang.gov.vn", "tiengiang.gov.vn"]
    assert all(a.get("allServers") == "1" for a in sent)


def test_quota_listing_does_not_skip_or_repeat_when_usage_changes_between_requests(admin_api):
    # Without an admin session every GetQuotaUsageRequest searches again and sorts by the
    # sizes of that moment (GetQuotaUsage.java); mail arriving between two pages of a
    # totalUsed listing moves accounts across the page boundary
    url, world = admin_api
    for i in range(1200):  # more than one page of the release's 1,000
        world.account(f"u{i:04}@tiengiang.gov.vn").used = 1000 * (i + 1)
    expected = {a.name: a.used for a in world.accounts.values()}  # as of the first request

    def mail_arrives(w: ZimbraWorld) -> None:
        for a in w.accounts.values():  # the smallest mailboxes grow past the largest
            a.used = 2_000_000 - a.used

    world.after_quota_request = mail_arrives
    admin = ZimbraAdmin(ZimbraAdminSettings(url, world.admin), password=lambda: world.password)
    assert {name: admin.quota(name).used_bytes for name in expected} == expected
    assert all(nosession for _, nosession in world.quota_requests)  # no session to cache in
    assert len(world.quota_requests) == 1  # one listing, read whole


def test_local_endpoint_follows_get_quota_usage(admin_api):
    """The fake itself, against GetQuotaUsage.java, so the tests above test the client."""
    from devkit.zimbra import quota_usage

    _, world = admin_api
    world.servers = (MAIL1, MAIL2)
    for name, server, used in [("b@x.vn", MAIL1, 5), ("a@x.vn", MAIL2, 9), ("c@x.vn", MAIL1, 5)]:
        acc = world.account(name)
        acc.server, acc.used = server, used

    def names(**attrs: str) -> list[str]:
        status, body = quota_usage(world, attrs)
        assert status == 200, body
        return re.findall(r'account name="([^"]+)"', body.decode())

    assert names(allServers="1") == ["b@x.vn", "c@x.vn"]  # no domain: the local server only
    assert names(domain="x.vn") == ["b@x.vn", "c@x.vn"]
    assert names(domain="x.vn", allServers="1") == ["a@x.vn", "b@x.vn", "c@x.vn"]  # ties: name
    assert names(domain="x.vn", allServers="1", sortBy="account") == ["c@x.vn", "b@x.vn", "a@x.vn"]
    assert names(domain="x.vn", allServers="1", limit="1", offset="1") == ["b@x.vn"]
    assert quota_usage(world, {"sortBy": "size"})[0] == 500  # service.INVALID_REQUEST
    assert b"account.NO_SUCH_DOMAIN" in quota_usage(world, {"domain": "y.vn"})[1]


def test_zimbra_source_night_quota_fallback_forwarding_and_audit_logins(
    dovecot, admin_api, tmp_path, monkeypatch
):
    url, world = admin_api
    users = ["an.z@tiengiang.gov.vn", "binh.z@tiengiang.gov.vn"]
    dovecot.add_users({u: "pw" for u in users})
    for u in users:
        dovecot.deliver(
            u,
            "INBOX",
            b"From: x@gmail.com\r\nTo: " + u.encode() + b"\r\nSubject: t\r\n\r\nhi\r\n",
            when=1795400000,
        )
        world.account(u).used = 777
    dovecot.finish_seeding()
    world.account(users[0], zimbraPrefMailForwardingAddress=["an.z@gmail.com"])
    (tmp_path / "audit.log").write_text("".join([*NOISE, line("2026-11-23 08:15:02", users[1])]))
    (tmp_path / "roster.csv").write_text(
        "employee_id,full_name,email,unit_code,unit_name\n"
        f"1,An,{users[0]},VP,Văn phòng\n2,Bình,{users[1]},VP,Văn phòng\n",
        encoding="utf-8",
    )
    monkeypatch.setenv("MU_TEST_IMAP", MASTER_PASSWORD)
    monkeypatch.setenv("MU_TEST_ZIMBRA", world.password)
    with FaultProxy(dovecot.imap_port, {0: Fault("no_quota", every=True)}) as proxy:
        cfg = tmp_path / "mailusage.toml"
        cfg.write_text(f"""
[agency]
official_domains = ["tiengiang.gov.vn"]
[roster]
path = "roster.csv"
[collect]
retries = 0
[[sources]]
name = "zimbra"
host = "127.0.0.1"
port = {proxy.port}
security = "plain"
master_user = "{MASTER_USER}"
password = {{ env = "MU_TEST_IMAP" }}
zimbra = {{ admin_url = "{url}", admin_user = "{world.admin}", password = {{ env = "MU_TEST_ZIMBRA" }} }}
[[logins]]
name = "zimbra-audit"
kind = "zimbra-audit"
path = "audit.log"
ignore_accounts = ["{ADMIN}"]
ignore_remote = ["{COLLECTOR_IP}"]
""", encoding="utf-8")  # fmt: skip
        summary = run_collection(str(cfg), night="2026-11-23", plain=True)
        checks = {(c.check, c.status) for c in run_doctor(load_config(cfg))}
    assert all(o.status == "ok" for o in summary.outcomes), summary.outcomes
    data = tmp_path / "data"
    st = pq.read_table(data / "mailbox_status").to_pylist()
    assert {r["mailbox"]: r["quota_used_bytes"] for r in st} == {u: 777 for u in users}
    fw = pq.read_table(data / "forwarding").to_pylist()
    assert [(r["mailbox"], r["target"]) for r in fw] == [(users[0], "an.z@gmail.com")]
    logins = pq.read_table(data / "logins").to_pylist()
    assert [(r["mailbox"], r["protocol"]) for r in logins] == [(users[1], "imap")]
    assert world.password not in "".join(p.read_text(errors="ignore") for p in data.rglob("*.json"))
    assert {("zimbra-forwarding", "ok"), ("zimbra-quota", "ok")} <= checks
    # one admin login for the night's two mailboxes, one more for doctor: each opens its
    # own source and closes it (no process-wide admin kept between them)
    assert world.requests.count("AuthRequest") == 2
    assert ("read", "ok") in checks  # the audit log source


def test_zimbra_config_errors_name_the_key(tmp_path):
    base = '[roster]\npath = "r.csv"\n[[sources]]\nhost = "h"\nmaster_user = "m"\npassword = { env = "X" }\n'
    for extra, message in [
        ('zimbra = { admin_url = "https://z:7071/service/admin/soap" }', "admin_user and password"),
        ("zimbra = { }", "admin_url .*or export"),
        ('zimbra = { export = "x", admni = 1 }', "unknown key 'admni'"),
        ('sieve = { }\nzimbra = { export = "x" }', "not by Sieve"),
    ]:
        (tmp_path / "m.toml").write_text(base + extra, encoding="utf-8")
        with pytest.raises(ConfigError, match=message):
            load_config(tmp_path / "m.toml")
