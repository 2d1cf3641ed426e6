"""A local Exchange Web Services endpoint for the tests (never part of the product).

No open-source EWS server installs here, so this answers the SOAP shapes Exchange 2016
answers, over an in-memory set of mailboxes, on 127.0.0.1. Each behaviour names its source
(a Microsoft documentation page, or the EWS schema vendored in ``devkit/ews_schema/``):

- ``GetFolder`` (distinguished or real folder ids, the requested properties only, the
  message-size extended property 0x0E08 as a Long);
- ``FindFolder`` (Shallow / Deep traversal, ``IndexedPageFolderView`` paging, ``t:Folder``
  / ``t:CalendarFolder`` / ``t:ContactsFolder`` / ``t:TasksFolder`` by folder class);
- ``FindItem`` (``IndexedPageItemView`` paging, the ``Restriction`` evaluated, one response
  message per parent folder, complex properties refused, and EWSFindCountLimit: a search
  with a restriction returns at most 250 items a request, a partial set with
  ``IncludesLastItemInRange="false"``);
- ``SyncFolderItems`` (an opaque SyncState per folder standing for what was reported;
  Create / Update / Delete / ReadFlagChange since then; ``MaxChangesReturned`` 1..512;
  ``ErrorInvalidSyncStateData`` for a state it no longer knows, see :meth:`expire_sync`);
- ``GetItem`` (recipients), ``GetInboxRules``, ``ResolveNames`` (aliases to the primary
  SMTP address);
- ``ServerVersionInfo`` in every response header;
- Basic authentication, or NTLM through pyspnego's server side (connection-bound, like IIS);
- the ``ExchangeImpersonation`` header checked against the service account's rights, and
  against the mailbox's primary SMTP address (an alias is not accepted);
- every request's SOAP Body element validated against Microsoft's schema (a request that
  fails gets ``ErrorSchemaValidation``), and every response too (a response that fails is
  a bug here: it is recorded and :meth:`EwsEndpoint.stop` raises);
- injectable faults: ``ErrorServerBusy`` with ``BackOffMilliseconds``,
  ``ErrorExceededConnectionCount``, ``ErrorExceededFindCountLimit``, HTTP 401 / 503, slow
  replies.

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
from dataclasses import dataclass, field, replace
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
SCHEMA_DIR = Path(__file__).resolve().parent / "ews_schema"

# Properties FindItem will not return (MS docs, "FindItem operation": use GetItem).
COMPLEX = {"message:ToRecipients", "message:CcRecipients", "message:BccRecipients", "item:Body"}
# A new mailbox's folders: key (the distinguished id), display name, folder class, parent.
# The distinguished ids are t:DistinguishedFolderIdNameType's (types.xsd); the classes are
# Outlook's (https://learn.microsoft.com/en-us/exchange/client-developer/exchange-web-services/folders-and-items-in-ews-in-exchange).
WELL_KNOWN = {
    "msgfolderroot": ("Top of Information Store", "IPF.Note", None),
    "inbox": ("Inbox", "IPF.Note", "msgfolderroot"),
    "sentitems": ("Sent Items", "IPF.Note", "msgfolderroot"),
    "drafts": ("Drafts", "IPF.Note", "msgfolderroot"),
    "deleteditems": ("Deleted Items", "IPF.Note", "msgfolderroot"),
    "junkemail": ("Junk Email", "IPF.Note", "msgfolderroot"),
    "calendar": ("Calendar", "IPF.Appointment", "msgfolderroot"),
    "contacts": ("Contacts", "IPF.Contact", "msgfolderroot"),
    "tasks": ("Tasks", "IPF.Task", "msgfolderroot"),
}
# FindFolder's element per folder class (types.xsd, t:ArrayOfFoldersType's choice).
FOLDER_ELEMENT = {
    "IPF.Appointment": "CalendarFolder",
    "IPF.Contact": "ContactsFolder",
    "IPF.Task": "TasksFolder",
}
# EWSFindCountLimit, Exchange 2013 and later: "the EWSFindCountLimit for AQS search and any
# Exchange search with a restriction is 250 results. An Exchange search without a
# restriction will return up to 1000 results"; with paging "EWS may return a partial result
# set instead of an error ... If the value of the IncludesLastItemInRange element is false,
# the application should make another FindItem ... request with the new offset"
# (https://learn.microsoft.com/en-us/exchange/client-developer/exchange-web-services/ews-throttling-in-exchange).
# Charged per request: "Every item ... that EWS processes for the current FindItem request is
# counted against the budget" (https://learn.microsoft.com/en-us/archive/blogs/exchangedev/throttling-policies-and-the-ewsfindcountlimit).
FIND_LIMIT_RESTRICTED = 250
FIND_LIMIT = 1000
# MaxChangesReturned "must be between 1 and 512, inclusive" (t:MaxSyncChangesReturnedType;
# https://learn.microsoft.com/en-us/exchange/client-developer/web-service-reference/maxchangesreturned).
MAX_SYNC_CHANGES = 512


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
    version: int = 0  # the ChangeKey's counter: bumped by any change but the read flag


@dataclass
class Folder:
    folder_id: str
    distinguished: str  # the key in Mailbox.folders (a distinguished id, or a made-up key)
    display_name: str
    items: list[Item] = field(default_factory=list)
    folder_class: str | None = "IPF.Note"
    parent: str | None = "msgfolderroot"  # the parent's key


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
    aliases: set[str] = field(default_factory=set)  # proxy addresses (smtp:...)

    def add(self, distinguished: str, item: Item) -> Item:
        folder = self.folders[distinguished]
        self.added += 1
        item.item_id = _b64id(f"{self.address}/{distinguished}/{self.added}")
        folder.items.append(item)
        self.index[item.item_id] = (item, folder)
        return item

    def subfolder(
        self, parent: str, name: str, key: str | None = None, folder_class: str | None = "IPF.Note"
    ) -> Folder:
        """A folder made under ``parent`` (a key of :attr:`folders`); its key defaults to
        ``parent/name``."""
        key = key or f"{parent}/{name}"
        self.folders[key] = Folder(
            _b64id(f"{self.address}/{key}"), key, name, folder_class=folder_class, parent=parent
        )
        return self.folders[key]

    def path(self, key: str) -> str:
        """The folder's display names from below the message-folder root, joined by "/"."""
        names = []
        folder: Folder | None = self.folders[key]
        while folder is not None and folder.distinguished != "msgfolderroot":
            names.append(folder.display_name)
            folder = self.folders.get(folder.parent or "")
        return "/".join(reversed(names))

    def move(self, item: Item, destination: str) -> Item:
        """MoveItem: "An item is actually copied, and a new ID is generated, and then the
        original item is deleted" (https://learn.microsoft.com/en-us/exchange/client-developer/exchange-web-services/ews-identifiers-in-exchange).
        DateTimeReceived stays the item's own."""
        _, source = self.index.pop(item.item_id)
        source.items.remove(item)
        return self.add(destination, replace(item, item_id="", version=0))

    def delete(self, item: Item) -> None:
        _, source = self.index.pop(item.item_id)
        source.items.remove(item)

    def mark_read(self, item: Item, read: bool = True) -> None:
        item.is_read = read  # reported by SyncFolderItems as a ReadFlagChange

    def touch(self, item: Item) -> None:
        item.version += 1  # any other change: a new ChangeKey, reported as an Update

    def recreate(self, distinguished: str) -> None:
        """The folder deleted and made again: a new folder id, no items."""
        old = self.folders[distinguished]
        for item in old.items:
            del self.index[item.item_id]
        self.folders[distinguished] = Folder(
            _b64id(f"{old.folder_id}/again"),
            distinguished,
            old.display_name,
            folder_class=old.folder_class,
            parent=old.parent,
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
    items: int = 0  # items returned (FindItem / GetItem), changes (SyncFolderItems)
    fault: str | None = None
    sync_state: str | None = None  # the SyncState a SyncFolderItems call sent


@dataclass
class Fault:
    """One injected failure: ``kind`` is busy | connections | findcount | 401 | 503 | slow."""

    kind: str
    times: int = 1
    service: str | None = None
    mailbox: str | None = None
    back_off_ms: int = 500
    delay: float = 0.0


@dataclass
class _SyncState:
    """What a SyncState stands for: the item ids reported so far and their state."""

    mailbox: str
    folder_id: str
    seen: dict[str, tuple[int, bool]]  # item id -> (version, is_read)


def _b64id(text: str) -> str:
    return base64.b64encode(b"\x00\x00\x00\x2e" + hashlib.sha256(text.encode()).digest()).decode()


def _q(ns: str, tag: str) -> str:
    return f"{{{ns}}}{tag}"


def _ts(value: datetime) -> str:
    """xs:dateTime (types.xsd: DateTimeReceived, DateTimeSent) in UTC; the fraction of a
    second is kept, as Exchange keeps it (delivery times have sub-second precision: measured,
    ../shared/docs/FIELD-NOTES.md; xs:dateTime allows the fraction, types.xsd)."""
    value = value.astimezone(UTC)
    frac = f".{value.microsecond // 1000:03d}" if value.microsecond else ""
    return value.strftime("%Y-%m-%dT%H:%M:%S") + frac + "Z"


_SCHEMA: Any = None
_SCHEMA_LOCK = threading.Lock()


def schema() -> Any:
    """Microsoft's messages.xsd + types.xsd (devkit/ews_schema/SOURCE.md), compiled once."""
    global _SCHEMA
    with _SCHEMA_LOCK:
        if _SCHEMA is None:
            from lxml import etree

            _SCHEMA = etree.XMLSchema(etree.parse(str(SCHEMA_DIR / "ews_all.xsd")))
        return _SCHEMA


def schema_errors(element: Any) -> list[str]:
    """Why an lxml element is not valid against the EWS schema ([] when it is)."""
    s = schema()
    with _SCHEMA_LOCK:  # an XMLSchema's error log is per object, not per thread
        if s.validate(element):
            return []
        return [f"line {e.line}: {e.message}" for e in s.error_log]


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
        validate: bool = True,
    ) -> None:
        if auth not in ("basic", "ntlm"):
            raise ValueError(auth)
        self.users = users
        self.auth = auth
        self.impersonators = impersonators or {}
        self.owners = owners or {}
        self.validate = validate
        self.mailboxes: dict[str, Mailbox] = {}
        self.calls: list[Call] = []
        self.refused = 0  # requests whose credentials were wrong (answered 401)
        self.faults: list[Fault] = []
        self.lock = threading.Lock()
        self.active = 0
        self.max_active = 0
        self.bad_responses: list[str] = []  # responses of ours the schema refused
        self.sync_states: dict[str, _SyncState] = {}
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
        if validate:
            schema()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    # -- set-up -----------------------------------------------------------------------------
    def mailbox(self, address: str) -> Mailbox:
        address = address.lower()
        if address not in self.mailboxes:
            self.mailboxes[address] = Mailbox(
                address,
                {
                    d: Folder(_b64id(f"{address}/{d}"), d, n, folder_class=c, parent=p)
                    for d, (n, c, p) in WELL_KNOWN.items()
                },
            )
        return self.mailboxes[address]

    def alias(self, alias: str, primary: str) -> None:
        """A proxy address of a mailbox (it receives mail; EWS identifies the mailbox only
        by its primary SMTP address)."""
        self.mailbox(primary).aliases.add(alias.lower())

    def primary(self, address: str) -> Mailbox | None:
        """The mailbox an address (primary or alias) belongs to."""
        address = address.lower()
        if address in self.mailboxes:
            return self.mailboxes[address]
        return next((m for m in self.mailboxes.values() if address in m.aliases), None)

    def expire_sync(self, address: str, key: str | None = None) -> int:
        """Forget the SyncStates given out for a mailbox's folder (all folders when ``key`` is
        None), as a server does when a state is too old or corrupt: the next SyncFolderItems
        with one is answered ErrorInvalidSyncStateData. Returns how many were forgotten."""
        mbx = self.mailbox(address)
        ids = {mbx.folders[key].folder_id} if key else {f.folder_id for f in mbx.folders.values()}
        with self.lock:
            gone = [
                s
                for s, st in self.sync_states.items()
                if st.mailbox == mbx.address and st.folder_id in ids
            ]
            for s in gone:
                del self.sync_states[s]
        return len(gone)

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
        if self.bad_responses:
            raise AssertionError(
                "the endpoint answered outside the EWS schema:\n" + "\n".join(self.bad_responses)
            )

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
        body = envelope.find(_q(SOAP, "Body"))
        if body is None or not len(body):
            return 500, _fault("ErrorSchemaValidation", "The request has no SOAP body.")
        request = body[0]
        if call.service == "ResolveNames":
            # A directory lookup ("ResolveNames operation" searches the Active Directory /
            # GAL: https://learn.microsoft.com/en-us/exchange/client-developer/web-service-reference/resolvenames-operation):
            # asked without impersonation, it needs no mailbox of the caller's own.
            return 200, self._ResolveNames(call, request)
        target = call.impersonated
        if target is not None and target not in self.mailboxes:
            # "Exchange Web Services requires that mailboxes be identified by the primary SMTP
            # address of the mailbox. Proxy or alternative addresses are not accepted."
            # (https://learn.microsoft.com/en-us/exchange/client-developer/web-service-reference/primarysmtpaddress).
            # Which code an alias gets is not documented; this is the code and text EWS gives
            # an address with no mailbox (https://github.com/microsoft/CSS-Exchange/issues/1573).
            call.fault = "ErrorNonExistentMailbox"
            return 500, _fault(
                "ErrorNonExistentMailbox", "The SMTP address has no mailbox associated with it."
            )
        if target is not None:
            allowed = self.impersonators.get(user, set())
            # "must have the ms-Exch-EPI-May-Impersonate right" (https://learn.microsoft.com/en-us/exchange/client-developer/web-service-reference/
            # exchangeimpersonation); the code is in messages.xsd's ResponseCodeType
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
        handler = getattr(self, f"_{call.service}", None)
        if handler is None:  # a limit of this endpoint (an operation it does not serve)
            return 500, _fault("ErrorInvalidRequest", f"{call.service} is not served here.")
        return 200, handler(call, mbx, request)

    def _folder(self, mbx: Mailbox, ref: ET.Element) -> Folder | None:
        if ref.tag == _q(T, "DistinguishedFolderId"):
            owner = ref.findtext(f"{{{T}}}Mailbox/{{{T}}}EmailAddress")
            # A guard of this endpoint, not Exchange behaviour (the connector always names
            # the impersonated mailbox itself): another mailbox's folder is not served.
            if owner is not None and owner.lower() != mbx.address:
                return None
            return mbx.folders.get(ref.get("Id", ""))
        wanted = ref.get("Id")
        return next((f for f in mbx.folders.values() if f.folder_id == wanted), None)

    def _GetFolder(self, call: Call, mbx: Mailbox, request: ET.Element) -> str:
        # https://learn.microsoft.com/en-us/exchange/client-developer/web-service-reference/getfolder-operation: one response message per folder id, ErrorFolderNotFound
        # for an id (or distinguished id) the mailbox does not have
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
                f"<m:Folders>{_folder_xml(mbx, folder, props)}</m:Folders>"
                "</m:GetFolderResponseMessage>"
            )
        return _response("GetFolder", "".join(parts))

    def _FindFolder(self, call: Call, mbx: Mailbox, request: ET.Element) -> str:
        """FindFolder (https://learn.microsoft.com/en-us/exchange/client-developer/web-service-reference/findfolder-operation):
        ``Traversal="Shallow"`` the direct children, ``"Deep"`` every descendant; paged by
        IndexedPageFolderView as FindItem is (RootFolder's IndexedPagingOffset,
        TotalItemsInView, IncludesLastItemInRange)."""
        props = _requested(request.find(_q(M, "FolderShape")))
        deep = request.get("Traversal") == "Deep"
        view = request.find(_q(M, "IndexedPageFolderView"))
        # "The default policy in Exchange limits the page size to 1000 items" (throttling page)
        size = FIND_LIMIT
        if view is not None:
            size = min(int(view.get("MaxEntriesReturned", str(FIND_LIMIT))), FIND_LIMIT)
        offset = int(view.get("Offset", "0")) if view is not None else 0
        call.page_size, call.offset = size, offset
        refs = list(request.find(_q(M, "ParentFolderIds")) or [])
        call.folders = tuple(r.get("Id", "") for r in refs)
        parts = []
        for ref in refs:
            parent = self._folder(mbx, ref)
            if parent is None:
                parts.append(
                    _error_message(
                        "FindFolder",
                        "ErrorFolderNotFound",
                        "The specified folder could not be found.",
                    )
                )
                continue
            found = _descendants(mbx, parent.distinguished, deep)
            page = found[offset : offset + size]
            call.items += len(page)
            end = offset + len(page)
            last = "true" if end >= len(found) else "false"
            parts.append(
                '<m:FindFolderResponseMessage ResponseClass="Success">'
                "<m:ResponseCode>NoError</m:ResponseCode>"
                f'<m:RootFolder IndexedPagingOffset="{end}" TotalItemsInView="{len(found)}" '
                f'IncludesLastItemInRange="{last}"><t:Folders>'
                + "".join(_folder_xml(mbx, f, props) for f in page)
                + "</t:Folders></m:RootFolder></m:FindFolderResponseMessage>"
            )
        return _response("FindFolder", "".join(parts))

    def _FindItem(self, call: Call, mbx: Mailbox, request: ET.Element) -> str:
        props = _requested(request.find(_q(M, "ItemShape")))
        view = request.find(_q(M, "IndexedPageItemView"))
        if view is None:
            raise ValueError("only IndexedPageItemView is served")
        size = int(view.get("MaxEntriesReturned", "1000"))
        offset = int(view.get("Offset", "0"))
        call.page_size, call.offset = size, offset
        restriction = request.find(_q(M, "Restriction"))
        # EWSFindCountLimit (see FIND_LIMIT_RESTRICTED): one budget for the whole request.
        budget = FIND_LIMIT_RESTRICTED if restriction is not None else FIND_LIMIT
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
            # Restriction semantics: web-service-reference/restriction. The order without a
            # SortOrder is not documented: ascending DateTimeReceived here (only the frozen
            # release connector uses FindItem; today's reads with SyncFolderItems).
            matching = sorted(
                (i for i in folder.items if restriction is None or _matches(restriction[0], i)),
                key=lambda i: (i.received, i.item_id),
            )
            page = matching[offset : offset + min(size, budget)]
            budget -= len(page)
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

    def _SyncFolderItems(self, call: Call, mbx: Mailbox, request: ET.Element) -> str:
        """SyncFolderItems (https://learn.microsoft.com/en-us/exchange/client-developer/web-service-reference/syncfolderitems-operation;
        https://learn.microsoft.com/en-us/exchange/client-developer/exchange-web-services/how-to-synchronize-items-by-using-ews-in-exchange):
        the changes since the SyncState sent (every item, as Create, without one), at most
        MaxChangesReturned of them, a new SyncState and IncludesLastItemInRange. A state this
        server does not know is ErrorInvalidSyncStateData, a folder it does not know
        ErrorSyncFolderNotFound (https://learn.microsoft.com/en-us/exchange/client-developer/exchange-web-services/handling-synchronization-related-errors-in-ews-in-exchange)."""
        props = _requested(request.find(_q(M, "ItemShape")))
        ref = request.find(_q(M, "SyncFolderId"))
        folder = self._folder(mbx, ref[0]) if ref is not None and len(ref) else None
        given = request.findtext(_q(M, "SyncState")) or None
        # required (minOccurs="1" in messages.xsd's SyncFolderItemsType): no default here
        limit = int(request.findtext(_q(M, "MaxChangesReturned")) or 0)
        call.sync_state = given
        call.folders = (ref[0].get("Id", ""),) if ref is not None and len(ref) else ()
        if folder is None:
            return _response(
                "SyncFolderItems",
                _error_message(
                    "SyncFolderItems",
                    "ErrorSyncFolderNotFound",
                    "The specified folder could not be found.",
                ),
            )
        with self.lock:
            known = self.sync_states.get(given) if given else None
        if given and (known is None or known.folder_id != folder.folder_id):
            call.fault = "ErrorInvalidSyncStateData"
            return _response(
                "SyncFolderItems",
                _error_message(
                    "SyncFolderItems",
                    "ErrorInvalidSyncStateData",
                    "Synchronization state data is corrupt or otherwise invalid.",
                ),
            )
        seen = dict(known.seen) if known else {}
        changes: list[str] = []
        now = {i.item_id: i for i in folder.items}
        for item in folder.items:
            if len(changes) >= limit:
                break
            before = seen.get(item.item_id)
            if before is None:
                changes.append(f"<t:Create>{_item_xml(item, folder, props)}</t:Create>")
            elif (
                before[0] != item.version
            ):  # https://learn.microsoft.com/en-us/exchange/client-developer/web-service-reference/update-items
                changes.append(f"<t:Update>{_item_xml(item, folder, props)}</t:Update>")
            # "returned in SyncFolderItems operation responses when an item has been read"
            # (https://learn.microsoft.com/en-us/exchange/client-developer/web-service-reference/readflagchange). Whether a read also changes the ChangeKey is not
            # documented; here it does not, so a read is a ReadFlagChange, not an Update.
            elif before[1] != item.is_read:
                changes.append(
                    f"<t:ReadFlagChange>{_item_id_xml(item)}"
                    f"<t:IsRead>{'true' if item.is_read else 'false'}</t:IsRead></t:ReadFlagChange>"
                )
            else:
                continue
            seen[item.item_id] = (item.version, item.is_read)
        for item_id in list(
            seen
        ):  # https://learn.microsoft.com/en-us/exchange/client-developer/web-service-reference/delete-items (ItemId only)
            if len(changes) >= limit:
                break
            if item_id not in now:
                changes.append(
                    f'<t:Delete><t:ItemId Id={quoteattr(item_id)} ChangeKey="CQAAAA=="/></t:Delete>'
                )
                del seen[item_id]
        pending = any(seen.get(i.item_id) != (i.version, i.is_read) for i in folder.items) or any(
            i not in now for i in seen
        )
        state = base64.b64encode(os.urandom(24)).decode()
        with self.lock:
            self.sync_states[state] = _SyncState(mbx.address, folder.folder_id, seen)
        call.items = len(changes)
        return _response(
            "SyncFolderItems",
            '<m:SyncFolderItemsResponseMessage ResponseClass="Success">'
            "<m:ResponseCode>NoError</m:ResponseCode>"
            f"<m:SyncState>{state}</m:SyncState>"
            f"<m:IncludesLastItemInRange>{'false' if pending else 'true'}</m:IncludesLastItemInRange>"
            f"<m:Changes>{''.join(changes)}</m:Changes></m:SyncFolderItemsResponseMessage>",
        )

    def _GetItem(self, call: Call, mbx: Mailbox, request: ET.Element) -> str:
        # https://learn.microsoft.com/en-us/exchange/client-developer/web-service-reference/getitem-operation-email-message; ErrorItemNotFound per missing id
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

    def _ResolveNames(self, call: Call, request: ET.Element) -> str:
        """ResolveNames of an SMTP address: the mailbox with its primary address, or
        ErrorNameResolutionNoResults (https://learn.microsoft.com/en-us/exchange/client-developer/web-service-reference/resolvenames-operation).
        "If you don't specify a routing type, ResolveNames will default to the routing
        type of smtp, match it to a primary smtp address property, and not search the
        multivalue array" (same page): proxy addresses are searched only for "smtp:…"."""
        asked = (request.findtext(_q(M, "UnresolvedEntry")) or "").strip()
        routed = asked.lower().startswith("smtp:")
        address = asked.lower().removeprefix("smtp:")
        mbx = self.primary(address) if routed else self.mailboxes.get(address)
        if mbx is None:
            call.fault = "ErrorNameResolutionNoResults"
            return _response(
                "ResolveNames",
                _error_message(
                    "ResolveNames",
                    "ErrorNameResolutionNoResults",
                    "No results were found.",
                ),
            )
        call.items = 1
        return _response(
            "ResolveNames",
            '<m:ResolveNamesResponseMessage ResponseClass="Success">'
            "<m:ResponseCode>NoError</m:ResponseCode>"
            '<m:ResolutionSet TotalItemsInView="1" IncludesLastItemInRange="true">'
            f"<t:Resolution>{_address('Mailbox', mbx.address, mailbox_type='Mailbox')}</t:Resolution>"
            "</m:ResolutionSet></m:ResolveNamesResponseMessage>",
        )

    def _GetInboxRules(self, call: Call, mbx: Mailbox, request: ET.Element) -> str:
        # https://learn.microsoft.com/en-us/exchange/client-developer/web-service-reference/getinboxrules-operation
        asked = (request.findtext(_q(M, "MailboxSmtpAddress")) or "").lower()
        # A guard of this endpoint (the connector asks the impersonated mailbox's own
        # rules); the code is in messages.xsd's ResponseCodeType, the case not documented.
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


def _descendants(mbx: Mailbox, key: str, deep: bool) -> list[Folder]:
    """A folder's children (and, deep, theirs), parents before children (the order of a
    Deep FindFolder is not documented; the connector builds paths from ParentFolderId
    whatever the order)."""
    out = []
    for f in mbx.folders.values():
        if f.parent == key:
            out.append(f)
            if deep:
                out.extend(_descendants(mbx, f.distinguished, deep))
    return out


# -- the HTTP side ------------------------------------------------------------------------------
def _handler(ep: EwsEndpoint) -> type[BaseHTTPRequestHandler]:
    import spnego
    import spnego.exceptions

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
                except (ValueError, spnego.exceptions.SpnegoError):
                    # not base64 (binascii.Error is a ValueError), or a token the NTLM
                    # server refuses (a wrong password fails the AUTHENTICATE message's MIC)
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
                # Not XML at all: a request outside the schema, answered as below with
                # ErrorSchemaValidation (responsecode; the former bare 400 had no source)
                self._send(
                    500, _fault("ErrorSchemaValidation", "The request failed schema validation.")
                )
                return
            invalid = _invalid_body(raw) if ep.validate else []
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
                if invalid:
                    # A request outside the schema: Exchange answers ErrorSchemaValidation
                    # ("The request failed schema validation", ResponseCodeType in
                    # messages.xsd; https://learn.microsoft.com/en-us/exchange/client-developer/web-service-reference/responsecode).
                    call.status, call.fault = 500, "ErrorSchemaValidation"
                    self._send(
                        500,
                        _fault(
                            "ErrorSchemaValidation",
                            "The request failed schema validation: " + "; ".join(invalid[:3]),
                        ),
                    )
                    return
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
                # 503: "EWS requests are queuing with IIS" (https://learn.microsoft.com/en-us/exchange/client-developer/exchange-web-services/ews-throttling-in-exchange, Table 4);
                # 401: the challenge of the scheme this endpoint speaks
                elif fault.kind in ("401", "503"):
                    call.status = int(fault.kind)
                    scheme = "NTLM" if ep.auth == "ntlm" else 'Basic realm="127.0.0.1"'
                    extra = {"WWW-Authenticate": scheme} if fault.kind == "401" else {}
                    self._send(call.status, "", extra)
                    return
                # "HTTP 500 ... ErrorServerBusy ... may contain a back off hint called
                # BackOffMilliseconds" (https://learn.microsoft.com/en-us/exchange/client-developer/exchange-web-services/ews-throttling-in-exchange, Tables 3 and 4)
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
                # ErrorExceededConnectionCount: EWSMaxConcurrency, "more concurrent requests
                # ... than are allowed" (https://learn.microsoft.com/en-us/exchange/client-developer/exchange-web-services/ews-throttling-in-exchange, Table 3); the text as observed
                # (OfficeDev/ews-managed-api issue 293)
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
                elif fault.kind == "findcount":
                    # "ErrorExceededFindCountLimit | EWSFindCountLimit | Indicates that a search
                    # operation call has exceeded the total number of items that can be
                    # returned" (ews-throttling-in-exchange, Table 3): one error message for
                    # each parent folder of the request.
                    refs = envelope.find(
                        f"{{{SOAP}}}Body/{{{M}}}{call.service}/{{{M}}}ParentFolderIds"
                    )
                    n = len(refs) if refs is not None else 1
                    text = _response(
                        call.service,
                        _error_message(
                            call.service,
                            "ErrorExceededFindCountLimit",
                            "You have exceeded the maximum number of objects that can be returned "
                            "for the find operation. Use paging to reduce the result size and try "
                            "your request again.",
                        )
                        * n,
                    )
                    self._send(200, text)
                    return
            status, text = ep.answer(call, user, envelope)
            if ep.validate and status == 200:
                wrong = _invalid_body(text.encode())
                if wrong:  # a bug of this fake: recorded, and raised by EwsEndpoint.stop()
                    ep.bad_responses.append(f"{call.service}: {'; '.join(wrong[:3])}")
                    status, text = 500, _fault("ErrorInternalServerError", "; ".join(wrong[:3]))
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


def _invalid_body(raw: bytes) -> list[str]:
    """Schema errors of a SOAP message's Body element (a SOAP Fault is not checked: its
    detail is SOAP's, not EWS's schema)."""
    from lxml import etree

    try:
        root = etree.fromstring(raw)
    except etree.XMLSyntaxError as exc:
        return [f"not XML: {exc}"]
    body = root.find(f"{{{SOAP}}}Body")
    if body is None or not len(body):
        return ["no SOAP Body element"]
    if body[0].tag == f"{{{SOAP}}}Fault":
        return []
    return schema_errors(body[0])


def _folder_xml(mbx: Mailbox, folder: Folder, props: set[str]) -> str:
    """A folder with the asked-for properties, in t:FolderType's order (types.xsd);
    calendar, contacts and tasks folders as their own elements. The classes are prefixes
    ("IPF.Contact.Contoso ... is treated as a Contacts folder", folders-and-items-in-ews-in-
    exchange, Table 1). UnreadCount is in t:FolderType, which TasksFolderType extends; the
    calendar and contacts types extend t:BaseFolderType, which has none (types.xsd)."""
    cls = folder.folder_class or ""
    tag = next(
        (
            el
            for prefix, el in FOLDER_ELEMENT.items()
            if cls == prefix or cls.startswith(prefix + ".")
        ),
        "Folder",
    )
    parts = [f'<t:FolderId Id={quoteattr(folder.folder_id)} ChangeKey="AQAAABYAAAA="/>']
    parent = mbx.folders.get(folder.parent or "")
    if "folder:ParentFolderId" in props and parent is not None:
        parts.append(f'<t:ParentFolderId Id={quoteattr(parent.folder_id)} ChangeKey="AQAAAA=="/>')
    if "folder:FolderClass" in props and folder.folder_class is not None:
        parts.append(f"<t:FolderClass>{escape(folder.folder_class)}</t:FolderClass>")
    if "folder:DisplayName" in props:
        parts.append(f"<t:DisplayName>{escape(folder.display_name)}</t:DisplayName>")
    if "folder:TotalCount" in props:
        parts.append(f"<t:TotalCount>{len(folder.items)}</t:TotalCount>")
    if "folder:ChildFolderCount" in props:
        children = sum(1 for f in mbx.folders.values() if f.parent == folder.distinguished)
        parts.append(f"<t:ChildFolderCount>{children}</t:ChildFolderCount>")
    if "ext:0xe08:Long" in props:
        parts.append(
            '<t:ExtendedProperty><t:ExtendedFieldURI PropertyTag="0xe08" PropertyType="Long"/>'
            f"<t:Value>{sum(i.size for i in folder.items)}</t:Value></t:ExtendedProperty>"
        )
    if "folder:UnreadCount" in props and tag in ("Folder", "TasksFolder"):
        unread = sum(1 for i in folder.items if not i.is_read)
        parts.append(f"<t:UnreadCount>{unread}</t:UnreadCount>")
    return f"<t:{tag}>{''.join(parts)}</t:{tag}>"


def _address(tag: str, address: str, names_only: bool = False, mailbox_type: str = "OneOff") -> str:
    name = f"<t:Name>{escape(address.split('@')[0])}</t:Name>"
    if names_only:
        return f"<t:{tag}>{name}</t:{tag}>"
    return (
        f"<t:{tag}>{name}<t:EmailAddress>{escape(address)}</t:EmailAddress>"
        f"<t:RoutingType>SMTP</t:RoutingType><t:MailboxType>{mailbox_type}</t:MailboxType></t:{tag}>"
    )


def _item_id_xml(item: Item) -> str:
    changekey = base64.b64encode(f"CQAAAB{item.version}".encode()).decode()
    return f'<t:ItemId Id={quoteattr(item.item_id)} ChangeKey="{changekey}"/>'


def _item_xml(item: Item, folder: Folder, props: set[str], names_only: bool = False) -> str:
    """A t:Message with the asked-for properties; FindItem (``names_only``) gives a sender's
    display name without the address, as Exchange does."""
    p = [_item_id_xml(item)]
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
