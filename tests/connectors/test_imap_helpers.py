"""Pure parsers fed with literal wire bytes, fields annotated (no server needed)."""

from __future__ import annotations

import email
import email.policy
from email.utils import getaddresses, parsedate_to_datetime

import pytest

from connectors.base import FolderCursor, FolderState, plan_folder
from connectors.imap_helpers import (
    FetchProtocolError,
    _sent_date,
    folder_name,
    folder_role,
    iter_fetch,
    parse_addresses,
    parse_date_header,
    parse_message,
    split_headers,
)

# Two Dovecot 2.3 FETCH responses as they came off the wire, then an unsolicited EXISTS
# and the tagged completion.
WIRE = (
    b'* 1 FETCH (UID 101 INTERNALDATE "24-Oct-2026 14:56:05 +0000" RFC822.SIZE 168 '
    b"FLAGS (\\Seen \\Recent) BODY[HEADER.FIELDS (FROM TO CC DATE MESSAGE-ID)] {76}\r\n"
    b"From: a@x.gov.vn\r\nTo: b@gmail.com\r\nDate: Sat, 24 Oct 2026 21:56:05 +0700\r\n\r\n)\r\n"
    b"* 3 EXISTS\r\n"
    # Another server's order: FLAGS first, UID after the literal, a MODSEQ.
    b"* 2 FETCH (FLAGS () MODSEQ (12) BODY[HEADER.FIELDS (FROM TO CC DATE MESSAGE-ID)] {21}\r\n"
    b'Message-ID: <m@x>\r\n\r\n UID 102 INTERNALDATE " 2-Nov-2026 10:00:00 +0700" '
    b"RFC822.SIZE 99)\r\n"
    b"MU7 OK Fetch completed (0.001 + 0.000 secs).\r\n"
)


def chunks(data: bytes, size: int):
    parts = [data[i : i + size] for i in range(0, len(data), size)]
    it = iter(parts)
    return lambda: next(it, b"")


@pytest.mark.parametrize("size", [1, 2, 7, 64, 4096])  # 4096 > len(WIRE)
def test_iter_fetch_is_independent_of_chunk_boundaries(size):
    got = list(iter_fetch(chunks(WIRE, size), b"MU7"))
    assert len(got) == 2
    if size >= len(WIRE):  # whole responses in the buffer: the fast path, then the general one
        assert got[0][2] is not None and got[1][2] is None
    assert got[0][1] == (
        b"From: a@x.gov.vn\r\nTo: b@gmail.com\r\nDate: Sat, 24 Oct 2026 21:56:05 +0700\r\n\r\n"
    )
    assert got[1][1] == b"Message-ID: <m@x>\r\n\r\n"
    assert b"UID 102" in got[1][0]


def test_parse_message_reads_both_orders():
    (a1, h1, g1), (a2, h2, g2) = list(iter_fetch(chunks(WIRE, 4096), b"MU7"))
    m1 = parse_message("INBOX", a1, h1, g1)
    m2 = parse_message("INBOX", a2, h2, g2)
    assert m1 is not None and m2 is not None
    assert (m1.uid, m1.size, m1.seen, m1.from_addr, m1.to_addrs) == (
        101,
        168,
        True,
        "a@x.gov.vn",
        ("b@gmail.com",),
    )
    assert m1.internal_date == m1.sent_date == 1792853765  # same instant, two zones
    assert (m2.uid, m2.size, m2.seen, m2.message_id) == (102, 99, False, "<m@x>")
    assert m2.date_source == "internaldate" and m2.sent_date == 1793588400


@pytest.mark.parametrize(
    ("date", "source", "sent"),
    [
        # a typo'd or zeroed year: stored as written, the message would fall out of every month
        (b"Fri, 20 Nov 0102 09:00:00 +0700", "internaldate_implausible_header", 1795140000),
        (b"Mon, 01 Jan 0001 00:00:00 +0000", "internaldate_implausible_header", 1795140000),
        # a sender's clock a year ahead: after arrival by more than a day
        (b"Sat, 20 Nov 2027 09:00:00 +0700", "internaldate_implausible_header", 1795140000),
        # mail imported from an old system: years before arrival, and kept
        (b"Tue, 20 Nov 2012 09:00:00 +0700", "header", 1353376800),
        # a few hours after arrival (a zone written wrongly): within the day allowed
        (b"Fri, 20 Nov 2026 14:00:00 +0700", "header", 1795158000),
    ],
)
def test_an_implausible_date_header_falls_back_to_internaldate_flagged(date, source, sent):
    attrs = b'* 1 FETCH (UID 7 INTERNALDATE "20-Nov-2026 09:00:00 +0700" RFC822.SIZE 80 FLAGS ()'
    m = parse_message("INBOX", attrs, b"Date: " + date + b"\r\n\r\n")
    assert m is not None and m.internal_date == 1795140000  # 2026-11-20 02:00 UTC
    assert (m.date_source, m.sent_date) == (source, sent)


def test_iter_fetch_raises_on_no_and_on_a_dropped_connection():
    with pytest.raises(FetchProtocolError, match="NO"):
        list(iter_fetch(chunks(b"MU1 NO [SERVERBUG] Internal error\r\n", 9), b"MU1"))
    with pytest.raises(ConnectionError):
        list(iter_fetch(chunks(WIRE[:150], 16), b"MU7"))


@pytest.mark.parametrize(
    "value",
    [
        "Mon, 2 Nov 2026 10:00:00 +0700",
        "2 Nov 2026 10:00:00 +0700",
        "Mon, 02 Nov 2026 03:00:00 GMT",
        "Mon,  2 Nov 2026 10:00 +0700",
        "Mon, 2 Nov 26 10:00:00 +0700",
        "Tue, 3 Nov 2026 08:15:00 +0700 (ICT)",
        "Mon, 2 Nov 2026 10:00:00 -0430",
        "Mon, 2 November 2026 10:00:00 +0700",
    ],
)
def test_date_header_matches_the_standard_library(value):
    expected = int(parsedate_to_datetime(value).timestamp())
    assert parse_date_header(value) == expected
    assert _sent_date(value.encode()) == expected  # the hot path's bytes shortcut


@pytest.mark.parametrize("value", ["", "sometime last week", "Mon, 45 Nov 2026 10:00:00 +0700"])
def test_unreadable_dates_are_none(value):
    assert parse_date_header(value) is None
    assert _sent_date(value.encode()) is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("An <An.NV@DaNang.gov.vn>", (("an.nv@danang.gov.vn",), False)),
        (
            '"Lê, Văn (cá nhân) x@y.z" <levan@gmail.com>, b@x.vn',
            (("levan@gmail.com", "b@x.vn"), False),
        ),
        (
            "=?utf-8?q?Ph=C3=B2ng_N=E1=BB=99i_v=E1=BB=A5?= <nv@danang.gov.vn>",
            (("nv@danang.gov.vn",), False),
        ),
        (
            "=?utf-8?b?PGhpZGRlbkBnbWFpbC5jb20+?=",
            (("hidden@gmail.com",), False),
        ),  # address in the word
        ("Phòng: a@x.vn, b@y.vn;", (("a@x.vn", "b@y.vn"), False)),  # a group
        ("undisclosed-recipients:;", ((), False)),
        ("not an address", (("not an address",), True)),
        ("someone@, ok@x.vn", (("someone@", "ok@x.vn"), True)),
    ],
)
def test_addresses(value, expected):
    assert parse_addresses(value) == expected


def test_split_headers_unfolds_keeps_the_first_date_and_every_to():
    block = b"To: a@x,\r\n\tb@y\r\nDate: one\r\nDate: two\r\nX: y\r\nTo: c@z\r\n\r\n"
    assert split_headers(block) == {b"to": b"a@x, b@y\r\nc@z", b"date": b"one", b"x": b"y"}


# Header blocks with To: and Cc: repeated. RFC 5322 §3.6 allows one of each, but real mail
# carries several, and the standard library's parser keeps every field: so must we.
REPEATED = [
    pytest.param(b"To: a@x.vn\r\nTo: b@y.vn\r\n\r\n", id="two To"),
    pytest.param(b"Cc: a@x.vn\r\nCc: b@y.vn, c@z.vn\r\nCc: d@w.vn\r\n\r\n", id="three Cc"),
    pytest.param(b"To: a@x.vn\r\nCc: c@z.vn\r\nTo: b@y.vn\r\nCc: d@w.vn\r\n\r\n", id="interleaved"),
    pytest.param(b"To: a@x.vn,\r\n\tb@y.vn\r\nTo:\r\n c@z.vn,\r\n d@w.vn\r\n\r\n", id="folded"),
    pytest.param(
        b"To: =?utf-8?q?L=C3=AA=2C_V=C4=83n?= <LeVan@Gmail.com>\r\n"
        b"To: =?utf-8?b?Tmd1eeG7hW4gVsSDbiBB?= <An.NV@DaNang.gov.vn>, b@y.vn\r\n"
        # RFC 2047's own example: an encoded word beside a plain one
        b'Cc: "Q, R" <q@r.vn>\r\nCc: =?ISO-8859-1?Q?Andr=E9?= Pirard <PIRARD@vm1.ulg.ac.be>\r\n'
        b"\r\n",
        id="encoded words",
    ),
    pytest.param(
        b"To: Team: a@x.vn, b@y.vn;\r\nTo: c@z.vn\r\n"
        b"Cc: undisclosed-recipients:;\r\nCc: Other: d@w.vn;\r\n\r\n",
        id="groups",
    ),
    pytest.param(b"To:\r\nTo: a@x.vn\r\nCc: \r\nCc: b@y.vn\r\nCc:\r\n\r\n", id="empty fields"),
    pytest.param(b"To: a@x.vn\r\nTo: a@x.vn\r\n\r\n", id="the same address twice"),
]


def _truth(block: bytes, name: str) -> tuple[str, ...]:
    """Every address of every ``name`` field, read by the standard library."""
    msg = email.message_from_bytes(block, policy=email.policy.default)
    return tuple(a.lower() for _, a in getaddresses(msg.get_all(name, [])) if a)


@pytest.mark.parametrize("block", REPEATED)
def test_every_to_and_cc_field_is_kept_as_the_standard_library_reads_it(block):
    attrs = b'* 1 FETCH (UID 7 INTERNALDATE "20-Nov-2026 09:00:00 +0700" RFC822.SIZE 80 FLAGS ()'
    m = parse_message("INBOX", attrs, block)
    assert m is not None and not m.address_invalid
    assert (m.to_addrs, m.cc_addrs) == (_truth(block, "To"), _truth(block, "Cc"))


@pytest.mark.parametrize("block", REPEATED)
def test_repeated_fields_read_the_same_on_the_fast_and_the_general_path(block):
    head = b"BODY[HEADER.FIELDS (FROM TO CC DATE MESSAGE-ID)] {%d}\r\n" % len(block)
    wire = (
        b'* 1 FETCH (UID 7 INTERNALDATE "20-Nov-2026 09:00:00 +0700" RFC822.SIZE 80 FLAGS () '
        + head
        + block
        + b")\r\n"
        # the same message in another server's order: only the general path reads it
        + b"* 2 FETCH (FLAGS () "
        + head
        + block
        + b' UID 7 INTERNALDATE "20-Nov-2026 09:00:00 +0700" RFC822.SIZE 80)\r\n'
        + b"MU1 OK done\r\n"
    )
    (a1, h1, g1), (a2, h2, g2) = list(iter_fetch(chunks(wire, 1 << 16), b"MU1"))
    assert g1 is not None and g2 is None
    fast, general = parse_message("INBOX", a1, h1, g1), parse_message("INBOX", a2, h2, g2)
    assert fast is not None and fast == general
    assert fast.to_addrs == _truth(block, "To") and fast.cc_addrs == _truth(block, "Cc")


def test_folder_roles():
    assert folder_role("Archive2", (b"\\HasNoChildren", b"\\Sent"), "/") == "sent"
    assert folder_role("Sent Items", (), "/") == "sent"
    assert folder_role("INBOX.Sent", (), ".") == "sent"
    assert folder_role("INBOX", (), "/") == "inbox"
    assert folder_role(folder_name(b"Th&AbA- &AREA4w- g&Hu0-i"), (), "/") == "sent"
    assert folder_role("Công văn", (), "/") == "other"


def test_plan_folder():
    state = FolderState("INBOX", "inbox", 10, 0, 11, 7, 50)
    assert plan_folder(state, None).from_uid == 1 and not plan_folder(state, None).full_reread
    inc = plan_folder(state, FolderCursor(7, 8, 40))
    assert (inc.from_uid, inc.to_uid, inc.changed_since, inc.full_reread) == (9, 10, 40, False)
    reset = plan_folder(state, FolderCursor(6, 8, 40))
    assert (reset.from_uid, reset.full_reread, reset.changed_since) == (1, True, None)
    assert plan_folder(state, FolderCursor(7, 10, 50)).empty
