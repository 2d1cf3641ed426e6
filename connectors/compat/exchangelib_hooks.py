"""exchangelib's service hooks, used by connectors/ews.py to read replies straight from XML.

exchangelib documents its services' ``call`` and ``parse`` but not the methods a service
overrides to change how a reply is read; connectors/ews.py overrides four of them, here and
nowhere else (checked with exchangelib 5.6.0; ``EWSService.parse`` runs all four):

``_get_soap_parts(response)``   classmethod: the reply's SOAP Header and Body. exchangelib's
                                feeds lxml from ``response.iter_content()`` one byte a chunk:
                                half the collector's time (benchmarks/); :class:`WholeReplies`
                                parses ``response.content`` in one go.
``_elem_to_obj(elem)``          each returned element into a Python object: an exchangelib
                                model by default, a small NamedTuple through
                                :meth:`XmlReplies.from_xml`.
``_get_element_container(message, name=None)``  the element holding a response message's
                                results; SyncFolderItems's also reads SyncState from it, an
                                error message's too (where there is none: AttributeError).
                                :class:`SyncStateOfSuccess` reads it from successes only.
``get_payload(items, additional_fields, shape)``  GetItem's request body; exchangelib builds
                                an ItemId object per id (~85 µs an id, a third of the
                                collector's time): :class:`ItemIdsPayload` writes them.

and two class attributes of ``BaseProtocol`` it documents only in its source, set per
protocol by :func:`set_timeouts`: ``TIMEOUT`` (seconds of one HTTP request) and
``RETRY_WAIT`` (seconds between retries after a connection error).
"""

from __future__ import annotations

from typing import Any

from exchangelib import errors as ews_errors
from exchangelib.services.common import EWSAccountService, shape_element
from exchangelib.util import MNS, SOAPNS, create_element, to_xml

__all__ = [
    "HOOKS",
    "ItemIdsPayload",
    "SyncStateOfSuccess",
    "WholeReplies",
    "XmlReplies",
    "set_timeouts",
]

# The service methods overridden here, as exchangelib names them (tests/connectors/
# test_compat.py checks each still exists with these parameters).
HOOKS = {
    "_get_soap_parts": ["response"],
    "_elem_to_obj": ["self", "elem"],
    "_get_element_container": ["self", "message", "name"],
    "get_payload": ["self", "items", "additional_fields", "shape"],
}


class WholeReplies:
    """Put before an exchangelib service class: its reply is parsed from its bytes in one
    go (the service's own models are still built from it)."""

    @classmethod
    def _get_soap_parts(cls, response: Any) -> tuple[Any, Any]:
        try:
            root = to_xml(response.content)
        except Exception as exc:  # exchangelib's ParseError and lxml's
            raise ews_errors.SOAPError(f"Bad SOAP response: {exc}") from exc
        body = root.find(f"{{{SOAPNS}}}Body")
        if body is None:
            raise ews_errors.MalformedResponseError("No Body element in SOAP response")
        return root.find(f"{{{SOAPNS}}}Header"), body


class XmlReplies(WholeReplies):
    """Put before an exchangelib service class: its reply is parsed from its bytes in one
    go, and each returned element is read by :meth:`from_xml` (the service's own models
    are not built. ``class Names(XmlReplies, FindFolder)`` whose ``from_xml`` returns
    ``elem.findtext(t:DisplayName)`` yields ``'Inbox', 'Sent Items', …`` from
    ``Names(account=account).parse(find_folder_reply_bytes)``.
    """

    def _elem_to_obj(self, elem: Any) -> Any:
        return self.from_xml(elem)

    def from_xml(self, elem: Any) -> Any:
        """One returned element (an lxml element) as the object the service yields."""
        raise NotImplementedError(f"{type(self).__name__}.from_xml")


class SyncStateOfSuccess:
    """Put before ``SyncFolderItems``: SyncState and IncludesLastItemInRange are read from a
    successful response message only (exchangelib's reads them from an error one too)."""

    sync_state: str | None
    includes_last_item_in_range: bool

    def _get_element_container(self, message: Any, name: Any = None) -> Any:
        if message.get("ResponseClass") == "Success":
            self.sync_state = message.findtext(f"{{{MNS}}}SyncState")
            last = message.findtext(f"{{{MNS}}}IncludesLastItemInRange") or ""
            self.includes_last_item_in_range = last.lower() == "true"
        # SyncFolder's own override (which reads them unconditionally) is skipped.
        return EWSAccountService._get_element_container(self, message=message, name=name)


class ItemIdsPayload:
    """Put before ``GetItem``: the request names items as ``(id, changekey)`` pairs, written
    as ``t:ItemId`` elements directly."""

    SERVICE_NAME: str
    account: Any

    def get_payload(self, items: Any, additional_fields: Any, shape: str) -> Any:
        payload = create_element(f"m:{self.SERVICE_NAME}")
        payload.append(
            shape_element(
                tag="m:ItemShape",
                shape=shape,
                additional_fields=additional_fields,
                version=self.account.version,
            )
        )
        ids = create_element("m:ItemIds")
        for item_id, changekey in items:
            attrs = {"Id": item_id, "ChangeKey": changekey} if changekey else {"Id": item_id}
            ids.append(create_element("t:ItemId", attrs=attrs))
        payload.append(ids)
        return payload


def set_timeouts(protocol: Any, timeout: float, retry_wait: float) -> None:
    """One protocol's HTTP timeout and wait between connection retries (instance
    attributes shadowing BaseProtocol's class defaults, so other endpoints keep theirs)."""
    protocol.TIMEOUT = timeout
    protocol.RETRY_WAIT = retry_wait
