"""The library internals the connectors rely on (connectors/compat/): these tests fail when
a library renames, re-signs or changes the behaviour of what a shim uses."""

from __future__ import annotations

import inspect
from types import SimpleNamespace
from typing import Any

import msal
import pytest
from exchangelib import errors as ews_errors
from exchangelib.properties import ItemId
from exchangelib.protocol import BaseProtocol
from exchangelib.services import GetFolder, GetItem, SyncFolderItems
from exchangelib.services.common import EWSService
from exchangelib.util import TNS, xml_to_str
from exchangelib.version import Build, Version
from imapclient import response_parser

from connectors.compat.exchangelib_hooks import (
    HOOKS,
    ItemIdsPayload,
    SyncStateOfSuccess,
    WholeReplies,
    XmlReplies,
    set_timeouts,
)
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


# -- exchangelib (connectors/compat/exchangelib_hooks.py) ------------------------------------
# An Exchange 2016 reply as it comes over the wire, trimmed to what the hooks read.
SYNC_REPLY = b"""<?xml version="1.0" encoding="utf-8"?>
<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/">
  <s:Header>
    <h:ServerVersionInfo xmlns:h="http://schemas.microsoft.com/exchange/services/2006/types"
        MajorVersion="15" MinorVersion="1" MajorBuildNumber="2507" MinorBuildNumber="6"/>
  </s:Header>
  <s:Body>
    <m:SyncFolderItemsResponse
        xmlns:m="http://schemas.microsoft.com/exchange/services/2006/messages"
        xmlns:t="http://schemas.microsoft.com/exchange/services/2006/types">
      <m:ResponseMessages>
        <m:SyncFolderItemsResponseMessage ResponseClass="Success">
          <m:ResponseCode>NoError</m:ResponseCode>
          <m:SyncState>H4sIAAA=</m:SyncState>
          <m:IncludesLastItemInRange>true</m:IncludesLastItemInRange>
          <m:Changes>
            <t:Create>
              <t:Message>
                <t:ItemId Id="AAMkAD1=" ChangeKey="CQAAAB1="/>
                <t:Size>2048</t:Size>
              </t:Message>
            </t:Create>
            <t:ReadFlagChange>
              <t:ItemId Id="AAMkAD2=" ChangeKey="CQAAAB2="/>
              <t:IsRead>true</t:IsRead>
            </t:ReadFlagChange>
            <t:Delete>
              <t:ItemId Id="AAMkAD3=" ChangeKey="CQAAAB3="/>
            </t:Delete>
          </m:Changes>
        </m:SyncFolderItemsResponseMessage>
      </m:ResponseMessages>
    </m:SyncFolderItemsResponse>
  </s:Body>
</s:Envelope>"""
# The same call refused: a SyncState the server no longer accepts (no SyncState element).
SYNC_REFUSED = b"""<?xml version="1.0" encoding="utf-8"?>
<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body>
  <m:SyncFolderItemsResponse
      xmlns:m="http://schemas.microsoft.com/exchange/services/2006/messages">
    <m:ResponseMessages>
      <m:SyncFolderItemsResponseMessage ResponseClass="Error">
        <m:MessageText>Synchronization state data is corrupt or otherwise invalid.</m:MessageText>
        <m:ResponseCode>ErrorInvalidSyncStateData</m:ResponseCode>
        <m:DescriptiveLinkKey>0</m:DescriptiveLinkKey>
      </m:SyncFolderItemsResponseMessage>
    </m:ResponseMessages>
  </m:SyncFolderItemsResponse>
</s:Body></s:Envelope>"""


def _account() -> Any:
    """What an exchangelib account service reads of its account before any HTTP."""
    version = Version(Build(15, 1, 2507, 6))
    return SimpleNamespace(version=version, protocol=SimpleNamespace(version=version))


class _Changes(SyncStateOfSuccess, XmlReplies, SyncFolderItems):  # type: ignore[misc]
    def from_xml(self, elem: Any) -> tuple[str, str]:
        return self.change_types_map[elem.tag], elem.find(f".//{{{TNS}}}ItemId").get("Id")


class _Details(ItemIdsPayload, XmlReplies, GetItem):  # type: ignore[misc]
    pass


class _Folders(WholeReplies, GetFolder):  # type: ignore[misc]
    pass


def test_exchangelib_keeps_the_hooks_the_shim_overrides():
    assert _params(EWSService._get_soap_parts) == HOOKS["_get_soap_parts"]
    assert isinstance(inspect.getattr_static(EWSService, "_get_soap_parts"), classmethod)
    assert _params(EWSService._elem_to_obj) == HOOKS["_elem_to_obj"]
    assert _params(EWSService._get_element_container) == HOOKS["_get_element_container"]
    assert _params(SyncFolderItems._get_element_container) == HOOKS["_get_element_container"]
    assert _params(GetItem.get_payload) == HOOKS["get_payload"]
    # the shim's classes override exactly these names (a rename upstream is caught above)
    assert set(HOOKS) == {
        name
        for cls in (WholeReplies, XmlReplies, SyncStateOfSuccess, ItemIdsPayload)
        for name in vars(cls)
        if not name.startswith("__") and (name in dir(EWSService) or name in dir(GetItem))
    }
    # TIMEOUT and RETRY_WAIT: BaseProtocol's class defaults, read from the protocol instance
    # where exchangelib sends (so set_timeouts on one protocol reaches its requests)
    assert isinstance(BaseProtocol.TIMEOUT, int) and isinstance(BaseProtocol.RETRY_WAIT, int)
    assert "self.protocol.TIMEOUT" in inspect.getsource(EWSService._get_response)
    assert "self.protocol.RETRY_WAIT" in inspect.getsource(EWSService._get_elements)


def test_set_timeouts_changes_one_protocol_only():
    protocol = SimpleNamespace()
    set_timeouts(protocol, 30, 2)
    assert (protocol.TIMEOUT, protocol.RETRY_WAIT) == (30, 2)
    assert (BaseProtocol.TIMEOUT, BaseProtocol.RETRY_WAIT) == (120, 10)  # exchangelib 5.6


def test_a_literal_sync_reply_parsed_through_the_hooks():
    service = _Changes(account=_account())
    got = list(service.parse(SYNC_REPLY))
    assert got == [
        ("create", "AAMkAD1="),
        ("read_flag_change", "AAMkAD2="),
        ("delete", "AAMkAD3="),
    ]
    assert service.sync_state == "H4sIAAA="
    assert service.includes_last_item_in_range is True


def test_a_refused_sync_state_is_an_error_not_an_attribute_error():
    # exchangelib's own SyncFolderItems reads SyncState from an error message too and
    # raises AttributeError; through the shim the server's error comes back, state untouched.
    with pytest.raises(AttributeError):
        list(SyncFolderItems(account=_account()).parse(SYNC_REFUSED))
    service = _Changes(account=_account())
    service.sync_state = "kept"
    with pytest.raises(ews_errors.ErrorInvalidSyncStateData, match="corrupt"):
        list(service.parse(SYNC_REFUSED))
    assert service.sync_state == "kept"


def test_whole_replies_reads_the_body_from_the_content_in_one_piece():
    # a response with .content only: exchangelib's own reads .iter_content()
    header, body = _Folders._get_soap_parts(SimpleNamespace(content=SYNC_REPLY))
    assert header is not None and body.tag.endswith("}Body")
    with pytest.raises(ews_errors.SOAPError, match="Bad SOAP response"):
        _Folders._get_soap_parts(SimpleNamespace(content=b"503 Service Unavailable"))
    with pytest.raises(ews_errors.MalformedResponseError):
        _Folders._get_soap_parts(SimpleNamespace(content=b"<Envelope/>"))


def test_item_ids_payload_is_the_get_item_request_exchangelib_would_send():
    items = [("AAMkAD1=", "CQAAAB1="), ("AAMkAD2=", None)]
    ours = _Details(account=_account()).get_payload(items, None, "IdOnly")
    theirs = GetItem(account=_account()).get_payload(
        [ItemId(id="AAMkAD1=", changekey="CQAAAB1="), ItemId(id="AAMkAD2=")], None, "IdOnly"
    )
    assert xml_to_str(ours) == xml_to_str(theirs)
    assert xml_to_str(ours).endswith('Id="AAMkAD2="/></m:ItemIds></m:GetItem>')
