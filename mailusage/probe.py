"""`mailusage doctor --probe MAILBOX`: one mailbox's night on a real server, every request
shown, nothing stored.

A local endpoint can only be as right as what we read about the real service; the first
night at an agency is where a tenant or server says otherwise. The probe runs exactly what
a night runs for one mailbox — ``pipelines.mailbox.read_mailbox`` from the mailbox's
stored cursors (read-only; none: a first night), its forwarding and quota — while every
IMAP command and HTTP request (EWS, Graph, Zimbra's admin API) is recorded with its status
and what the server refused. The rows are thrown away: no Parquet, no cursor, no run is
written, and the mailbox itself is only read (EXAMINE, BODY.PEEK; EWS and Graph reads).

    $ mailusage doctor --config mailusage.toml --probe an.nv@danang.gov.vn
"""

from __future__ import annotations

import json
import re
import sqlite3
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import requests
import requests.adapters

from connectors.base import FolderCursor, SourceError
from connectors.imap_wire import Reply, Wire
from pipelines.config import Config
from pipelines.mailbox import read_mailbox
from pipelines.sources import build_source
from pipelines.storage import MailboxState

_SECRET_COMMAND = re.compile(rb"^(AUTHENTICATE \S+|LOGIN)\b.*", re.IGNORECASE | re.DOTALL)
_MAX_REQUEST = 160


@dataclass
class Exchange:
    """One request and the server's answer to it."""

    protocol: str  # IMAP | HTTP
    request: str  # the command or method + URL (+ SOAP operation), secrets left out
    status: str = ""  # OK / NO / BAD, an HTTP status, or "error"
    ms: float = 0.0
    refused: str = ""  # what the server refused or answered otherwise than expected
    expected: bool = False  # a refusal the collector handles (the table says why)


@dataclass
class ProbeResult:
    mailbox: str
    source: str
    exchanges: list[Exchange] = field(default_factory=list)
    findings: list[tuple[str, str]] = field(default_factory=list)  # (status, text)

    @property
    def ok(self) -> bool:
        return not any(s == "fail" for s, _ in self.findings) and not any(
            e.refused and not e.expected for e in self.exchanges
        )


def _soap_operation(body: bytes) -> str | None:
    """The first element inside a SOAP Body: the EWS operation or Zimbra request."""
    try:
        root = ET.fromstring(body)
    except ET.ParseError:
        return None
    for el in root.iter():
        if el.tag.endswith("}Body") and len(el):
            return el[0].tag.rsplit("}", 1)[-1]
    return None


def _soap_refusals(body: bytes) -> list[str]:
    """Faults and EWS response messages whose ResponseClass is not Success (both are in
    the body of an HTTP 200 or 500: the status alone does not say)."""
    try:
        root = ET.fromstring(body)
    except ET.ParseError:
        return []
    out = []
    for el in root.iter():
        name = el.tag.rsplit("}", 1)[-1]
        if name == "Fault":
            text = " ".join(t.strip() for t in el.itertext() if t.strip())
            out.append(f"SOAP fault: {text[:300]}")
        elif el.get("ResponseClass") not in (None, "Success"):
            code = next((c.text for c in el.iter() if c.tag.endswith("}ResponseCode")), "")
            msg = next((c.text for c in el.iter() if c.tag.endswith("}MessageText")), "")
            out.append(f"{el.get('ResponseClass')} {code}: {msg or ''}".strip())
    return out


# Refusals the collector asks for on purpose and handles: a mailbox without one of the
# well-known folders (Graph: 404 on mailFolders/archive in the folder batch, connectors/
# graph.py; EWS: ErrorFolderNotFound in GetFolder of the distinguished ids, connectors/ews.py),
# a server without ENABLE CONDSTORE (STATUS HIGHESTMODSEQ enables it, RFC 7162 §3.1).
_WELL_KNOWN_PART = re.compile(r"/mailFolders/[a-z]+\?\$select=id$")


def _graph_error(data: Any) -> str:
    """Graph's error object: ``{"error": {"code": …, "message": …}}``."""
    err = data.get("error") if isinstance(data, dict) else None
    if not isinstance(err, dict):
        return ""
    return f"{err.get('code', '')}: {err.get('message', '')}"[:300]


def _as_bytes(body: Any) -> bytes:
    if isinstance(body, str):
        return body.encode("utf-8", "replace")
    return body if isinstance(body, bytes) else b""


def _batch_parts(body: bytes) -> dict[str, tuple[str, str]]:
    """A JSON $batch request's parts: id -> (method, url)."""
    if not body.lstrip().startswith(b"{"):
        return {}
    try:
        data = json.loads(body)
    except ValueError:
        return {}
    parts = data.get("requests") if isinstance(data, dict) else None
    return {
        str(r.get("id")): (str(r.get("method", "GET")), str(r.get("url", "")))
        for r in parts or []
        if isinstance(r, dict)
    }


def _describe_http(request: requests.PreparedRequest) -> str:
    url = request.url or ""
    if len(url) > _MAX_REQUEST:
        url = url[:_MAX_REQUEST] + "…"
    text = f"{request.method} {url}"
    body = _as_bytes(request.body)
    if body.lstrip()[:1] == b"<":
        operation = _soap_operation(body)
        if operation:
            text += f" [{operation}]"
    return text


def _http_rows(
    request: requests.PreparedRequest, response: requests.Response, streamed: bool, ms: float
) -> list[Exchange]:
    """The request's row, then one row per part of a Graph $batch: each part is a request
    of its own, answered on its own (a 200 batch may hold a refused part)."""
    main = Exchange("HTTP", _describe_http(request), str(response.status_code), ms)
    rows = [main]
    if not streamed:
        body, sent = response.content, _as_bytes(request.body)
        if "json" in response.headers.get("Content-Type", ""):
            try:
                data = json.loads(body)
            except ValueError:
                data = None
            parts = _batch_parts(sent)
            if parts and isinstance(data, dict) and isinstance(data.get("responses"), list):
                main.request += f" ({len(parts)} parts)"
                answers = {str(a.get("id")): a for a in data["responses"] if isinstance(a, dict)}
                for pid, (method, url) in parts.items():
                    answer = answers.get(pid, {})
                    status = int(answer.get("status", 0))
                    row = Exchange("batch", f"{method} {url}", str(status or "none"))
                    if status >= 400 or not answer:
                        row.refused = _graph_error(answer.get("body")) or "no answer"
                        row.expected = status == 404 and bool(_WELL_KNOWN_PART.search(url))
                    rows.append(row)
            else:
                main.refused = _graph_error(data)
        elif body.lstrip()[:1] == b"<":
            texts = _soap_refusals(body)
            main.refused = "; ".join(texts)
            main.expected = (
                bool(texts)
                and all("ErrorFolderNotFound" in t for t in texts)
                and _soap_operation(sent) == "GetFolder"
            )
    if response.status_code >= 400 and not main.refused:
        main.refused = f"HTTP {response.status_code} {response.reason}"
    return rows


class Recorder:
    """Records every IMAP command and HTTP request made inside :meth:`tracing`."""

    def __init__(self) -> None:
        self.exchanges: list[Exchange] = []
        self._pending: dict[bytes, tuple[Exchange, float]] = {}

    @contextmanager
    def tracing(self) -> Iterator[Recorder]:
        """Wrap the one IMAP wire and the one HTTP transport every connector goes
        through (requests' HTTPAdapter: exchangelib, Graph, Zimbra) for the probe's
        duration only; they are put back however the night ends."""
        originals: list[tuple[Any, str, Callable[..., Any]]] = [
            (Wire, "send", Wire.send),
            (Wire, "reply", Wire.reply),
            (requests.adapters.HTTPAdapter, "send", requests.adapters.HTTPAdapter.send),
        ]
        recorder = self
        wire_send, wire_reply, http_send = (o[2] for o in originals)

        def send(wire: Wire, *commands: bytes) -> list[bytes]:
            tags: list[bytes] = wire_send(wire, *commands)
            for tag, command in zip(tags, commands, strict=True):
                shown = _SECRET_COMMAND.sub(lambda m: m.group(1) + b" ***", command)
                text = shown.decode("utf-8", "replace")
                ex = Exchange(
                    "IMAP", text if len(text) <= _MAX_REQUEST else text[:_MAX_REQUEST] + "…"
                )
                recorder.exchanges.append(ex)
                recorder._pending[tag] = (ex, time.monotonic())
            return tags

        def reply(wire: Wire, tag: bytes) -> Reply:
            result: Reply = wire_reply(wire, tag)
            pending = recorder._pending.pop(tag, None)
            if pending is not None:
                ex, started = pending
                ex.status = result.status.decode("ascii", "replace")
                ex.ms = (time.monotonic() - started) * 1000
                if result.status != b"OK":
                    ex.refused = result.text.decode("utf-8", "replace")[:300]
                    ex.expected = ex.request == "ENABLE CONDSTORE"
            return result

        def http(adapter: Any, request: requests.PreparedRequest, **kwargs: Any) -> Any:
            started = time.monotonic()
            try:
                response = http_send(adapter, request, **kwargs)
            except Exception as exc:
                ms = (time.monotonic() - started) * 1000
                failed = Exchange("HTTP", _describe_http(request), "error", ms)
                failed.refused = f"{type(exc).__name__}: {exc}"[:300]
                recorder.exchanges.append(failed)
                raise
            ms = (time.monotonic() - started) * 1000
            recorder.exchanges += _http_rows(request, response, bool(kwargs.get("stream")), ms)
            return response

        Wire.send = send  # type: ignore[method-assign,assignment]
        Wire.reply = reply  # type: ignore[method-assign,assignment]
        requests.adapters.HTTPAdapter.send = http  # type: ignore[method-assign,assignment]
        try:
            yield self
        finally:
            for owner, name, original in originals:
                setattr(owner, name, original)
            for ex, _ in self._pending.values():  # read by the FETCH parser, not reply()
                ex.status = ex.status or "streamed"
            self._pending.clear()


def stored_cursors(cfg: Config, mailbox: str) -> dict[str, FolderCursor]:
    """The cursors the next night would start from, read without writing anything (the
    state database opened read-only; none when there is no store yet)."""
    path = cfg.data_dir / "_state" / "store.sqlite"
    if not path.exists():
        return {}
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)) as con:
        try:
            row = con.execute("select state from cursors where mailbox = ?", (mailbox,)).fetchone()
        except sqlite3.OperationalError:
            return {}
    return MailboxState.from_json(row[0]).after if row else {}


def _findings(result: ProbeResult, collection: Any, start: dict[str, FolderCursor]) -> None:
    add = result.findings.append
    outcome = collection.outcome
    if outcome.status != "ok":
        add(("fail", f"the night would fail this mailbox: {outcome.reason}"))
        return
    rows = collection.rows
    statuses = rows.mailbox_status if rows is not None else []
    fetched = sum(t.num_rows for t in rows.messages) if rows is not None else 0
    first = "first night (no stored cursors)" if not start else "from the stored cursors"
    add(("ok", f"{len(statuses)} folder(s), {fetched} message(s) read, {first}; nothing stored"))
    for st in statuses:
        name = st["folder"]
        if st["folder_status"] != "ok":
            add(("warn", f"{name}: {st['folder_status']}"))
        if st.get("unreadable"):
            add(("warn", f"{name}: {st['unreadable']} message(s) listed but unreadable"))
        if st["read_activity"] is None and start.get(name) is not None:
            add(("warn", f"{name}: reading could not be counted (unknown, not 0)"))
    if statuses and all(st["quota_used_bytes"] is None for st in statuses):
        add(("warn", "quota: not measured for this mailbox (unknown, not 0)"))
    if not any(st["role"] == "sent" for st in statuses):
        add(("warn", "no Sent folder: sent counts will be 0"))


def probe(cfg: Config, mailbox: str) -> ProbeResult:
    """Run one mailbox's night against its source, recording every request."""
    mailbox = mailbox.strip().lower()
    person = None
    try:
        from contract.roster import load_roster

        person = next(
            (p for p in load_roster(cfg.roster_path) if p.email == mailbox),
            None,
        )
    except Exception:  # the roster is doctor's other check; the probe needs only a source
        person = None
    src = cfg.source(person.source if person is not None else None)
    result = ProbeResult(mailbox, src.name)
    if person is None:
        result.findings.append(
            ("warn", f"{mailbox} is not in the roster: probed on the first source, {src.name}")
        )
    start = stored_cursors(cfg, mailbox)
    night = datetime.now(cfg.tz).date().isoformat()
    recorder = Recorder()
    with recorder.tracing(), closing(build_source(src)) as source:
        try:
            collection = read_mailbox(source, mailbox, night, dict(start))
        except SourceError as exc:
            result.findings.append(("fail", f"transient: {exc.reason} (a night would retry)"))
            collection = None
    result.exchanges = recorder.exchanges
    if collection is not None:
        _findings(result, collection, start)
    return result
