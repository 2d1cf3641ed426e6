"""A local Microsoft Graph and Entra ID endpoint: for the tests and the demo, never a
server for production (it keeps a tenant in memory).

Exchange Online has no local stand-in, so this answers, over HTTPS on 127.0.0.1 with a
certificate of its own, the documented JSON shapes of:

- Entra ID: ``/{tenant}/v2.0/.well-known/openid-configuration`` and the client-credentials
  token endpoint (a client secret, or a certificate's signed client assertion, checked);
  the token's ``roles`` are the app's application permissions;
- ``/users/{id}/mailFolders`` (``$top`` / ``@odata.nextLink`` paging), the well-known
  folder names, ``childFolders``, ``messages/delta`` (``changeType``, ``$select``,
  ``Prefer: odata.maxpagesize``, ``$skiptoken`` pages, ``$deltatoken`` rounds, read-state
  changes and ``@removed`` entries in later rounds, 410 for an expired state),
  ``mailFolders/inbox/messageRules``;
- ``/users?$select=signInActivity`` (403 without an Entra ID P1 tenant);
- ``/reports/getMailboxUsageDetail(period='D7')``: a 302 to a CSV link that needs no token;
- ``/$batch`` (at most 20 parts, each answered as on its own);
- RBAC for Applications: roles granted in a management scope reach the mailboxes in it,
  beside (not instead of) the token's tenant-wide roles;
- injectable throttling: 429 with ``Retry-After``, for whole requests or batch parts.

Every HTTP request is recorded (``calls``) and every batch part too (``parts``).
The Graph client (requests + MSAL) runs unmodified against it.
"""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import json
import re
import socket
import ssl
import threading
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

TENANT = "danang.onmicrosoft.com"
CLIENT_ID = "5f0c8a9e-1b7d-4c33-9a51-mailusage-test"
WELL_KNOWN = ("inbox", "sentitems", "drafts", "deleteditems", "junkemail", "archive")
MAIL_ROLES = ("Mail.ReadBasic.All", "Mail.Read", "Mail.ReadWrite")
ALL_ROLES = (
    "Mail.ReadBasic.All",
    "MailboxSettings.Read",
    "Reports.Read.All",
    "AuditLog.Read.All",
    "User.Read.All",
)


# The entity types this endpoint serves, as Microsoft's v1.0 metadata defines them
# (microsoftgraph/msgraph-metadata schemas/v1.0-Prod.csdl, vendored with its commit).
METADATA = Path(__file__).resolve().parent / "graph_metadata" / "v1.0-entities.xml"
_EDM = "{http://docs.oasis-open.org/odata/ns/edm}"


def entity_properties(path: Path = METADATA) -> dict[str, set[str]]:
    """Type name -> every property and navigation property, base types included.

    >>> "sizeInBytes" in entity_properties()["mailFolder"]
    False
    """
    root = ET.parse(path).getroot()
    own: dict[str, tuple[str | None, set[str]]] = {}
    for kind in ("EntityType", "ComplexType"):
        for t in root.iter(f"{_EDM}{kind}"):
            names = {
                p.get("Name", "")
                for p in t
                if p.tag in (f"{_EDM}Property", f"{_EDM}NavigationProperty")
            }
            base = t.get("BaseType")
            own[t.get("Name", "")] = (base.split(".")[-1] if base else None, names)
    out = {}
    for name in own:
        props: set[str] = set()
        cur: str | None = name
        while cur is not None and cur in own:
            base, names = own[cur]
            props |= names
            cur = base
        out[name] = props
    return out


def _type_name(odata_type: str) -> str:
    """``Collection(graph.message)`` -> ``message``."""
    inner = odata_type.removeprefix("Collection(").removesuffix(")")
    return inner.split(".")[-1]


def navigation_targets(path: Path = METADATA) -> dict[tuple[str, str], str]:
    """(type, navigation property) -> the type it leads to, base types included.

    >>> navigation_targets()[("message", "singleValueExtendedProperties")]
    'singleValueLegacyExtendedProperty'
    """
    root = ET.parse(path).getroot()
    direct: dict[str, tuple[str | None, dict[str, str]]] = {}
    for t in root.iter(f"{_EDM}EntityType"):
        navs = {
            p.get("Name", ""): _type_name(p.get("Type", ""))
            for p in t
            if p.tag == f"{_EDM}NavigationProperty"
        }
        base = t.get("BaseType")
        direct[t.get("Name", "")] = (base.split(".")[-1] if base else None, navs)
    out: dict[tuple[str, str], str] = {}
    for name in direct:
        cur: str | None = name
        while cur is not None and cur in direct:
            base, navs = direct[cur]
            for nav, target in navs.items():
                out.setdefault((name, nav), target)
            cur = base
    return out


_PROPERTIES = entity_properties()
_NAVIGATION = navigation_targets()
# In a $filter, a property is the name before a comparison operator (OData ABNF, §5.1.1.1
# of OData v4.01 URL Conventions: eq ne gt ge lt le); string literals are skipped.
_FILTER_NAME = re.compile(r"(?:'[^']*')|\b([A-Za-z_][A-Za-z0-9_/]*)\s+(?:eq|ne|gt|ge|lt|le)\b")


def _filter_names(expression: str) -> list[str]:
    return [m.group(1) for m in _FILTER_NAME.finditer(expression) if m.group(1)]


def unknown_name(entity: str, query: dict[str, str]) -> tuple[str, str] | None:
    """The first $select / $expand / $filter / $orderby name its type does not have, with
    that type — an $expand's own ``($filter=…)`` is of the expanded type — (Graph's 400:
    "Could not find a property named 'x' on type 'microsoft.graph.mailFolder'.")."""
    names: list[tuple[str, str]] = []
    for key in ("$select", "$orderby"):
        names += [
            (entity, n.strip().split(" ")[0]) for n in query.get(key, "").split(",") if n.strip()
        ]
    names += [(entity, n) for n in _filter_names(query.get("$filter", ""))]
    for item in filter(None, (e.strip() for e in query.get("$expand", "").split(","))):
        nav, _, options = item.partition("(")
        names.append((entity, nav.strip()))
        target = _NAVIGATION.get((entity, nav.strip()))
        inner = re.search(r"\$filter=([^;)]*)", options)
        if target is not None and inner is not None:
            names += [(target, n) for n in _filter_names(inner.group(1))]
    return next(((t, n) for t, n in names if n not in _PROPERTIES.get(t, set())), None)


def unknown_property(entity: str, query: dict[str, str]) -> str | None:
    """The name :func:`unknown_name` finds, without its type."""
    bad = unknown_name(entity, query)
    return bad[1] if bad else None


def _parse_error(entity: str, name: str) -> tuple[int, dict[str, str], Any]:
    # The error body Graph v1.0 answers (microsoft-graph-explorer-v4 issue 3916).
    return _error(
        400,
        "RequestBroker--ParseUri",
        f"Could not find a property named '{name}' on type 'microsoft.graph.{entity}'.",
    )


def iso(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class GMessage:
    id: str
    created: datetime
    received: datetime
    sent: datetime | None
    sender: str | None
    to: list[str]
    cc: list[str] = field(default_factory=list)
    is_read: bool = False
    message_id: str | None = None
    size: int = 4096
    seq_created: int = 0
    seq_changed: int = 0


@dataclass
class GFolder:
    id: str
    name: str
    well_known: str | None = None
    parent: str | None = None
    messages: list[GMessage] = field(default_factory=list)
    removed: list[tuple[int, str]] = field(default_factory=list)  # (seq, message id)
    generation: int = 0  # bump to expire every delta link of the folder (410)
    no_delta: bool = False  # a folder Graph has no delta for (400 ErrorInvalidRequest)


@dataclass
class GUser:
    address: str
    folders: list[GFolder] = field(default_factory=list)
    rules: list[dict[str, Any]] = field(default_factory=list)
    sign_in: dict[str, str] | None = None
    upn: str = ""  # the User Principal Name, when it is not the primary SMTP address
    storage_used: int = 0
    quota: int = 53_687_091_200


def make_certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 / localhost: (pem with key, cert only)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    both, only = directory / "key-and-cert.pem", directory / "cert.pem"
    both.write_bytes(key_pem + cert_pem)
    only.write_bytes(cert_pem)
    return both, only


class GraphWorld:
    """The tenant's state and what the tests inject."""

    def __init__(self) -> None:
        self.users: dict[str, GUser] = {}
        self.secret = "graph-test-secret-of-32-bytes-or-more"
        self.certificate: x509.Certificate | None = None  # accepted for client assertions
        self.roles: list[str] = list(ALL_ROLES)
        # RBAC for Applications: roles granted for the mailboxes of a management scope only
        # (None: no such assignment). "These permission grants are independent of the
        # unscoped grants in Microsoft Entra ID" (https://learn.microsoft.com/en-us/graph/
        # auth-limit-mailbox-access): a tenant-wide role in the token reaches every mailbox.
        self.scope: set[str] | None = None
        self.scope_roles: tuple[str, ...] = ("Mail.ReadBasic.All", "MailboxSettings.Read")
        self.premium = True  # Entra ID P1: signInActivity readable
        self.seq = 0
        self.page_cap = 1000  # Graph pages as it likes: at most this many, whatever $top asks
        self.throttle_requests = 0  # the next N HTTP requests answer 429
        self.throttle_parts = 0  # the next N batch parts answer 429
        self.retry_after = 1
        self.throttle_status = 429  # or 503: Graph answers both with Retry-After
        self.drop_pages = 0  # the next N later delta pages ($skiptoken) drop the connection
        self.calls: list[tuple[str, str]] = []
        self.parts: list[str] = []
        self.tokens_issued = 0
        self.revoked_upto = 0  # tokens numbered up to this answer 401 (revoked, expired)
        # The CSV's columns in the documented order (https://learn.microsoft.com/en-us/graph/
        # api/reportroot-getmailboxusagedetail, Response); the client reads them by name.
        self.usage_columns = [
            "Report Refresh Date",
            "User Principal Name",
            "Display Name",
            "Is Deleted",
            "Deleted Date",
            "Created Date",
            "Last Activity Date",
            "Item Count",
            "Storage Used (Byte)",
            "Issue Warning Quota (Byte)",
            "Prohibit Send Quota (Byte)",
            "Prohibit Send/Receive Quota (Byte)",
            "Deleted Item Count",
            "Deleted Item Size (Byte)",
            "Deleted Item Quota (Byte)",
            "Has Archive",
            "Report Period",
        ]
        self.lock = threading.Lock()

    def tick(self) -> int:
        self.seq += 1
        return self.seq

    def user(self, address: str) -> GUser:
        address = address.lower()
        if address not in self.users:
            u = GUser(address)
            names = {
                "inbox": "Inbox",
                "sentitems": "Sent Items",
                "drafts": "Drafts",
                "deleteditems": "Deleted Items",
                "junkemail": "Junk Email",
            }
            for wk, name in names.items():
                u.folders.append(GFolder(f"{address}:{wk}", name, wk))
            self.users[address] = u
        return self.users[address]

    def folder(self, address: str, name: str, parent: str | None = None) -> GFolder:
        u = self.user(address)
        for f in u.folders:
            if f.name == name and f.parent == parent:
                return f
        f = GFolder(f"{address}:f{self.tick()}", name, None, parent)
        u.folders.append(f)
        return f

    def deliver(self, address: str, folder: str, msg: GMessage, parent: str | None = None) -> None:
        with self.lock:
            msg.seq_created = msg.seq_changed = self.tick()
            if not msg.id:
                msg.id = f"AAMk{address.split('@')[0]}-{msg.seq_created:08d}"
            self.folder(address, folder, parent).messages.append(msg)

    def mark_read(self, address: str, folder: str, index: int) -> None:
        with self.lock:
            m = self.folder(address, folder).messages[index]
            m.is_read = True
            m.seq_changed = self.tick()

    def delete(self, address: str, folder: str, index: int) -> None:
        with self.lock:
            f = self.folder(address, folder)
            m = f.messages.pop(index)
            f.removed.append((self.tick(), m.id))


def _b64(obj: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).decode().rstrip("=")


def _unb64(text: str) -> Any:
    return json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))


def _error(status: int, code: str, message: str) -> tuple[int, dict[str, str], Any]:
    return status, {}, {"error": {"code": code, "message": message}}


class GraphApp:
    """Answers one Graph request (a whole HTTP request or a $batch part)."""

    def __init__(self, world: GraphWorld, base: str) -> None:
        self.w = world
        self.base = base  # https://127.0.0.1:port

    @property
    def root(self) -> str:
        return f"{self.base}/v1.0"

    def token_roles(self, headers: dict[str, str]) -> list[str] | None:
        auth = headers.get("authorization", "")
        if not auth.startswith("Bearer "):
            return None
        try:
            claims = jwt.decode(auth[7:], self.w.secret, algorithms=["HS256"], audience="graph")
        except jwt.PyJWTError:
            return None
        if int(claims.get("n", 0)) <= self.w.revoked_upto:
            return None  # a token Entra ID no longer honours: 401, as an expired one
        return list(claims.get("roles", []))

    def handle(
        self, method: str, target: str, headers: dict[str, str], body: Any
    ) -> tuple[int, dict[str, str], Any]:
        roles = self.token_roles(headers)
        if roles is None:  # the code and message Graph is observed to send, with a challenge
            status, hdrs, out = _error(
                401, "InvalidAuthenticationToken", "Access token has expired or is not yet valid."
            )
            return status, {**hdrs, "WWW-Authenticate": 'Bearer realm=""'}, out
        parts = urlsplit(target)
        path = unquote(parts.path)
        if path.startswith("/v1.0"):
            path = path[len("/v1.0") :]
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        if method == "POST" and path == "/$batch":
            return self.batch(body, headers)
        if method != "GET":  # a limit of this endpoint, not Graph behaviour
            return _error(405, "BadRequest", "only GET is served")
        if path.startswith("/reports/getMailboxUsageDetail"):
            # Reports.Read.All (reportroot-getmailboxusagedetail, Permissions); the 403's
            # body is not documented: a placeholder. "returns a 302 Found response that
            # redirects to a preauthenticated download URL ... in the Location header".
            if "Reports.Read.All" not in roles:
                return _error(403, "UnknownError", "Reports.Read.All is required")
            # "period ... supported values: D7, D30, D90, and D180 ... Required." (same page)
            if not re.search(r"\(period='D(7|30|90|180)'\)$", path):
                return _error(400, "BadRequest", "Invalid period.")
            return 302, {"Location": f"{self.base}/download/usage.csv?sig=abc"}, None
        if path == "/users":
            return self.sign_ins(roles, query)
        segs = path.strip("/").split("/")
        if len(segs) < 2 or segs[0] != "users":  # (a limit of this endpoint)
            return _error(400, "BadRequest", f"unsupported {path}")
        address = segs[1].lower()
        user = self.w.users.get(address)
        if user is None:  # as observed from Exchange Online (no Microsoft page documents it)
            return _error(404, "ErrorInvalidUser", f"The requested user '{address}' is invalid.")
        rest = segs[2:]
        if rest[:1] != ["mailFolders"]:  # (a limit of this endpoint)
            return _error(400, "BadRequest", f"unsupported {path}")
        # mailFolders and message delta: Mail.ReadBasic.All, Mail.Read or Mail.ReadWrite
        # (user-list-mailfolders, message-delta: Permissions); messageRules: only
        # MailboxSettings.Read (mailfolder-list-messagerules). The 403 body as observed.
        needed = ("MailboxSettings.Read",) if rest[2:3] == ["messageRules"] else MAIL_ROLES
        if not self.granted(needed, roles, address):
            return _error(
                403, "ErrorAccessDenied", "Access is denied. Check credentials and try again."
            )
        entity = "message" if rest[-2:] == ["messages", "delta"] else "mailFolder"
        if rest[2:3] == ["messageRules"]:
            entity = "messageRule"
        bad = unknown_name(entity, query)
        if bad is not None:
            return _parse_error(*bad)
        if len(rest) == 1:
            top = [f for f in user.folders if f.parent is None]
            return self.folder_page(top, query, f"/users/{quote(address)}/mailFolders")
        folder = self.find(user, rest[1])
        if folder is None:  # e.g. a well-known folder the mailbox lacks (as observed)
            return _error(
                404, "ErrorItemNotFound", "The specified object was not found in the store."
            )
        if len(rest) == 2:
            return 200, {}, self.folder_json(user, folder)
        if rest[2] == "childFolders":
            kids = [f for f in user.folders if f.parent == folder.id]
            return self.folder_page(
                kids, query, f"/users/{quote(address)}/mailFolders/{folder.id}/childFolders"
            )
        if rest[2] == "messageRules":
            return 200, {}, {"value": user.rules}
        if rest[2:] == ["messages", "delta"]:
            if folder.no_delta:  # a test's fault injection; the wording has no source
                return _error(400, "ErrorInvalidRequest", "Delta is not supported on this folder.")
            return self.delta(user, folder, query, headers)
        return _error(400, "BadRequest", f"unsupported {path}")  # (a limit of this endpoint)

    def find(self, user: GUser, key: str) -> GFolder | None:
        for f in user.folders:
            if f.id == key or (f.well_known and f.well_known == key.lower()):
                return f
        return None

    def folder_json(self, user: GUser, f: GFolder) -> dict[str, Any]:
        kids = [c for c in user.folders if c.parent == f.id]
        return {
            "id": f.id,
            "displayName": f.name,
            "parentFolderId": f.parent or f"{user.address}:root",
            "childFolderCount": len(kids),
            "totalItemCount": len(f.messages),
            "unreadItemCount": sum(1 for m in f.messages if not m.is_read),
            "isHidden": False,
        }

    def folder_page(
        self, folders: list[GFolder], query: dict[str, str], link: str
    ) -> tuple[int, dict[str, str], Any]:
        # "default page size (10 items)" and @odata.nextLink (user-list-mailfolders, Tip)
        top = min(int(query.get("$top", 10)), self.w.page_cap)
        skip = int(query.get("$skip", 0))
        user = self.w.users[folders[0].id.split(":")[0]] if folders else None
        page = folders[skip : skip + top]
        out: dict[str, Any] = {"value": [self.folder_json(user, f) for f in page] if user else []}
        if skip + top < len(folders):
            sel = query.get("$select", "")
            out["@odata.nextLink"] = (
                f"{self.root}{link}?$top={top}&$skip={skip + top}&$select={sel}"
            )
        return 200, {}, out

    def message_json(self, m: GMessage, select: set[str], expand: bool) -> dict[str, Any]:
        def addr(a: str) -> dict[str, Any]:
            return {"emailAddress": {"name": a.split("@")[0], "address": a}}

        full: dict[str, Any] = {
            "@odata.type": "#microsoft.graph.message",
            "@odata.etag": f'W/"CQAAABYAAA{m.seq_changed}"',
            "createdDateTime": iso(m.created),
            "receivedDateTime": iso(m.received),
            "sentDateTime": iso(m.sent) if m.sent else None,
            "from": addr(m.sender) if m.sender else None,
            "toRecipients": [addr(a) for a in m.to],
            "ccRecipients": [addr(a) for a in m.cc],
            "isRead": m.is_read,
            "internetMessageId": m.message_id,
            "subject": "never selected by mailusage",
        }
        out = {k: v for k, v in full.items() if k in select or k.startswith("@")}
        if expand:
            # Graph answers the tag as it stores it, not as asked ("Integer 0xe08").
            out["singleValueExtendedProperties"] = [{"id": "Integer 0xe08", "value": str(m.size)}]
        out["id"] = m.id
        return out

    def delta(
        self, user: GUser, folder: GFolder, query: dict[str, str], headers: dict[str, str]
    ) -> tuple[int, dict[str, str], Any]:
        # Prefer: odata.maxpagesize and $skiptoken/$deltatoken links that encode the query
        # (message-delta: "encodes any specified parameters into the token portion"); the
        # default of 1000 has no source (the client always sends Prefer).
        page = 1000
        prefer = headers.get("prefer", "")
        if "odata.maxpagesize=" in prefer:
            page = int(prefer.split("odata.maxpagesize=")[1].split(",")[0])
        if "$top" in query:  # delta "support[s] $select, $top, and $expand" (message-delta)
            page = min(page, int(query["$top"]))
        if "$skiptoken" in query or "$deltatoken" in query:
            state = _unb64(query.get("$skiptoken") or query["$deltatoken"])
            # An expired state: "410 Gone" (delta-query-overview) or "a 40X-series error
            # with error codes such as syncStateNotFound"; one of the spellings is served.
            if state["gen"] != folder.generation:
                return _error(410, "SyncStateNotFound", "The sync state generation is not found.")
        else:
            state = {
                "gen": folder.generation,
                "since": 0,
                "change": query.get("changeType"),
                "select": query.get("$select", ""),
                "expand": "$expand" in query,
                "offset": 0,
            }
        if "$deltatoken" in query:  # a new round from the delta link
            state = {**state, "offset": 0, "since": state["upto"]}
        if state.get("offset", 0) == 0 or "upto" not in state:
            state["upto"] = self.w.seq
        since, upto = state["since"], state["upto"]
        entries: list[dict[str, Any]] = []
        select = set(state["select"].split(",")) if state["select"] else set()
        for m in sorted(folder.messages, key=lambda m: m.seq_created):
            created = since < m.seq_created <= upto
            changed = m.seq_created <= since < m.seq_changed <= upto
            # learn.microsoft.com/graph/delta-query-messages: with changeType=created "the
            # messages updated & deleted since the last sync aren't returned"; without a
            # changeType, updated messages come with the selected properties.
            kind = state.get("change")
            if (created and kind in (None, "created")) or (changed and kind in (None, "updated")):
                entries.append(self.message_json(m, select, state["expand"]))
        if since and state.get("change") in (None, "deleted"):
            entries += [
                # as delta-query-messages' example shows a removed message
                {
                    "@odata.type": "#microsoft.graph.message",
                    "id": mid,
                    "@removed": {"reason": "deleted"},
                }
                for s, mid in folder.removed
                if since < s <= upto
            ]
        offset = state["offset"]
        chunk = entries[offset : offset + page]
        link = (
            f"{self.root}/users/{quote(user.address)}/mailFolders/{quote(folder.id)}/messages/delta"
        )
        out: dict[str, Any] = {
            "@odata.context": f"{self.root}/$metadata#Collection(message)",
            "value": chunk,
        }
        if offset + page < len(entries):
            out["@odata.nextLink"] = f"{link}?$skiptoken={_b64({**state, 'offset': offset + page})}"
        else:
            out["@odata.deltaLink"] = f"{link}?$deltatoken={_b64({**state, 'offset': 0})}"
        return 200, {}, out

    def granted(self, needed: tuple[str, ...], roles: list[str], address: str) -> bool:
        """A role the token holds tenant-wide, or one RBAC for Applications grants for
        this mailbox's scope: the two add up (see GraphWorld.scope)."""
        if any(r in roles for r in needed):
            return True
        w = self.w
        return (
            w.scope is not None and address in w.scope and any(r in w.scope_roles for r in needed)
        )

    def sign_ins(self, roles: list[str], query: dict[str, str]) -> tuple[int, dict[str, str], Any]:
        bad = unknown_name("user", query)
        if bad is not None:
            return _parse_error(*bad)
        # /users: "$skip isn't supported" (https://learn.microsoft.com/en-us/graph/api/user-list,
        # Optional query parameters): pages are followed by an opaque $skiptoken. (The 400's
        # wording is not documented; its status is what an unsupported option gets.)
        if "$skip" in query:
            return _error(400, "Request_BadRequest", "$skip is not supported on users.")
        # Listing users needs User.Read.All (or User.ReadWrite.All, Directory.Read.All…:
        # user-list, Permissions); the refusal's body as json-batching's example shows it.
        if not any(
            r in roles for r in ("User.Read.All", "User.ReadWrite.All", "Directory.Read.All")
        ):
            return _error(
                403,
                "Authorization_RequestDenied",
                "Insufficient privileges to complete the operation.",
            )
        selected = "signInActivity" in query.get("$select", "")
        if selected:
            # Without AuditLog.Read.All, as observed (microsoft-graph-explorer-v4 issues
            # 2731 and 3165): "Calling principal does not have required MSGraph permissions".
            if "AuditLog.Read.All" not in roles:
                return _error(
                    403,
                    "Authentication_MSGraphPermissionMissing",
                    "Calling principal does not have required MSGraph permissions "
                    "AuditLog.Read.All",
                )
            # Entra ID P1 needed (microsoft-graph-docs issues 12772, 14120; observed body).
            if not self.w.premium:
                return _error(
                    403,
                    "Authentication_RequestFromNonPremiumTenantOrB2CTenant",
                    "Neither tenant is B2C or tenant doesn't have premium license",
                )
        users = sorted(self.w.users.values(), key=lambda u: u.address)
        # "$top: 1 to 999" (user-list); with signInActivity "the maximum page size is 120
        # users. Requests with $top set higher than 120 will return pages with up to 120
        # users" (https://learn.microsoft.com/en-us/graph/api/resources/user, signInActivity).
        cap = min(self.w.page_cap, 120 if selected else 999)
        top = min(int(query.get("$top", 100)), cap)
        skip = int(_unb64(query["$skiptoken"])["offset"]) if "$skiptoken" in query else 0
        value = []
        for u in users[skip : skip + top]:
            entry: dict[str, Any] = {
                "id": u.address,
                "userPrincipalName": u.upn or u.address,
                "mail": u.address,
                "proxyAddresses": [f"SMTP:{u.address}"],
            }
            if selected:  # "not returned by default": only when $select names it (user-list)
                entry["signInActivity"] = u.sign_in
            value.append(entry)
        out: dict[str, Any] = {"value": value}
        if skip + top < len(users):
            out["@odata.nextLink"] = (
                f"{self.root}/users?$select={query.get('$select', '')}"
                f"&$top={top}&$skiptoken={_b64({'offset': skip + top})}"
            )
        return 200, {}, out

    def usage_csv(self) -> str:
        cols = self.w.usage_columns
        rows = [",".join(cols)]
        for u in sorted(self.w.users.values(), key=lambda u: u.address):
            values = {
                "Report Refresh Date": "2026-11-30",
                "User Principal Name": u.upn or u.address,
                "Display Name": u.address.split("@")[0],
                "Is Deleted": "False",
                "Storage Used (Byte)": str(u.storage_used),
                "Item Count": str(sum(len(f.messages) for f in u.folders)),
                "Prohibit Send/Receive Quota (Byte)": str(u.quota),
                "Report Period": "7",
            }
            rows.append(",".join(values.get(c, "") for c in cols))
        return "\ufeff" + "\n".join(rows) + "\n"

    def batch(self, body: Any, headers: dict[str, str]) -> tuple[int, dict[str, str], Any]:
        """JSON batching as https://learn.microsoft.com/en-us/graph/json-batching describes
        it: at most 20 requests ("Batch size limitations"; the refusal's wording is not
        documented), ids unique (a duplicate "fails with a 400"), each part answered on its
        own, and "individual responses might appear in a different order" — here always
        reversed, so a client that reads them in request order is caught."""
        reqs = body.get("requests") if isinstance(body, dict) else None
        if not isinstance(reqs, list) or not reqs:
            return _error(400, "BadRequest", "Invalid batch payload format.")
        if len(reqs) > 20:
            return _error(400, "BadRequest", "A maximum of 20 requests is allowed per batch.")
        ids = [str(r.get("id")) for r in reqs]
        if len(set(ids)) != len(ids):
            return _error(400, "BadRequest", "Batch request contains duplicate request ids.")
        responses = []
        for r in reqs:
            self.w.parts.append(r["url"])
            # a throttled part "fails with a status of 429" and its own Retry-After
            # (json-batching, throttling: "Throttling and batching")
            if self.w.throttle_parts > 0:
                self.w.throttle_parts -= 1
                responses.append(
                    {
                        "id": r["id"],
                        "status": self.w.throttle_status,
                        "headers": {"Retry-After": str(self.w.retry_after)},
                        "body": {"error": {"code": "ApplicationThrottled", "message": "throttled"}},
                    }
                )
                continue
            sub_headers = {**headers, **{k.lower(): v for k, v in (r.get("headers") or {}).items()}}
            # the docs' own examples write "url": "users?$select=…" as well as "/me/…"
            url = "/v1.0/" + r["url"].lstrip("/")
            status, hdrs, out = self.handle(r.get("method", "GET"), url, sub_headers, None)
            responses.append({"id": r["id"], "status": status, "headers": hdrs, "body": out})
        return 200, {}, {"responses": responses[::-1]}


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:
        pass

    def _send(
        self, status: int, headers: dict[str, str], body: Any, ctype: str = "application/json"
    ) -> None:
        data = (
            b""
            if body is None
            else (body if isinstance(body, bytes) else json.dumps(body).encode())
        )
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        if data:
            self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> bytes:
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def _dispatch(self, method: str) -> None:
        w, app = self.server.world, self.server.app
        raw = self._body()
        path = urlsplit(self.path).path
        w.calls.append((method, self.path))
        # a transport fault the tests inject, not a Graph behaviour
        if w.drop_pages > 0 and "/messages/delta" in path and "skiptoken" in self.path:
            w.drop_pages -= 1
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)  # mid-folder, no answer at all
            return None
        # OpenID discovery, the fields MSAL reads (learn.microsoft.com/entra/identity-platform/
        # v2-protocols-oidc; the real document has more, e.g. jwks_uri)
        if path.endswith("/v2.0/.well-known/openid-configuration"):
            tenant = path.split("/")[1]
            base = f"{app.base}/{tenant}"
            return self._send(
                200,
                {},
                {
                    "issuer": f"{base}/v2.0",
                    "token_endpoint": f"{base}/oauth2/v2.0/token",
                    "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
                },
            )
        if path.endswith("/oauth2/v2.0/token"):
            return self._token(raw.decode())
        if path == "/download/usage.csv":
            # "Preauthenticated download URLs ... do not require an Authorization header"
            # and the example answers application/octet-stream (reportroot-getmailboxusagedetail)
            return self._send(200, {}, app.usage_csv().encode(), "application/octet-stream")
        # 429 with Retry-After (learn.microsoft.com/graph/throttling; 503 likewise, errors)
        if w.throttle_requests > 0:
            w.throttle_requests -= 1
            return self._send(
                w.throttle_status,
                {"Retry-After": str(w.retry_after)},
                {"error": {"code": "TooManyRequests", "message": "throttled"}},
            )
        headers = {k.lower(): v for k, v in self.headers.items()}
        body = json.loads(raw) if raw else None
        status, hdrs, out = app.handle(method, self.path, headers, body)
        self._send(status, hdrs, out)

    def _token(self, form_text: str) -> None:
        w = self.server.world
        form = {k: v[0] for k, v in parse_qs(form_text).items()}
        # Entra's answers (learn.microsoft.com/entra/identity-platform/reference-error-codes):
        # AADSTS700016 application not found, AADSTS7000215 invalid client secret.
        if form.get("grant_type") != "client_credentials" or form.get("client_id") != CLIENT_ID:
            return self._send(
                400,
                {},
                {
                    "error": "unauthorized_client",
                    "error_description": "AADSTS700016: Application not found",
                },
            )
        ok = False
        if "client_secret" in form:
            ok = form["client_secret"] == w.secret
        elif "client_assertion" in form and w.certificate is not None:
            try:
                key: Any = w.certificate.public_key()
                jwt.decode(
                    form["client_assertion"],
                    key,
                    algorithms=["RS256", "PS256"],
                    audience=f"{self.server.app.base}/{TENANT}/oauth2/v2.0/token",
                )
                ok = True
            except jwt.PyJWTError:
                ok = False
        if not ok:
            return self._send(
                401,
                {},
                {
                    "error": "invalid_client",
                    "error_description": "AADSTS7000215: Invalid client secret provided.",
                },
            )
        w.tokens_issued += 1
        token = jwt.encode(
            {"aud": "graph", "roles": w.roles, "n": w.tokens_issued}, w.secret, algorithm="HS256"
        )
        self._send(200, {}, {"token_type": "Bearer", "expires_in": 3599, "access_token": token})


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    world: GraphWorld
    app: GraphApp


@contextmanager
def graph_endpoint(
    directory: Path, world: GraphWorld | None = None
) -> Iterator[tuple[str, GraphWorld, Path]]:
    """Serve a Graph tenant on https://127.0.0.1:<port>; yields (base url, world, CA file)."""
    world = world or GraphWorld()
    both, cert = make_certificate(directory)
    server = _Server(("127.0.0.1", 0), _Handler)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(both)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    base = f"https://127.0.0.1:{server.server_address[1]}"
    server.world, server.app = world, GraphApp(world, base)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield base, world, cert
    finally:
        server.shutdown()
        server.server_close()
