"""connectors/compat/exchangelib_session.py: fails when exchangelib changes the pool hooks
it wraps (``create_session``, ``get_adapter``, the protocol cache) — against a real HTTPS
endpoint with a private CA, not a mock."""

from __future__ import annotations

import inspect

import certifi
import pytest
import requests
from exchangelib import BASIC, Configuration, Credentials
from exchangelib.protocol import BaseProtocol, CachingProtocol, Protocol

from connectors.compat.exchangelib_session import CaAdapter, release, verify_with
from devkit.graph import graph_endpoint


@pytest.fixture
def https(tmp_path, monkeypatch):
    # requests lets REQUESTS_CA_BUNDLE override a session's own verify: the shim must not
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", certifi.where())
    with graph_endpoint(tmp_path) as (base, _world, ca):
        yield base, str(ca)


def _protocol(endpoint: str) -> Protocol:
    config = Configuration(
        service_endpoint=endpoint, credentials=Credentials("svc", "pw"), auth_type=BASIC
    )
    return Protocol(config=config)


def test_exchangelib_keeps_the_hooks_the_shim_wraps():
    # the pool makes each session through the instance's create_session()
    assert list(inspect.signature(BaseProtocol.create_session).parameters) == ["self"]
    for method in (BaseProtocol.increase_poolsize, BaseProtocol.renew_session):
        assert "self.create_session()" in inspect.getsource(method)
    # the adapter's shape the shim copies: one connection, blocking, no retries
    assert "cls.HTTP_ADAPTER_CLS(" in inspect.getsource(BaseProtocol.get_adapter)
    assert BaseProtocol.HTTP_ADAPTER_CLS is requests.adapters.HTTPAdapter  # nobody patched it
    # the process-wide protocol cache, keyed by (endpoint, credentials)
    assert isinstance(CachingProtocol._protocol_cache, dict)
    assert hasattr(CachingProtocol._protocol_cache_lock, "acquire")
    assert list(inspect.signature(CachingProtocol._cache_key).parameters) == ["config"]


def test_verify_with_gives_one_protocol_its_ca_and_no_other(https):
    base, ca = https
    mine, other = _protocol(f"{base}/EWS/a.asmx"), _protocol(f"{base}/EWS/b.asmx")
    try:
        verify_with(mine, ca)
        verify_with(mine, ca)  # idempotent: still one wrapper
        session = mine.get_session()
        adapter = session.get_adapter(mine.service_endpoint)
        assert isinstance(adapter, CaAdapter) and adapter.ca_file == ca
        plain = mine.get_adapter()  # what exchangelib would have mounted
        assert (adapter._pool_connections, adapter._pool_maxsize, adapter._pool_block) == (
            plain._pool_connections,
            plain._pool_maxsize,
            plain._pool_block,
        )
        assert adapter.max_retries.total == plain.max_retries.total == 0
        # TLS against the private CA succeeds for this protocol (whatever the status) ...
        assert session.get(mine.service_endpoint, timeout=10).status_code
        mine.release_session(session)
        # ... and fails for another protocol of the process: nothing global was patched
        theirs = other.get_session()
        assert not isinstance(theirs.get_adapter(other.service_endpoint), CaAdapter)
        with pytest.raises(requests.exceptions.SSLError):
            theirs.get(other.service_endpoint, timeout=10)
        other.release_session(theirs)
    finally:
        release(mine)
        release(other)


def test_release_closes_the_pool_and_forgets_the_protocol(https):
    base, ca = https
    endpoint = f"{base}/EWS/c.asmx"
    protocol = _protocol(endpoint)
    assert _protocol(endpoint) is protocol  # exchangelib's cache: one per endpoint + login
    verify_with(protocol, ca)
    session = protocol.get_session()
    session.get(endpoint, timeout=10)
    protocol.release_session(session)
    assert protocol.session_pool_size == 1
    release(protocol)
    assert protocol.session_pool_size == 0 and protocol._session_pool.empty()
    again = _protocol(endpoint)
    try:
        assert again is not protocol  # a new night starts with a new pool
        release(protocol)  # twice: nothing to do, and the newer protocol is not dropped
        assert _protocol(endpoint) is again
    finally:
        release(again)
