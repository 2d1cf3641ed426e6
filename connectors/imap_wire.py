"""The IMAP wire: one connection, tagged commands, pipelining and literals — nothing more.

imapclient speaks IMAP well, but on top of imaplib it spends round trips that a night of
10,000 mostly quiet mailboxes cannot afford: a CAPABILITY after the greeting, a
continuation for AUTHENTICATE, one STATUS per folder. This connection sends what the
collector needs in as few round trips as the server allows — the credentials inside the
AUTHENTICATE line (SASL-IR, RFC 4959), commands that do not wait on each other sent
together (pipelining, RFC 3501 §5.5) — and hands the responses to imapclient's own parser.

    >>> wire = Wire.open("mail.danang.gov.vn", 993, ssl.create_default_context(), 60.0)
    >>> a, b = wire.send(b'LIST "" "*" RETURN (STATUS (MESSAGES))', b"GETQUOTAROOT INBOX")
    >>> wire.reply(a).untagged[0]
    (b'LIST', [b'(\\\\HasNoChildren) "/" "INBOX"'])

No sockets are hidden elsewhere: connectors/imap.py builds the protocol on these calls.
"""

from __future__ import annotations

import base64
import contextlib
import re
import socket
import ssl
from dataclasses import dataclass, field
from itertools import count

# A response as imaplib shapes it (and imapclient's parser reads): text, with each literal
# paired with the text before it — [(b'1 (UID 7 BODY[] {5}', b'hello'), b')'].
Response = list[bytes | tuple[bytes, bytes]]

_LITERAL = re.compile(rb"\{(\d+)\+?\}$")


class WireClosed(ConnectionError):
    """The server closed the connection (or it was cut) before the answer was complete."""


class CommandFailed(Exception):
    """A tagged NO or BAD: ``status`` is ``b"NO"`` or ``b"BAD"``, ``text`` the rest."""

    def __init__(self, command: bytes, status: bytes, text: bytes) -> None:
        verb = command.split(b" ", 1)[0].decode("ascii", "replace")
        super().__init__(f"{verb} answered {status.decode()}: {text.decode('utf-8', 'replace')}")
        self.status = status
        self.text = text


@dataclass
class Reply:
    """Everything the server said up to one command's tagged completion."""

    status: bytes  # OK | NO | BAD
    text: bytes  # the rest of the tagged line: b"[CAPABILITY IMAP4rev1 ...] Logged in"
    # (keyword, data): (b"LIST", [...]), (b"FETCH", [b"3 (UID 7 ...)"]),
    # (b"OK", [b"[UIDVALIDITY 9] UIDs valid"])
    untagged: list[tuple[bytes, Response]] = field(default_factory=list)

    def of(self, keyword: bytes) -> list[Response]:
        return [data for kw, data in self.untagged if kw == keyword]


def quoted(value: bytes) -> bytes:
    """An IMAP quoted string.

    >>> quoted(b'Th&AbA- "x"')
    b'"Th&AbA- \\\\"x\\\\""'
    """
    return b'"' + value.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'


def sasl_plain(authzid: str, authcid: str, password: str) -> bytes:
    """The RFC 4616 PLAIN message, base64-encoded: ``authzid NUL authcid NUL password``."""
    return base64.b64encode(f"{authzid}\0{authcid}\0{password}".encode())


def capabilities_in(text: bytes) -> set[bytes] | None:
    """Capabilities from a ``[CAPABILITY ...]`` response code, if the text carries one.

    >>> sorted(capabilities_in(b"[CAPABILITY IMAP4rev1 SASL-IR AUTH=PLAIN] ready"))
    [b'AUTH=PLAIN', b'IMAP4REV1', b'SASL-IR']
    """
    m = re.search(rb"\[CAPABILITY ([^\]]*)\]", text, re.IGNORECASE)
    return {c.upper() for c in m.group(1).split()} if m else None


class Wire:
    """One IMAP connection. Not thread-safe: one mailbox, one thread at a time."""

    _tags = count(1)

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._buf = b""
        self._pos = 0
        self.greeting = b""

    @classmethod
    def open(cls, host: str, port: int, context: ssl.SSLContext | None, timeout: float) -> Wire:
        """Connect (TLS from the first byte when ``context`` is given) and read the greeting."""
        sock = socket.create_connection((host, port), timeout=timeout)
        try:
            if context is not None:
                sock = context.wrap_socket(sock, server_hostname=host)
            wire = cls(sock)
            line = wire._line()
        except BaseException:
            sock.close()
            raise
        if not line.startswith(b"* OK"):
            wire.close()
            raise WireClosed(f"unexpected greeting: {line[:200]!r}")
        wire.greeting = line
        return wire

    def starttls(self, context: ssl.SSLContext, host: str) -> None:
        self.command(b"STARTTLS")
        self.sock = context.wrap_socket(self.sock, server_hostname=host)

    # -- commands ----------------------------------------------------------------------

    def send(self, *commands: bytes) -> list[bytes]:
        """Send commands in one write without waiting for answers; returns their tags."""
        tags = [b"W%d" % next(self._tags) for _ in commands]
        lines = (t + b" " + c + b"\r\n" for t, c in zip(tags, commands, strict=True))
        self.sock.sendall(b"".join(lines))
        return tags

    def reply(self, tag: bytes) -> Reply:
        """Read up to the tagged completion of ``tag`` (answers of earlier tags first)."""
        reply = Reply(b"", b"")
        prefix = tag + b" "
        while True:
            response = self._response()
            head = response[0][0] if isinstance(response[0], tuple) else response[0]
            if head.startswith(prefix):
                status, _, text = head[len(prefix) :].partition(b" ")
                reply.status, reply.text = status.upper(), text
                return reply
            if head.startswith(b"* "):
                reply.untagged.append(_untagged(response))
            elif head.startswith(b"+"):
                raise WireClosed(f"unexpected continuation: {head[:200]!r}")
            # A tagged line of another tag: an earlier pipelined command's, already judged.

    def command(self, command: bytes) -> Reply:
        """Send one command and wait for it; a NO or BAD raises CommandFailed."""
        (tag,) = self.send(command)
        reply = self.reply(tag)
        if reply.status != b"OK":
            raise CommandFailed(command, reply.status, reply.text)
        return reply

    def authenticate_plain(self, message: bytes, initial_response: bool) -> Reply:
        """AUTHENTICATE PLAIN: one round trip with SASL-IR, two without."""
        if initial_response:
            (tag,) = self.send(b"AUTHENTICATE PLAIN " + message)
        else:
            (tag,) = self.send(b"AUTHENTICATE PLAIN")
            line = self._line()
            if not line.startswith(b"+"):
                status = line.split(b" ", 2)
                return Reply(status[1] if len(status) > 1 else b"BAD", line)
            self.sock.sendall(message + b"\r\n")
        return self.reply(tag)

    # -- reading -----------------------------------------------------------------------

    def read(self) -> bytes:
        """The next bytes from the connection (buffered ones first); b"" at its end."""
        if self._pos < len(self._buf):
            chunk = self._buf[self._pos :]
            self._buf, self._pos = b"", 0
            return chunk
        return self.sock.recv(256 * 1024)

    def _fill(self) -> None:
        chunk = self.sock.recv(256 * 1024)
        if not chunk:
            raise WireClosed("the server closed the connection")
        self._buf = self._buf[self._pos :] + chunk
        self._pos = 0

    def _line(self) -> bytes:
        while True:
            eol = self._buf.find(b"\r\n", self._pos)
            if eol >= 0:
                line = self._buf[self._pos : eol]
                self._pos = eol + 2
                return line
            self._fill()

    def _exactly(self, n: int) -> bytes:
        while len(self._buf) - self._pos < n:
            self._fill()
        data = self._buf[self._pos : self._pos + n]
        self._pos += n
        return data

    def _response(self) -> Response:
        """One whole response: a line, and any literals it announces with their text."""
        parts: Response = []
        line = self._line()
        while (m := _LITERAL.search(line)) is not None:
            parts.append((line, self._exactly(int(m.group(1)))))
            line = self._line()
        parts.append(line)
        return parts

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()

    def logout(self) -> None:
        """LOGOUT and close; a connection already gone is closed all the same."""
        try:
            self.command(b"LOGOUT")
        except (OSError, WireClosed, CommandFailed):
            pass
        finally:
            self.close()


def _untagged(response: Response) -> tuple[bytes, Response]:
    """``* 3 FETCH (…)`` -> (b"FETCH", [b"3 (…)"]); ``* LIST (…)`` -> (b"LIST", [b"(…)"])."""
    first = response[0]
    head = first[0] if isinstance(first, tuple) else first
    words = head[2:].split(b" ", 2)
    if words[0].isdigit() and len(words) > 1:
        keyword = words[1].upper()
        rest = words[0] + (b" " + words[2] if len(words) > 2 else b"")
    else:
        keyword = words[0].upper()
        rest = head[2 + len(words[0]) + 1 :]
    data: Response = [(rest, first[1]) if isinstance(first, tuple) else rest, *response[1:]]
    return keyword, data
