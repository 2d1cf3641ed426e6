"""The IMAP connector against a real Dovecot: TLS, logins, folders, counts, read-only."""

from __future__ import annotations

import email
import email.policy
from email.utils import getaddresses

import pytest
from imapclient import IMAPClient

from connectors.base import AuthError, MailboxMissing, SourceError, TransientError
from connectors.imap import ImapSettings, ImapSource
from devkit.dovecot import MASTER_USER, LocalDovecot, free_port
from tests.conftest import imap_source
from tests.groundtruth import ODD_MESSAGES, flag_names, per_folder, seed_odd, seed_regular, truth


def source(server: LocalDovecot, **overrides) -> ImapSource:
    return imap_source(server, **{"batch_size": 7, **overrides})


def collect_all(src: ImapSource, mailbox: str):
    with src.open(mailbox) as session:
        folders = session.folders()
        msgs = [m for f in folders for b in session.messages(f, 1, f.uidnext - 1) for m in b]
        return folders, msgs, session.quota()


@pytest.fixture(scope="module")
def mailboxes(dovecot: LocalDovecot) -> dict[str, str | None]:
    """mailbox -> its Sent folder (None: none)."""
    layout = {
        "su@danang.gov.vn": "Sent",
        "items@danang.gov.vn": "Sent Items",
        "viet@danang.gov.vn": "Thư đã gửi",
        "nosent@danang.gov.vn": None,
    }
    for i, (mailbox, sent) in enumerate(layout.items()):
        seed_regular(dovecot, mailbox, 40 + i * 7, sent_folder=sent, seed=i)
    return layout


def test_counts_sizes_dates_equal_ground_truth(dovecot, mailboxes):
    for mailbox, sent in mailboxes.items():
        folders, msgs, _ = collect_all(source(dovecot), mailbox)
        names = ["INBOX"] + ([sent] if sent else [])
        expected = per_folder(truth(dovecot, mailbox, names))
        got = {}
        for name in {m.folder for m in msgs}:
            sel = [m for m in msgs if m.folder == name]
            got[name] = (
                len(sel),
                sum(m.size for m in sel),
                min(m.sent_date for m in sel),
                max(m.sent_date for m in sel),
            )
        assert got == expected, mailbox
        by_name = {f.name: f for f in folders}
        for name, (count, *_rest) in expected.items():
            assert by_name[name].messages == count


def test_per_message_fields_match_files(dovecot, mailboxes):
    mailbox = "su@danang.gov.vn"
    _, msgs, _ = collect_all(source(dovecot), mailbox)
    expected = {(r.message_id, r.folder): r for r in truth(dovecot, mailbox, ["INBOX", "Sent"])}
    assert len(expected) == len(msgs)
    for m in msgs:
        t = expected[(m.message_id, m.folder)]
        assert (m.size, m.internal_date, m.sent_date, m.seen) == (
            t.size,
            t.internal_date,
            t.sent_date,
            t.seen,
        )
        assert m.from_addr == t.from_addr
        assert m.to_addrs == t.to_addrs
        assert m.date_source == "header"


def test_sent_folder_found_by_special_use_then_by_name(dovecot, mailboxes):
    for mailbox, sent in mailboxes.items():
        with source(dovecot).open(mailbox) as session:
            found = [(n, su) for n, role, su in session.list_folders() if role == "sent"]
        if sent is None:
            assert found == []
        else:
            assert found == [(sent, sent == "Sent")], mailbox


def test_quota_reported_with_the_5g_rule(dovecot, mailboxes):
    _, msgs, quota = collect_all(source(dovecot), "items@danang.gov.vn")
    assert quota.limit_bytes == 5 * 1024**3
    # Dovecot counts in KiB; used is the sum of sizes, rounded up per KiB at most.
    total = sum(m.size for m in msgs)
    assert total <= quota.used_bytes <= total + 1024 * len(msgs)


def test_collection_changes_no_flag_and_no_modseq(dovecot, mailboxes):
    src = source(dovecot)

    def state(mailbox):
        with src.open(mailbox) as session:
            return {f.name: (f.highestmodseq, f.unseen, f.messages) for f in session.folders()}

    for mailbox in mailboxes:
        before_files, before = flag_names(dovecot, mailbox), state(mailbox)
        for _ in range(2):
            collect_all(src, mailbox)
        assert state(mailbox) == before, mailbox
        assert flag_names(dovecot, mailbox) == before_files, mailbox


def test_read_activity_counts_flag_changes_of_old_messages(dovecot):
    mailbox = "reader@danang.gov.vn"
    seed_regular(dovecot, mailbox, 12, sent_folder=None, seed=9)
    src = source(dovecot)
    with src.open(mailbox) as session:
        inbox = next(f for f in session.folders() if f.role == "inbox")
    # The user reads three messages with their own login (not the collector).
    user = IMAPClient("127.0.0.1", port=dovecot.imap_port, ssl=False)
    user.login(mailbox, "user-secret")
    user.select_folder("INBOX")
    user.add_flags([1, 2, 3], [b"\\Flagged"])
    user.logout()
    with src.open(mailbox) as session:
        now = next(f for f in session.folders() if f.role == "inbox")
        assert session.count_changed(now, inbox.highestmodseq, inbox.uidnext - 1) == 3
        assert session.count_changed(now, now.highestmodseq, now.uidnext - 1) == 0


def test_odd_messages_are_collected_not_crashed_on(dovecot):
    mailbox = "odd@danang.gov.vn"
    seed_odd(dovecot, mailbox)
    _, msgs, _ = collect_all(source(dovecot), mailbox)
    assert len(msgs) == len(ODD_MESSAGES)
    by_id = {m.message_id: m for m in msgs}
    nodate = by_id["<nodate@t>"]
    assert (nodate.date_source, nodate.sent_date) == ("internaldate", nodate.internal_date)
    assert by_id["<baddate@t>"].date_source == "internaldate"
    assert by_id["<badcs@t>"].from_addr == "an@danang.gov.vn"
    viet = by_id["<viet@t>"]
    assert viet.from_addr == "binh.tt@danang.gov.vn"
    assert viet.to_addrs == ("nv@danang.gov.vn", "levan@gmail.com")
    assert viet.date_source == "header" and not viet.address_invalid
    invalid = by_id["<invalid@t>"]
    assert invalid.address_invalid and invalid.from_addr == "not an address"
    assert "ok@danang.gov.vn" in invalid.to_addrs
    raw8 = by_id[None]
    assert raw8.from_addr == "do.v@danang.gov.vn"


def test_every_to_and_cc_field_of_an_appended_message_is_collected(dovecot):
    # RFC 5322 §3.6 allows one To and one Cc, but real mail repeats them: every address counts.
    mailbox = "repeated@danang.gov.vn"
    dovecot.add_user(mailbox, "user-secret")
    dovecot.finish_seeding(mailbox)
    raw = (
        b"From: An <an@danang.gov.vn>\r\n"
        b"To: b.tt@danang.gov.vn\r\n"
        b"Cc: =?utf-8?q?L=C3=AA=2C_V=C4=83n?= <LeVan@Gmail.com>\r\n"
        b"Subject: x\r\n"
        b"To: Phong KH: c@binhduong.gov.vn,\r\n\td@yahoo.com.vn;\r\n"
        b"Cc: e@danang.gov.vn\r\n"
        b"Date: Mon, 2 Nov 2026 10:00:00 +0700\r\nMessage-ID: <repeated@t>\r\n\r\nbody\r\n"
    )
    user = IMAPClient("127.0.0.1", port=dovecot.imap_port, ssl=False)
    user.login(mailbox, "user-secret")
    user.append("INBOX", raw)
    user.logout()
    _, msgs, _ = collect_all(source(dovecot), mailbox)
    (m,) = msgs
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    to, cc = (
        tuple(a.lower() for _, a in getaddresses(parsed.get_all(f, []))) for f in ("To", "Cc")
    )
    assert to == ("b.tt@danang.gov.vn", "c@binhduong.gov.vn", "d@yahoo.com.vn")
    assert cc == ("levan@gmail.com", "e@danang.gov.vn")
    assert (m.to_addrs, m.cc_addrs) == (to, cc)
    assert not m.address_invalid


def test_master_separator_login_and_plain_transport(dovecot, mailboxes):
    src = source(dovecot, auth="master-separator", port=dovecot.imap_port, security="plain")
    _, msgs, _ = collect_all(src, "su@danang.gov.vn")
    assert msgs


def test_starttls_on_the_plain_port(dovecot, mailboxes):
    src = source(dovecot, port=dovecot.imap_port, security="starttls")
    with src.open("su@danang.gov.vn") as session:
        assert session.wire.sock.version().startswith("TLS")


def test_per_user_credentials(dovecot, mailboxes):
    src = ImapSource(
        ImapSettings(
            host="127.0.0.1", port=dovecot.imaps_port, auth="user", ca_file=str(dovecot.ca_file)
        ),
        password_for=lambda _m: "user-secret",
    )
    _, msgs, _ = collect_all(src, "items@danang.gov.vn")
    assert msgs


def test_untrusted_certificate_is_refused(dovecot, mailboxes):
    with (
        pytest.raises(SourceError, match="not trusted"),
        source(dovecot, ca_file=None).open("su@danang.gov.vn"),
    ):
        pass


def test_wrong_master_password_names_the_cause(dovecot, mailboxes):
    src = ImapSource(source(dovecot).settings, password_for=lambda _m: "wrong")
    with (
        pytest.raises(AuthError, match=f"master user '{MASTER_USER}'.*wrong password"),
        src.open("su@danang.gov.vn"),
    ):
        pass


def test_unknown_mailbox_is_reported_missing(dovecot):
    with (
        pytest.raises(MailboxMissing, match="no such mailbox"),
        source(dovecot).open("ghost@danang.gov.vn"),
    ):
        pass


def test_a_wrong_port_or_security_says_what_to_change(dovecot):
    """TLS spoken to the plain port, or a port where nothing listens: the reason says
    which setting to look at, not just the socket error."""
    plain_port = imap_source(dovecot, port=dovecot.imap_port, security="tls")
    with pytest.raises(SourceError, match=r'plain-text IMAP port\. Use security = "starttls"'):
        plain_port.connect()
    nobody = imap_source(dovecot, port=free_port(), security="tls")
    with pytest.raises(TransientError, match="connection refused, nothing listens there"):
        nobody.connect()
