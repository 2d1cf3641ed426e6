"""IMAP source: read-only metadata of any mailbox, as the master user or as the user.

    >>> source = ImapSource(ImapSettings(host="mail.danang.gov.vn"), password_for=lambda m: pw)
    >>> with source.open("an.nv@danang.gov.vn") as session:
    ...     for folder in session.folders():
    ...         for batch in session.messages(folder, 1, folder.uidnext - 1): ...

Every folder is opened with EXAMINE and every header is fetched with BODY.PEEK, so the
collector never changes a flag, a MODSEQ or anything else in a mailbox.
"""

from __future__ import annotations

import re
import socket
import ssl
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache
from typing import ClassVar

from imapclient.imap_utf7 import encode as encode_utf7

from connectors.base import (
    AuthError,
    Check,
    CredentialsRejected,
    FolderCursor,
    FolderState,
    Forward,
    MailboxMissing,
    Message,
    Probe,
    Quota,
    Signals,
    SourceError,
    TransientError,
)
from connectors.compat.imapclient_hooks import parse_fetch_response, parse_response
from connectors.imap_helpers import (
    FETCH_ITEMS,
    SPECIAL_USE_ROLES,
    FetchProtocolError,
    folder_name,
    folder_role,
    iter_fetch,
    parse_message,
)
from connectors.imap_wire import (
    CommandFailed,
    Reply,
    Response,
    Wire,
    capabilities_in,
    quoted,
    sasl_plain,
)
from connectors.settings import IMAP_SIGNALS
from connectors.settings import AuthMode as AuthMode
from connectors.settings import ImapSettings as ImapSettings  # re-exported: ImapSource's
from connectors.settings import Security as Security


@lru_cache(maxsize=16)
def tls_context(ca_file: str | None, verify: bool) -> ssl.SSLContext:
    """One context per CA file: building one loads the CA store (~16 ms of CPU here, more
    than a quiet mailbox's whole collection), and a context serves any number of sockets."""
    ctx = ssl.create_default_context(cafile=ca_file)
    if not verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


@dataclass
class ImapSource:
    """A server whose mailboxes we read. ``password_for(mailbox)`` resolves the secret
    (the master password, or that user's) at login time only."""

    settings: ImapSettings
    password_for: Callable[[str], str] = field(repr=False)
    name: str = "imap"
    kind: str = "imap"

    SIGNALS: ClassVar[Signals] = IMAP_SIGNALS  # what IMAP measures: connectors/settings.py

    @property
    def _where(self) -> str:
        return f"{self.settings.host}:{self.settings.effective_port}"

    def ssl_context(self) -> ssl.SSLContext:
        return tls_context(self.settings.ca_file, self.settings.verify)

    def connect(self) -> Wire:
        """An unauthenticated connection, TLS-protected unless the config says plain."""
        s = self.settings
        try:
            wire = Wire.open(
                s.host,
                s.effective_port,
                self.ssl_context() if s.security == "tls" else None,
                s.timeout,
            )
            if s.security == "starttls":
                wire.starttls(self.ssl_context(), s.host)
        except ssl.SSLCertVerificationError as exc:
            raise SourceError(
                f"TLS certificate of {s.host} not trusted: {exc.verify_message}"
            ) from exc
        except ssl.SSLError as exc:
            if "WRONG_VERSION_NUMBER" not in str(exc).upper():
                raise TransientError(f"TLS failed with {self._where}: {exc}") from exc
            raise SourceError(
                f"{self._where} does not speak TLS from the first byte: it looks like a "
                'plain-text IMAP port. Use security = "starttls" (port 143), or the TLS '
                f"port (993) with security = {s.security!r}"
            ) from exc
        except ConnectionRefusedError as exc:
            raise TransientError(
                f"cannot connect to {self._where}: connection refused, nothing listens "
                "there (is the IMAP service running? is the port right: 993 for "
                'security = "tls", 143 for "starttls" or "plain"?)'
            ) from exc
        except TimeoutError as exc:
            hint = (
                ' (a TLS port answers nothing to plain text: with port 993 use security = "tls")'
                if s.security != "tls" and s.effective_port == 993
                else ""
            )
            raise TransientError(
                f"cannot connect to {self._where}: no greeting within {s.timeout:g} s{hint}"
            ) from exc
        except (OSError, CommandFailed) as exc:
            raise TransientError(f"cannot connect to {self._where}: {exc}") from exc
        return wire

    def login(self, wire: Wire, mailbox: str) -> set[bytes]:
        """Log in for ``mailbox``; returns the server's capabilities after login.

        One round trip where the server takes SASL-IR (Dovecot, Cyrus): the PLAIN message
        rides on the AUTHENTICATE line, and the tagged OK carries the new capabilities.
        """
        s = self.settings
        password = self.password_for(mailbox)
        try:
            caps = capabilities_in(wire.greeting)
            if caps is None or (s.security == "starttls"):
                caps = _capabilities(wire.command(b"CAPABILITY"))
            if s.auth == "master-sasl":
                # RFC 4616 PLAIN with an authorization identity: admin logs in *as* the user
                # (Dovecot master users, Cyrus admins).
                authz, authc = mailbox, s.master_user or ""
            elif s.auth == "master-separator":
                authz, authc = "", f"{mailbox}{s.master_separator}{s.master_user}"
            else:
                authz, authc = "", mailbox
            if b"AUTH=PLAIN" in caps or s.auth == "master-sasl":
                reply = wire.authenticate_plain(
                    sasl_plain(authz, authc, password), b"SASL-IR" in caps
                )
            else:  # an old server without AUTH=PLAIN: LOGIN with quoted strings
                (tag,) = wire.send(
                    b"LOGIN " + quoted(authc.encode()) + b" " + quoted(password.encode())
                )
                reply = wire.reply(tag)
        except TimeoutError as exc:
            raise TransientError(
                f"timed out: no answer to the login for {mailbox} from {self._where} within "
                f"{s.timeout:g} s (Dovecot slows every login from an address after failed "
                "ones: look for wrong passwords in this night's reasons)"
            ) from exc
        except (OSError, CommandFailed) as exc:
            raise TransientError(
                f"connection lost to {self._where} during login for {mailbox}: {exc}"
            ) from exc
        if reply.status != b"OK":
            text = f"{reply.status.decode()} {reply.text.decode('utf-8', 'replace')}"
            if b"AUTHORIZATIONFAILED" in reply.text.upper():
                raise MailboxMissing(
                    f"server refused access to {mailbox} for the admin user "
                    f"(no such mailbox, or no master-user right): {text}"
                )
            if s.auth != "user":
                raise CredentialsRejected(
                    f"login failed for master user {s.master_user!r} (wrong password, or the "
                    f"master user was removed?): {text}"
                )
            raise AuthError(f"login failed for {mailbox} (wrong password?): {text}")
        after = capabilities_in(reply.text)
        if after is None:
            try:
                after = _capabilities(wire.command(b"CAPABILITY"))
            except (OSError, CommandFailed) as exc:
                raise TransientError(
                    f"connection lost to {self._where} during login for {mailbox}: {exc}"
                ) from exc
        return after

    @contextmanager
    def open(self, mailbox: str) -> Iterator[ImapSession]:
        wire = self.connect()
        try:
            caps = self.login(wire, mailbox)
            yield ImapSession(wire, mailbox, self.settings, caps)
        except TimeoutError as exc:
            raise TransientError(
                f"timed out: no answer from {self._where} within {self.settings.timeout:g} s "
                f"while reading {mailbox}"
            ) from exc
        except (OSError, EOFError, ssl.SSLError, FetchProtocolError) as exc:
            raise TransientError(
                f"connection lost to {self._where} while reading {mailbox} "
                f"({type(exc).__name__}: {exc})"
            ) from exc
        except CommandFailed as exc:
            raise TransientError(f"server error from {self._where} on {mailbox}: {exc}") from exc
        finally:
            wire.logout()

    def diagnose(self, probe: Probe) -> list[Check]:
        """``doctor``'s checks, in order, stopping where a later one needs an earlier one:
        TCP, TLS, the login (as the master user for ``probe.mailbox``), CONDSTORE and QUOTA,
        the Sent folder."""
        s = self.settings
        out: list[Check] = []

        def add(check: str, status: str, detail: str) -> None:
            out.append(Check(self.name, check, status, detail))

        try:
            probe_tcp(s.host, s.effective_port, timeout=min(s.timeout, 10))
            add("tcp", "ok", f"{s.host}:{s.effective_port} answers")
        except ConnectionRefusedError:
            add(
                "tcp",
                "fail",
                f"{s.host}:{s.effective_port} refused the connection: nothing listens there "
                '(is the IMAP service running? 993 for security = "tls", 143 for "starttls")',
            )
            return out
        except OSError as exc:
            add("tcp", "fail", f"cannot reach {s.host}:{s.effective_port}: {exc}")
            return out
        try:
            wire = self.connect()
        except SourceError as exc:
            add("tls", "fail", exc.reason)
            return out
        wire.logout()
        if s.security == "plain":
            add("tls", "warn", "plain text: passwords cross the network unencrypted")
        else:
            how = "verified" if s.verify else "NOT verified (verify = false)"
            add("tls", "ok", f"{s.security}, certificate {how}")
        if probe.secret:
            add("login", "warn", f"not tried: {probe.secret}")
            return out
        mailbox = probe.mailbox
        if mailbox is None:
            add("login", *probe.missing("log in to"))
            return out
        who = f"as {s.master_user} for {mailbox}" if s.auth != "user" else f"as {mailbox}"
        try:
            with self.open(mailbox) as session:
                add("login", "ok", f"logged in {who} ({s.auth})")
                if s.auth != "user":
                    add("master-user", "ok", f"{s.master_user} may open {mailbox}")
                caps = session.capabilities
                for cap, why in ((b"CONDSTORE", "read activity"), (b"QUOTA", "storage")):
                    name = cap.decode()
                    if cap in caps:
                        add(name.lower(), "ok", f"{name} available ({why})")
                    else:
                        add(name.lower(), "warn", f"no {name}: {why} unknown")
                sent = [(n, su) for n, role, su in session.list_folders() if role == "sent"]
                if sent:
                    folder, special = sent[0]
                    how = "SPECIAL-USE" if special else "by name"
                    add("sent-folder", "ok", f"{folder!r} ({how}) in {mailbox}")
                else:
                    add(
                        "sent-folder", "warn", f"no Sent folder in {mailbox}: sent counts will be 0"
                    )
        except SourceError as exc:
            add("login", "fail", exc.reason)
        except ssl.SSLError as exc:
            add("login", "fail", f"TLS error: {exc}")
        return out


def _capabilities(reply: Reply) -> set[bytes]:
    caps: set[bytes] = set()
    for data in reply.of(b"CAPABILITY"):
        text = data[0] if isinstance(data[0], bytes) else data[0][0]
        caps |= {c.upper() for c in text.split()}
    return caps


def _text(data: Response) -> bytes:
    first = data[0]
    return first if isinstance(first, bytes) else first[0]


def _name(value: object) -> bytes:
    """A mailbox name as parsed (bytes, or an int for a name like ``2024``), as bytes."""
    return value if isinstance(value, bytes) else str(value).encode()


class ImapSession:
    """One logged-in connection to one mailbox. Read-only by construction.

    A quiet mailbox costs one round trip here: LIST with STATUS (RFC 5819) and
    GETQUOTAROOT go out together; EXAMINE, SEARCH and FETCH only for folders that changed.
    """

    def __init__(
        self, wire: Wire, mailbox: str, settings: ImapSettings, capabilities: set[bytes]
    ) -> None:
        self.wire = wire
        self.mailbox = mailbox
        self.settings = settings
        self.capabilities = capabilities
        self.condstore = b"CONDSTORE" in capabilities
        self._selected: str | None = None
        self._survey: tuple[list[FolderState], list[tuple[str, str, bool]], Quota] | None = None
        # Per folder: FETCH responses without a UID, INTERNALDATE or size (never seen from
        # Dovecot; recorded in mailbox_status.unreadable rather than dropped in silence).
        self.unreadable: Counter[str] = Counter()

    # -- folders and quota: one round trip -----------------------------------------------

    def _status_items(self) -> bytes:
        items = b"MESSAGES UIDNEXT UIDVALIDITY UNSEEN"
        return items + (b" HIGHESTMODSEQ" if self.condstore else b"")

    def survey(self) -> tuple[list[FolderState], list[tuple[str, str, bool]], Quota]:
        """Every folder with its STATUS counters, and the quota, in one pipeline."""
        if self._survey is not None:
            return self._survey
        caps = self.capabilities
        list_status = b"LIST-STATUS" in caps
        ret = [b"SPECIAL-USE"] if b"SPECIAL-USE" in caps else []
        if list_status:
            ret.append(b"STATUS (" + self._status_items() + b")")
        commands = [b'LIST "" "*"' + (b" RETURN (" + b" ".join(ret) + b")" if ret else b"")]
        if b"QUOTA" in caps:
            commands.append(b"GETQUOTAROOT INBOX")
        # ENABLE first, in the same round trip: Dovecot tracks per-message MODSEQs only
        # once a client enabled CONDSTORE on the mailbox; without it tonight's
        # HIGHESTMODSEQ would date every message as changed tomorrow.
        enable = self.condstore and b"ENABLE" in caps
        tags = self.wire.send(*([b"ENABLE CONDSTORE"] if enable else []), *commands)
        if enable:
            self.wire.reply(tags.pop(0))  # a NO leaves STATUS HIGHESTMODSEQ to enable it
        listed = self.wire.reply(tags[0])
        if listed.status != b"OK":
            raise CommandFailed(commands[0], listed.status, listed.text)
        quota = Quota(None, None)
        if len(tags) > 1:
            # A server that advertises QUOTA but answers NO (no quota root for this user,
            # quota backend down): the size is unknown tonight, the messages are not.
            quota = _quota(self.wire.reply(tags[1]))
        folders: list[tuple[str, str, bool, bytes]] = []
        for data in listed.of(b"LIST"):
            flags, delimiter, raw = parse_response(data)
            lowered = {f.lower() for f in flags}
            if b"\\noselect" in lowered or b"\\nonexistent" in lowered:
                continue
            wire_name = _name(raw)
            name = folder_name(wire_name)
            delim = delimiter.decode() if isinstance(delimiter, bytes) else delimiter
            role = folder_role(name, tuple(flags), delim)
            special = any(f in SPECIAL_USE_ROLES for f in lowered)
            folders.append((name, role, special, wire_name))
        statuses = {}
        for data in listed.of(b"STATUS"):
            raw, values = parse_response(data)
            statuses[_name(raw)] = dict(zip(values[::2], values[1::2], strict=True))
        missing = [f[3] for f in folders if f[3] not in statuses]
        if missing:  # no LIST-STATUS: STATUS per folder, all in one more round trip
            status_tags = self.wire.send(
                *[b"STATUS " + quoted(w) + b" (" + self._status_items() + b")" for w in missing]
            )
            for tag in status_tags:
                reply = self.wire.reply(tag)
                if reply.status != b"OK":
                    raise CommandFailed(b"STATUS", reply.status, reply.text)
                for data in reply.of(b"STATUS"):
                    raw, values = parse_response(data)
                    statuses[_name(raw)] = dict(zip(values[::2], values[1::2], strict=True))
        states = []
        for name, role, _special, wire_name in folders:
            st = statuses[wire_name]
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
        self._survey = (states, [(n, r, sp) for n, r, sp, _w in folders], quota)
        return self._survey

    def list_folders(self) -> list[tuple[str, str, bool]]:
        """(name, role, role came from SPECIAL-USE) for every selectable folder."""
        return self.survey()[1]

    def resume(self, start: Mapping[str, FolderCursor]) -> None:
        pass  # UIDs and MODSEQs say where to go on from: see plan_folder

    def token(self, folder: FolderState) -> str | None:
        return None

    def folders(self) -> list[FolderState]:
        """Every selectable folder with its role and STATUS counters."""
        return self.survey()[0]

    def quota(self) -> Quota:
        """Storage used/limit in bytes from GETQUOTAROOT INBOX (RFC 2087 counts KiB)."""
        return self.survey()[2]

    def _examine(self, folder: FolderState, then: bytes | None = None) -> bytes | None:
        """EXAMINE ``folder`` unless it is selected; ``then``, a command that needs it, goes
        out in the same write (one round trip saved per folder). Returns its tag."""
        commands = [then] if then is not None else []
        if self._selected != folder.name:
            name = quoted(encode_utf7(folder.name))
            condstore = b" (CONDSTORE)" if self.condstore else b""
            commands.insert(0, b"EXAMINE " + name + condstore)
        tags = self.wire.send(*commands) if commands else []
        if self._selected != folder.name:
            reply = self.wire.reply(tags.pop(0))
            if reply.status != b"OK":
                raise CommandFailed(commands[0], reply.status, reply.text)
            self._selected = folder.name
            codes = b" ".join(_text(d) for d in reply.of(b"OK"))
            m = re.search(rb"\[UIDVALIDITY (\d+)\]", codes)
            if m is None or int(m.group(1)) != folder.uidvalidity:
                raise TransientError(
                    f"UIDVALIDITY of {folder.name!r} changed during the collection"
                )
        return tags[0] if tags else None

    # -- activity ------------------------------------------------------------------------

    def count_changed(self, folder: FolderState, since_modseq: int, up_to_uid: int) -> int | None:
        """How many messages with UID <= up_to_uid had flags changed after since_modseq."""
        if not self.condstore or folder.highestmodseq is None:
            return None
        if up_to_uid < 1 or folder.highestmodseq <= since_modseq:
            return 0
        # RFC 7162: SEARCH MODSEQ n matches mod-sequences >= n; we want those after the cursor.
        search = b"UID SEARCH UID 1:%d MODSEQ %d" % (up_to_uid, since_modseq + 1)
        tag = self._examine(folder, then=search)
        assert tag is not None
        reply = self.wire.reply(tag)
        if reply.status != b"OK":
            raise CommandFailed(search, reply.status, reply.text)
        found = 0
        for data in reply.of(b"SEARCH"):
            found += sum(1 for w in _text(data).split(b"(", 1)[0].split() if w.isdigit())
        return found

    def raw_message(self, folder: FolderState, uid: int) -> bytes | None:
        """The whole message, read with BODY.PEEK[] (never sets \\Seen): contact scan only."""
        self._examine(folder)
        reply = self.wire.command(b"UID FETCH %d (BODY.PEEK[])" % uid)
        for data in reply.of(b"FETCH"):
            for got_uid, attrs in parse_fetch_response(data).items():
                raw = attrs.get(b"BODY[]")
                if got_uid == uid and raw is not None:
                    return bytes(raw)
        return None

    def forwards(self) -> list[Forward] | None:
        """None: IMAP has no forwarding of its own (ManageSieve or Zimbra's attributes
        are added by the opened source, pipelines/sources.py)."""
        return None

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
        fetch = b"UID FETCH %d:%d %s" % (from_uid, to_uid, FETCH_ITEMS.encode())
        tag = self._examine(folder, then=fetch)
        assert tag is not None
        name = folder.name
        batch: list[Message] = []
        size = self.settings.batch_size
        for attrs, header, groups in iter_fetch(self.wire.read, tag):
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


def _quota(reply: Reply) -> Quota:
    if reply.status != b"OK":
        return Quota(None, None)
    for data in reply.of(b"QUOTA"):
        _root, values = parse_response(data)
        for i in range(0, len(values) - 2, 3):
            if _name(values[i]).upper() == b"STORAGE":
                return Quota(int(values[i + 1]) * 1024, int(values[i + 2]) * 1024)
    return Quota(None, None)


def probe_tcp(host: str, port: int, timeout: float = 5.0) -> None:
    """Raise OSError unless a TCP connection to host:port opens."""
    with socket.create_connection((host, port), timeout=timeout):
        pass
