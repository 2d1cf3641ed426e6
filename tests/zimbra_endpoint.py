"""A local Zimbra admin SOAP endpoint for the tests (never part of the product).

Answers, on 127.0.0.1, SOAP 1.2 envelopes in the shapes of Zimbra Collaboration 8.8/9/10's
``/service/admin/soap``: ``AuthRequest`` (``urn:zimbraAdmin``: ``authToken``, ``lifetime``),
``GetAccountRequest`` (``<account name id><a n="…">…</a></account>``, only the ``attrs``
asked for) and ``GetQuotaUsageRequest`` (``limit`` / ``offset`` paging, ``more``,
``searchTotal``); faults as ``soap:Fault`` with ``<Error xmlns="urn:zimbra"><Code>``
(``account.NO_SUCH_ACCOUNT``, ``account.AUTH_FAILED``, ``service.AUTH_EXPIRED``).
"""

from __future__ import annotations

import secrets
import threading
import xml.etree.ElementTree as ET
from collections.abc import Iterator
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


@dataclass
class ZimbraWorld:
    admin: str = "admin@tiengiang.gov.vn"
    password: str = "zimbra-admin-secret"
    accounts: dict[str, ZAccount] = field(default_factory=dict)
    tokens: set[str] = field(default_factory=set)
    requests: list[str] = field(default_factory=list)

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
    if token not in world.tokens:
        return 500, _fault("service.AUTH_EXPIRED", "auth credentials have expired")
    if name == "GetAccountRequest":
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
        limit, offset = int(req.get("limit") or 0), int(req.get("offset") or 0)
        ordered = sorted(world.accounts.values(), key=lambda a: (-a.used, a.name))
        page = ordered[offset : offset + limit] if limit else ordered[offset:]
        more = "1" if offset + len(page) < len(ordered) else "0"
        items = "".join(
            f'<account name={quoteattr(a.name)} id="{i}" used="{a.used}" limit="{a.limit}"/>'
            for i, a in enumerate(page)
        )
        return 200, _envelope(
            f'<GetQuotaUsageResponse xmlns="{ADMIN}" more="{more}" searchTotal="{len(ordered)}">'
            f"{items}</GetQuotaUsageResponse>"
        )
    return 500, _fault("service.UNKNOWN_DOCUMENT", f"unknown document: {name}")


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
