"""A local Exchange Web Services endpoint for the tests (never part of the product).

No open-source EWS server installs here, so this answers the SOAP shapes Exchange 2016
answers, over an in-memory set of mailboxes, on 127.0.0.1:

- ``GetFolder`` (distinguished or real folder ids, the requested properties only, the
  message-size extended property 0x0E08 as a Long), ``FindItem`` (``IndexedPageItemView``
  paging with ``IndexedPagingOffset`` / ``TotalItemsInView`` / ``IncludesLastItemInRange``,
  the ``Restriction`` evaluated, one response message per parent folder, complex properties
  refused as Exchange refuses them), ``GetItem`` (recipients) and ``GetInboxRules``;
- ``ServerVersionInfo`` in every response header;
- Basic authentication, or NTLM through pyspnego's server side (connection-bound, like IIS);
- the ``ExchangeImpersonation`` header checked against the service account's rights;
- injectable faults: ``ErrorServerBusy`` with ``BackOffMilliseconds``,
  ``ErrorExceededConnectionCount``, HTTP 401 / 503, slow replies.

Every request is recorded (:class:`Call`), so tests can count SOAP calls and check headers.
exchangelib runs unmodified against it.
"""

from __future__ import annotations

import base64
import hashlib
import os
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape, quoteattr

SOAP = "http://schemas.xmlsoap.org/soap/envelope/"
T = "http://schemas.microsoft.com/exchange/services/2006/types"
M = "http://schemas.microsoft.com/exchange/services/2006/messages"
E = "http://schemas.microsoft.com/exchange/services/2006/errors"
ENDPOINT_PATH = "/EWS/Exchange.asmx"

# Properties FindItem will not return (MS docs, "FindItem operation": use GetItem).
COMPLEX = {"message:ToRecipients", "message:CcRecipients", "message:BccRecipients", "item:Body"}
WELL_KNOWN = {"inbox": "Inbox", "sentitems": "Sent Items"}


@dataclass
class Item:
    received: datetime
    sent: datetime | None
    size: int
    is_read: bool
    sender: str | None
    to: list[str]
    cc: list[str] = field(default_factory=list)
    message_id: str | None = None
    item_id: str = ""


@dataclass
class Folder:
    folder_id: str
    distinguished: str
    display_name: str
    items: list[Item] = field(default_factory=list)


@dataclass
class Rule:
    name: str
    forward: list[str] = field(default_factory=list)
    redirect: list[str] = field(default_factory=list)
    forward_as_attachment: list[str] = field(default_factory=list)
    enabled: bool = True
    from_addresses: list[str] = field(default_factory=list)  # a condition, when given


@dataclass
class Mailbox:
    address: str
    folders: dict[str, Folder]
    rules: list[Rule] = field(default_factory=list)
    index: dict[str, tuple[Item, Folder]] = field(default_factory=dict)  # item id -> where
    added: int = 0

    def add(self, distinguished: str, item: Item) -> Item:
        folder = self.folders[distinguished]
        self.added += 1
        item.item_id = _b64id(f"{self.address}/{distinguished}/{self.added}")
        folder.items.append(item)
        self.index[item.item_id] = (item, folder)
        return item

    def recreate(self, distinguished: str) -> None:
        """The folder deleted and made again: a new folder id, no items."""
        old = self.folders[distinguished]
        for item in old.items:
            del self.index[item.item_id]
        self.folders[distinguished] = Folder(
            _b64id(f"{old.folder_id}/again"), distinguished, old.display_name
        )


@dataclass
class Call:
    service: str
    path: str
    user: str | None
    impersonated: str | None
    anchor: str | None
    at: float
    status: int = 200
    page_size: int | None = None
    offset: int | None = None
    folders: tuple[str, ...] = ()
    items: int = 0  # items returned (FindItem / GetItem)
    fault: str | None = None


@dataclass
class Fault:
    """One injected failure: ``kind`` is busy | connections | 401 | 503 | slow."""

    kind: str
    times: int = 1
    service: str | None = None
    mailbox: str | None = None
    back_off_ms: int = 500
    delay: float = 0.0


def _b64id(text: str) -> str:
    return base64.b64encode(b"\x00\x00\x00\x2e" + hashlib.sha256(text.encode()).digest()).decode()


def _q(ns: str, tag: str) -> str:
    return f"{{{ns}}}{tag}"


def _ts(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class EwsEndpoint:
    """The endpoint and its mailboxes. ``users`` maps a login (``DOMAIN\\\\user`` for NTLM)
    to its password; ``impersonators`` maps a login to the mailboxes it may impersonate
    (``"*"`` for all); ``owners`` maps a login to its own mailbox (per-user credentials)."""

    def __init__(
        self,
        users: dict[str, str],
        auth: str = "basic",
        impersonators: dict[str, set[str] | str] | None = None,
        owners: dict[str, str] | None = None,
        ntlm_user_file: Path | None = None,
    ) -> None:
        if auth not in ("basic", "ntlm"):
            raise ValueError(auth)
        self.users = users
        self.auth = auth
        self.impersonators = impersonators or {}
        self.owners = owners or {}
        self.mailboxes: dict[str, Mailbox] = {}
        self.calls: list[Call] = []
        self.refused = 0  # requests whose credentials were wrong (answered 401)
        self.faults: list[Fault] = []
        self.lock = threading.Lock()
        self.active = 0
        self.max_active = 0
        if auth == "ntlm":
            if ntlm_user_file is None:
                raise ValueError("NTLM needs a file for pyspnego's credential store")
            from spnego._ntlm_raw.crypto import lmowfv1, ntowfv1

            # pwdump-style lines (hashes, not passwords): any character may be in a password
            ntlm_user_file.write_text(
                "".join(
                    f"{u}:0:{lmowfv1(p).hex()}:{ntowfv1(p).hex()}:[U]:LCT-00000000\n"
                    for u, p in users.items()
                )
            )
            os.environ["NTLM_USER_FILE"] = str(ntlm_user_file)
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    # -- set-up -----------------------------------------------------------------------------
    def mailbox(self, address: str) -> Mailbox:
        address = address.lower()
        if address not in self.mailboxes:
            self.mailboxes[address] = Mailbox(
                address,
                {d: Folder(_b64id(f"{address}/{d}"), d, n) for d, n in WELL_KNOWN.items()},
            )
        return self.mailboxes[address]

    def inject(self, kind: str, **kwargs: Any) -> Fault:
        fault = Fault(kind, **kwargs)
        with self.lock:
            self.faults.append(fault)
        return fault

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}{ENDPOINT_PATH}"

    def start(self) -> EwsEndpoint:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    @contextmanager
    def running(self) -> Iterator[EwsEndpoint]:
        self.start()
        try:
            yield self
        finally:
            self.stop()

    def calls_for(self, mailbox: str) -> list[Call]:
        return [c for c in self.calls if c.impersonated == mailbox or c.anchor == mailbox]

    # -- faults -----------------------------------------------------------------------------
    def _take_fault(self, service: str, mailbox: str | None) -> Fault | None:
        with self.lock:
            for fault in self.faults:
                if fault.times <= 0:
                    continue
                if fault.service not in (None, service) or fault.mailbox not in (None, mailbox):
                    continue
                fault.times -= 1
                return fault
        return None

    # -- services ---------------------------------------------------------------------------
    def answer(self, call: Call, user: str, envelope: ET.Element) -> tuple[int, str]:
        header = envelope.find(_q(SOAP, "Header"))
        body = envelope.find(_q(SOAP, "Body"))
        if body is None or not len(body):
            return 500, _fault("ErrorSchemaValidation", "The request has no SOAP body.")
        request = body[0]
        target = call.impersonated
        if target is not None and target not in self.mailboxes:
            call.fault = "ErrorNonExistentMailbox"
            return 500, _fault(
                "ErrorNonExistentMailbox", "The SMTP address has no mailbox associated with it."
            )
        if target is not None:
            allowed = self.impersonators.get(user, set())
            if allowed != "*" and target not in allowed:
                call.fault = "ErrorImpersonateUserDenied"
                return 500, _fault(
                    "ErrorImpersonateUserDenied",
                    "The account does not have permission to impersonate the requested user.",
                )
        else:
            target = self.owners.get(user)
            if target is None:
                call.fault = "ErrorNonExistentMailbox"
                return 500, _fault(
                    "ErrorNonExistentMailbox", "The SMTP address has no mailbox associated with it."
                )
        mbx = self.mailboxes.get(target)
        if mbx is None:
            call.fault = "ErrorNonExistentMailbox"
            return 500, _fault(
                "ErrorNonExistentMailbox", "The SMTP address has no mailbox associated with it."
            )
        del header
        handler = getattr(self, f"_{call.service}", None)
        if handler is None:
            return 500, _fault("ErrorInvalidRequest", f"{call.service} is not served here.")
        return 200, handler(call, mbx, request)

    def _folder(self, mbx: Mailbox, ref: ET.Element) -> Folder | None:
        if ref.tag == _q(T, "DistinguishedFolderId"):
            owner = ref.findtext(f"{{{T}}}Mailbox/{{{T}}}EmailAddress")
            if owner is not None and owner.lower() != mbx.address:
                return None
            return mbx.folders.get(ref.get("Id", ""))
        wanted = ref.get("Id")
        return next((f for f in mbx.folders.values() if f.folder_id == wanted), None)

    def _GetFolder(self, call: Call, mbx: Mailbox, request: ET.Element) -> str:
        props = _requested(request.find(_q(M, "FolderShape")))
        refs = list(request.find(_q(M, "FolderIds")) or [])
        call.folders = tuple(r.get("Id", "") for r in refs)
        parts = []
        for ref in refs:
            folder = self._folder(mbx, ref)
            if folder is None:
                parts.append(
                    _error_message(
                        "GetFolder",
                        "ErrorFolderNotFound",
                        "The specified folder could not be found.",
                    )
                )
                continue
            parts.append(
                '<m:GetFolderResponseMessage ResponseClass="Success">'
                "<m:ResponseCode>NoError</m:ResponseCode>"
                f"<m:Folders>{_folder_xml(folder, props)}</m:Folders>"
                "</m:GetFolderResponseMessage>"
            )
        return _response("GetFolder", "".join(parts))

    def _FindItem(self, call: Call, mbx: Mailbox, request: ET.Element) -> str:
        props = _requested(request.find(_q(M, "ItemShape")))
        view = request.find(_q(M, "IndexedPageItemView"))
        if view is None:
            raise ValueError("only IndexedPageItemView is served")
        size = int(view.get("MaxEntriesReturned", "1000"))
        offset = int(view.get("Offset", "0"))
        call.page_size, call.offset = size, offset
        restriction = request.find(_q(M, "Restriction"))
        refs = list(request.find(_q(M, "ParentFolderIds")) or [])
        call.folders = tuple(r.get("Id", "") for r in refs)
        parts = []
        bad = sorted(props & COMPLEX)
        for ref in refs:
            folder = self._folder(mbx, ref)
            if bad:
                parts.append(
                    _error_message(
                        "FindItem",
                        "ErrorInvalidPropertyRequest",
                        f"The property {bad[0]} can't be used in FindItem requests.",
                    )
                )
                continue
            if folder is None:
                parts.append(
                    _error_message(
                        "FindItem",
                        "ErrorFolderNotFound",
                        "The specified folder could not be found.",
                    )
                )
                continue
            matching = sorted(
                (i for i in folder.items if restriction is None or _matches(restriction[0], i)),
                key=lambda i: (i.received, i.item_id),
            )
            page = matching[offset : offset + size]
            call.items += len(page)
            end = offset + len(page)
            last = "true" if end >= len(matching) else "false"
            items = "".join(_item_xml(i, folder, props, names_only=True) for i in page)
            parts.append(
                '<m:FindItemResponseMessage ResponseClass="Success">'
                "<m:ResponseCode>NoError</m:ResponseCode>"
                f'<m:RootFolder IndexedPagingOffset="{end}" TotalItemsInView="{len(matching)}" '
                f'IncludesLastItemInRange="{last}"><t:Items>{items}</t:Items></m:RootFolder>'
                "</m:FindItemResponseMessage>"
            )
        return _response("FindItem", "".join(parts))

    def _GetItem(self, call: Call, mbx: Mailbox, request: ET.Element) -> str:
        props = _requested(request.find(_q(M, "ItemShape")))
        parts = []
        for ref in request.find(_q(M, "ItemIds")) or []:
            found = mbx.index.get(ref.get("Id", ""))
            if found is None:
                parts.append(
                    _error_message(
                        "GetItem", "ErrorItemNotFound", "The specified object was not found."
                    )
                )
                continue
            call.items += 1
            parts.append(
                '<m:GetItemResponseMessage ResponseClass="Success">'
                "<m:ResponseCode>NoError</m:ResponseCode>"
                f"<m:Items>{_item_xml(found[0], found[1], props)}</m:Items>"
                "</m:GetItemResponseMessage>"
            )
        return _response("GetItem", "".join(parts))

    def _GetInboxRules(self, call: Call, mbx: Mailbox, request: ET.Element) -> str:
        asked = (request.findtext(_q(M, "MailboxSmtpAddress")) or "").lower()
        if asked and asked != mbx.address:
            return _bare_error("GetInboxRules", "ErrorAccessDenied", "Access is denied.")
        rules = "".join(_rule_xml(n, r) for n, r in enumerate(mbx.rules, 1))
        return _envelope(
            '<m:GetInboxRulesResponse ResponseClass="Success">'
            "<m:ResponseCode>NoError</m:ResponseCode>"
            "<m:OutlookRuleBlobExists>false</m:OutlookRuleBlobExists>"
            + (f"<m:InboxRules>{rules}</m:InboxRules>" if rules else "")
            + "</m:GetInboxRulesResponse>"
        )


# -- the HTTP side ------------------------------------------------------------------------------
def _handler(ep: EwsEndpoint) -> type[BaseHTTPRequestHandler]:
    import spnego

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive: NTLM authenticates a connection
        ntlm_user: str | None = None
        ntlm_ctx: Any = None

        def log_message(self, format: str, *args: Any) -> None:  # quiet
            pass

        def _send(self, status: int, text: str = "", headers: dict[str, str] | None = None) -> None:
            data = text.encode()
            self.send_response(status)
            self.send_header("Content-Type", "text/xml; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)

        def _authenticate(self) -> str | None:
            """The login of this request, or None after answering 401."""
            header = self.headers.get("Authorization", "")
            if ep.auth == "basic":
                if header.startswith("Basic "):
                    user, _, pw = base64.b64decode(header[6:]).decode().partition(":")
                    if ep.users.get(user) == pw:
                        return user
                    ep.refused += 1
                self._send(401, "", {"WWW-Authenticate": 'Basic realm="127.0.0.1"'})
                return None
            if self.ntlm_user is not None and not header:
                return self.ntlm_user
            if header.startswith("NTLM "):
                if self.ntlm_ctx is None or self.ntlm_ctx.complete:
                    self.ntlm_ctx = spnego.server(protocol="ntlm")
                try:
                    out = self.ntlm_ctx.step(base64.b64decode(header[5:]))
                except Exception:
                    self.ntlm_ctx = None
                    ep.refused += 1
                    self._send(401, "", {"WWW-Authenticate": "NTLM"})
                    return None
                if not self.ntlm_ctx.complete:
                    challenge = base64.b64encode(out or b"").decode()
                    self._send(401, "", {"WWW-Authenticate": f"NTLM {challenge}"})
                    return None
                self.ntlm_user = str(self.ntlm_ctx.client_principal)
                return self.ntlm_user
            self._send(401, "", {"WWW-Authenticate": "NTLM"})
            return None

        def do_GET(self) -> None:
            self._record_other()

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            raw = self.rfile.read(length) if length else b""
            if self.path.split("?")[0].lower() != ENDPOINT_PATH.lower():
                self._record_other()
                return
            user = self._authenticate()
            if user is None:
                return
            try:
                envelope = ET.fromstring(raw)
            except ET.ParseError:
                self._send(400, "")
                return
            body = envelope.find(_q(SOAP, "Body"))
            service = body[0].tag.split("}")[-1] if body is not None and len(body) else "?"
            impersonated = envelope.findtext(
                f"{{{SOAP}}}Header/{{{T}}}ExchangeImpersonation/{{{T}}}ConnectingSID/"
                f"{{{T}}}PrimarySmtpAddress"
            )
            call = Call(
                service,
                self.path,
                user,
                impersonated.lower() if impersonated else None,
                (self.headers.get("X-AnchorMailbox") or "").lower() or None,
                time.monotonic(),
            )
            with ep.lock:
                ep.calls.append(call)
                ep.active += 1
                ep.max_active = max(ep.max_active, ep.active)
            try:
                self._serve(call, user, envelope)
            finally:
                with ep.lock:
                    ep.active -= 1

        def _serve(self, call: Call, user: str, envelope: ET.Element) -> None:
            fault = ep._take_fault(call.service, call.impersonated)
            if fault is not None:
                call.fault = fault.kind
                if fault.kind == "slow":
                    time.sleep(fault.delay)
                elif fault.kind in ("401", "503"):
                    call.status = int(fault.kind)
                    extra = (
                        {"WWW-Authenticate": 'Basic realm="127.0.0.1"'}
                        if fault.kind == "401"
                        else {}
                    )
                    self._send(call.status, "", extra)
                    return
                elif fault.kind == "busy":
                    call.status = 500
                    self._send(
                        500,
                        _fault(
                            "ErrorServerBusy",
                            "The server cannot service this request right now. Try again later.",
                            fault.back_off_ms,
                        ),
                    )
                    return
                elif fault.kind == "connections":
                    call.status = 500
                    self._send(
                        500,
                        _fault(
                            "ErrorExceededConnectionCount",
                            "You have exceeded the available concurrent connections for your account.  Try again once your other requests have completed.",
                        ),
                    )
                    return
            status, text = ep.answer(call, user, envelope)
            call.status = status
            self._send(status, text)

        def _record_other(self) -> None:
            with ep.lock:
                ep.calls.append(
                    Call("(not EWS)", self.path, None, None, None, time.monotonic(), 404)
                )
            self._send(404, "")

    return Handler


# -- XML ------------------------------------------------------------------------------------------
_HEADER = (
    '<s:Header><h:ServerVersionInfo MajorVersion="15" MinorVersion="1" MajorBuildNumber="2507" '
    f'MinorBuildNumber="6" Version="V2017_07_11" xmlns:h="{T}"/></s:Header>'
)


def _envelope(body: str, header: bool = True) -> str:
    return (
        f'<?xml version="1.0" encoding="utf-8"?><s:Envelope xmlns:s="{SOAP}">'
        + (_HEADER if header else "")
        + f'<s:Body xmlns:m="{M}" xmlns:t="{T}">{body}</s:Body></s:Envelope>'
    )


def _response(service: str, messages: str) -> str:
    return _envelope(
        f"<m:{service}Response><m:ResponseMessages>{messages}</m:ResponseMessages>"
        f"</m:{service}Response>"
    )


def _error_message(service: str, code: str, text: str) -> str:
    return (
        f'<m:{service}ResponseMessage ResponseClass="Error"><m:MessageText>{escape(text)}'
        f"</m:MessageText><m:ResponseCode>{code}</m:ResponseCode>"
        f"<m:DescriptiveLinkKey>0</m:DescriptiveLinkKey></m:{service}ResponseMessage>"
    )


def _bare_error(service: str, code: str, text: str) -> str:
    return _envelope(
        f'<m:{service}Response ResponseClass="Error"><m:MessageText>{escape(text)}</m:MessageText>'
        f"<m:ResponseCode>{code}</m:ResponseCode></m:{service}Response>"
    )


def _fault(code: str, text: str, back_off_ms: int | None = None) -> str:
    extra = (
        f'<t:MessageXml xmlns:t="{T}"><t:Value Name="BackOffMilliseconds">{back_off_ms}'
        "</t:Value></t:MessageXml>"
        if back_off_ms is not None
        else ""
    )
    return (
        f'<?xml version="1.0" encoding="utf-8"?><s:Envelope xmlns:s="{SOAP}"><s:Body><s:Fault>'
        f'<faultcode xmlns:a="{T}">a:{code}</faultcode>'
        f'<faultstring xml:lang="en-US">{escape(text)}</faultstring><detail>'
        f'<e:ResponseCode xmlns:e="{E}">{code}</e:ResponseCode>'
        f'<e:Message xmlns:e="{E}">{escape(text)}</e:Message>{extra}'
        "</detail></s:Fault></s:Body></s:Envelope>"
    )


def _requested(shape: ET.Element | None) -> set[str]:
    """FieldURIs asked for, plus ``ext:0x0e08`` style names for extended properties."""
    if shape is None:
        return set()
    props: set[str] = set()
    for p in shape.find(_q(T, "AdditionalProperties")) or []:
        if p.tag == _q(T, "FieldURI"):
            props.add(p.get("FieldURI", ""))
        elif p.tag == _q(T, "ExtendedFieldURI"):
            props.add(f"ext:{int(p.get('PropertyTag', '0'), 16):#x}:{p.get('PropertyType')}")
    return props


def _folder_xml(folder: Folder, props: set[str]) -> str:
    parts = [f'<t:FolderId Id={quoteattr(folder.folder_id)} ChangeKey="AQAAABYAAAA="/>']
    if "folder:FolderClass" in props:
        parts.append("<t:FolderClass>IPF.Note</t:FolderClass>")
    if "folder:DisplayName" in props:
        parts.append(f"<t:DisplayName>{escape(folder.display_name)}</t:DisplayName>")
    if "folder:TotalCount" in props:
        parts.append(f"<t:TotalCount>{len(folder.items)}</t:TotalCount>")
    if "folder:ChildFolderCount" in props:
        parts.append("<t:ChildFolderCount>0</t:ChildFolderCount>")
    if "ext:0xe08:Long" in props:
        parts.append(
            '<t:ExtendedProperty><t:ExtendedFieldURI PropertyTag="0xe08" PropertyType="Long"/>'
            f"<t:Value>{sum(i.size for i in folder.items)}</t:Value></t:ExtendedProperty>"
        )
    if "folder:UnreadCount" in props:
        unread = sum(1 for i in folder.items if not i.is_read)
        parts.append(f"<t:UnreadCount>{unread}</t:UnreadCount>")
    return f"<t:Folder>{''.join(parts)}</t:Folder>"


def _address(tag: str, address: str, names_only: bool = False) -> str:
    name = f"<t:Name>{escape(address.split('@')[0])}</t:Name>"
    if names_only:
        return f"<t:{tag}>{name}</t:{tag}>"
    return (
        f"<t:{tag}>{name}<t:EmailAddress>{escape(address)}</t:EmailAddress>"
        f"<t:RoutingType>SMTP</t:RoutingType><t:MailboxType>OneOff</t:MailboxType></t:{tag}>"
    )


def _item_xml(item: Item, folder: Folder, props: set[str], names_only: bool = False) -> str:
    """A t:Message with the asked-for properties; FindItem (``names_only``) gives a sender's
    display name without the address, as Exchange does."""
    p = [f'<t:ItemId Id={quoteattr(item.item_id)} ChangeKey="CQAAABYAAAA="/>']
    if "item:ParentFolderId" in props:
        p.append(f'<t:ParentFolderId Id={quoteattr(folder.folder_id)} ChangeKey="AQAAAA=="/>')
    if "item:DateTimeReceived" in props:
        p.append(f"<t:DateTimeReceived>{_ts(item.received)}</t:DateTimeReceived>")
    if "item:Size" in props:
        p.append(f"<t:Size>{item.size}</t:Size>")
    if "item:DateTimeSent" in props and item.sent is not None:
        p.append(f"<t:DateTimeSent>{_ts(item.sent)}</t:DateTimeSent>")
    if "message:ToRecipients" in props and item.to:
        p.append(
            f"<t:ToRecipients>{''.join(_address('Mailbox', a) for a in item.to)}</t:ToRecipients>"
        )
    if "message:CcRecipients" in props and item.cc:
        p.append(
            f"<t:CcRecipients>{''.join(_address('Mailbox', a) for a in item.cc)}</t:CcRecipients>"
        )
    if "message:From" in props and item.sender:
        p.append(f"<t:From>{_address('Mailbox', item.sender, names_only)}</t:From>")
    if "message:InternetMessageId" in props and item.message_id:
        p.append(f"<t:InternetMessageId>{escape(item.message_id)}</t:InternetMessageId>")
    if "message:IsRead" in props:
        p.append(f"<t:IsRead>{'true' if item.is_read else 'false'}</t:IsRead>")
    return f"<t:Message>{''.join(p)}</t:Message>"


def _rule_xml(priority: int, rule: Rule) -> str:
    def addresses(tag: str, values: list[str]) -> str:
        if not values:
            return ""
        return f"<t:{tag}>{''.join(_address('Address', a) for a in values)}</t:{tag}>"

    conditions = (
        f"<t:Conditions>{addresses('FromAddresses', rule.from_addresses)}</t:Conditions>"
        if rule.from_addresses
        else "<t:Conditions/>"
    )
    actions = (
        addresses("ForwardAsAttachmentToRecipients", rule.forward_as_attachment)
        + addresses("ForwardToRecipients", rule.forward)
        + addresses("RedirectToRecipients", rule.redirect)
    )
    return (
        f"<t:Rule><t:RuleId>{_b64id(rule.name)[:16]}</t:RuleId>"
        f"<t:DisplayName>{escape(rule.name)}</t:DisplayName><t:Priority>{priority}</t:Priority>"
        f"<t:IsEnabled>{'true' if rule.enabled else 'false'}</t:IsEnabled>"
        f"{conditions}<t:Exceptions/><t:Actions>{actions}</t:Actions></t:Rule>"
    )


_CMP = {
    "IsEqualTo": lambda a, b: a == b,
    "IsNotEqualTo": lambda a, b: a != b,
    "IsGreaterThan": lambda a, b: a > b,
    "IsGreaterThanOrEqualTo": lambda a, b: a >= b,
    "IsLessThan": lambda a, b: a < b,
    "IsLessThanOrEqualTo": lambda a, b: a <= b,
}
_FIELDS = {"item:DateTimeReceived": "received", "item:DateTimeSent": "sent"}


def _matches(node: ET.Element, item: Item) -> bool:
    """Evaluate a Restriction node (the subset the collector's queries use; else refuse)."""
    tag = node.tag.split("}")[-1]
    if tag == "And":
        return all(_matches(n, item) for n in node)
    if tag == "Or":
        return any(_matches(n, item) for n in node)
    if tag == "Not":
        return not _matches(node[0], item)
    if tag in _CMP:
        uri = node.find(_q(T, "FieldURI"))
        const = node.find(f"{{{T}}}FieldURIOrConstant/{{{T}}}Constant")
        if uri is None or const is None or uri.get("FieldURI") not in _FIELDS:
            raise ValueError(f"restriction not served: {ET.tostring(node)!r}")
        value = getattr(item, _FIELDS[uri.get("FieldURI", "")])
        if value is None:
            return False
        bound = datetime.fromisoformat(const.get("Value", "").replace("Z", "+00:00"))
        return bool(_CMP[tag](value, bound))
    raise ValueError(f"restriction not served: {tag}")
