"""The night's sources: each configured source built and opened once, closed after::

    with open_sources(load_config("mailusage.toml")) as sources:
        with sources["dovecot"].open("an.nv@danang.gov.vn") as session:
            session.folders()      # [FolderState(name='INBOX', role='inbox', ...), ...]
            session.forwards()     # [Forward(..., target='an.home@gmail.com', ...)]

A source holds what its mailboxes share for the night as its own state — a Graph source
its token, HTTP pool and throttling gate; an EWS source its exchangelib pools; a Zimbra
admin its login and the night's quota listings; a `zmprov` export its parse — and
:func:`open_sources` closes them all when the night ends, whatever happened. Nothing is
kept between nights or between two sources, and no library is patched globally.

The connectors (imapclient, sievelib, requests, MSAL, exchangelib) are imported here and
in :mod:`connectors`, never by :mod:`pipelines.config`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from typing import TYPE_CHECKING, Any

from connectors.base import Check, Forward, ForwardingSource, MailboxSession, MailboxSource, Probe
from connectors.graph import GraphSource
from connectors.imap import ImapSource
from connectors.sieve import SieveSource
from connectors.zimbra import QuotaFallback, ZimbraAdmin, ZimbraExport
from pipelines.config import Config, SourceConfig

if TYPE_CHECKING:
    from connectors.ews import EwsSource

    Connector = ImapSource | GraphSource | EwsSource  # each: open(), diagnose(), name, kind
ForwardingReader = SieveSource | ZimbraAdmin | ZimbraExport  # each: forwards(), check_forwarding()

__all__ = ["OpenSource", "build_source", "open_sources"]


class OpenSource:
    """One configured source, open for one night: ``open(mailbox)`` gives a read-only
    session whose ``forwards()`` reads the mailbox's forwarding wherever this source keeps
    it (Graph's and EWS's inbox rules in the session itself; ManageSieve or Zimbra's
    attributes for IMAP). :meth:`close` closes its pools and sessions."""

    def __init__(
        self,
        config: SourceConfig,
        connector: Connector,
        forwarding: ForwardingReader | None = None,
        admin: ZimbraAdmin | None = None,
        closers: tuple[Callable[[], None], ...] = (),
    ) -> None:
        self.config = config
        self.name = config.name
        self.kind = config.kind
        self.connector = connector  # ImapSource, GraphSource or EwsSource
        self.forwarding = forwarding  # IMAP's separate reader: ManageSieve or Zimbra
        self.admin = admin  # Zimbra's admin API: the quota when IMAP QUOTA answers none
        self._closers = closers

    def __repr__(self) -> str:
        return f"OpenSource({self.name!r}, {self.kind!r})"

    @contextmanager
    def open(self, mailbox: str) -> Iterator[MailboxSession]:
        source: MailboxSource = self.connector
        if self.admin is not None:
            source = QuotaFallback(source, self.admin)
        with source.open(mailbox) as session:
            if self.forwarding is None:
                yield session
            else:
                yield _WithForwards(session, self.forwarding, mailbox)

    def diagnose(self, probe: Probe) -> list[Check]:
        """``mailusage doctor``'s checks of this source (its connector's, then IMAP's
        forwarding reader and Zimbra's quota once a login worked), in order."""
        checks = self.connector.diagnose(probe)
        logged_in = any(c.check == "login" and c.status == "ok" for c in checks)
        if probe.mailbox is None or not logged_in or any(c.status == "fail" for c in checks):
            return checks
        if self.forwarding is not None:
            checks += self.forwarding.check_forwarding(self.name, probe.mailbox)
        if self.admin is not None:
            checks += self.admin.check_quota(self.name, probe.mailbox)
        return checks

    def close(self) -> None:
        """Close what this source holds for the night (each closer once, all of them)."""
        closers, self._closers = self._closers, ()
        with ExitStack() as stack:  # every closer runs even if one raises
            for close in closers:
                stack.callback(close)


class _WithForwards:
    """An IMAP session whose ``forwards()`` asks the source's forwarding reader."""

    def __init__(self, session: MailboxSession, reader: ForwardingSource, mailbox: str) -> None:
        self._session = session
        self._reader = reader
        self._mailbox = mailbox

    def __getattr__(self, name: str) -> Any:
        return getattr(self._session, name)

    def forwards(self) -> list[Forward] | None:
        return self._reader.forwards(self._mailbox)


def build_source(src: SourceConfig) -> OpenSource:
    """The connector(s) a configured source needs, not yet connected: nothing is sent and
    no secret is read until a mailbox is opened."""
    ref = src.password
    if src.graph is not None:
        none = not (ref.env or ref.prefect_secret)  # a certificate without a passphrase
        graph = GraphSource(src.graph, secret=None if none else ref.resolve, name=src.name)
        return OpenSource(src, graph, closers=(graph.close,))
    if src.ews is not None:
        from connectors.ews import EwsSource  # exchangelib: only when an EWS source opens

        ews = EwsSource(
            src.ews, password_for=ref.resolve, name=src.name, forwarding=src.ews_forwarding
        )
        return OpenSource(src, ews, closers=(ews.close,))
    assert src.imap is not None
    imap = ImapSource(src.imap, password_for=ref.resolve, name=src.name, kind=src.kind)
    z = src.zimbra
    admin = None
    if z is not None and z.admin is not None and z.password is not None:
        admin = ZimbraAdmin(z.admin, z.password.resolve)
    closers: tuple[Callable[[], None], ...] = (admin.close,) if admin is not None else ()
    forwarding: ForwardingReader | None = None
    if z is not None:  # Zimbra forwards by account attributes, not Sieve
        if z.export is not None:
            export = ZimbraExport(z.export)
            forwarding, closers = export, (*closers, export.close)
        else:
            forwarding = admin
    elif src.sieve is not None:
        forwarding = SieveSource(src.sieve, password_for=ref.resolve, name=src.name)
    return OpenSource(src, imap, forwarding, admin, closers)


@contextmanager
def open_sources(cfg: Config) -> Iterator[dict[str, OpenSource]]:
    """Every source of the config, by name, open for one night; all closed on the way out
    (an exception included)."""
    with ExitStack() as stack:
        sources: dict[str, OpenSource] = {}
        for src in cfg.sources:
            opened = build_source(src)
            stack.callback(opened.close)
            sources[src.name] = opened
        yield sources
