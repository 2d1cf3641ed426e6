"""IMAP source: read-only metadata of any mailbox, as the master user or as the user.

    >>> source = ImapSource(ImapSettings(host="mail.danang.gov.vn"), password_for=lambda m: pw)
    >>> with source.open("an.nv@danang.gov.vn") as session:
    ...     for folder in session.folders():
    ...         for batch in session.messages(folder, 1, folder.uidnext - 1): ...

Every folder is opened with EXAMINE and every header is fetched with BODY.PEEK, so the
collector never changes a flag, a MODSEQ or anything else in a mailbox.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from itertools import count
from typing import Literal

from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientAbortError, IMAPClientError, LoginError

from connectors.base import (
    AuthError,
    CredentialsRejected,
    FolderState,
    MailboxMissing,
    Message,
    Quota,
    SourceError,
    TransientError,
)
from connectors.imap_helpers import (
    FETCH_ITEMS,
    SPECIAL_USE_ROLES,
    FetchProtocolError,
    folder_name,
    folder_role,
    iter_fetch,
    parse_message,
)

Security = Literal["tls", "starttls", "plain"]
AuthMode = Literal["master-sasl", "master-separator", "user"]


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


@dataclass
class ImapSource:
    """A server whose mailboxes we read. ``password_for(mailbox)`` resolves the secret
    (the master password, or that user's) at login time only."""

    settings: ImapSettings
    password_for: Callable[[str], str] = field(repr=False)
    name: str = "imap"
    kind: str = "imap"

    @property
    def _where(self) -> str:
        return f"{self.settings.host}:{self.settings.effective_port}"

    def ssl_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=self.settings.ca_file)
        if not self.settings.verify:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        return ctx

    def connect(self) -> IMAPClient:
        """An unauthenticated connection, TLS-protected unless the config says plain."""
        s = self.settings
        try:
            client = IMAPClient(
                s.host,
                port=s.effective_port,
                ssl=s.security == "tls",
                ssl_context=self.ssl_context() if s.security == "tls" else None,
                timeout=s.timeout,
            )
            if s.security == "starttls":
                client.starttls(self.ssl_context())
        except ssl.SSLCertVerificationError as exc:
            raise SourceError(
                f"TLS certificate of {s.host} not trusted: {exc.verify_message}"
            ) from exc
        except (OSError, IMAPClientError) as exc:
            raise TransientError(f"cannot connect to {s.host}:{s.effective_port}: {exc}") from exc
        return client

    def login(self, client: IMAPClient, mailbox: str) -> None:
        s = self.settings
        password = self.password_for(mailbox)
        try:
            if s.auth == "master-sasl":
                # RFC 4616 PLAIN with an authorization identity: admin logs in *as* the user
                # (Dovecot master users, Cyrus admins).
                client.plain_login(s.master_user, password, authorization_identity=mailbox)
            elif s.auth == "master-separator":
                client.login(f"{mailbox}{s.master_separator}{s.master_user}", password)
            else:
                client.login(mailbox, password)
        except LoginError as exc:
            text = str(exc)
            if isinstance(exc.__context__, (IMAPClientAbortError, OSError)):
                # imapclient reports a connection dropped mid-AUTHENTICATE as a LoginError:
                # it is a network fault, to retry, not a wrong password to go and reset.
                raise TransientError(
                    f"connection lost to {self._where} during login for {mailbox}: {text}"
                ) from exc
            if "AUTHORIZATIONFAILED" in text:
                raise MailboxMissing(
                    f"server refused access to {mailbox} for the admin user "
                    f"(no such mailbox, or no master-user right): {text}"
                ) from exc
            if s.auth != "user":
                raise CredentialsRejected(
                    f"login failed for master user {s.master_user!r} (wrong password, or the "
                    f"master user was removed?): {text}"
                ) from exc
            raise AuthError(f"login failed for {mailbox} (wrong password?): {text}") from exc
        except TimeoutError as exc:
            raise TransientError(
                f"timed out: no answer to the login for {mailbox} from {self._where} within "
                f"{s.timeout:g} s (Dovecot slows every login from an address after failed "
                "ones: look for wrong passwords in this night's reasons)"
            ) from exc
        except (OSError, IMAPClientError) as exc:
            raise TransientError(
                f"connection lost to {self._where} during login for {mailbox}: {exc}"
            ) from exc

    @contextmanager
    def open(self, mailbox: str) -> Iterator[ImapSession]:
        client = self.connect()
        try:
            self.login(client, mailbox)
            session = ImapSession(client, mailbox, self.settings)
            session.start()
            yield session
        except TimeoutError as exc:
            raise TransientError(
                f"timed out: no answer from {self._where} within {self.settings.timeout:g} s "
                f"while reading {mailbox}"
            ) from exc
        except (OSError, EOFError, ssl.SSLError, FetchProtocolError, IMAPClientAbortError) as exc:
            raise TransientError(
                f"connection lost to {self._where} while reading {mailbox} "
                f"({type(exc).__name__}: {exc})"
            ) from exc
        except IMAPClientError as exc:
            raise TransientError(f"server error from {self._where} on {mailbox}: {exc}") from exc
        finally:
            _close(client)


def _close(client: IMAPClient) -> None:
    try:
        client.logout()
    except Exception:  # the connection may already be gone: nothing left to save
        with contextlib.suppress(Exception):
            client.shutdown()


class ImapSession:
    """One logged-in connection to one mailbox. Read-only by construction."""

    _tags = count(1)

    def __init__(self, client: IMAPClient, mailbox: str, settings: ImapSettings) -> None:
        self.client = client
        self.mailbox = mailbox
        self.settings = settings
        self.capabilities: set[bytes] = set()
        self.condstore = False
        self._selected: str | None = None
        # Per folder: FETCH responses without a UID, INTERNALDATE or size (never seen from
        # Dovecot; recorded in mailbox_status.unreadable rather than dropped in silence).
        self.unreadable: Counter[str] = Counter()

    def start(self) -> None:
        self.capabilities = set(self.client.capabilities())
        if b"CONDSTORE" in self.capabilities:
            enable = [b"CONDSTORE"] + ([b"QRESYNC"] if b"QRESYNC" in self.capabilities else [])
            self.condstore = b"CONDSTORE" in set(self.client.enable(*enable))

    # -- folders -------------------------------------------------------------------------

    def list_folders(self) -> list[tuple[str, str, bool]]:
        """(name, role, role came from SPECIAL-USE) for every selectable folder."""
        out = []
        for flags, delimiter, raw in self.client.list_folders():
            lowered = {f.lower() for f in flags}
            if b"\\noselect" in lowered or b"\\nonexistent" in lowered:
                continue
            name = folder_name(raw)
            delim = delimiter.decode() if isinstance(delimiter, bytes) else delimiter
            role = folder_role(name, tuple(flags), delim)
            out.append((name, role, any(f in SPECIAL_USE_ROLES for f in lowered)))
        return out

    def folders(self) -> list[FolderState]:
        """Every selectable folder with its role and STATUS counters."""
        items = [b"MESSAGES", b"UIDNEXT", b"UIDVALIDITY", b"UNSEEN"]
        if self.condstore:
            items.append(b"HIGHESTMODSEQ")
        states = []
        for name, role, _special in self.list_folders():
            st = self.client.folder_status(name, items)
            hms = st.get(b"HIGHESTMODSEQ")
            states.append(
                FolderState(
                    name,
                    role,
                    int(st[b"MESSAGES"]),
                    int(st[b"UNSEEN"]),
                    int(st[b"UIDNEXT"]),
                    int(st[b"UIDVALIDITY"]),
                    int(hms) if hms is not None else None,
                )
            )
        return states

    def quota(self) -> Quota:
        """Storage used/limit in bytes from GETQUOTAROOT INBOX (RFC 2087 counts KiB)."""
        if b"QUOTA" not in self.capabilities:
            return Quota(None, None)
        try:
            _roots, quotas = self.client.get_quota_root("INBOX")
        except IMAPClientAbortError:
            raise  # the connection went: transient, retried
        except IMAPClientError:
            # A server that advertises QUOTA but answers NO (no quota root for this user,
            # quota backend down): the size is unknown tonight, the messages are not.
            return Quota(None, None)
        for q in quotas:
            if q.resource.upper() == "STORAGE":
                return Quota(int(q.usage) * 1024, int(q.limit) * 1024)
        return Quota(None, None)

    def _examine(self, folder: FolderState) -> None:
        if self._selected == folder.name:
            return
        info = self.client.select_folder(folder.name, readonly=True)
        self._selected = folder.name
        if int(info[b"UIDVALIDITY"]) != folder.uidvalidity:
            raise TransientError(f"UIDVALIDITY of {folder.name!r} changed during the collection")

    # -- activity ------------------------------------------------------------------------

    def count_changed(self, folder: FolderState, since_modseq: int, up_to_uid: int) -> int | None:
        """How many messages with UID <= up_to_uid had flags changed after since_modseq."""
        if not self.condstore or folder.highestmodseq is None:
            return None
        if up_to_uid < 1 or folder.highestmodseq <= since_modseq:
            return 0
        self._examine(folder)
        # RFC 7162: SEARCH MODSEQ n matches mod-sequences >= n; we want those after the cursor.
        criteria = [b"UID", f"1:{up_to_uid}", b"MODSEQ", str(since_modseq + 1)]
        return len(self.client.search(criteria))

    def raw_message(self, folder: FolderState, uid: int) -> bytes | None:
        """The whole message, read with BODY.PEEK[] (never sets \\Seen): contact scan only."""
        self._examine(folder)
        data = self.client.fetch([uid], [b"BODY.PEEK[]"]).get(uid, {})
        raw = data.get(b"BODY[]")
        return bytes(raw) if raw is not None else None

    # -- the hot path --------------------------------------------------------------------

    def fetch(self, requests: Sequence[tuple[FolderState, int, int]]) -> Iterator[list[Message]]:
        """Folder after folder: IMAP reads one selected folder at a time."""
        for folder, from_uid, to_uid in requests:
            yield from self.messages(folder, from_uid, to_uid)

    def messages(self, folder: FolderState, from_uid: int, to_uid: int) -> Iterator[list[Message]]:
        """Batches of Message for from_uid <= UID <= to_uid, streamed from one UID FETCH.

        One UID range, not a UID list: Dovecot limits one argument to 64 KiB. The
        response is parsed as it arrives, so memory stays flat however large the folder.
        """
        if to_uid < from_uid:
            return
        self._examine(folder)
        imap = self.client._imap  # imaplib connection under imapclient; we drive FETCH ourselves
        tag = b"MU%d" % next(self._tags)
        imap.send(b"%s UID FETCH %d:%d %s\r\n" % (tag, from_uid, to_uid, FETCH_ITEMS.encode()))
        chunk = self.settings.read_chunk
        reader = imap.file

        def read() -> bytes:
            return bytes(reader.read1(chunk))

        name = folder.name
        batch: list[Message] = []
        size = self.settings.batch_size
        for attrs, header, groups in iter_fetch(read, tag):
            msg = parse_message(name, attrs, header, groups)
            if msg is None:
                self.unreadable[name] += 1
                continue
            # `N:M` may return a message outside the range when N > the largest UID.
            if not from_uid <= msg.uid <= to_uid:
                continue
            batch.append(msg)
            if len(batch) >= size:
                yield batch
                batch = []
        if batch:
            yield batch


def probe_tcp(host: str, port: int, timeout: float = 5.0) -> None:
    """Raise OSError unless a TCP connection to host:port opens."""
    with socket.create_connection((host, port), timeout=timeout):
        pass
