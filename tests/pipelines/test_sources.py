"""pipelines/sources.py: a source is opened once per night, holds its own token, pools,
admin session and exports, and is closed at the night's end (issue 23.3). Real local
endpoints (Graph, Zimbra admin SOAP, EWS), no mocks."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from exchangelib.protocol import CachingProtocol

from connectors.base import AuthError
from connectors.ews_settings import EwsSettings
from connectors.settings import GraphSettings, ImapSettings, SieveSettings, ZimbraAdminSettings
from devkit.dovecot import MASTER_USER
from devkit.ews import EwsEndpoint
from devkit.graph import CLIENT_ID, TENANT, graph_endpoint
from devkit.zimbra import ZimbraWorld, zimbra_admin_endpoint
from pipelines.config import Config, SourceConfig, ZimbraConfig
from pipelines.secrets import SecretRef
from pipelines.sources import open_sources
from tests.conftest import MASTER_PASSWORD
from tests.groundtruth import seed_regular

ROOT = Path(__file__).resolve().parents[2]
AN = "an.nv@danang.gov.vn"


def _config(tmp_path: Path, *sources: SourceConfig) -> Config:
    return Config(
        path=tmp_path / "mailusage.toml",
        agency="",
        timezone="Asia/Ho_Chi_Minh",
        data_dir=tmp_path / "data",
        roster_path=tmp_path / "roster.csv",
        official_domains=(),
        sources=sources,
    )


def _pools(http) -> int:
    """Connection pools open in a requests session's adapters."""
    return sum(len(a.poolmanager.pools) for a in http.adapters.values())


def test_reading_the_config_imports_no_connector_library():
    code = (
        "import sys, pipelines.config\n"
        "print(sorted(m for m in ('exchangelib', 'msal', 'requests', 'imapclient', "
        "'sievelib', 'connectors.graph', 'connectors.imap', 'connectors.zimbra') "
        "if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]", out.stdout


@pytest.fixture
def graph(tmp_path, monkeypatch):
    with graph_endpoint(tmp_path) as (base, world, ca):
        monkeypatch.setenv("MU_TEST_GRAPH", world.secret)
        settings = GraphSettings(
            tenant_id=TENANT,
            client_id=CLIENT_ID,
            authority=base,
            graph_url=f"{base}/v1.0",
            ca_file=str(ca),
            retry_wait=0.05,
        )
        yield settings, world


def _graph_source(name: str, settings: GraphSettings) -> SourceConfig:
    return SourceConfig(name, "graph", None, SecretRef(env="MU_TEST_GRAPH"), graph=settings)


def test_two_graph_sources_of_one_tenant_do_not_share_a_token_and_close_their_pools(
    graph, tmp_path
):
    settings, world = graph
    cfg = _config(tmp_path, _graph_source("a", settings), _graph_source("b", settings))
    with open_sources(cfg) as sources:
        a, b = sources["a"].connector.tenant, sources["b"].connector.tenant
        assert a is not b and a.http is not b.http
        assert a.token() and b.token()
        assert a.token() == a.token()  # one token per source for the night
        assert world.tokens_issued == 2  # one each: same settings, not shared
        assert _pools(a.http) >= 1 and _pools(b.http) >= 1
    assert _pools(a.http) == 0 and _pools(b.http) == 0  # the night's end closed them
    assert sources["a"].connector._tenant is None  # and forgot the token
    # a second night opens anew: its own token, its own pool
    with open_sources(cfg) as sources:
        again = sources["a"].connector.tenant
        assert again is not a and again.token()
        assert world.tokens_issued == 3
    assert _pools(again.http) == 0


def test_graph_inbox_rules_are_read_in_the_mailbox_session(graph, tmp_path):
    settings, world = graph
    addr = {"emailAddress": {"address": "an@gmail.com", "name": "an"}}
    world.user(AN).rules = [{"id": "1", "displayName": "home", "isEnabled": True,
                             "conditions": {}, "actions": {"forwardTo": [addr]}}]  # fmt: skip
    cfg = _config(tmp_path, _graph_source("m365", settings))
    with open_sources(cfg) as sources, sources["m365"].open(AN) as session:
        session.resume({})
        session.folders()
        world.calls.clear()
        rules = session.forwards()
        assert [(r.target, r.rule_name) for r in rules] == [("an@gmail.com", "home")]
        assert not world.calls  # they rode in the folder batch: no other request
        # read once: asked again, the session asks Graph (not a stale side channel)
        assert [r.target for r in session.forwards()] == ["an@gmail.com"]
        assert any("messageRules" in c[1] for c in world.calls)


def _zimbra_source(name: str, url: str, world: ZimbraWorld, export: Path | None = None):
    return SourceConfig(
        name,
        "imap",
        ImapSettings(host="127.0.0.1"),
        SecretRef(env="MU_TEST_IMAP"),
        zimbra=ZimbraConfig(
            ZimbraAdminSettings(url, world.admin), SecretRef(env="MU_TEST_ZIMBRA"), export
        ),
    )


def test_two_zimbra_admins_log_in_each_for_itself_and_close_at_the_nights_end(
    tmp_path, monkeypatch
):
    world = ZimbraWorld()
    world.account("an@tiengiang.gov.vn", zimbraPrefMailForwardingAddress=["an@gmail.com"])
    monkeypatch.setenv("MU_TEST_ZIMBRA", world.password)
    with zimbra_admin_endpoint(world) as (url, _):
        cfg = _config(tmp_path, _zimbra_source("z1", url, world), _zimbra_source("z2", url, world))
        with open_sources(cfg) as sources:
            one, two = sources["z1"].forwarding, sources["z2"].forwarding
            assert one is not two and one.http is not two.http
            for admin in (one, two, one, two):
                assert [f.target for f in admin.forwards("an@tiengiang.gov.vn")] == ["an@gmail.com"]
            assert world.requests.count("AuthRequest") == 2  # one login per admin, kept
            assert one._token and _pools(one.http) == 1
        assert one._token is None and _pools(one.http) == 0 and _pools(two.http) == 0
        with open_sources(cfg) as sources:  # the next night logs in again
            sources["z1"].forwarding.forwards("an@tiengiang.gov.vn")
            assert world.requests.count("AuthRequest") == 3


def test_a_zmprov_export_is_parsed_once_per_source_and_forgotten_after(tmp_path, monkeypatch):
    export = tmp_path / "fw.txt"
    export.write_text(
        "# name an@tiengiang.gov.vn\nzimbraPrefMailForwardingAddress: an@gmail.com\n",
        encoding="utf-8",
    )
    src = SourceConfig(
        "z",
        "imap",
        ImapSettings(host="127.0.0.1"),
        SecretRef(env="MU_TEST_IMAP"),
        zimbra=ZimbraConfig(None, None, export),
    )
    with open_sources(_config(tmp_path, src)) as sources:
        reader = sources["z"].forwarding
        assert [f.target for f in reader.forwards("an@tiengiang.gov.vn")] == ["an@gmail.com"]
        parsed = reader._parsed
        reader.forwards("an@tiengiang.gov.vn")
        assert reader._parsed is parsed  # unchanged file: not parsed again
    assert reader._parsed is None


def test_an_ews_source_closes_its_pools_and_the_next_night_gets_new_ones(tmp_path, monkeypatch):
    svc, password = "svc@danang.gov.vn", "pw-%!"
    endpoint = EwsEndpoint({svc: password}, impersonators={svc: "*"})
    monkeypatch.setenv("MU_TEST_EWS", password)
    with endpoint.running():
        endpoint.mailbox(AN)
        settings = EwsSettings(endpoint=endpoint.url, username=svc, auth=endpoint.auth)
        src = SourceConfig("ex", "ews", None, SecretRef(env="MU_TEST_EWS"), ews=settings)
        cfg = _config(tmp_path, src)
        with open_sources(cfg) as sources:
            with sources["ex"].open(AN) as session:
                assert session.folders()
                assert session.forwards() == []  # inbox rules in the session (none here)
            (protocol,) = sources["ex"].connector._protocols.values()
            assert protocol.session_pool_size >= 1
            cached = {id(p) for p, _ in CachingProtocol._protocol_cache.values()}
            assert id(protocol) in cached
        assert protocol.session_pool_size == 0  # closed
        cached = {id(p) for p, _ in CachingProtocol._protocol_cache.values()}
        assert id(protocol) not in cached  # and forgotten by exchangelib
        with open_sources(cfg) as sources, sources["ex"].open(AN) as session:
            assert session.folders()
            (again,) = sources["ex"].connector._protocols.values()
            assert again is not protocol


def test_an_imap_sources_sessions_read_forwarding_over_managesieve(dovecot, tmp_path, monkeypatch):
    mailbox = "sieve.src@danang.gov.vn"
    seed_regular(dovecot, mailbox, 3, seed=31)
    dovecot.set_sieve(mailbox, "roundcube", 'require "copy"; redirect :copy "me@yahoo.com.vn";')
    imap = ImapSettings(
        host="127.0.0.1",
        port=dovecot.imaps_port,
        ca_file=str(dovecot.ca_file),
        master_user=MASTER_USER,
    )
    sieve = SieveSettings(
        host="127.0.0.1",
        port=dovecot.sieve_port,
        ca_file=str(dovecot.ca_file),
        master_user=MASTER_USER,
    )
    src = SourceConfig("dovecot", "imap", imap, SecretRef(env="MU_TEST_IMAP"), sieve)
    monkeypatch.setenv("MU_TEST_IMAP", MASTER_PASSWORD)
    with open_sources(_config(tmp_path, src)) as sources:
        with sources["dovecot"].open(mailbox) as session:
            assert [(f.target, f.keeps_copy) for f in session.forwards()] == [
                ("me@yahoo.com.vn", True)
            ]
        assert sources["dovecot"].forwarding is not None  # the night's one reader
    monkeypatch.setenv("MU_TEST_IMAP", "wrong")
    with open_sources(_config(tmp_path, src)) as sources:
        reader = sources["dovecot"].forwarding
        with pytest.raises(AuthError):
            reader.forwards(mailbox)
