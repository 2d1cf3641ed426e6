"""Exchange Web Services, read-only, with exchangelib: the same records as IMAP.

    >>> settings = EwsSettings(endpoint="https://mail.danang.gov.vn/EWS/Exchange.asmx",
    ...                        username="DANANG\\\\svc-mailusage")
    >>> source = EwsSource(settings, password_for=lambda m: pw)
    >>> with source.open("an.nv@danang.gov.vn") as session:
    ...     folders = session.folders()

The endpoint, the auth type and the server version are configured, so exchangelib sends no
autodiscover and no version probe. A service account with the ApplicationImpersonation role
acts for every mailbox (or per-user credentials, ``access = "user"``). Per mailbox and night:

    GetFolder      inbox + sentitems in one call: TotalCount, UnreadCount and the size
                   property 0x0E08 (PR_MESSAGE_SIZE_EXTENDED, a 64-bit Long)
    FindItem       both folders in one call, restricted to the night's window by
                   DateTimeReceived, paged with IndexedPageItemView: ids, dates, size, IsRead
    GetItem        From / To / Cc / InternetMessageId for the new items only (FindItem
                   returns names, never addresses), ``get_item_batch`` ids per call
    GetInboxRules  forward / redirect targets (when forwarding is read)

so an unchanged mailbox costs three SOAP calls. The cursor is a date watermark mapped onto
:class:`~connectors.base.FolderCursor`: ``uidvalidity`` is a hash of the folder's EWS id (a
recreated folder is read again), ``last_uid`` the end of the last window in epoch seconds.
The window ends ``settle_seconds`` before now, so a message still in transport, or a clock a
little ahead of the server's, is picked up the next night rather than missed. ``uid`` of a
message is a 63-bit hash of its EWS item id.

Throttling: :class:`FaultTolerance` honours ``BackOffMilliseconds`` (the back-off is shared
by every mailbox on the same endpoint), ErrorExceededConnectionCount shrinks the connection
pool, and the pool is bounded by ``max_connections``. A 401 is a wrong password or a locked
account, not throttling: it fails the mailbox at once instead of being retried for an hour.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar, NamedTuple
from urllib.parse import urlsplit

import requests.adapters
from exchangelib import (
    BASIC,
    DELEGATE,
    IMPERSONATION,
    NTLM,
    Account,
    Build,
    Configuration,
    Credentials,
    EWSDateTime,
    EWSTimeZone,
    FaultTolerance,
    Q,
    Version,
)
from exchangelib import errors as ews_errors
from exchangelib.extended_properties import ExtendedProperty
from exchangelib.fields import FieldPath
from exchangelib.folders import Folder, FolderCollection, Inbox, Root, SentItems
from exchangelib.items import Message as EwsMessage
from exchangelib.properties import DistinguishedFolderId
from exchangelib.properties import Mailbox as EwsMailbox
from exchangelib.protocol import BaseProtocol
from exchangelib.restriction import Restriction
from exchangelib.services import FindItem, GetFolder, GetInboxRules, GetItem
from exchangelib.services.common import shape_element
from exchangelib.util import SOAPNS, TNS, create_element, to_xml

from connectors.base import (
    AuthError,
    CredentialsRejected,
    FolderCursor,
    FolderState,
    Forward,
    MailboxMissing,
    Message,
    Quota,
    SourceError,
    TransientError,
    sent_date,
    smtp_address,
)

AUTH_TYPES = {"ntlm": NTLM, "basic": BASIC}
_UTC = EWSTimeZone("UTC")
ACCESS = ("impersonation", "delegate", "user")


class MessageSize(ExtendedProperty):  # type: ignore[misc]
    """PR_MESSAGE_SIZE_EXTENDED: a folder's total size in bytes, as a 64-bit Long."""

    property_tag = 0x0E08
    property_type = "Long"


_SIZE_FIELD = "mailusage_size"
if _SIZE_FIELD not in {f.name for f in Folder.FIELDS}:
    Folder.register(_SIZE_FIELD, MessageSize)

# (distinguished id, exchangelib class, our folder name, role)
FOLDERS = (("inbox", Inbox, "Inbox", "inbox"), ("sentitems", SentItems, "Sent Items", "sent"))
_FOLDER_FIELDS = ("total_count", "unread_count", _SIZE_FIELD)
# FindItem can return these; addresses it returns as display names only.
_FIND_FIELDS = ("parent_folder_id", "datetime_received", "datetime_sent", "size", "is_read")
_GET_FIELDS = ("author", "to_recipients", "cc_recipients", "message_id")


@dataclass(frozen=True)
class EwsSettings:
    endpoint: str  # https://mail.example.gov.vn/EWS/Exchange.asmx
    username: str | None = None  # the service account, DOMAIN\\user or UPN (not with "user")
    auth: str = "ntlm"  # ntlm | basic
    access: str = "impersonation"  # impersonation | delegate | user (per-user passwords)
    version: str = "15.1.2507.6"  # the server's build: no version probe is sent
    max_connections: int = 4  # the pool per endpoint; Exchange throttles concurrent ones
    page_size: int = 1000  # FindItem IndexedPageItemView MaxEntriesReturned (EWS max 1000)
    get_item_batch: int = 100  # item ids per GetItem call
    timeout: float = 120.0  # seconds per HTTP request
    max_wait: float = 900.0  # give up a mailbox after backing off this long in total
    retry_wait: float = 10.0  # first back-off when the server names none (doubles)
    settle_seconds: int = 900  # the window ends this long before now
    ca_file: str | None = None  # the server's CA, when it is the agency's own


def _stable_int(text: str, bits: int) -> int:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") >> (64 - bits)


def folder_uidvalidity(folder_id: str) -> int:
    """A folder's EWS id as a positive 31-bit number (it changes when a folder is recreated).

    >>> folder_uidvalidity("AAMkAGI2") == folder_uidvalidity("AAMkAGI2")
    True
    """
    return _stable_int(folder_id, 31) or 1


def item_uid(item_id: str) -> int:
    """An item's EWS id as a positive 63-bit number, stable while it stays in its folder."""
    return _stable_int(item_id, 63) or 1


def _version(text: str) -> Version:
    parts = [int(p) for p in text.split(".")]
    if not 2 <= len(parts) <= 4:
        raise ValueError(f"version {text!r}: expected an Exchange build like 15.1.2507.6")
    return Version(build=Build(*parts))


class _CaAdapter(requests.adapters.HTTPAdapter):
    """Verifies an endpoint against its configured CA file (exchangelib's adapter hook)."""

    ca_files: ClassVar[dict[str, str]] = {}

    def send(self, request: Any, *args: Any, **kwargs: Any) -> Any:
        parts = urlsplit(request.url)
        ca = self.ca_files.get(f"{parts.scheme}://{parts.netloc}")
        if ca is not None:
            kwargs["verify"] = ca
        return super().send(request, *args, **kwargs)


class _Patient(FaultTolerance):  # type: ignore[misc]
    """FaultTolerance, except that HTTP 401 is an authentication failure, not throttling."""

    def raise_response_errors(self, response: Any) -> Any:
        if response.status_code == 401:
            raise ews_errors.UnauthorizedError(f"HTTP 401 from {response.url}: login refused")
        return super().raise_response_errors(response)


class _WholeBody:
    """Parse a SOAP reply from its bytes in one go. exchangelib's default feeds lxml from
    ``response.iter_content()``, one byte per chunk: half the collector's time (benchmarks/)."""

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


class _Found(NamedTuple):
    """What FindItem says about an item (ids, dates, size, read state)."""

    id: str
    changekey: str | None
    folder_id: str | None
    received: int | None
    sent: int | None
    size: int
    is_read: bool


class _Addr(NamedTuple):
    email: str | None
    routing: str | None
    name: str | None


class _Detail(NamedTuple):
    """What GetItem adds: the addresses and the Message-ID."""

    author: _Addr | None
    to: list[_Addr]
    cc: list[_Addr]
    message_id: str | None


def _t(tag: str) -> str:
    return f"{{{TNS}}}{tag}"


def _when(text: str | None) -> int | None:
    return (
        None if not text else int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp())
    )


def _addrs(elem: Any) -> list[_Addr]:
    if elem is None:
        return []
    return [
        _Addr(m.findtext(_t("EmailAddress")), m.findtext(_t("RoutingType")), m.findtext(_t("Name")))
        for m in elem.iter(_t("Mailbox"))
    ]


class _FindItem(_WholeBody, FindItem):  # type: ignore[misc]
    """FindItem whose items are read straight from the XML into :class:`_Found`."""

    def _elem_to_obj(self, elem: Any) -> _Found:
        item_id = elem.find(_t("ItemId"))
        parent = elem.find(_t("ParentFolderId"))
        return _Found(
            item_id.get("Id"),
            item_id.get("ChangeKey"),
            parent.get("Id") if parent is not None else None,
            _when(elem.findtext(_t("DateTimeReceived"))),
            _when(elem.findtext(_t("DateTimeSent"))),
            int(elem.findtext(_t("Size")) or 0),
            (elem.findtext(_t("IsRead")) or "").lower() == "true",
        )


class _GetItem(_WholeBody, GetItem):  # type: ignore[misc]
    """GetItem whose items are read straight from the XML into :class:`_Detail`."""

    def get_payload(self, items: Any, additional_fields: Any, shape: str) -> Any:
        """As GetItem's, with the ItemIds written directly (exchangelib builds an ItemId
        object per id, then serialises it: ~85 µs an id, a third of the collector's time)."""
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

    def _elem_to_obj(self, elem: Any) -> _Detail:
        author = _addrs(elem.find(_t("From")))
        return _Detail(
            author[0] if author else None,
            _addrs(elem.find(_t("ToRecipients"))),
            _addrs(elem.find(_t("CcRecipients"))),
            elem.findtext(_t("InternetMessageId")),
        )


class _GetFolder(_WholeBody, GetFolder):  # type: ignore[misc]
    pass


class _GetInboxRules(_WholeBody, GetInboxRules):  # type: ignore[misc]
    pass


_MISSING = (ews_errors.ErrorNonExistentMailbox, ews_errors.ErrorMailboxStoreUnavailable)
_DENIED = (
    ews_errors.UnauthorizedError,
    ews_errors.ErrorImpersonateUserDenied,
    ews_errors.ErrorImpersonationDenied,
    ews_errors.ErrorAccessDenied,
    ews_errors.ErrorInvalidLicense,
)
_TRANSIENT = (
    ews_errors.RateLimitError,
    ews_errors.ErrorServerBusy,
    ews_errors.ErrorTimeoutExpired,
    ews_errors.ErrorExceededConnectionCount,
    ews_errors.ErrorInternalServerTransientError,
    ews_errors.ErrorTooManyObjectsOpened,
    ews_errors.TransportError,
    requests.exceptions.ConnectionError,
    requests.exceptions.Timeout,
)


def translate(exc: Exception, mailbox: str) -> SourceError:
    """An exchangelib / requests failure as the collector's kind of error."""
    text = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, _MISSING):
        return MailboxMissing(f"Exchange has no mailbox {mailbox} ({text})")
    if isinstance(exc, _DENIED):
        return AuthError(f"Exchange refused access to {mailbox} ({text})")
    if isinstance(exc, _TRANSIENT):
        return TransientError(f"Exchange did not answer for {mailbox} in time ({text})")
    return SourceError(f"Exchange error for {mailbox} ({text})")


@contextmanager
def _errors(mailbox: str) -> Iterator[None]:
    try:
        yield
    except SourceError:
        raise
    except (ews_errors.EWSError, requests.exceptions.RequestException) as exc:
        raise translate(exc, mailbox) from exc


def _address(mbx: _Addr | None) -> tuple[str | None, bool]:
    """(lower-cased SMTP address, invalid?) of an EWS Mailbox element."""
    if mbx is None:
        return None, False
    return smtp_address(mbx.email, mbx.name, mbx.routing)


class EwsSession:
    """One mailbox through one exchangelib Account (no network until a method is called)."""

    def __init__(self, account: Account, mailbox: str, settings: EwsSettings, window_end: int):
        self.account = account
        self.mailbox = mailbox
        self.settings = settings
        self.window_end = window_end
        self._folders: dict[str, Any] = {}
        self.unreadable: Counter[str] = Counter()  # every FindItem item is read

    def folders(self) -> list[FolderState]:
        root = Root(account=self.account)
        wanted = [
            cls(
                root=root,
                _distinguished_id=DistinguishedFolderId(
                    id=dist, mailbox=EwsMailbox(email_address=self.mailbox)
                ),
            )
            for dist, cls, _, _ in FOLDERS
        ]
        names = (*_FOLDER_FIELDS, *FolderCollection.REQUIRED_FOLDER_FIELDS)
        fields = {FieldPath(field=Folder.get_field_by_fieldname(n)) for n in names}
        with _errors(self.mailbox):
            got = list(
                _GetFolder(account=self.account).call(
                    folders=wanted, additional_fields=fields, shape="IdOnly"
                )
            )
        states = []
        for (_, _, name, role), folder in zip(FOLDERS, got, strict=True):
            if isinstance(folder, ews_errors.ErrorFolderNotFound):
                continue  # recorded by the collector as a missing role (e.g. no Sent folder)
            if isinstance(folder, Exception):
                raise translate(folder, self.mailbox)
            self._folders[name] = folder
            states.append(
                FolderState(
                    name=name,
                    role=role,
                    messages=folder.total_count or 0,
                    unseen=folder.unread_count,
                    uidnext=self.window_end + 1,
                    uidvalidity=folder_uidvalidity(folder.id),
                    highestmodseq=None,
                    size_bytes=getattr(folder, _SIZE_FIELD),
                )
            )
        return states

    def resume(self, start: Mapping[str, FolderCursor]) -> None:
        pass  # the cursor is the date watermark in FolderCursor.last_uid

    def token(self, folder: FolderState) -> str | None:
        return None

    def quota(self) -> Quota:
        return Quota(None, None)  # EWS has no quota: see Get-MailboxStatistics (operator guide)

    def count_changed(self, folder: FolderState, since_modseq: int, up_to_uid: int) -> int | None:
        return None  # EWS has no MODSEQ; read state is in each new message's IsRead

    def messages(self, folder: FolderState, from_uid: int, to_uid: int) -> Iterator[list[Message]]:
        return self.fetch([(folder, from_uid, to_uid)])

    def fetch(self, requests_: Sequence[tuple[FolderState, int, int]]) -> Iterator[list[Message]]:
        """Messages of several folders; folders sharing a window share each FindItem call."""
        windows: dict[tuple[int, int], list[FolderState]] = {}
        for folder, lo, hi in requests_:
            if hi >= lo:
                windows.setdefault((lo, hi), []).append(folder)
        for (lo, hi), folders in windows.items():
            yield from self._window(folders, lo, hi)

    def _window(self, folders: list[FolderState], lo: int, hi: int) -> Iterator[list[Message]]:
        by_id = {self._folders[f.name].id: f for f in folders}
        ews_folders = [self._folders[f.name] for f in folders]
        query = Q(datetime_received__gte=EWSDateTime.fromtimestamp(lo, _UTC)) & Q(
            datetime_received__lte=EWSDateTime.fromtimestamp(hi, _UTC)
        )
        find = {FieldPath(field=EwsMessage.get_field_by_fieldname(n)) for n in _FIND_FIELDS}
        with _errors(self.mailbox):
            found = _FindItem(account=self.account, page_size=self.settings.page_size).call(
                folders=ews_folders,
                additional_fields=find,
                restriction=Restriction(query, folders=ews_folders, applies_to=Restriction.ITEMS),
                order_fields=None,
                shape="IdOnly",
                query_string=None,
                depth="Shallow",
                calendar_view=None,
                max_items=None,
                offset=0,
            )
            batch: list[_Found] = []
            for item in found:
                if isinstance(item, Exception):
                    raise translate(item, self.mailbox)
                batch.append(item)
                if len(batch) >= self.settings.get_item_batch:
                    yield self._complete(batch, by_id)
                    batch = []
            if batch:
                yield self._complete(batch, by_id)

    def _complete(self, stubs: list[_Found], by_id: dict[str, FolderState]) -> list[Message]:
        """One GetItem call for the addresses and Message-ID of a batch of FindItem results."""
        fields = {FieldPath(field=EwsMessage.get_field_by_fieldname(n)) for n in _GET_FIELDS}
        full = _GetItem(account=self.account, chunk_size=len(stubs)).call(
            items=[(st.id, st.changekey) for st in stubs], additional_fields=fields, shape="IdOnly"
        )
        out = []
        for stub, got in zip(stubs, full, strict=True):
            item: _Detail | None
            if isinstance(got, ews_errors.ErrorItemNotFound):
                item = None  # deleted since FindItem: keep what FindItem said, without addresses
            elif isinstance(got, Exception):
                raise translate(got, self.mailbox)
            else:
                item = got
            folder = by_id.get(stub.folder_id or "")
            if folder is None:
                continue
            sender, bad_from = _address(item.author if item else None)
            to = [_address(r) for r in item.to] if item else []
            cc = [_address(r) for r in item.cc] if item else []
            received = stub.received or 0
            sent, date_source = sent_date(stub.sent, received)
            out.append(
                Message(
                    folder=folder.name,
                    uid=item_uid(stub.id),
                    internal_date=received,
                    sent_date=sent,
                    date_source=date_source,
                    size=stub.size,
                    seen=stub.is_read,
                    from_addr=sender,
                    to_addrs=tuple(a for a, _ in to if a),
                    cc_addrs=tuple(a for a, _ in cc if a),
                    message_id=item.message_id if item else None,
                    address_invalid=bad_from or any(b for _, b in to + cc),
                )
            )
        return out

    def raw_message(self, folder: FolderState, uid: int) -> bytes | None:
        return None  # the contact scan reads IMAP bodies only; EWS sources skip it, recorded


class EwsSource:
    """An Exchange server reached through EWS; ``open`` gives a read-only mailbox session."""

    _lock = threading.Lock()

    def __init__(
        self,
        settings: EwsSettings,
        password_for: Callable[[str | None], str],
        name: str = "exchange",
        kind: str = "ews",
        clock: Callable[[], float] = time.time,
    ) -> None:
        if settings.auth not in AUTH_TYPES:
            raise ValueError(f"auth must be one of {', '.join(AUTH_TYPES)}")
        if settings.access not in ACCESS:
            raise ValueError(f"access must be one of {', '.join(ACCESS)}")
        self.settings = settings
        self.name = name
        self.kind = kind
        self._password_for = password_for
        self._clock = clock
        self._version = _version(settings.version)
        self._policy = _Patient(max_wait=int(settings.max_wait))
        if settings.ca_file:
            parts = urlsplit(settings.endpoint)
            _CaAdapter.ca_files[f"{parts.scheme}://{parts.netloc}"] = settings.ca_file
            BaseProtocol.HTTP_ADAPTER_CLS = _CaAdapter

    def account(self, mailbox: str) -> Account:
        """An exchangelib Account for a mailbox; sends nothing (no autodiscover, no probe)."""
        s = self.settings
        if s.access == "user":
            username, password = mailbox, self._password_for(mailbox)
        else:
            if not s.username:
                raise AuthError(f"access = {s.access!r} needs the service account's username")
            username, password = s.username, self._password_for(mailbox)
        config = Configuration(
            service_endpoint=s.endpoint,
            credentials=Credentials(username, password),
            auth_type=AUTH_TYPES[s.auth],
            version=self._version,
            retry_policy=self._policy,
            max_connections=s.max_connections,
        )
        with self._lock:  # exchangelib caches one protocol (and pool) per endpoint + login
            account = Account(
                mailbox,
                config=config,
                access_type=IMPERSONATION if s.access == "impersonation" else DELEGATE,
                autodiscover=False,
                default_timezone=_UTC,
            )
            protocol: Any = account.protocol
            protocol.TIMEOUT = s.timeout
            protocol.RETRY_WAIT = s.retry_wait
        return account

    def window_end(self) -> int:
        return int(self._clock()) - self.settings.settle_seconds

    @contextmanager
    def open(self, mailbox: str) -> Iterator[EwsSession]:
        mailbox = mailbox.lower()
        try:
            with _errors(mailbox):
                account = self.account(mailbox)
            yield EwsSession(account, mailbox, self.settings, self.window_end())
        except AuthError as exc:
            if self.settings.access == "user" or not isinstance(
                exc.__cause__, ews_errors.UnauthorizedError
            ):
                raise
            # HTTP 401 under impersonation or delegation: the service account itself was
            # refused, so every mailbox of this source would be.
            raise CredentialsRejected(
                f"Exchange refused the service account {self.settings.username!r} "
                f"(wrong password, locked or disabled?): {exc.reason}"
            ) from exc

    def forwards(self, mailbox: str) -> list[Forward]:
        """Enabled inbox rules that forward, forward as attachment or redirect (GetInboxRules)."""
        mailbox = mailbox.lower()
        with _errors(mailbox):
            account = self.account(mailbox)
            rules = list(_GetInboxRules(account=account).call(mailbox=mailbox))
        out = []
        for rule in rules:
            if isinstance(rule, Exception):
                raise translate(rule, mailbox)
            if rule is None or not rule.is_enabled or rule.actions is None:
                continue
            a = rule.actions
            keeps = not (a.delete or a.permanent_delete)
            conditional = _has_any(rule.conditions) or _has_any(rule.exceptions)
            targets = [
                *(a.forward_to_recipients or []),
                *(a.forward_as_attachment_to_recipients or []),
                *(a.redirect_to_recipients or []),
            ]
            for target in targets:
                address, _ = _address(_Addr(target.email_address, target.routing_type, target.name))
                if address:
                    out.append(
                        Forward(mailbox, address, rule.display_name or "", keeps, conditional)
                    )
        return out


def _has_any(element: Any) -> bool:
    if element is None:
        return False
    return any(getattr(element, f.name) not in (None, False, [], ()) for f in element.FIELDS)
