"""The library internals the connectors rely on (connectors/compat/): these tests fail when
a library renames, re-signs or changes the behaviour of what a shim uses."""

from __future__ import annotations

import inspect

import msal
from imapclient import response_parser

from connectors.compat.imapclient_hooks import parse_fetch_response, parse_response
from connectors.compat.msal_hooks import drop_access_tokens


def _params(fn: object) -> list[str]:
    return list(inspect.signature(fn).parameters)  # type: ignore[arg-type]


def test_imapclient_parsers_keep_their_signatures():
    assert parse_fetch_response is response_parser.parse_fetch_response
    assert _params(parse_fetch_response)[:3] == ["text", "normalise_times", "uid_is_key"]
    assert _params(parse_response) == ["data"]


def test_parse_fetch_response_reads_imaplib_shaped_literal_bytes():
    # As connectors/imap_wire.py hands it over: the literal paired with the text before it.
    data = [(b"3 (UID 7 BODY[] {16}", b"Subject: x\r\n\r\nhi"), b")"]
    got = parse_fetch_response(data)
    assert dict(got) == {7: {b"SEQ": 3, b"BODY[]": b"Subject: x\r\n\r\nhi"}}


def test_parse_response_reads_a_quota_line():
    assert parse_response([b'"" (STORAGE 512 10240)']) == (b"", (b"STORAGE", 512, 10240))


def test_msal_token_cache_keeps_search_and_remove_at():
    assert _params(msal.TokenCache.search)[:3] == ["self", "credential_type", "target"]
    assert _params(msal.TokenCache.remove_at) == ["self", "at_item"]
    assert msal.TokenCache.CredentialType.ACCESS_TOKEN == "AccessToken"


def test_drop_access_tokens_leaves_no_access_token_in_an_msal_cache():
    cache = msal.TokenCache()
    for n in range(3):
        cache.add(
            {
                "client_id": "app",
                "scope": [f"https://graph.microsoft.com/.default{n}"],
                "token_endpoint": "https://login.example/tenant/oauth2/v2.0/token",
                "response": {"access_token": f"at{n}", "expires_in": 3600, "token_type": "Bearer"},
                "environment": "login.example",
            }
        )
    assert len(list(cache.search("AccessToken"))) == 3
    drop_access_tokens(cache)
    assert list(cache.search("AccessToken")) == []
