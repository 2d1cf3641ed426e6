"""Exchange Web Services, read-only, with exchangelib: the same records as IMAP.

    >>> settings = EwsSettings(endpoint="https://mail.danang.gov.vn/EWS/Exchange.asmx",
    ...                        username="DANANG\\\\svc-mailusage")
    >>> source = EwsSource(settings, password_for=lambda m: pw)
    >>> with source.open("an.nv@danang.gov.vn") as session:
    ...     session.resume({})
    ...     folders = session.folders()

The endpoint, the auth type and the server version are configured, so exchangelib sends no
autodiscover and no version probe. A service account with the ApplicationImpersonation role
acts for every mailbox (or per-user credentials, ``access = "user"``). Per mailbox and night:

    GetFolder        the well-known folders' ids (inbox, sentitems, drafts, deleteditems,
                     junkemail) in one call, IdOnly: which folder has which role
    FindFolder       every folder under ``msgfolderroot`` (Traversal="Deep", paged):
                     name, class, parent, TotalCount, UnreadCount and the size property
                     0x0E08 (PR_MESSAGE_SIZE_EXTENDED, a 64-bit Long); mail folders only
                     (FolderClass IPF.Note, IPF.Note.*, or none) are read
    SyncFolderItems  per mail folder, from last night's SyncState: new items (Create:
                     ids, dates, size, IsRead), read-state changes of old ones
                     (ReadFlagChange), 512 changes a call until IncludesLastItemInRange
    GetItem          From / To / Cc / InternetMessageId for the new items only,
                     ``get_item_batch`` ids per call
    GetInboxRules    forward / redirect targets (when forwarding is read)

so an unchanged mailbox costs 2 + (its mail folders) SOAP calls, plus GetInboxRules. The
cursor is each folder's SyncState, kept in :attr:`FolderCursor.token` (JSON: the folder's
id, its generation, the state) and saved only with the night's commit — as Graph's delta
link is (connectors/graph.py). ``uidvalidity`` is a hash of the folder's id and generation:
a recreated folder, or a SyncState Exchange no longer accepts (ErrorInvalidSyncStateData),
gives a new one, so the collector replaces the folder's rows. A folder's name is its path
below msgfolderroot ("Inbox/Dự án"); ``uid`` of a message a 63-bit hash of its EWS item id
(a move gives a new id: the message is stored again under its new folder, as IMAP does).

SyncFolderItems has no restriction and no time window: nothing is lost to clock skew or to
sub-second DateTimeReceived, moved and restored items are Creates in their new folder, and
the EWSFindCountLimit of restricted searches (250 since Exchange 2013, a partial result set;
https://learn.microsoft.com/en-us/exchange/client-developer/exchange-web-services/ews-throttling-in-exchange)
does not apply; FindFolder asks pages of ``folder_page`` folders, within the unrestricted
limit of 1000, and retries with smaller pages on ErrorExceededFindCountLimit.

Throttling: :class:`FaultTolerance` honours ``BackOffMilliseconds`` of ErrorServerBusy (the
back-off is shared by every mailbox on the same endpoint) for every call, SyncFolderItems
included (ConcurrentSyncCalls), ErrorExceededConnectionCount shrinks the connection pool,
and the pool is bounded by ``max_connections``. A 401 is a wrong password or a locked
account, not throttling: it fails the mailbox at once instead of being retried for an hour.

Aliases: impersonation names a mailbox by its primary SMTP address only. A roster address
that Exchange refuses as unknown (or not impersonable) is resolved once with ResolveNames;
if that names another primary address, the mailbox is read through it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar, NamedTuple

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
    EWSTimeZone,
    FaultTolerance,
    Version,
)
from exchangelib import errors as ews_errors
from exchangelib.extended_properties import ExtendedProperty
from exchangelib.fields import FieldPath
from exchangelib.folders import Folder, MsgFolderRoot, Root
from exchangelib.items import Message as EwsMessage
from exchangelib.properties import DistinguishedFolderId, FolderId
from exchangelib.properties import Mailbox as EwsMailbox
from exchangelib.services import (
    FindFolder,
    GetFolder,
    GetInboxRules,
    GetItem,
    SyncFolderItems,
)
from exchangelib.util import TNS

from connectors.base import (
    AuthError,
    Check,
    CredentialsRejected,
    FolderCursor,
    FolderState,
    Forward,
    MailboxMissing,
    Message,
    Probe,
    Quota,
    Signals,
    SourceError,
    TransientError,
    sent_date,
    smtp_address,
)
from connectors.compat.exchangelib_hooks import (
    ItemIdsPayload,
    SyncStateOfSuccess,
    WholeReplies,
    XmlReplies,
    set_timeouts,
)
from connectors.compat.exchangelib_session import release, verify_with
from connectors.ews_settings import ACCESS as ACCESS
from connectors.ews_settings import AUTH_NAMES, EWS_SIGNALS, MAX_CHANGES
from connectors.ews_settings import (
    EwsSettings as EwsSettings,  # re-exported: the settings of EwsSource
)

log = logging.getLogger(__name__)

AUTH_TYPES = {"ntlm": NTLM, "basic": BASIC}
assert tuple(AUTH_TYPES) == AUTH_NAMES
_UTC = EWSTimeZone("UTC")


class MessageSize(ExtendedProperty):  # type: ignore[misc]
    """PR_MESSAGE_SIZE_EXTENDED: a folder's total size in bytes, as a 64-bit Long."""

    property_tag = 0x0E08
    property_type = "Long"


# exchangelib's documented way to read an extended property is to register it on the item
# or folder class ("Extended properties" in its docs): a field added to its Folder class once
# per process, on import. Only the folder calls here name it (`.only(*_FOLDER_FIELDS)`).
_SIZE_FIELD = "mailusage_size"
if _SIZE_FIELD not in {f.name for f in Folder.FIELDS}:
    Folder.register(_SIZE_FIELD, MessageSize)

# EWS distinguished folder ids and the roles the datasets use (as IMAP's SPECIAL-USE and
# Graph's well-known names). The schema's DistinguishedFolderIdNameType has no id for a
# mailbox's own Archive folder ("archive*" ids are the archive mailbox): it stays "other".
WELL_KNOWN = {
    "inbox": "inbox",
    "sentitems": "sent",
    "drafts": "drafts",
    "deleteditems": "trash",
    "junkemail": "junk",
}
_FOLDER_FIELDS = (
    "parent_folder_id",
    "folder_class",
    "name",
    "total_count",
    "child_folder_count",
    _SIZE_FIELD,
    "unread_count",
)
# SyncFolderItems can return these; addresses come from GetItem.
_SYNC_FIELDS = ("datetime_received", "datetime_sent", "size", "is_read")
_GET_FIELDS = ("author", "to_recipients", "cc_recipients", "message_id")


def _stable_int(text: str, bits: int) -> int:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") >> (64 - bits)


def folder_uidvalidity(folder_id: str, generation: int = 0) -> int:
    """A folder's EWS id and sync generation as a positive 31-bit number: it changes when
    the folder is recreated, or its SyncState expired and the folder was read again. (The
    release of 2026-12-01 hashed the id alone: its cursors differ, so each folder is read
    whole once and its old rows replaced.)

    >>> folder_uidvalidity("AAMkAGI2", 0) == folder_uidvalidity("AAMkAGI2", 0)
    True
    >>> folder_uidvalidity("AAMkAGI2", 0) == folder_uidvalidity("AAMkAGI2", 1)
    False
    """
    return _stable_int(f"{folder_id}#{generation}", 31) or 1


def item_uid(item_id: str) -> int:
    """An item's EWS id as a positive 63-bit number, stable while it stays in its folder."""
    return _stable_int(item_id, 63) or 1


def is_mail_folder(folder_class: str | None) -> bool:
    """Mail folders: class IPF.Note or IPF.Note.*, or none (Exchange leaves it empty on some
    mail folders); calendars, contacts, tasks, notes, journals, configuration are not.

    >>> [is_mail_folder(c) for c in ("IPF.Note", "IPF.Note.OutlookHomepage", None, "IPF.Task")]
    [True, True, True, False]
    """
    return not folder_class or folder_class == "IPF.Note" or folder_class.startswith("IPF.Note.")


@dataclass
class _Token:
    """The sync state of one folder, kept in FolderCursor.token as JSON."""

    folder: str  # the folder's EWS id
    generation: int
    state: str  # the SyncState of the last SyncFolderItems read to its end

    def dump(self) -> str:
        return json.dumps(
            {"folder": self.folder, "generation": self.generation, "state": self.state},
            separators=(",", ":"),
        )

    @classmethod
    def load(cls, text: str | None) -> _Token | None:
        """None for no token or one not ours (the release of 2026-12-01 kept none).

        >>> _Token.load('{"folder":"AAMk","generation":2,"state":"H4sI"}').generation
        2
        >>> _Token.load(None) is None and _Token.load("https://graph") is None
        True
        """
        if not text:
            return None
        try:
            raw = json.loads(text)
            return cls(str(raw["folder"]), int(raw["generation"]), str(raw["state"]))
        except (ValueError, KeyError, TypeError):
            return None


def _version(text: str) -> Version:
    parts = [int(p) for p in text.split(".")]
    if not 2 <= len(parts) <= 4:
        raise ValueError(f"version {text!r}: expected an Exchange build like 15.1.2507.6")
    return Version(build=Build(*parts))


class _Patient(FaultTolerance):  # type: ignore[misc]
    """FaultTolerance, except that HTTP 401 is an authentication failure, not throttling."""

    def raise_response_errors(self, response: Any) -> Any:
        if response.status_code == 401:
            raise ews_errors.UnauthorizedError(f"HTTP 401 from {response.url}: login refused")
        return super().raise_response_errors(response)


class _Found(NamedTuple):
    """What SyncFolderItems says about a new item (ids, dates, size, read state)."""

    id: str
    changekey: str | None
    received: int | None
    sent: int | None
    size: int
    is_read: bool


class _Change(NamedTuple):
    """One SyncFolderItems change: kind is create | update | delete | read_flag_change."""

    kind: str
    item_id: str
    found: _Found | None  # create / update


class _FolderInfo(NamedTuple):
    """What FindFolder says about a folder."""

    id: str
    parent: str | None
    folder_class: str | None
    name: str
    total: int
    unread: int | None
    children: int
    size: int | None
    element: str  # Folder | CalendarFolder | ContactsFolder | SearchFolder | TasksFolder


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
    """Epoch seconds of an xs:dateTime, its fraction dropped (``2026-11-30T10:00:00.400Z``)."""
    return (
        None if not text else int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp())
    )


def _int(text: str | None) -> int | None:
    return int(text) if text not in (None, "") else None


def _addrs(elem: Any) -> list[_Addr]:
    if elem is None:
        return []
    return [
        _Addr(m.findtext(_t("EmailAddress")), m.findtext(_t("RoutingType")), m.findtext(_t("Name")))
        for m in elem.iter(_t("Mailbox"))
    ]


def _found(elem: Any) -> _Found:
    item_id = elem.find(_t("ItemId"))
    return _Found(
        item_id.get("Id"),
        item_id.get("ChangeKey"),
        _when(elem.findtext(_t("DateTimeReceived"))),
        _when(elem.findtext(_t("DateTimeSent"))),
        int(elem.findtext(_t("Size")) or 0),
        (elem.findtext(_t("IsRead")) or "").lower() == "true",
    )


class _FindFolder(XmlReplies, FindFolder):  # type: ignore[misc]
    """FindFolder whose folders are read straight from the XML into :class:`_FolderInfo`."""

    def from_xml(self, elem: Any) -> _FolderInfo:
        size = None
        for prop in elem.iter(_t("ExtendedProperty")):
            uri = prop.find(_t("ExtendedFieldURI"))
            if uri is not None and int(uri.get("PropertyTag", "0"), 16) == 0x0E08:
                size = _int(prop.findtext(_t("Value")))
        parent = elem.find(_t("ParentFolderId"))
        return _FolderInfo(
            elem.find(_t("FolderId")).get("Id"),
            parent.get("Id") if parent is not None else None,
            elem.findtext(_t("FolderClass")),
            elem.findtext(_t("DisplayName")) or "",
            int(elem.findtext(_t("TotalCount")) or 0),
            _int(elem.findtext(_t("UnreadCount"))),
            int(elem.findtext(_t("ChildFolderCount")) or 0),
            size,
            elem.tag.rpartition("}")[2],
        )


class _SyncFolderItems(SyncStateOfSuccess, XmlReplies, SyncFolderItems):  # type: ignore[misc]
    """SyncFolderItems whose changes are read straight from the XML into :class:`_Change`
    (SyncState only from a successful message: exchangelib's reads an error one too)."""

    def from_xml(self, elem: Any) -> _Change:
        kind = self.change_types_map[elem.tag]
        if kind in (self.CREATE, self.UPDATE):
            found = _found(elem[0])  # t:Message, t:MeetingRequest, t:PostItem, ...
            return _Change(kind, found.id, found)
        item_id = elem.find(_t("ItemId"))
        return _Change(kind, item_id.get("Id") if item_id is not None else "", None)


class _GetItem(ItemIdsPayload, XmlReplies, GetItem):  # type: ignore[misc]
    """GetItem of ``(id, changekey)`` pairs whose items are read straight from the XML into
    :class:`_Detail`."""

    def from_xml(self, elem: Any) -> _Detail:
        author = _addrs(elem.find(_t("From")))
        return _Detail(
            author[0] if author else None,
            _addrs(elem.find(_t("ToRecipients"))),
            _addrs(elem.find(_t("CcRecipients"))),
            elem.findtext(_t("InternetMessageId")),
        )


class _GetFolder(WholeReplies, GetFolder):  # type: ignore[misc]
    pass


class _GetInboxRules(WholeReplies, GetInboxRules):  # type: ignore[misc]
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
# What Exchange answers when impersonation names an address that is not a mailbox's
# primary SMTP address: "Exchange Web Services requires that mailboxes be identified by the
# primary SMTP address of the mailbox. Proxy or alternative addresses are not accepted."
# (https://learn.microsoft.com/en-us/exchange/client-developer/web-service-reference/primarysmtpaddress).
# The code is not documented for an alias: the two an unknown address gets are tried.
_ALIAS_REFUSED = (ews_errors.ErrorNonExistentMailbox, ews_errors.ErrorImpersonateUserDenied)


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


def folder_paths(infos: Sequence[_FolderInfo]) -> dict[str, str]:
    """Folder id -> its display names from below msgfolderroot, joined by "/".

    >>> folder_paths([_FolderInfo("i", "r", "IPF.Note", "Inbox", 0, 0, 1, 0, "Folder"),
    ...               _FolderInfo("d", "i", "IPF.Note", "Dự án", 0, 0, 0, 0, "Folder")])
    {'i': 'Inbox', 'd': 'Inbox/Dự án'}
    """
    by_id = {f.id: f for f in infos}
    out: dict[str, str] = {}

    def path(f: _FolderInfo, depth: int = 0) -> str:
        if f.id not in out:
            parent = by_id.get(f.parent or "")
            out[f.id] = f"{path(parent, depth + 1)}/{f.name}" if parent and depth < 64 else f.name
        return out[f.id]

    for f in infos:
        path(f)
    return out


@dataclass
class _Folder:
    state: FolderState
    ews_id: str
    start: _Token | None  # the SyncState read on from (None: the whole folder)
    generation: int
    page: list[_Change] | None = None  # the first SyncFolderItems page, read with folders()
    page_state: str | None = None
    page_last: bool = True
    after: _Token | None = None  # once the sync is read to its end
    changed: int = 0  # items stored before whose read flag tonight's sync reports changed
    skipped: str | None = None  # why the folder is not read tonight


class EwsSession:
    """One mailbox through one exchangelib Account (no network until :meth:`folders`)."""

    def __init__(
        self,
        account: Account,
        mailbox: str,
        settings: EwsSettings,
        reopen: Callable[[str], Account] | None = None,
        resolved: dict[str, str] | None = None,
        forwarding: bool = False,
    ):
        self.account = account
        self.mailbox = mailbox
        self.settings = settings
        self._forwarding = forwarding  # forwards() reads the inbox rules
        self.unreadable: Counter[str] = Counter()  # changes that could not be read
        self._reopen = reopen
        self._resolved = resolved if resolved is not None else {}
        self._start: dict[str, FolderCursor] = {}
        self._folders: dict[str, _Folder] = {}

    def resume(self, start: Mapping[str, FolderCursor]) -> None:
        self._start = dict(start)

    def token(self, folder: FolderState) -> str | None:
        f = self._folders.get(folder.name)
        if f is None:
            return None
        done = f.after or f.start
        return done.dump() if done else None

    # -- the folder list ---------------------------------------------------------------------
    def _mailbox_element(self) -> EwsMailbox:
        return EwsMailbox(email_address=self.account.primary_smtp_address)

    def _roles(self) -> dict[str, str]:
        """Folder id -> role, from one GetFolder of the well-known ids (IdOnly)."""
        root = Root(account=self.account)
        wanted = [
            Folder(
                root=root,
                _distinguished_id=DistinguishedFolderId(id=d, mailbox=self._mailbox_element()),
            )
            for d in WELL_KNOWN
        ]
        got = list(
            _GetFolder(account=self.account).call(
                folders=wanted, additional_fields=set(), shape="IdOnly"
            )
        )
        roles = {}
        for role, folder in zip(WELL_KNOWN.values(), got, strict=True):
            if isinstance(folder, ews_errors.ErrorFolderNotFound):
                continue  # no such folder (e.g. no Junk Email): recorded as a missing role
            if isinstance(folder, Exception):
                raise folder
            roles[folder.id] = role
        return roles

    def _first_call(self) -> dict[str, str]:
        """The night's first call; a roster alias that Exchange refuses is resolved once
        (ResolveNames) to its mailbox's primary SMTP address and the call made again."""
        try:
            return self._roles()
        except _ALIAS_REFUSED as exc:
            primary = self._primary_of(self.mailbox) if self._reopen else None
            if primary is None or primary == self.account.primary_smtp_address.lower():
                raise exc from None
            log.info("%s: an alias of %s; reading that mailbox", self.mailbox, primary)
            assert self._reopen is not None
            self.account = self._reopen(primary)
            return self._roles()

    def _primary_of(self, address: str) -> str | None:
        """The primary SMTP address ResolveNames gives for an address (None: none)."""
        if address in self._resolved:
            return self._resolved[address]
        try:
            # "smtp:" names the routing type, so that proxy addresses are searched too:
            # without one ResolveNames matches the primary SMTP address only
            # (learn.microsoft.com/…/web-service-reference/resolvenames-operation)
            found = self.account.protocol.resolve_names(
                [f"smtp:{address}"], return_full_contact_data=False
            )
        except ews_errors.EWSError:
            return None
        emails = {
            str(m.email_address).lower()
            for m in found
            if isinstance(m, EwsMailbox) and m.email_address
        }
        primary = emails.pop() if len(emails) == 1 else None  # ambiguous: no guess
        if primary:
            self._resolved[address] = primary
        return primary

    def _find_folders(self) -> list[_FolderInfo]:
        root = MsgFolderRoot(
            root=Root(account=self.account),
            _distinguished_id=DistinguishedFolderId(
                id="msgfolderroot", mailbox=self._mailbox_element()
            ),
        )
        fields = {FieldPath(field=Folder.get_field_by_fieldname(n)) for n in _FOLDER_FIELDS}
        page = min(self.settings.page_size, 1000)
        while True:
            try:
                out = []
                for f in _FindFolder(account=self.account, page_size=page).call(
                    folders=[root],
                    additional_fields=fields,
                    restriction=None,
                    shape="IdOnly",
                    depth="Deep",
                    max_items=None,
                    offset=0,
                ):
                    if isinstance(f, Exception):
                        raise f
                    out.append(f)
                return out
            except ews_errors.ErrorExceededFindCountLimit:
                if page <= 10:
                    raise
                page = max(page // 4, 10)  # a smaller page fits the caller's budget

    def folders(self) -> list[FolderState]:
        with _errors(self.mailbox):
            roles = self._first_call()
            infos = self._find_folders()
        paths = folder_paths(infos)
        by_id = {tok.folder: tok for c in self._start.values() if (tok := _Token.load(c.token))}
        for info in infos:
            # Search folders hold other folders' items (counted twice): never read.
            if info.element == "SearchFolder" or not is_mail_folder(info.folder_class):
                continue
            name = paths[info.id]
            cursor = self._start.get(name)
            tok = _Token.load(cursor.token) if cursor else None
            if tok is not None and tok.folder != info.id:
                tok = None  # the name now belongs to another folder (deleted, recreated)
            seen = by_id.get(info.id)  # renamed: same id, same generation, read whole
            generation = tok.generation if tok else (seen.generation if seen else 0)
            rounds = cursor.last_uid if (cursor and tok) else 0
            self._folders[name] = _Folder(
                FolderState(
                    name=name,
                    role=roles.get(info.id, "other"),
                    messages=info.total,
                    unseen=info.unread,
                    uidnext=rounds + 2,  # last_uid counts the folder's sync rounds
                    uidvalidity=folder_uidvalidity(info.id, generation),
                    # set, so that the next night's plan asks count_changed (ReadFlagChange)
                    highestmodseq=rounds + 1,
                    size_bytes=info.size,
                ),
                info.id,
                tok,
                generation,
            )
        for f in self._folders.values():
            self._first_page(f)
        return [f.state for f in self._folders.values()]

    # -- SyncFolderItems -------------------------------------------------------------------------
    def _sync(self, f: _Folder, state: str | None) -> tuple[list[_Change], str | None, bool]:
        """One SyncFolderItems call: (changes, new SyncState, includes the last change)."""
        fields = {FieldPath(field=EwsMessage.get_field_by_fieldname(n)) for n in _SYNC_FIELDS}
        svc = _SyncFolderItems(account=self.account)
        changes = []
        for change in svc.call(
            folder=FolderId(id=f.ews_id),
            shape="IdOnly",
            additional_fields=fields,
            sync_state=state,
            ignore=None,
            max_changes_returned=max(1, min(self.settings.max_changes, MAX_CHANGES)),
            sync_scope="NormalItems",
        ):
            if isinstance(change, Exception):
                raise change
            changes.append(change)
        return changes, svc.sync_state, bool(svc.includes_last_item_in_range)

    def _first_page(self, f: _Folder) -> None:
        """The folder's first page, asked with the folder list; an expired or corrupt
        SyncState starts the folder's next generation (its rows are replaced, as after a
        UIDVALIDITY reset); a folder gone since FindFolder is skipped, recorded."""
        with _errors(self.mailbox):
            try:
                f.page, f.page_state, f.page_last = self._sync(
                    f, f.start.state if f.start else None
                )
                return
            except ews_errors.ErrorInvalidSyncStateData:
                if f.start is None:
                    raise
                log.info(
                    "%s %s: sync state expired, reading the folder again",
                    self.mailbox,
                    f.state.name,
                )
            except (ews_errors.ErrorSyncFolderNotFound, ews_errors.ErrorFolderNotFound) as exc:
                self._skip(f, f"{type(exc).__name__}: {exc}")
                return
            f.start, f.generation = None, f.generation + 1
            f.state = dataclasses.replace(
                f.state,
                uidnext=2,
                uidvalidity=folder_uidvalidity(f.ews_id, f.generation),
                highestmodseq=1,
            )
            f.page, f.page_state, f.page_last = self._sync(f, None)

    def _skip(self, f: _Folder, reason: str) -> None:
        """A folder not read tonight: its cursor kept, its messages counted unreadable."""
        log.warning("%s: folder %r skipped: %s", self.mailbox, f.state.name, reason)
        rounds = f.state.uidnext - 2
        f.state = dataclasses.replace(f.state, uidnext=rounds + 1, highestmodseq=rounds or None)
        f.skipped = reason
        self.unreadable[f.state.name] += f.state.messages

    def quota(self) -> Quota:
        return Quota(None, None)  # EWS has no quota: see Get-MailboxStatistics (operator guide)

    def count_changed(self, folder: FolderState, since_modseq: int, up_to_uid: int) -> int | None:
        """Messages stored on earlier nights whose read state tonight's sync changed: the
        ReadFlagChange changes, IMAP's read activity. An Update (any other change, a new
        ChangeKey) is not counted: it does not say whether IsRead changed. None until the
        folder's sync is read to its end."""
        f = self._folders.get(folder.name)
        return f.changed if f is not None and f.after is not None else None

    def messages(self, folder: FolderState, from_uid: int, to_uid: int) -> Iterator[list[Message]]:
        return self.fetch([(folder, from_uid, to_uid)])

    def fetch(self, requests_: Sequence[tuple[FolderState, int, int]]) -> Iterator[list[Message]]:
        """New messages of each folder asked, from its SyncState on (SyncFolderItems reads
        one folder a call: ``from_uid``/``to_uid`` only say whether to read it)."""
        for folder, lo, hi in requests_:
            f = self._folders[folder.name]
            if hi >= lo and f.skipped is None:
                with _errors(self.mailbox):
                    yield from self._read(f)

    def _read(self, f: _Folder) -> Iterator[list[Message]]:
        """The folder's changes as message batches: Creates are stored; ReadFlagChange of
        an item not created tonight is read activity; Update and Delete leave rows as
        they are (a deleted message's row stays, as in IMAP)."""
        changes, state, last = f.page or [], f.page_state, f.page_last
        created: set[str] = set()
        batch: list[_Found] = []
        while True:
            for change in changes:
                if change.kind == SyncFolderItems.CREATE and change.found is not None:
                    if change.item_id in created:
                        continue
                    created.add(change.item_id)
                    batch.append(change.found)
                    if len(batch) >= self.settings.get_item_batch:
                        yield self._complete(batch, f.state.name)
                        batch = []
                elif (
                    change.kind == SyncFolderItems.READ_FLAG_CHANGE
                    and change.item_id not in created
                ):
                    f.changed += 1
            if last:
                break
            changes, state, last = self._sync(f, state)
        if batch:
            yield self._complete(batch, f.state.name)
        if not state:
            raise SourceError(f"Exchange gave no SyncState for {self.mailbox} {f.state.name}")
        f.page = None
        f.after = _Token(f.ews_id, f.generation, state)

    def _complete(self, stubs: list[_Found], folder: str) -> list[Message]:
        """One GetItem call for the addresses and Message-ID of a batch of new items."""
        fields = {FieldPath(field=EwsMessage.get_field_by_fieldname(n)) for n in _GET_FIELDS}
        full = _GetItem(account=self.account, chunk_size=len(stubs)).call(
            items=[(st.id, st.changekey) for st in stubs], additional_fields=fields, shape="IdOnly"
        )
        out = []
        for stub, got in zip(stubs, full, strict=True):
            item: _Detail | None
            if isinstance(got, ews_errors.ErrorItemNotFound):
                item = None  # deleted since the sync: keep what it said, without addresses
            elif isinstance(got, Exception):
                raise translate(got, self.mailbox)
            else:
                item = got
            sender, bad_from = _address(item.author if item else None)
            to = [_address(r) for r in item.to] if item else []
            cc = [_address(r) for r in item.cc] if item else []
            received = stub.received or 0
            sent, date_source = sent_date(stub.sent, received)
            out.append(
                Message(
                    folder=folder,
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

    def forwards(self) -> list[Forward] | None:
        """The mailbox's inbox rules that forward (GetInboxRules, in this session's
        account); None (not read) when the source reads no forwarding."""
        if not self._forwarding:
            return None
        return _inbox_forwards(self.account, self.mailbox)


class EwsSource:
    """An Exchange server reached through EWS; ``open`` gives a read-only mailbox session."""

    _lock = threading.Lock()
    SIGNALS: ClassVar[Signals] = EWS_SIGNALS  # what EWS measures: connectors/ews_settings.py

    def __init__(
        self,
        settings: EwsSettings,
        password_for: Callable[[str | None], str],
        name: str = "exchange",
        kind: str = "ews",
        clock: Callable[[], float] = time.time,
        forwarding: bool = False,
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
        self._resolved: dict[str, str] = {}  # roster alias -> primary SMTP address
        self.forwarding = forwarding  # sessions read inbox rules (session.forwards())
        self._protocols: dict[int, Any] = {}  # the pools this source used, closed by close()

    def __enter__(self) -> EwsSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close every connection pool this source opened and drop it from exchangelib's
        protocol cache: the next night (or a source opened again) starts with new ones."""
        with self._lock:
            protocols, self._protocols = list(self._protocols.values()), {}
        for protocol in protocols:
            release(protocol)

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
            set_timeouts(account.protocol, s.timeout, s.retry_wait)
        return account

    def _account(self, mailbox: str) -> Account:
        """:meth:`account`, its connection pool kept for :meth:`close` and given this
        source's CA (for this pool only: no global patch) before it opens a connection."""
        account = self.account(mailbox)
        protocol: Any = account.protocol
        with self._lock:
            if id(protocol) not in self._protocols:
                self._protocols[id(protocol)] = protocol
                if self.settings.ca_file:
                    verify_with(protocol, self.settings.ca_file)
        return account

    @contextmanager
    def open(self, mailbox: str) -> Iterator[EwsSession]:
        mailbox = mailbox.lower()
        try:
            with _errors(mailbox):
                account = self._account(mailbox)
            reopen = None if self.settings.access == "user" else self._account
            yield EwsSession(
                account, mailbox, self.settings, reopen, self._resolved, self.forwarding
            )
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

    def diagnose(self, probe: Probe) -> list[Check]:
        """``doctor``'s checks: endpoint reachable, login, the impersonation (or delegation)
        right, folders, inbox rules — in that order, stopping at the first failure (each
        later check needs the earlier ones)."""
        s = self.settings
        out: list[Check] = []

        def add(check: str, status: str, detail: str) -> None:
            out.append(Check(self.name, check, status, detail))

        try:
            answer = requests.get(s.endpoint, timeout=min(s.timeout, 10), verify=s.ca_file or True)
            add(
                "endpoint",
                "ok",
                f"{s.endpoint} answers (HTTP {answer.status_code}, no autodiscover)",
            )
        except requests.exceptions.SSLError as exc:
            add("endpoint", "fail", f"TLS certificate of {s.endpoint} not trusted: {exc}")
            return out
        except requests.exceptions.RequestException as exc:
            add("endpoint", "fail", f"cannot reach {s.endpoint}: {exc}")
            return out
        if s.endpoint.startswith("http://"):
            add("tls", "warn", "plain http: passwords cross the network unencrypted")
        if probe.secret:
            add("login", "warn", f"not tried: {probe.secret}")
            return out
        mailbox = probe.mailbox
        if mailbox is None:
            add("login", *probe.missing("open"))
            return out
        who = f"{s.username} ({s.auth})" if s.access != "user" else f"{mailbox} ({s.auth})"
        try:
            with self.open(mailbox) as session:
                folders = session.folders()
        except AuthError as exc:
            login_refused = "UnauthorizedError" in exc.reason
            add("login", "fail" if login_refused else "ok", exc.reason if login_refused else who)
            if not login_refused:
                add(s.access, "fail", f"{who} may not open {mailbox}: {exc.reason}")
            return out
        except SourceError as exc:
            add("login", "fail", exc.reason)
            return out
        add("login", "ok", f"logged in as {who}")
        if s.access != "user":
            add(s.access, "ok", f"{s.username} may open {mailbox} ({s.access})")
        roles = {f.role: f for f in folders}
        for role in ("inbox", "sent"):
            if role in roles:
                f = roles[role]
                add(f"{role}-folder", "ok", f"{f.name}: {f.messages} messages in {mailbox}")
            else:
                add(f"{role}-folder", "warn", f"no {role} folder in {mailbox}")
        if self.forwarding:
            try:
                rules = self.forwards(mailbox)
                add(
                    "inbox-rules",
                    "ok",
                    f"GetInboxRules: {len(rules)} forwarding rule(s) in {mailbox}",
                )
            except SourceError as exc:
                add("inbox-rules", "fail", exc.reason)
        add(
            "logins-quota",
            "warn",
            "EWS gives no last logon and no quota: export Get-MailboxStatistics ([[logins]] "
            "kind = exchange-csv, operator guide)",
        )
        return out

    def forwards(self, mailbox: str) -> list[Forward]:
        """Enabled inbox rules that forward, forward as attachment or redirect (GetInboxRules)."""
        mailbox = mailbox.lower()
        primary = self._resolved.get(mailbox, mailbox)  # an alias resolved by open()
        with _errors(mailbox):
            account = self._account(primary)
        return _inbox_forwards(account, mailbox)


def _inbox_forwards(account: Account, mailbox: str) -> list[Forward]:
    """Enabled inbox rules of ``account``'s mailbox that forward, forward as attachment or
    redirect (GetInboxRules), as records of the roster's ``mailbox``."""
    with _errors(mailbox):
        primary = str(account.primary_smtp_address)
        rules = list(_GetInboxRules(account=account).call(mailbox=primary))
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
                out.append(Forward(mailbox, address, rule.display_name or "", keeps, conditional))
    return out


def _has_any(element: Any) -> bool:
    if element is None:
        return False
    return any(getattr(element, f.name) not in (None, False, [], ()) for f in element.FIELDS)
