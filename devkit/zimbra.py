"""A local Zimbra admin SOAP endpoint for the tests (never part of the product).

Answers, on 127.0.0.1, SOAP 1.2 envelopes in the shapes of Zimbra Collaboration 8.8/9/10's
``/service/admin/soap``: ``AuthRequest`` (``urn:zimbraAdmin``: ``authToken``, ``lifetime``),
``GetAccountRequest`` (``<account name id><a n="…">…</a></account>``, only the ``attrs``
asked for) and ``GetQuotaUsageRequest`` as zm-mailbox's handler does it (see
:func:`quota_usage`); faults as ``soap:Fault`` with ``<Error xmlns="urn:zimbra"><Code>``
(``account.NO_SUCH_ACCOUNT``, ``account.NO_SUCH_DOMAIN``, ``account.AUTH_FAILED``,
``service.AUTH_EXPIRED``, ``service.INVALID_REQUEST``).

Sources (Zimbra/zm-mailbox, read at commit 2b7f978, 2024-10-24):
``store/src/java/com/zimbra/cs/service/admin/GetQuotaUsage.java`` (the handler),
``soap/src/java/com/zimbra/soap/admin/message/GetQuotaUsageRequest.java`` (the attributes),
``common/src/java/com/zimbra/common/soap/AdminConstants.java`` (attribute names),
``common/src/java/com/zimbra/common/soap/Element.java`` (booleans written as "1"/"0").
"""

from __future__ import annotations

import secrets
import threading
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from xml.sax.saxutils import escape, quoteattr

SOAP = "http://www.w3.org/2003/05/soap-envelope"
ADMIN = "urn:zimbraAdmin"
ZIMBRA = "urn:zimbra"
PATH = "/service/admin/soap"


@dataclass
class ZAccount:
    name: str
    attrs: dict[str, list[str]] = field(default_factory=dict)
    used: int = 0
    limit: int = 0  # 0: no quota
    server: str = "mail1.tiengiang.gov.vn"  # the mailbox server that holds it (zimbraMailHost)

    @property
    def domain(self) -> str:
        return self.name.rpartition("@")[2]


@dataclass
class ZimbraWorld:
    admin: str = "admin@tiengiang.gov.vn"
    password: str = "zimbra-admin-secret"
    accounts: dict[str, ZAccount] = field(default_factory=dict)
    tokens: set[str] = field(default_factory=set)
    requests: list[str] = field(default_factory=list)
    # every GetQuotaUsageRequest's attributes and whether its context said <nosession/>
    quota_requests: list[tuple[dict[str, str], bool]] = field(default_factory=list)
    # the server this endpoint is (the handler's Provisioning.getLocalServer()), and every
    # mailbox server (getAllMailClientServers(), in this order)
    local_server: str = "mail1.tiengiang.gov.vn"
    servers: tuple[str, ...] = ("mail1.tiengiang.gov.vn",)
    # a test's hook run after each GetQuotaUsageRequest is answered: mail arriving between
    # two requests (nothing Zimbra does; the handler only re-reads sizes, see quota_usage)
    after_quota_request: Callable[[ZimbraWorld], None] | None = None

    def account(self, name: str, **attrs: list[str]) -> ZAccount:
        acc = self.accounts.setdefault(name.lower(), ZAccount(name.lower()))
        acc.attrs.update(attrs)
        return acc

    def expire_tokens(self) -> None:
        self.tokens.clear()


def _envelope(body: str) -> bytes:
    return (
        f'<soap:Envelope xmlns:soap="{SOAP}"><soap:Header><context xmlns="{ZIMBRA}"/>'
        f"</soap:Header><soap:Body>{body}</soap:Body></soap:Envelope>"
    ).encode()


def _fault(code: str, text: str) -> bytes:
    # common/src/java/com/zimbra/common/soap/Soap12Protocol.java soapFault(): Code/Value,
    # Reason/Text, Detail/Error/Code; SoapServlet.java answers a fault with HTTP 500
    return _envelope(
        f"<soap:Fault><soap:Code><soap:Value>soap:Sender</soap:Value></soap:Code>"
        f"<soap:Reason><soap:Text>{escape(text)}</soap:Text></soap:Reason><soap:Detail>"
        f'<Error xmlns="{ZIMBRA}"><Code>{code}</Code><Trace>qtp-1</Trace></Error>'
        "</soap:Detail></soap:Fault>"
    )


def answer(world: ZimbraWorld, raw: bytes) -> tuple[int, bytes]:
    root = ET.fromstring(raw)
    token = root.findtext(f"{{{SOAP}}}Header/{{{ZIMBRA}}}context/{{{ZIMBRA}}}authToken")
    body = root.find(f"{{{SOAP}}}Body")
    assert body is not None and len(body)
    req = body[0]
    name = req.tag.split("}")[1]
    world.requests.append(name)
    if name == "AuthRequest":
        # store/src/java/com/zimbra/cs/service/admin/Auth.java: authToken and lifetime
        # (content elements); a wrong password is AccountServiceException.AUTH_FAILED
        if (
            req.findtext(f"{{{ADMIN}}}name") != world.admin
            or req.findtext(f"{{{ADMIN}}}password") != world.password
        ):
            return 500, _fault("account.AUTH_FAILED", "authentication failed for [admin]")
        tok = "0_" + secrets.token_hex(16)
        world.tokens.add(tok)
        return 200, _envelope(
            f'<AuthResponse xmlns="{ADMIN}"><authToken>{tok}</authToken>'
            "<lifetime>43199998</lifetime></AuthResponse>"
        )
    # ServiceException.AUTH_EXPIRED for a token the server no longer accepts
    if token not in world.tokens:
        return 500, _fault("service.AUTH_EXPIRED", "auth credentials have expired")
    if name == "GetAccountRequest":
        # store/src/java/com/zimbra/cs/service/admin/GetAccount.java: only the requested
        # attrs (getReqAttrs), AccountServiceException.NO_SUCH_ACCOUNT for an unknown name
        who = (req.findtext(f"{{{ADMIN}}}account") or "").lower()
        acc = world.accounts.get(who)
        if acc is None:
            return 500, _fault("account.NO_SUCH_ACCOUNT", f"no such account: {who}")
        wanted = set((req.get("attrs") or "").split(",")) - {""}
        attrs = "".join(
            f"<a n={quoteattr(k)}>{escape(v)}</a>"
            for k, values in sorted(acc.attrs.items())
            if not wanted or k in wanted
            for v in values
        )
        return 200, _envelope(
            f'<GetAccountResponse xmlns="{ADMIN}"><account name={quoteattr(acc.name)} '
            f'id="{abs(hash(acc.name)) % 10**8:08d}-uuid">{attrs}</account></GetAccountResponse>'
        )
    if name == "GetQuotaUsageRequest":
        nosession = root.find(f"{{{SOAP}}}Header/{{{ZIMBRA}}}context/{{{ZIMBRA}}}nosession")
        world.quota_requests.append((dict(req.attrib), nosession is not None))
        try:
            return quota_usage(world, req.attrib)
        finally:
            if world.after_quota_request is not None:
                world.after_quota_request(world)
    # ServiceException.UNKNOWN_DOCUMENT: a request no handler is registered for
    return 500, _fault("service.UNKNOWN_DOCUMENT", f"unknown document: {name}")


_SORTS = ("percentUsed", "totalUsed", "quotaLimit", "account")  # GetQuotaUsage.SORT_*


def _flag(value: str | None) -> bool:
    # Element.getAttributeBool: "1" or "true" (any case) is true
    return (value or "").lower() in ("1", "true")


def _sort_key(sort_by: str) -> Callable[[ZAccount], Any]:
    """GetQuotaUsage.QuotaComparator's key: quotaLimit sorts 0 (no limit) as the highest
    (sortQuotaLimit = Long.MAX_VALUE), account compares names ignoring case, percentUsed is
    used/limit (0 without a limit)."""
    if sort_by == "totalUsed":
        return lambda a: a.used
    if sort_by == "quotaLimit":
        return lambda a: a.limit or 2**63 - 1
    if sort_by == "account":
        return lambda a: a.name.lower()
    return lambda a: a.used / a.limit if a.limit > 0 else 0.0


def quota_usage(world: ZimbraWorld, attrs: dict[str, str]) -> tuple[int, bytes]:
    """GetQuotaUsageResponse as GetQuotaUsage.handle (zm-mailbox) computes it.

    * ``limit`` absent or 0 means every account (Integer.MAX_VALUE), ``offset`` defaults to 0.
    * ``sortBy`` defaults to totalUsed and must be one of percentUsed, totalUsed, quotaLimit,
      account (else service.INVALID_REQUEST); ``sortAscending`` defaults to false.
    * ``domain`` names a domain that must exist (else account.NO_SUCH_DOMAIN).
    * ``allServers`` is honoured only with a domain
      (``allServers = d != null && request.getAttributeBool(A_ALL_SERVERS, false)``): then
      every mail server's accounts of the domain, gathered whole (the delegated requests set
      limit=0, offset=0) and sorted again; otherwise only the local server's accounts
      (``prov.searchAccountsOnServer(getLocalServer(), …)``).
    * Without an admin session (the client sends ``<nosession/>``) nothing is cached: every
      request searches again with the mailbox sizes of that moment, so pages asked for one
      after another may see different orders. Sessions (the cached QuotaUsageParams) are not
      modelled.
    * The sort is Collections.sort (stable) over the search's order, accounts by name
      ignoring case (SortOpt.SORT_ASCENDING with no sort attribute: LdapProvisioning's
      NamedEntryComparator); for allServers the servers' lists are concatenated in server
      order first.
    """
    limit = int(attrs.get("limit") or 0) or 2**31 - 1
    offset = int(attrs.get("offset") or 0)
    sort_by = attrs.get("sortBy", "totalUsed")
    if sort_by not in _SORTS:
        return 500, _fault("service.INVALID_REQUEST", "sortBy must be percentUsed or totalUsed")
    domain = attrs.get("domain")
    known = {a.domain for a in world.accounts.values()}
    if domain is not None and domain.lower() not in known:
        return 500, _fault("account.NO_SUCH_DOMAIN", f"no such domain: {domain}")
    all_servers = domain is not None and _flag(attrs.get("allServers"))
    servers = world.servers if all_servers else (world.local_server,)
    found = [
        a
        for server in servers
        for a in sorted(world.accounts.values(), key=lambda a: a.name.lower())
        if a.server == server and (domain is None or a.domain == domain.lower())
    ]
    ascending = _flag(attrs.get("sortAscending"))
    quotas = sorted(found, key=_sort_key(sort_by), reverse=not ascending)
    page = quotas[offset : offset + limit]
    more = "1" if offset + len(page) < len(quotas) else "0"
    items = "".join(
        f'<account name={quoteattr(a.name)} id="{abs(hash(a.name)) % 10**8:08d}-uuid" '
        f'used="{a.used}" limit="{a.limit}"/>'
        for a in page
    )
    return 200, _envelope(
        f'<GetQuotaUsageResponse xmlns="{ADMIN}" more="{more}" searchTotal="{len(quotas)}">'
        f"{items}</GetQuotaUsageResponse>"
    )


class _Handler(BaseHTTPRequestHandler):
    server: Any
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path != PATH:
            status, data = 404, b"not found"
        else:
            status, data = answer(self.server.world, raw)
        self.send_response(status)
        self.send_header("Content-Type", "application/soap+xml; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@contextmanager
def zimbra_admin_endpoint(world: ZimbraWorld | None = None) -> Iterator[tuple[str, ZimbraWorld]]:
    world = world or ZimbraWorld()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    server.world = world  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}{PATH}", world
    finally:
        server.shutdown()
        server.server_close()
