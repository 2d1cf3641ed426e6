"""An EWS source's settings, without exchangelib: what the config needs to read and check
them. exchangelib (~0.3 s to import) is loaded by :mod:`connectors.ews` only, when a night
or ``doctor`` opens the source — not by reading a config or a roster, nor by ``evaluate``.
"""

from __future__ import annotations

from dataclasses import dataclass

from contract.signals import Signals

MAX_CHANGES = 512  # MaxChangesReturned: "between 1 and 512, inclusive" (EWS reference)
AUTH_NAMES = ("ntlm", "basic")
ACCESS = ("impersonation", "delegate", "user")
# SyncFolderItems' ReadFlagChange is read activity; GetFolder gives each folder's size
# (PR_MESSAGE_SIZE_EXTENDED); GetInboxRules the forwarding. EWS has no quota operation
# (Get-MailboxStatistics is PowerShell, not EWS): quota is unknown, never 0.
EWS_SIGNALS = Signals(read_activity=True, quota=False, forwarding=True, folder_sizes=True)


@dataclass(frozen=True)
class EwsSettings:
    endpoint: str  # https://mail.example.gov.vn/EWS/Exchange.asmx
    username: str | None = None  # the service account, DOMAIN\\user or UPN (not with "user")
    auth: str = "ntlm"  # ntlm | basic
    access: str = "impersonation"  # impersonation | delegate | user (per-user passwords)
    version: str = "15.1.2507.6"  # the server's build: no version probe is sent
    max_connections: int = 4  # the pool per endpoint; Exchange throttles concurrent ones
    page_size: int = 1000  # FindFolder IndexedPageFolderView MaxEntriesReturned (max 1000)
    get_item_batch: int = 100  # item ids per GetItem call
    timeout: float = 120.0  # seconds per HTTP request
    max_wait: float = 900.0  # give up a mailbox after backing off this long in total
    retry_wait: float = 10.0  # first back-off when the server names none (doubles)
    settle_seconds: int = 900  # unused since SyncFolderItems (kept: configs still name it)
    ca_file: str | None = None  # the server's CA, when it is the agency's own
    max_changes: int = MAX_CHANGES  # SyncFolderItems MaxChangesReturned (1..512)
