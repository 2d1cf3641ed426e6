"""connectors/imap_wire.py and the FETCH reader on literal IMAP bytes, over a real socket.

A tiny loopback server plays a script: for each command line it receives it answers with
the bytes written here (``TAG`` is the command's tag), cut into the chunks given and sent
with a pause between them, so that the client reads them in that many pieces. Nothing of
connectors/ is replaced: ``Wire.open`` connects, ``Wire.reply`` and ``iter_fetch`` read.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pytest

from connectors.compat.imapclient_hooks import parse_fetch_response, parse_response
from connectors.imap_helpers import FetchProtocolError, iter_fetch, parse_message
from connectors.imap_wire import CommandFailed, Wire, WireClosed

GREETING = b"* OK [CAPABILITY IMAP4rev1 SASL-IR LITERAL+ AUTH=PLAIN] Dovecot ready.\r\n"


@dataclass
class Step:
    """Read ``commands`` command lines, then send ``chunks`` (each ``TAG<n>``, or ``TAG``
    for the first, replaced by the tag of the n-th line read, counted from 1)."""

    commands: int
    chunks: list[bytes]


@dataclass
class Peer:
    """What the server saw: every command line, as bytes (without CRLF)."""

    received: list[bytes] = field(default_factory=list)


@contextmanager
def server(greeting: list[bytes], *steps: Step, close: bool = True) -> Iterator[tuple[Wire, Peer]]:
    """A Wire connected to a one-connection loopback server playing ``steps``; the server
    closes the connection after the last step (a drop, if the script stops mid-answer)."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    peer = Peer()
    failed: list[BaseException] = []

    def play() -> None:
        conn, _ = listener.accept()
        try:
            rfile = conn.makefile("rb")
            send(conn, greeting, [])
            for step in steps:
                tags = []
                for _ in range(step.commands):
                    line = rfile.readline().rstrip(b"\r\n")
                    peer.received.append(line)
                    tags.append(line.split(b" ", 1)[0])
                send(conn, step.chunks, tags)
            if not close:
                rfile.read()  # until the client closes
        except BaseException as exc:  # shown by the test, not lost in the thread
            failed.append(exc)
        finally:
            conn.close()

    thread = threading.Thread(target=play, daemon=True)
    thread.start()
    wire = Wire.open("127.0.0.1", port, None, 5.0)
    try:
        yield wire, peer
    finally:
        wire.close()
        thread.join(5)
        listener.close()
    assert not failed, failed


def send(conn: socket.socket, chunks: list[bytes], tags: list[bytes]) -> None:
    for chunk in chunks:
        for n, tag in reversed(list(enumerate(tags, 1))):  # TAG12 before TAG1
            chunk = chunk.replace(b"TAG%d" % n, tag)
        if tags:
            chunk = chunk.replace(b"TAG", tags[0])
        conn.sendall(chunk)
        time.sleep(0.02)  # the client reads what has arrived: one piece per chunk


# -- the greeting and tagged completions -----------------------------------------------


def test_greeting_is_read_and_an_unexpected_one_refused():
    with server([GREETING[:20], GREETING[20:]]) as (wire, _):
        assert wire.greeting == GREETING.rstrip(b"\r\n")
    bye = b"* BYE Too many connections from 127.0.0.1\r\n"
    with pytest.raises(WireClosed, match="unexpected greeting"), server([bye]):
        pass


def test_tagged_no_and_bad_raise_command_failed_with_the_servers_words():
    script = [
        # a tagged NO with a response code (RFC 5530), then a BAD for a mistyped command
        Step(1, ["TAG NO [NONEXISTENT] Mailbox doesn't exist: Lưu trữ\r\n".encode()]),
        Step(1, [b"TAG BAD Error in IMAP command EXAMIN: Unknown command.\r\n"]),
    ]
    with server([GREETING], *script) as (wire, peer):
        with pytest.raises(CommandFailed) as no:
            wire.command(b'EXAMINE "L&AbA-u tr&Hu8-"')
        assert no.value.status == b"NO" and no.value.text.startswith(b"[NONEXISTENT]")
        assert str(no.value) == "EXAMINE answered NO: [NONEXISTENT] Mailbox doesn't exist: Lưu trữ"
        with pytest.raises(CommandFailed, match="EXAMIN answered BAD: Error in IMAP command"):
            wire.command(b"EXAMIN INBOX")
    assert [line.split(b" ", 1)[1] for line in peer.received] == [
        b'EXAMINE "L&AbA-u tr&Hu8-"',
        b"EXAMIN INBOX",
    ]


# -- literals --------------------------------------------------------------------------


def test_a_literal_split_across_reads_is_read_whole():
    script = Step(
        1,
        [
            # * LIST (flags) delimiter {13}   <- a folder name sent as a literal
            b'* LIST (\\HasNoChildren) "/" {1',  # the announcement itself cut in two
            b"3}\r\nD&AbA- &AO",  # "Dự án" in modified UTF-7 (13 bytes), its first 10...
            b"E-n\r\n",  # ...its last 3, and the rest of the line (nothing after it)
            b"TAG OK List completed.\r\n",
        ],
    )
    with server([GREETING], script) as (wire, _):
        (tag,) = wire.send(b'LIST "" "*"')
        reply = wire.reply(tag)
    assert reply.status == b"OK" and reply.text == b"List completed."
    (data,) = reply.of(b"LIST")
    # as imaplib shapes it: the literal paired with the text before it, then the rest
    assert data == [(b'(\\HasNoChildren) "/" {13}', b"D&AbA- &AOE-n"), b""]
    assert parse_response(data) == ((b"\\HasNoChildren",), b"/", b"D&AbA- &AOE-n")


# A message body whose lines look like IMAP: a CRLF, an untagged line and a tagged
# completion inside the literal must be read as its bytes, never as responses.
BODY = b"Subject: x\r\n\r\n* 9 EXISTS\r\nTAG OK not the end\r\n"


def test_a_literal_with_crlf_and_imap_lookalike_lines_inside():
    literal = BODY.replace(b"TAG", b"W0")  # a fixed tag: the literal's length is known
    script = Step(
        1,
        [
            b"* 3 FETCH (UID 7 BODY[] {%d}\r\n" % len(literal),
            literal[:20],
            literal[20:],
            b")\r\n",
            b"TAG OK Fetch completed.\r\n",
        ],
    )
    with server([GREETING], script) as (wire, _):
        (tag,) = wire.send(b"UID FETCH 7 (BODY.PEEK[])")
        reply = wire.reply(tag)
    assert reply.status == b"OK"
    (data,) = reply.of(b"FETCH")
    assert data == [(b"3 (UID 7 BODY[] {%d}" % len(literal), literal), b")"]
    # and imapclient's parser, fed as connectors/imap.py feeds it, reads the same bytes
    assert dict(parse_fetch_response(data)) == {7: {b"SEQ": 3, b"BODY[]": literal}}


# -- pipelining and untagged responses --------------------------------------------------


def test_pipelined_commands_with_untagged_responses_interleaved():
    script = Step(
        2,  # both commands arrive in one write
        [
            b"* OK [ALERT] Quota warning: 91% used\r\n",  # unsolicited, before anything
            b'* LIST (\\HasNoChildren \\Sent) "/" Sent\r\n',
            b"* 4 EXISTS\r\n",  # new mail arrives mid-answer
            b"* STATUS Sent (MESSAGES 4 UIDNEXT 9 UIDVALIDITY 1793 UNSEEN 0)\r\nTAG1 OK",
            b" List completed.\r\n",
            b'* QUOTAROOT INBOX ""\r\n* QUOTA "" (STORAGE 512 10240)\r\n',
            b"TAG2 NO [LIMIT] Quota backend unavailable\r\n",
        ],
    )
    with server([GREETING], script) as (wire, peer):
        listed, quota = wire.send(
            b'LIST "" "*" RETURN (STATUS (MESSAGES UIDNEXT UIDVALIDITY UNSEEN))',
            b"GETQUOTAROOT INBOX",
        )
        first = wire.reply(listed)
        second = wire.reply(quota)
    assert len(peer.received) == 2
    assert [kw for kw, _ in first.untagged] == [b"OK", b"LIST", b"EXISTS", b"STATUS"]
    assert first.of(b"EXISTS") == [[b"4"]]
    assert first.of(b"OK") == [[b"[ALERT] Quota warning: 91% used"]]
    assert parse_response(first.of(b"STATUS")[0]) == (
        b"Sent",
        (b"MESSAGES", 4, b"UIDNEXT", 9, b"UIDVALIDITY", 1793, b"UNSEEN", 0),
    )
    assert (first.status, first.text) == (b"OK", b"List completed.")
    # the second command's untagged answers are its own; its NO is returned, not raised
    assert (second.status, second.text) == (b"NO", b"[LIMIT] Quota backend unavailable")
    assert second.of(b"QUOTA") == [[b'"" (STORAGE 512 10240)']]


def test_an_unexpected_continuation_is_a_clear_error():
    with server([GREETING], Step(1, [b"+ go ahead\r\n"])) as (wire, _):
        (tag,) = wire.send(b"NOOP")
        with pytest.raises(WireClosed, match="unexpected continuation"):
            wire.reply(tag)


# -- a dropped connection -----------------------------------------------------------------


def test_a_connection_dropped_mid_literal_is_wire_closed():
    # the server announces 40 bytes, sends 11, and the connection is cut
    script = Step(1, [b"* 1 FETCH (UID 5 BODY[] {40}\r\n", b"Subject: ha"])
    with server([GREETING], script) as (wire, _):
        (tag,) = wire.send(b"UID FETCH 5 (BODY.PEEK[])")
        with pytest.raises(WireClosed, match="the server closed the connection"):
            wire.reply(tag)


# -- the FETCH reader (connectors/imap_helpers.iter_fetch) on Wire.read ---------------------

HEADER = b"From: a@x.gov.vn\r\nTo: b@gmail.com\r\nDate: Sat, 24 Oct 2026 21:56:05 +0700\r\n\r\n"
# One Dovecot FETCH response of the collector's own UID FETCH, its header literal announced.
FETCHED = (
    b'* 1 FETCH (UID 101 INTERNALDATE "24-Oct-2026 14:56:05 +0000" RFC822.SIZE 168 '
    b"FLAGS (\\Seen) BODY[HEADER.FIELDS (FROM TO CC DATE MESSAGE-ID)] {%d}\r\n" % len(HEADER)
)


OCT_24 = int(datetime(2026, 10, 24, 14, 56, 5, tzinfo=UTC).timestamp())  # its INTERNALDATE


def test_fetch_reader_on_the_socket_literal_split_untagged_interleaved():
    script = Step(
        1,
        [
            FETCHED[:50],  # the attributes cut mid-line
            FETCHED[50:] + HEADER[:9],  # the literal's first bytes with them
            HEADER[9:] + b")\r\n",
            b"* 2 EXPUNGE\r\n* 5 EXISTS\r\n",  # another client's changes, mid-stream
            b"* 1 FETCH (FLAGS (\\Seen \\Answered))\r\n",  # a flag update, no literal
            b"TAG OK Fetch completed (0.001 + 0.000 secs).\r\n",
        ],
    )
    with server([GREETING], script) as (wire, _):
        (tag,) = wire.send(b"UID FETCH 101:* (UID INTERNALDATE RFC822.SIZE FLAGS BODY.PEEK[...])")
        got = list(iter_fetch(wire.read, tag))
    (attrs, header, groups), (flags_only, none, _) = got
    assert header == HEADER and none is None
    assert flags_only == b"* 1 FETCH (FLAGS (\\Seen \\Answered))"
    msg = parse_message("INBOX", attrs, header, groups)
    assert msg is not None
    assert (msg.uid, msg.size, msg.seen, msg.internal_date) == (101, 168, True, OCT_24)
    assert (msg.from_addr, msg.to_addrs) == ("a@x.gov.vn", ("b@gmail.com",))


def test_fetch_reader_raises_on_a_tagged_no():
    script = Step(1, [b"TAG NO [SERVERBUG] Internal error occurred.\r\n"])
    with server([GREETING], script) as (wire, _):
        (tag,) = wire.send(b"UID FETCH 1:* (UID)")
        with pytest.raises(FetchProtocolError, match=r"NO \[SERVERBUG\] Internal error"):
            list(iter_fetch(wire.read, tag))


def test_fetch_reader_on_a_connection_dropped_mid_literal():
    script = Step(1, [FETCHED, HEADER[:30]])  # then the server goes away
    with server([GREETING], script) as (wire, _):
        (tag,) = wire.send(b"UID FETCH 101:* (UID)")
        with pytest.raises(ConnectionError, match="server closed the connection during FETCH"):
            list(iter_fetch(wire.read, tag))
