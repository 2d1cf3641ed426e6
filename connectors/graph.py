"""Exchange Online through Microsoft Graph, read-only, app-only: the same records as IMAP.

    >>> settings = GraphSettings(tenant_id="contoso.onmicrosoft.com", client_id="6f1…")
    >>> source = GraphSource(settings, secret=lambda: secret)
    >>> with source.open("an.nv@danang.gov.vn") as session:
    ...     session.resume({})
    ...     folders = session.folders()

Microsoft turns EWS off in Exchange Online; Graph is its replacement. The app signs in as
itself (MSAL, client credentials: a secret or a certificate) with the application
permission ``Mail.ReadBasic.All`` — addresses, dates and read state, never a body — scoped
to the agency's mailboxes with RBAC for Applications (docs/operator-guide.md).

Per mailbox and night, in two HTTP requests when nothing changed (``$batch``, 20 a call):

    batch 1   mailFolders (the folder list, counts, sizes), the well-known folders' ids
              (inbox, sentitems, drafts, deleteditems, junkemail, archive) and the inbox's
              messageRules (forwarding; needs MailboxSettings.Read)
    batch 2   each folder's ``messages/delta``: from last night's delta link, or the
              initial delta when there is none (``changeType=created``, ``$select`` of the
              fields the datasets hold); later pages follow ``@odata.nextLink`` one by one

plus one more batch round per level of child folders. The cursor is the delta link in
:attr:`FolderCursor.token` (a JSON object with the folder's id, its generation and a
created-time mark), saved only with the night's commit. A 410 Gone (or
``syncStateNotFound``) starts the folder's generation again: a new ``uidvalidity``, so
the collector replaces the folder's rows, as for a UIDVALIDITY reset. Delta also sends
read-state changes of old messages; the mark (the highest ``createdDateTime`` stored and
the ids created in that second) keeps them from being stored twice.

Throttling: 429 and 503 (whole requests and batch parts) wait the ``Retry-After`` the
server names — shared by every mailbox of the tenant — or back off from ``retry_wait``,
doubling, for at most ``max_wait`` in all; then the mailbox is a transient failure.

Storage comes from the tenant's mailbox usage report (``getMailboxUsageDetail``, one
CSV a night for every mailbox, read by column name), last sign-ins from ``signInActivity``
(:func:`GraphSource.sign_ins`, a `[[logins]]` source).
"""

from __future__ import annotations

import base64
import csv
import dataclasses
import hashlib
import io
import json
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar
from urllib.parse import quote

import requests

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
from connectors.compat.msal_hooks import drop_access_tokens
from connectors.settings import GRAPH_SIGNALS
from connectors.settings import GraphSettings as GraphSettings  # re-exported: GraphSource's

log = logging.getLogger(__name__)

# Graph's well-known folder names and the roles the datasets use.
WELL_KNOWN = {
    "inbox": "inbox",
    "sentitems": "sent",
    "drafts": "drafts",
    "deleteditems": "trash",
    "junkemail": "junk",
    "archive": "archive",
}
# mailFolder in the v1.0 metadata (devkit/graph_metadata/): no size property — a $select
# naming one is Graph's 400 "Could not find a property named 'sizeInBytes' …".
_FOLDER_SELECT = "id,displayName,parentFolderId,childFolderCount,totalItemCount,unreadItemCount"
_MESSAGE_SELECT = (
    "createdDateTime,receivedDateTime,sentDateTime,from,toRecipients,ccRecipients,isRead,"
    "internetMessageId"
)
# PR_MESSAGE_SIZE as an extended property: needs Mail.Read (ReadBasic excludes them).
_SIZE_PROPERTY = "Integer 0x0E08"
# The token format: 2 = a delta without changeType (updates come, read activity is seen).
# Tokens of the release before carry ``changeType=created`` in every link (Microsoft's
# delta docs: the change type of the initial request is kept), so they never see reads.
_TOKEN_VERSION = 2
BATCH_MAX = 20  # Graph's limit of requests per $batch
PERMISSIONS = {  # application permissions, least privilege for each thing read
    "Mail.ReadBasic.All": "folders and message metadata (required)",
    "MailboxSettings.Read": "inbox rules: forwarding",
    "Reports.Read.All": "mailbox usage report: storage used and quota",
    "AuditLog.Read.All": "signInActivity: last sign-in (with User.Read.All, Entra ID P1)",
}


def _stable_int(text: str, bits: int) -> int:
    return (int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") >> (64 - bits)) or 1


def folder_uidvalidity(folder_id: str, generation: int) -> int:
    """A folder's Graph id and delta generation as a positive 31-bit number: it changes
    when the folder is recreated or its delta state expired (410) and was read again."""
    return _stable_int(f"{folder_id}#{generation}", 31)


def message_uid(message_id: str) -> int:
    """A message's Graph id as a positive 63-bit number (a move gives a new id)."""
    return _stable_int(message_id, 63)


def _epoch(text: str | None) -> int | None:
    if not text:
        return None
    return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp())


@dataclass
class _Token:
    """The delta state of one folder, kept in FolderCursor.token as JSON."""

    folder: str  # the folder's Graph id
    generation: int
    delta: str  # the @odata.deltaLink
    mark: int = 0  # the highest createdDateTime stored (epoch seconds)
    at_mark: tuple[int, ...] = ()  # uids stored with created == mark
    version: int = _TOKEN_VERSION

    def dump(self) -> str:
        return json.dumps(
            {
                "v": self.version,
                "folder": self.folder,
                "generation": self.generation,
                "delta": self.delta,
                "mark": self.mark,
                "at_mark": list(self.at_mark),
            },
            separators=(",", ":"),
        )

    @classmethod
    def load(cls, text: str | None) -> _Token | None:
        if not text:
            return None
        try:
            raw = json.loads(text)
            return cls(
                raw["folder"],
                int(raw["generation"]),
                raw["delta"],
                int(raw["mark"]),
                tuple(raw.get("at_mark", ())),
                int(raw.get("v", 1)),
            )
        except (ValueError, KeyError, TypeError):
            return None  # not ours (a cursor from another kind of source): read afresh


class GraphError(SourceError):
    """An answer Graph gave that is not a success; ``status`` and ``code`` say which."""

    def __init__(self, reason: str, status: int = 0, code: str = "") -> None:
        super().__init__(reason)
        self.status = status
        self.code = code


def _error(status: int, body: Any, what: str) -> SourceError:
    err = body.get("error") if isinstance(body, dict) else None
    err = err if isinstance(err, dict) else {}
    code = str(err.get("code", ""))
    text = f"{what}: HTTP {status} {code} {err.get('message', '')}".strip()
    if status == 401:
        return CredentialsRejected(f"Graph refused the app's token ({text})")
    if status == 403:
        return AuthError(f"Graph denied access ({text})")
    if status == 404 and code in (
        "ResourceNotFound",
        "MailboxNotEnabledForRESTAPI",
        "ErrorInvalidUser",
        "Request_ResourceNotFound",
    ):
        return MailboxMissing(f"Exchange Online has no such mailbox ({text})")
    if status in (429, 500, 502, 503, 504):
        return TransientError(f"Graph did not answer in time ({text})")
    return GraphError(text, status, code)


class _Http:
    """MSAL's HTTP client: our session, with the CA passed on every request (requests
    lets REQUESTS_CA_BUNDLE override a session's own ``verify``)."""

    def __init__(self, session: requests.Session, verify: str | bool, timeout: float) -> None:
        self.session, self.verify, self.timeout = session, verify, timeout

    def get(self, url: str, **kwargs: Any) -> requests.Response:
        return self.session.get(url, verify=self.verify, timeout=self.timeout, **kwargs)

    def post(self, url: str, **kwargs: Any) -> requests.Response:
        return self.session.post(url, verify=self.verify, timeout=self.timeout, **kwargs)

    def close(self) -> None:
        pass


class _Tenant:
    """What every mailbox of one opened source shares for the night: the token (MSAL's
    cache), the HTTP pool, the throttling pause and the night's usage report."""

    def __init__(self, settings: GraphSettings, credential: Callable[[], Any]) -> None:
        import msal  # imported here: only Graph sources need it

        self.settings = settings
        self.http = requests.Session()
        adapter = requests.adapters.HTTPAdapter(
            pool_connections=settings.max_connections, pool_maxsize=settings.max_connections
        )
        self.http.mount("https://", adapter)
        self.http.mount("http://", adapter)
        self.verify: str | bool = settings.ca_file or True
        authority = f"{settings.authority.rstrip('/')}/{settings.tenant_id}"
        try:  # MSAL reads the authority's OpenID configuration here
            self.app = msal.ConfidentialClientApplication(
                settings.client_id,
                client_credential=credential(),
                authority=authority,
                validate_authority=False,
                instance_discovery=False,
                http_client=_Http(self.http, self.verify, settings.timeout),
            )
        except requests.RequestException as exc:
            raise TransientError(f"Entra ID at {authority} did not answer: {exc}") from exc
        except ValueError as exc:
            raise CredentialsRejected(f"Entra ID authority {authority}: {exc}") from exc
        self.not_before = 0.0  # a Retry-After pauses every mailbox of the tenant
        self.usage: dict[str, Quota] | None = None
        self.usage_day = ""
        self.usage_note = ""
        self.lock = threading.Lock()
        self.usage_lock = threading.Lock()

    def close(self) -> None:
        """Close the HTTP pool (MSAL's requests go through it too)."""
        self.http.close()

    def token(self, refresh: bool = False) -> str:
        """An app-only access token (cached by MSAL until shortly before it expires)."""
        with self.lock:
            if refresh:
                drop_access_tokens(self.app.token_cache)
            try:
                got = self.app.acquire_token_for_client(scopes=[self.settings.scope])
            except (requests.RequestException, ValueError) as exc:
                raise TransientError(f"no token from {self.settings.authority}: {exc}") from exc
        if "access_token" not in got:
            raise CredentialsRejected(
                f"Entra ID gave the app {self.settings.client_id} no token: "
                f"{got.get('error', '')} {got.get('error_description', '')}".strip()
            )
        return str(got["access_token"])

    def _pause(self, seconds: float) -> None:
        with self.lock:
            self.not_before = max(self.not_before, time.monotonic() + seconds)

    def _wait_turn(self) -> None:
        delay = self.not_before - time.monotonic()
        if delay > 0:
            time.sleep(delay)

    def request(
        self,
        method: str,
        url: str,
        body: Any = None,
        headers: Mapping[str, str] | None = None,
        what: str = "Graph",
    ) -> tuple[int, Any, requests.Response]:
        """One call with retries: (status, parsed JSON or None, response). 429/503/504
        wait ``Retry-After`` (or back off); a 401 gets one fresh token; other statuses are
        the caller's to read."""
        if not url.startswith("http"):
            url = self.settings.graph_url.rstrip("/") + url
        waited, attempt, refreshed = 0.0, 0, False
        while True:
            self._wait_turn()
            hdrs = {"Authorization": f"Bearer {self.token()}", **(headers or {})}
            try:
                resp = self.http.request(
                    method,
                    url,
                    json=body,
                    headers=hdrs,
                    timeout=self.settings.timeout,
                    verify=self.verify,
                    allow_redirects=False,
                )
            except requests.RequestException as exc:
                raise TransientError(f"{what}: {type(exc).__name__}: {exc}") from exc
            if resp.status_code == 401 and not refreshed:
                refreshed = True
                self.token(refresh=True)
                continue
            if resp.status_code in (429, 503, 504):
                wait = retry_after(resp.headers, self.settings.retry_wait * 2**attempt)
                if waited + wait > self.settings.max_wait:
                    raise TransientError(
                        f"{what}: still throttled (HTTP {resp.status_code}) after {waited:.0f} s"
                    )
                self._pause(wait)
                waited, attempt = waited + wait, attempt + 1
                continue
            try:
                parsed = resp.json() if resp.content else None
            except ValueError:
                parsed = None
            return resp.status_code, parsed, resp

    def get(self, url: str, what: str, headers: Mapping[str, str] | None = None) -> Any:
        status, body, _ = self.request("GET", url, headers=headers, what=what)
        if status != 200:
            raise _error(status, body, what)
        return body

    def batch(
        self, parts: Sequence[tuple[str, Mapping[str, str]]], what: str
    ) -> list[tuple[int, Any]]:
        """GET each (url, headers) through ``$batch``, 20 a call; parts throttled with 429
        or 503 are sent again after their ``Retry-After``. Returns (status, body) in order."""
        out: list[tuple[int, Any] | None] = [None] * len(parts)
        for start in range(0, len(parts), BATCH_MAX):
            todo = list(range(start, min(start + BATCH_MAX, len(parts))))
            waited, attempt = 0.0, 0
            while todo:
                payload = {
                    "requests": [
                        {
                            "id": str(i),
                            "method": "GET",
                            "url": parts[i][0],
                            **({"headers": dict(parts[i][1])} if parts[i][1] else {}),
                        }
                        for i in todo
                    ]
                }
                status, body, _ = self.request("POST", "/$batch", payload, what=what)
                if status != 200 or not isinstance(body, dict):
                    raise _error(status, body, f"{what} ($batch)")
                again, wait = [], 0.0
                for r in body.get("responses", []):
                    i = int(r["id"])
                    if r.get("status") in (429, 503, 504):
                        again.append(i)
                        wait = max(wait, retry_after(r.get("headers") or {}, 0))
                    else:
                        out[i] = (int(r.get("status", 0)), r.get("body"))
                todo = sorted(again)
                if todo:
                    wait = wait or self.settings.retry_wait * 2**attempt
                    if waited + wait > self.settings.max_wait:
                        raise TransientError(f"{what}: still throttled after {waited:.0f} s")
                    self._pause(wait)
                    self._wait_turn()
                    waited, attempt = waited + wait, attempt + 1
        return [r if r is not None else (0, None) for r in out]

    def usage_for(self, mailbox: str) -> Quota:
        """Storage used and quota from today's usage report, read once a night."""
        today = datetime.now(UTC).date().isoformat()
        with self.lock:
            fresh = self.usage is not None and self.usage_day == today
        if not fresh:
            with self.usage_lock:  # one download a night, not one per mailbox in flight
                if self.usage is None or self.usage_day != today:
                    try:
                        report = self.usage_report()
                    except SourceError as exc:
                        report = {}
                        self.usage_note = exc.reason
                        log.warning("mailbox usage report not read: %s", exc.reason)
                    with self.lock:
                        self.usage, self.usage_day = report, today
        assert self.usage is not None
        return self.usage.get(mailbox, Quota(None, None))

    def usage_report(self) -> dict[str, Quota]:
        """``getMailboxUsageDetail(period='D7')``: a 302 to a pre-authenticated CSV."""
        what = "mailbox usage report"
        status, body, resp = self.request(
            "GET", "/reports/getMailboxUsageDetail(period='D7')", what=what
        )
        if status in (301, 302, 303, 307):
            try:
                csv_resp = self.http.get(
                    resp.headers["Location"], timeout=self.settings.timeout, verify=self.verify
                )  # no Authorization header: the link carries its own
            except requests.RequestException as exc:
                raise TransientError(f"{what}: {exc}") from exc
            if csv_resp.status_code != 200:
                raise GraphError(f"{what}: HTTP {csv_resp.status_code} from the report's link")
            text = csv_resp.content.decode("utf-8-sig")
        elif status == 200:
            text = resp.content.decode("utf-8-sig")
        else:
            raise _error(status, body, what)
        by_upn = parse_usage_csv(text)
        return {**by_upn, **self._by_address(by_upn)}

    def _by_address(self, by_upn: Mapping[str, Quota]) -> dict[str, Quota]:
        """The report's rows under each user's SMTP addresses too: the report is keyed by
        User Principal Name, the roster by address, and the two differ in many tenants.
        One paged /users listing a night (User.Read.All); without it, UPNs only."""
        out: dict[str, Quota] = {}
        what = "users (UPN to address)"
        try:
            body = self.get("/users?$select=userPrincipalName,mail,proxyAddresses&$top=999", what)
            while True:
                for u in body.get("value", []):
                    q = by_upn.get(str(u.get("userPrincipalName") or "").lower())
                    if q is None:
                        continue
                    addresses = [u.get("mail") or ""] + [
                        a.split(":", 1)[1]
                        for a in u.get("proxyAddresses") or []
                        if a.lower().startswith("smtp:")
                    ]
                    out.update({a.lower(): q for a in addresses if a})
                link = body.get("@odata.nextLink")
                if not link:
                    return out
                body = self.get(link, what)
        except SourceError as exc:
            log.warning("usage report keyed by UPN only: %s", exc.reason)
            return out


def retry_after(headers: Mapping[str, str], default: float) -> float:
    """Seconds to wait from a ``Retry-After`` header (seconds or an HTTP date).

    >>> retry_after({"Retry-After": "7"}, 1.0)
    7.0
    """
    value = next((v for k, v in headers.items() if k.lower() == "retry-after"), None)
    if value is None:
        return default
    try:
        return max(float(value), 0.0)
    except ValueError:
        from email.utils import parsedate_to_datetime

        try:
            return max((parsedate_to_datetime(value) - datetime.now(UTC)).total_seconds(), 0.0)
        except (TypeError, ValueError):
            return default


_USAGE_COLUMNS = {
    "mailbox": ("user principal name", "userprincipalname"),
    "used": ("storage used (byte)", "storageused(byte)", "storage used (bytes)"),
    "limit": (
        "prohibit send/receive quota (byte)",
        "prohibitsendreceivequota(byte)",
        "prohibit send/receive quota (bytes)",
    ),
}


def parse_usage_csv(text: str) -> dict[str, Quota]:
    """Mailbox -> Quota from a usage report, by column name in any order (the report's
    columns have been added and reordered before). Concealed (hashed) names never match a
    roster address: the operator guide says where to turn concealment off.

    >>> parse_usage_csv("User Principal Name,Storage Used (Byte),Prohibit Send/Receive "
    ...                 "Quota (Byte)\\nan@x.vn,1024,2048\\n")
    {'an@x.vn': Quota(used_bytes=1024, limit_bytes=2048)}
    """
    reader = csv.reader(io.StringIO(text))
    header = [h.strip().lower() for h in next(reader, [])]
    col = {}
    for key, names in _USAGE_COLUMNS.items():
        col[key] = next((header.index(n) for n in names if n in header), None)
    if col["mailbox"] is None:
        raise GraphError(f"mailbox usage report: no 'User Principal Name' column in {header}")

    def number(row: list[str], key: str) -> int | None:
        i = col[key]
        if i is None or i >= len(row) or not row[i].strip().isdigit():
            return None
        return int(row[i])

    out = {}
    for row in reader:
        i = col["mailbox"]
        if i is not None and i < len(row) and row[i].strip():
            out[row[i].strip().lower()] = Quota(number(row, "used"), number(row, "limit"))
    return out


def _recipients(items: Any) -> list[tuple[str | None, bool]]:
    out = []
    for r in items or []:
        e = (r or {}).get("emailAddress") or {}
        out.append(smtp_address(e.get("address"), e.get("name")))
    return out


def _is_size_property(prop_id: str) -> bool:
    """Whether an extended property id is PR_MESSAGE_SIZE, however Graph spells the tag
    (it may answer ``Integer 0xe08`` for the ``Integer 0x0E08`` asked).

    >>> _is_size_property("Integer 0xe08"), _is_size_property("Integer 0x0E07")
    (True, False)
    """
    kind, _, tag = prop_id.strip().partition(" ")
    try:
        return kind.lower() == "integer" and int(tag, 16) == 0x0E08
    except ValueError:
        return False


def _message(item: dict[str, Any], folder: str, read_size: bool) -> Message:
    received = _epoch(item.get("receivedDateTime")) or _epoch(item.get("createdDateTime")) or 0
    sent, source = sent_date(_epoch(item.get("sentDateTime")), received)
    sender, bad_from = (
        smtp_address(
            ((item.get("from") or {}).get("emailAddress") or {}).get("address"),
            ((item.get("from") or {}).get("emailAddress") or {}).get("name"),
        )
        if item.get("from")
        else (None, False)
    )
    to = _recipients(item.get("toRecipients"))
    cc = _recipients(item.get("ccRecipients"))
    size: int | None = None  # unknown, not 0: Mail.ReadBasic.All excludes extended properties
    if read_size:
        size = 0  # asked for and absent: Exchange keeps PR_MESSAGE_SIZE on every message
        for prop in item.get("singleValueExtendedProperties") or []:
            if _is_size_property(str(prop.get("id", ""))):
                size = int(prop.get("value") or 0)
    return Message(
        folder=folder,
        uid=message_uid(item["id"]),
        internal_date=received,
        sent_date=sent,
        date_source=source,
        size=size,
        seen=bool(item.get("isRead")),
        from_addr=sender,
        to_addrs=tuple(a for a, _ in to if a),
        cc_addrs=tuple(a for a, _ in cc if a),
        message_id=item.get("internetMessageId"),
        address_invalid=bad_from or any(b for _, b in to + cc),
    )


def _expired(status: int, body: Any) -> bool:
    """A delta link Graph no longer knows: 410 Gone, or a sync-state error code."""
    code = ((body or {}).get("error") or {}).get("code", "") if isinstance(body, dict) else ""
    return status == 410 or code in ("syncStateNotFound", "SyncStateNotFound", "resyncRequired")


@dataclass
class _Folder:
    state: FolderState
    graph_id: str
    start: _Token | None  # the delta state read on from (None: an initial delta)
    generation: int
    page: Any = None  # the first delta page, read with the folder list
    after: _Token | None = None
    changed: int = 0  # messages stored before that tonight's delta reports changed
    skipped: str | None = None  # why the folder is not read tonight
    # A token of the release before (changeType=created): tonight starts a delta without
    # it, reading on from the mark; its changes are not read activity (they are every
    # message stored), so tonight's count is unknown, never a made-up number.
    baseline: bool = False


class GraphSession:
    """One mailbox through Graph (no request until :meth:`folders`)."""

    def __init__(self, tenant: _Tenant, mailbox: str) -> None:
        self.tenant = tenant
        self.mailbox = mailbox
        self.user = f"/users/{quote(mailbox)}"
        self.unreadable: Counter[str] = Counter()
        self._start: dict[str, FolderCursor] = {}
        self._folders: dict[str, _Folder] = {}
        self._rules: tuple[int, Any] | None = None  # the inbox rules' answer in batch 1
        self.calls = 0

    def resume(self, start: Mapping[str, FolderCursor]) -> None:
        self._start = dict(start)

    def token(self, folder: FolderState) -> str | None:
        f = self._folders.get(folder.name)
        if f is None:
            return None
        done = f.after or f.start
        return done.dump() if done else None

    def _initial(self, graph_id: str) -> str:
        expand = (
            f"&$expand=singleValueExtendedProperties($filter=id eq '{_SIZE_PROPERTY}')"
            if self.tenant.settings.read_size
            else ""
        )
        return (
            f"{self.user}/mailFolders/{graph_id}/messages/delta?$select={_MESSAGE_SELECT}{expand}"
        )

    def _relative(self, link: str) -> str:
        """A nextLink / deltaLink as a $batch part's URL (relative to the version root)."""
        root = self.tenant.settings.graph_url.rstrip("/")
        return link[len(root) :] if link.startswith(root) else link

    def folders(self) -> list[FolderState]:
        t = self.tenant
        what = f"folders of {self.mailbox}"
        parts: list[tuple[str, Mapping[str, str]]] = [
            (f"{self.user}/mailFolders?$top=250&$select={_FOLDER_SELECT}", {})
        ]
        parts += [(f"{self.user}/mailFolders/{wk}?$select=id", {}) for wk in WELL_KNOWN]
        if t.settings.forwarding:
            parts.append((f"{self.user}/mailFolders/inbox/messageRules", {}))
        answers = t.batch(parts, what)
        status, body = answers[0]
        if status != 200:
            raise _error(status, body, what)
        roles = {
            b["id"]: role
            for (s, b), role in zip(
                answers[1 : 1 + len(WELL_KNOWN)], WELL_KNOWN.values(), strict=True
            )
            if s == 200 and isinstance(b, dict) and "id" in b
        }
        if t.settings.forwarding:
            self._rules = answers[-1]
        raw: list[tuple[str, dict[str, Any]]] = [
            (f["displayName"], f) for f in self._pages(body, what)
        ]
        level = [(name, f) for name, f in raw if f.get("childFolderCount")]
        while level:  # child folders, one batch round per level
            got = t.batch(
                [
                    (
                        f"{self.user}/mailFolders/{f['id']}/childFolders?$top=250&$select={_FOLDER_SELECT}",
                        {},
                    )
                    for _, f in level
                ],
                what,
            )
            nxt = []
            for (parent, _), (s, b) in zip(level, got, strict=True):
                if s != 200:
                    raise _error(s, b, what)
                for child in self._pages(b, what):
                    entry = (f"{parent}/{child['displayName']}", child)
                    raw.append(entry)
                    if child.get("childFolderCount"):
                        nxt.append(entry)
            level = nxt
        by_id = {tok.folder: tok for c in self._start.values() if (tok := _Token.load(c.token))}
        for name, f in raw:
            cursor = self._start.get(name)
            tok = _Token.load(cursor.token) if cursor else None
            if tok is not None and tok.folder != f["id"]:
                tok = None  # the name now belongs to another folder (deleted, recreated)
            seen = by_id.get(f["id"])  # renamed: same id, same generation, read whole
            generation = tok.generation if tok else (seen.generation if seen else 0)
            rounds = cursor.last_uid if (cursor and tok) else 0
            self._folders[name] = _Folder(
                FolderState(
                    name=name,
                    role=roles.get(f["id"], "other"),
                    messages=int(f.get("totalItemCount") or 0),
                    unseen=f.get("unreadItemCount"),
                    uidnext=rounds + 2,  # last_uid counts the folder's delta rounds
                    uidvalidity=folder_uidvalidity(f["id"], generation),
                    # set, so that the next night's plan asks count_changed (delta's changes)
                    highestmodseq=rounds + 1,
                    size_bytes=None,  # Graph gives no folder size (the usage report: the mailbox's)
                ),
                f["id"],
                tok,
                generation,
            )
        self._first_pages()
        return [f.state for f in self._folders.values()]

    def _pages(self, body: Any, what: str) -> Iterator[dict[str, Any]]:
        while True:
            yield from (body or {}).get("value", [])
            link = (body or {}).get("@odata.nextLink")
            if not link:
                return
            body = self.tenant.get(link, what)

    def _first_pages(self) -> None:
        """Every folder's first delta page, batched; an expired delta link starts the
        folder's next generation (its rows are replaced, as after a UIDVALIDITY reset)."""
        prefer = {"Prefer": f"odata.maxpagesize={self.tenant.settings.page_size}"}
        todo = list(self._folders.values())
        for f in todo:
            f.baseline = f.start is not None and f.start.version < _TOKEN_VERSION
        while todo:
            urls = [
                (
                    self._relative(f.start.delta)
                    if f.start and not f.baseline
                    else self._initial(f.graph_id),
                    prefer,
                )
                for f in todo
            ]
            again = []
            for f, (status, body) in zip(
                todo, self.tenant.batch(urls, f"delta of {self.mailbox}"), strict=True
            ):
                if f.start is not None and _expired(status, body):
                    log.info(
                        "%s %s: delta state expired, reading the folder again",
                        self.mailbox,
                        f.state.name,
                    )
                    f.start, f.generation, f.baseline = None, f.generation + 1, False
                    f.state = FolderState(
                        f.state.name,
                        f.state.role,
                        f.state.messages,
                        f.state.unseen,
                        2,
                        folder_uidvalidity(f.graph_id, f.generation),
                        1,
                        f.state.size_bytes,
                    )
                    again.append(f)
                elif status in (400, 404):
                    self._skip(f, _error(status, body, f"delta of {f.state.name}").reason)
                elif status != 200:
                    raise _error(status, body, f"delta of {self.mailbox} {f.state.name}")
                else:
                    f.page = body
            todo = again

    def _skip(self, f: _Folder, reason: str) -> None:
        """A folder whose delta Graph refuses (a special folder that has none, one deleted
        since the folder list): not read tonight, its cursor kept, its messages counted as
        unreadable in mailbox_status — recorded, never fatal to the mailbox."""
        log.warning("%s: folder %r skipped: %s", self.mailbox, f.state.name, reason)
        rounds = f.state.uidnext - 2
        f.state = dataclasses.replace(f.state, uidnext=rounds + 1, highestmodseq=rounds or None)
        f.skipped = reason
        self.unreadable[f.state.name] += f.state.messages

    def quota(self) -> Quota:
        if not self.tenant.settings.usage_report:
            return Quota(None, None)
        return self.tenant.usage_for(self.mailbox)

    def count_changed(self, folder: FolderState, since_modseq: int, up_to_uid: int) -> int | None:
        """Messages stored on earlier nights that tonight's delta reported changed — read
        or unread, flagged, moved within the folder: IMAP's read activity. None until the
        folder's delta is read to its end."""
        f = self._folders.get(folder.name)
        if f is None or f.after is None or f.baseline:
            return None
        return f.changed

    def messages(self, folder: FolderState, from_uid: int, to_uid: int) -> Iterator[list[Message]]:
        return self.fetch([(folder, from_uid, to_uid)])

    def fetch(self, requests_: Sequence[tuple[FolderState, int, int]]) -> Iterator[list[Message]]:
        for folder, lo, hi in requests_:
            f = self._folders[folder.name]
            if hi >= lo and f.skipped is None:
                yield from self._delta(f)

    def _delta(self, f: _Folder) -> Iterator[list[Message]]:
        """The folder's delta pages as message batches: created since the mark only."""
        mark = f.start.mark if f.start else 0
        at_mark = set(f.start.at_mark) if f.start else set()
        new_mark, new_at = mark, set(at_mark)
        body = f.page
        read_size = self.tenant.settings.read_size
        while True:
            batch = []
            for item in (body or {}).get("value", []):
                if "@removed" in item or "id" not in item:
                    continue  # a deletion (or a move away): the row stays, as in IMAP
                created = (
                    _epoch(item.get("createdDateTime")) or _epoch(item.get("receivedDateTime")) or 0
                )
                uid = message_uid(item["id"])
                if created < mark or (created == mark and uid in at_mark):
                    # Stored before: an update (read state, flag, category) of an old
                    # message — IMAP's CONDSTORE read activity; never stored twice.
                    f.changed += 1
                    continue
                try:
                    batch.append(_message(item, f.state.name, read_size))
                except (KeyError, TypeError, ValueError):
                    self.unreadable[f.state.name] += 1
                    continue
                if created > new_mark:
                    new_mark, new_at = created, {uid}
                elif created == new_mark:
                    new_at.add(uid)
            if batch:
                yield batch
            nxt = (body or {}).get("@odata.nextLink")
            if nxt:
                body = self.tenant.get(
                    nxt,
                    f"delta of {self.mailbox} {f.state.name}",
                    {"Prefer": f"odata.maxpagesize={self.tenant.settings.page_size}"},
                )
                continue
            link = (body or {}).get("@odata.deltaLink")
            if not link:
                raise GraphError(f"delta of {self.mailbox} {f.state.name}: no deltaLink")
            f.after = _Token(f.graph_id, f.generation, link, new_mark, tuple(sorted(new_at)))
            return

    def raw_message(self, folder: FolderState, uid: int) -> bytes | None:
        return None  # bodies are not read (Mail.ReadBasic.All): the contact scan is IMAP's

    def forwards(self) -> list[Forward] | None:
        """The mailbox's enabled inbox rules that forward, forward as attachment or
        redirect; None (not read) with ``forwarding = false``. The rules ride in the
        folder batch when :meth:`folders` was read; else one request."""
        if not self.tenant.settings.forwarding:
            return None
        return self.read_forwards()

    def read_forwards(self) -> list[Forward]:
        """The inbox rules as forwarding, whatever the settings say (``doctor`` asks)."""
        what = f"inbox rules of {self.mailbox}"
        answer, self._rules = self._rules, None
        if answer is None:
            status, body, _ = self.tenant.request(
                "GET", f"{self.user}/mailFolders/inbox/messageRules", what=what
            )
        else:
            status, body = answer
        if status != 200:
            raise _error(status, body, what)
        return rules_to_forwards(self.mailbox, (body or {}).get("value", []))


def certificate_credential(path: str, password: str | None = None) -> dict[str, str]:
    """MSAL's client_credential for a PEM holding the private key and its certificate."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization

    try:
        with open(path, "rb") as fh:
            pem = fh.read()
        cert = x509.load_pem_x509_certificate(pem)
    except (OSError, ValueError) as exc:
        raise CredentialsRejected(f"certificate {path}: {exc}") from exc
    cred = {
        "private_key": pem.decode(),
        "thumbprint": cert.fingerprint(hashes.SHA1()).hex(),  # the x5t Entra ID expects
        "public_certificate": cert.public_bytes(serialization.Encoding.PEM).decode(),
    }
    if password:
        cred["passphrase"] = password
    return cred


def token_roles(token: str) -> list[str]:
    """The application permissions an app-only token carries (its ``roles`` claim)."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError):
        return []
    return sorted(claims.get("roles", []))


class GraphSource:
    """Exchange Online through Graph; ``open`` gives a read-only mailbox session."""

    SIGNALS: ClassVar[Signals] = GRAPH_SIGNALS  # what Graph measures: connectors/settings.py

    def __init__(
        self,
        settings: GraphSettings,
        secret: Callable[[], str] | None,
        name: str = "exchange-online",
        kind: str = "graph",
    ) -> None:
        self.settings = settings
        self.name = name
        self.kind = kind
        self._secret = secret
        self._tenant: _Tenant | None = None  # signed in on first use, until close()
        self._lock = threading.Lock()

    def __enter__(self) -> GraphSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the tenant's HTTP pool and forget its token; a later use signs in again."""
        with self._lock:
            tenant, self._tenant = self._tenant, None
        if tenant is not None:
            tenant.close()

    def _credential(self) -> Any:
        """MSAL's client_credential: the certificate (``secret``: its key's passphrase, or
        None) or the client secret."""
        password = self._secret() if self._secret is not None else None
        if self.settings.certificate_path:
            return certificate_credential(self.settings.certificate_path, password)
        if password is None:
            raise CredentialsRejected("a Graph source needs a client secret or a certificate")
        return password

    @property
    def tenant(self) -> _Tenant:
        """This source's token, pool and throttling gate: one per source, every mailbox
        of it shares them (two sources, even of one tenant, never do)."""
        with self._lock:
            if self._tenant is None:
                self._tenant = _Tenant(self.settings, self._credential)
            return self._tenant

    @contextmanager
    def open(self, mailbox: str) -> Iterator[GraphSession]:
        yield GraphSession(self.tenant, mailbox.lower())

    def forwards(self, mailbox: str) -> list[Forward]:
        """Enabled inbox rules that forward, forward as attachment or redirect (one
        request; a session that read its folders has them already: ``session.forwards()``)."""
        return GraphSession(self.tenant, mailbox.lower()).read_forwards()

    def diagnose(self, probe: Probe) -> list[Check]:
        """``doctor``'s checks: the token, the app's permissions, one mailbox's folders, its
        inbox rules and the usage report — stopping where a later check needs an earlier."""
        s = self.settings
        out: list[Check] = []

        def add(check: str, status: str, detail: str) -> None:
            out.append(Check(self.name, check, status, detail))

        if probe.secret:
            add("token", "warn", f"not tried: {probe.secret}")
            return out
        try:
            token = self.tenant.token()
        except SourceError as exc:
            add("token", "fail", exc.reason)
            return out
        add("token", "ok", f"app {s.client_id} signed in to {s.tenant_id} ({s.authority})")
        roles = set(token_roles(token))
        mail = {"Mail.ReadBasic.All", "Mail.Read"} & roles
        # RBAC for Applications (the guide's set-up) grants Mail.ReadBasic per mailbox scope,
        # not in the token's roles: the mailbox check below decides, not this one.
        add(
            "permissions",
            "ok" if mail else "warn",
            f"application permissions: {', '.join(sorted(roles)) or 'none'}"
            + (
                ""
                if mail
                else " — no Mail.ReadBasic.All in the token: fine if RBAC for Applications "
                "grants it for the agency's mailboxes (the mailbox check says)"
            ),
        )
        for perm, why in PERMISSIONS.items():
            if perm != "Mail.ReadBasic.All" and perm not in roles:
                add(f"permission:{perm}", "warn", f"not granted: no {why}")
        if "Mail.Read" in roles or "Mail.ReadWrite" in roles:
            add(
                "least-privilege",
                "warn",
                "Mail.Read(Write) lets the app read bodies: "
                "Mail.ReadBasic.All is enough unless read_size = true",
            )
        mailbox = probe.mailbox
        if mailbox is None:
            add("mailbox", *probe.missing("open"))
            return out
        try:
            with self.open(mailbox) as session:
                session.resume({})
                folders = session.folders()
        except SourceError as exc:
            add("mailbox", "fail", f"{mailbox}: {exc.reason} (is it inside the app's RBAC scope?)")
            return out
        found = {f.role: f for f in folders}
        add(
            "mailbox",
            "ok",
            f"{mailbox}: {len(folders)} folders, "
            f"inbox {found['inbox'].messages if 'inbox' in found else '?'} messages",
        )
        if s.forwarding:
            try:
                rules = session.read_forwards()  # they rode in the folder batch
                add("inbox-rules", "ok", f"{len(rules)} forwarding rule(s) in {mailbox}")
            except SourceError as exc:
                add("inbox-rules", "fail", exc.reason)
        if s.usage_report:
            q = self.tenant.usage_for(mailbox)
            if q.used_bytes is None:
                add(
                    "usage-report",
                    "warn",
                    self.tenant.usage_note
                    or (
                        f"{mailbox} is not in getMailboxUsageDetail: are user names concealed "
                        "in reports? (Microsoft 365 admin center > Settings > Org settings > "
                        "Reports)"
                    ),
                )
            else:
                add("usage-report", "ok", f"{mailbox} uses {q.used_bytes} bytes")
        return out

    def sign_ins(self) -> Iterator[tuple[str, str, int]]:
        """(mailbox, "successful", epoch) of each user's last successful sign-in, from
        ``signInActivity`` (Entra ID P1, AuditLog.Read.All + User.Read.All).

        Only ``lastSuccessfulSignInDateTime`` is a success (interactive or not);
        ``lastSignInDateTime`` and ``lastNonInteractiveSignInDateTime`` record attempts,
        failed ones and password sprays included (Microsoft's signInActivity resource
        page), so they never count as use. A user without it has no login: unknown.
        """
        what = "signInActivity"
        body = self.tenant.get(
            # 120: signInActivity's largest page (Graph's user resource); more is refused
            # or cut to 120 (the Entra docs disagree), so ask what is served
            "/users?$select=userPrincipalName,mail,signInActivity&$top=120",
            what,
        )
        while True:
            for u in body.get("value", []):
                who = (u.get("mail") or u.get("userPrincipalName") or "").lower()
                act = u.get("signInActivity") or {}
                when = _epoch(act.get("lastSuccessfulSignInDateTime"))
                if who and when:
                    yield who, "successful", when
            link = body.get("@odata.nextLink")
            if not link:
                return
            body = self.tenant.get(link, what)


def rules_to_forwards(mailbox: str, rules: list[dict[str, Any]]) -> list[Forward]:
    """Forward records from Graph messageRule objects (enabled ones only)."""
    out = []
    for rule in rules:
        if not rule.get("isEnabled", True):
            continue
        actions = rule.get("actions") or {}
        keeps = not (actions.get("delete") or actions.get("permanentDelete"))
        conditional = any(
            v not in (None, False, [], {}, "")
            for k in ("conditions", "exceptions")
            for v in (rule.get(k) or {}).values()
        )
        for key in ("forwardTo", "forwardAsAttachmentTo", "redirectTo"):
            for target in actions.get(key) or []:
                e = (target or {}).get("emailAddress") or {}
                address, _ = smtp_address(e.get("address"), e.get("name"))
                if address:
                    out.append(
                        Forward(mailbox, address, rule.get("displayName") or "", keeps, conditional)
                    )
    return out
