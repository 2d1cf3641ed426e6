"""Mail as its recipients get it: their INBOX read back over IMAP from the test Dovecot,
after the private Postfix has delivered what it holds (the delivery and reminder tests)."""

from __future__ import annotations

import email
import time
from email import policy

from imapclient import IMAPClient

from devkit.dovecot import LocalDovecot
from devkit.postfix import LocalPostfix


def inbox(dc: LocalDovecot, user: str, password: str) -> list[email.message.EmailMessage]:
    """Every message in ``user``'s INBOX, oldest first, read without marking it seen."""
    with IMAPClient("127.0.0.1", port=dc.imap_port, ssl=False) as imap:
        imap.login(user, password)
        imap.select_folder("INBOX", readonly=True)
        uids = imap.search("ALL")
        raw = imap.fetch(uids, ["BODY.PEEK[]"]) if uids else {}
    return [
        email.message_from_bytes(raw[u][b"BODY[]"], policy=policy.default)  # type: ignore[misc]
        for u in sorted(raw)
    ]


def delivered(
    dc: LocalDovecot, pf: LocalPostfix, user: str, password: str, count: int
) -> list[email.message.EmailMessage]:
    """``user``'s INBOX once it holds ``count`` messages (or after 30 s, as it is then)."""
    pf.wait_idle()
    deadline = time.monotonic() + 30
    while len(got := inbox(dc, user, password)) < count and time.monotonic() < deadline:
        time.sleep(0.2)
    return got
