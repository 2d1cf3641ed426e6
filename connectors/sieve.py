"""Forwarding rules from Dovecot Pigeonhole Sieve, read over ManageSieve (RFC 5804) as the
master user, parsed with sievelib. Read-only: LISTSCRIPTS and GETSCRIPT only.

    >>> source = SieveSource(SieveSettings(host="mail.danang.gov.vn", master_user="mailusage"),
    ...                      password_for=lambda m: pw)
    >>> source.forwards("an.nv@danang.gov.vn")
    [Forward(mailbox='an.nv@danang.gov.vn', target='an.home@gmail.com', rule_name='roundcube',
             keeps_copy=True, conditional=False)]

Only the active script runs, so only it is read. `redirect` (with or without `:copy`) is
forwarding; `vacation` is not.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from sievelib.managesieve import Client, Error
from sievelib.parser import Parser

from connectors.base import AuthError, Check, Forward, SourceError, TransientError
from connectors.imap import tls_context
from connectors.settings import SieveSettings as SieveSettings  # re-exported: SieveSource's


def _unquote(value: Any) -> str:
    text = str(value)
    return text[1:-1] if len(text) >= 2 and text[0] == text[-1] == '"' else text


def redirects(script: str) -> Iterator[tuple[str, bool, bool]]:
    """(target, keeps_copy, conditional) for every `redirect` in a Sieve script.

    >>> list(redirects('require "copy"; redirect :copy "a@gmail.com";'))
    [('a@gmail.com', True, False)]
    """
    parser = Parser()
    if not parser.parse(script):
        raise SourceError(f"Sieve script does not parse: {getattr(parser, 'error', '?')}")

    def walk(commands: list[Any], conditional: bool) -> Iterator[tuple[str, bool, bool]]:
        for cmd in commands:
            if cmd.name == "redirect":
                yield (
                    _unquote(cmd.arguments["address"]).lower(),
                    "copy" in cmd.arguments,
                    conditional,
                )
            yield from walk(cmd.children, conditional or cmd.name in ("if", "elsif", "else"))

    yield from walk(parser.result, False)


class _VerifyingClient(Client):  # type: ignore[misc]
    """sievelib's client with our TLS context (custom CA), not only the system store."""

    def __init__(self, host: str, port: int, context: ssl.SSLContext) -> None:
        super().__init__(host, port, srvhostname=host)
        self._context = context

    # sievelib names this method privately; overriding it is the one way to pass a CA file.
    def _Client__enable_ssl(self, keyfile: str | None = None, certfile: str | None = None) -> None:
        try:
            plain: socket.socket = self.sock  # type: ignore[has-type]
            self.sock = self._context.wrap_socket(plain, server_hostname=self.srvhostname)
        except ssl.SSLError as exc:
            raise SourceError(f"TLS error on ManageSieve: {exc}") from exc


@dataclass
class SieveSource:
    settings: SieveSettings
    password_for: Callable[[str], str] = field(repr=False)
    name: str = "sieve"

    def check_forwarding(self, subject: str, mailbox: str) -> list[Check]:
        """``doctor``: the forwarding rules of ``mailbox`` can be read over ManageSieve."""
        try:
            rules = self.forwards(mailbox)
        except SourceError as exc:
            return [Check(subject, "managesieve", "fail", exc.reason)]
        detail = f"port {self.settings.port}: {len(rules)} forwarding rule(s) in {mailbox}"
        return [Check(subject, "managesieve", "ok", detail)]

    def forwards(self, mailbox: str) -> list[Forward]:
        s = self.settings
        Client.read_timeout = s.timeout
        client = _VerifyingClient(s.host, s.port, tls_context(s.ca_file, True))
        try:
            ok = client.connect(
                s.master_user or mailbox,
                self.password_for(mailbox),
                authz_id=mailbox if s.master_user else "",
                starttls=s.security == "starttls",
                authmech="PLAIN",
            )
        except Error as exc:
            raise TransientError(f"ManageSieve {s.host}:{s.port}: {exc}") from exc
        if not ok:
            raise AuthError(
                f"ManageSieve login failed for {mailbox}: {client.errmsg.decode(errors='replace')}"
            )
        try:
            active, _others = client.listscripts()
            if not active:
                return []
            script = client.getscript(active)
            if script is None:
                raise TransientError(f"GETSCRIPT {active!r} failed for {mailbox}")
            return [
                Forward(mailbox, target, active, copy, cond)
                for target, copy, cond in redirects(script)
            ]
        finally:
            client.logout()
