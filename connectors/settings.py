"""Each source's settings, without its library: what the config needs to read and check
them. The connectors (imapclient, sievelib, requests, MSAL, exchangelib) are loaded when a
night or ``doctor`` opens a source (pipelines/sources.py), never by reading a config.

    >>> GraphSettings("contoso.onmicrosoft.com", "6f1…").scope
    'https://graph.microsoft.com/.default'

EWS keeps its own module beside this one, :mod:`connectors.ews_settings`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from contract.signals import Signals

Security = Literal["tls", "starttls", "plain"]
AuthMode = Literal["master-sasl", "master-separator", "user"]

# IMAP: CONDSTORE (RFC 7162) flag changes and RFC 2087 QUOTA where the server offers them
# (null on a night it does not); no folder sizes (STATUS SIZE, RFC 8438, is not asked);
# forwarding only through ManageSieve or Zimbra's attributes (the config adds it).
IMAP_SIGNALS = Signals(read_activity=True, quota=True, forwarding=False, folder_sizes=False)
# Graph: delta updates are read activity; quota from the mailbox usage report (only with
# `usage_report = true`, which the config checks); inbox rules are the forwarding.
# mailFolder has no size property in v1.0 (devkit/graph_metadata): no folder sizes.
GRAPH_SIGNALS = Signals(read_activity=True, quota=True, forwarding=True, folder_sizes=False)


@dataclass(frozen=True)
class ImapSettings:
    """How to reach and log in to an IMAP server. Holds no password."""

    host: str
    port: int | None = None
    security: Security = "tls"
    ca_file: str | None = None
    verify: bool = True
    auth: AuthMode = "master-sasl"
    master_user: str | None = None
    master_separator: str = "*"
    timeout: float = 60.0
    batch_size: int = 5000
    read_chunk: int = 256 * 1024

    @property
    def effective_port(self) -> int:
        return self.port or (993 if self.security == "tls" else 143)


@dataclass(frozen=True)
class SieveSettings:
    host: str
    port: int = 4190
    security: Literal["starttls", "plain"] = "starttls"
    ca_file: str | None = None
    master_user: str | None = None
    timeout: float = 30.0


@dataclass(frozen=True)
class GraphSettings:
    tenant_id: str  # the directory (tenant) id or a verified domain
    client_id: str  # the app registration's application (client) id
    certificate_path: str | None = None  # PEM: private key and certificate (else a secret)
    authority: str = "https://login.microsoftonline.com"
    graph_url: str = "https://graph.microsoft.com/v1.0"
    page_size: int = 500  # Prefer: odata.maxpagesize for delta pages
    read_size: bool = False  # message sizes: needs Mail.Read instead of Mail.ReadBasic.All
    forwarding: bool = True  # read inbox rules (MailboxSettings.Read)
    usage_report: bool = True  # storage from getMailboxUsageDetail (Reports.Read.All)
    timeout: float = 60.0  # seconds per HTTP request
    max_wait: float = 900.0  # give up a mailbox after backing off this long in total
    retry_wait: float = 5.0  # first back-off when the server names none (doubles)
    max_connections: int = 8
    ca_file: str | None = None  # a private CA (the tests' local endpoint)

    @property
    def scope(self) -> str:
        parts = urlsplit(self.graph_url)
        return f"{parts.scheme}://{parts.netloc}/.default"


@dataclass(frozen=True)
class ZimbraAdminSettings:
    url: str  # https://mail.example.gov.vn:7071/service/admin/soap
    admin_user: str
    ca_file: str | None = None
    timeout: float = 60.0


# zimbra-imapd (the IMAP daemon apart from mailboxd, Zimbra 8.8.x+) sends zimbra.security to
# its own file with audit.log's layout "%d %-5p [%t] [%z] %c{1} - %m%n", rolled over to
# imapd-audit.log.yyyy-MM-dd (zm-mailbox store-conf/conf/imapd.log4j.properties).
IMAPD_AUDIT_LOG = "imapd-audit.log"


def imapd_audit_log(audit_log: Path) -> Path:
    """Where zimbra-imapd's audit log is, given mailboxd's: the same log directory.

    >>> imapd_audit_log(Path("/opt/zimbra/log/audit.log"))
    PosixPath('/opt/zimbra/log/imapd-audit.log')
    """
    return audit_log.with_name(IMAPD_AUDIT_LOG)
