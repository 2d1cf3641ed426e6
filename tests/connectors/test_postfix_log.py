"""connectors.postfix_log on literal log lines, annotated (imapclient's parser tests are the
model). Lines are as Postfix 3.7 writes them (devkit.postfix logged most of these);
the real-Postfix round trip is tests/connectors/test_postfix_live.py."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pyarrow as pa
import pytest

from connectors.postfix_log import (
    LogState,
    MailRecord,
    delivery_rows,
    domain_of,
    read_chunk,
    read_lines,
)
from contract.mail_logs import MAIL_LOG_DELIVERIES

HCM = ZoneInfo("Asia/Ho_Chi_Minh")


def read(text: str, state: LogState | None = None, **kw):
    state = state or LogState(year=2026)
    lines = text.strip("\n").split("\n")
    return read_lines(lines, state, tz=kw.pop("tz", HCM), **kw), state


def only(result) -> MailRecord:
    assert len(result.messages) == 1, result.messages
    return result.messages[0]


def by_rcpt(rec: MailRecord) -> dict[str, tuple[str, str | None, int]]:
    return {d.recipient: (d.status, d.dsn, d.deferrals) for d in rec.deliveries}


# An authenticated submission: To binh.tt, Bcc chi.lt and a Gmail address. The Bcc
# recipients are nowhere in the headers, but they are in the envelope: nrcpt=3 and a to= each.
SUBMISSION_WITH_BCC = """\
Dec  6 20:13:01 mail postfix/submission/smtpd[5631]: connect from unknown[10.1.2.3]
Dec  6 20:13:01 mail postfix/submission/smtpd[5631]: AB3CE20E0D0: client=unknown[10.1.2.3], sasl_method=PLAIN, sasl_username=An.NV@demo.gov.vn
Dec  6 20:13:01 mail postfix/cleanup[5639]: AB3CE20E0D0: message-id=<t1@demo.gov.vn>
Dec  6 20:13:01 mail postfix/qmgr[5628]: AB3CE20E0D0: from=<an.nv@demo.gov.vn>, size=1291, nrcpt=3 (queue active)
Dec  6 20:13:01 mail postfix/submission/smtpd[5631]: disconnect from unknown[10.1.2.3] ehlo=1 auth=1 mail=1 rcpt=3 data=1 quit=1 commands=8
Dec  6 20:13:01 mail postfix/lmtp[5650]: AB3CE20E0D0: to=<binh.tt@demo.gov.vn>, relay=127.0.0.1[127.0.0.1]:24, delay=0.25, delays=0.01/0.03/0.2/0.01, dsn=2.0.0, status=sent (250 2.0.0 <binh.tt@demo.gov.vn> 3wjxNc3BFWsXFgAAg+zDdQ Saved)
Dec  6 20:13:01 mail postfix/lmtp[5650]: AB3CE20E0D0: to=<chi.lt@demo.gov.vn>, relay=127.0.0.1[127.0.0.1]:24, delay=0.25, delays=0.01/0.03/0.2/0.01, conn_use=2, dsn=2.0.0, status=sent (250 2.0.0 <chi.lt@demo.gov.vn> 4wjxNc3BFWsXFgAAg+zDdQ Saved)
Dec  6 20:13:02 mail postfix/smtp[5649]: AB3CE20E0D0: to=<an.personal@Gmail.com>, relay=gmail-smtp-in.l.google.com[142.250.4.26]:25, delay=1.2, delays=0.01/0.01/0.6/0.6, dsn=2.0.0, status=sent (250 2.0.0 OK  1733515982 d9443c01a7336-21f; queued as 9F2E1A)
Dec  6 20:13:02 mail postfix/qmgr[5628]: AB3CE20E0D0: removed
"""


def test_submission_with_bcc_is_one_record_with_every_envelope_recipient():
    result, state = read(SUBMISSION_WITH_BCC)
    rec = only(result)
    assert rec.queue_id == "AB3CE20E0D0"
    assert rec.direction == "out"
    assert rec.sasl_username == "an.nv@demo.gov.vn"  # lower-cased, as mailboxes are everywhere
    assert rec.client == "unknown[10.1.2.3]"
    assert rec.sender == "an.nv@demo.gov.vn" and rec.sender_domain == "demo.gov.vn"
    assert (rec.size, rec.nrcpt, rec.message_id) == (1291, 3, "<t1@demo.gov.vn>")
    # 20:13:01 in the server's zone (here the agency's) — the first line, when it arrived
    assert rec.time == datetime(2026, 12, 6, 20, 13, 1, tzinfo=HCM)
    assert rec.complete and rec.removed
    assert by_rcpt(rec) == {
        "binh.tt@demo.gov.vn": ("sent", "2.0.0", 0),
        "chi.lt@demo.gov.vn": ("sent", "2.0.0", 0),  # Bcc: only the envelope has it
        "an.personal@gmail.com": ("sent", "2.0.0", 0),
    }
    gmail = rec.deliveries[2]
    assert gmail.domain == "gmail.com"
    assert gmail.relay == "gmail-smtp-in.l.google.com[142.250.4.26]:25"
    assert gmail.time == datetime(2026, 12, 6, 20, 13, 2, tzinfo=HCM)
    assert gmail.handed_to is None  # Google's queue id, not one of this log's
    assert state.open == {}
    # connect/disconnect are Postfix's but tell nothing about a message
    assert (result.stats.lines, result.stats.used, result.stats.ignored) == (9, 7, 2)
    assert result.stats.damaged == result.stats.foreign == 0


# A deferral (4xx at RCPT), then Postfix's retry: qmgr logs from= again, then sent.
DEFERRED_THEN_SENT = """\
Dec  6 20:20:00 mail postfix/submission/smtpd[601]: 5D1E820E0D2: client=unknown[10.1.2.3], sasl_method=LOGIN, sasl_username=binh.tt@demo.gov.vn
Dec  6 20:20:00 mail postfix/cleanup[602]: 5D1E820E0D2: message-id=<t2@demo.gov.vn>
Dec  6 20:20:00 mail postfix/qmgr[603]: 5D1E820E0D2: from=<binh.tt@demo.gov.vn>, size=900, nrcpt=1 (queue active)
Dec  6 20:20:01 mail postfix/smtp[604]: 5D1E820E0D2: to=<slow@yahoo.com>, relay=mta5.am0.yahoodns.net[67.195.204.72]:25, delay=0.9, delays=0.01/0/0.5/0.4, dsn=4.7.0, status=deferred (host mta5.am0.yahoodns.net[67.195.204.72] said: 421 4.7.0 [TSS04] Messages temporarily deferred (in reply to MAIL FROM command))
"""
RETRY = """\
Dec  6 20:30:01 mail postfix/qmgr[603]: 5D1E820E0D2: from=<binh.tt@demo.gov.vn>, size=900, nrcpt=1 (queue active)
Dec  6 20:30:02 mail postfix/smtp[604]: 5D1E820E0D2: to=<slow@yahoo.com>, relay=mta6.am0.yahoodns.net[67.195.204.73]:25, delay=602, delays=601/0/0.5/0.5, dsn=2.0.0, status=sent (250 ok dirdel)
Dec  6 20:30:02 mail postfix/qmgr[603]: 5D1E820E0D2: removed
"""


def test_deferral_stays_open_and_is_not_sent_then_the_retry_sends_it():
    result, state = read(DEFERRED_THEN_SENT)
    assert result.messages == []  # still in Postfix's queue: nothing is final yet
    (pending,) = state.open_messages()
    assert pending.removed is False
    assert by_rcpt(pending) == {"slow@yahoo.com": ("deferred", "4.7.0", 0)}
    result, state = read(RETRY, state)
    rec = only(result)
    assert by_rcpt(rec) == {"slow@yahoo.com": ("sent", "2.0.0", 1)}  # one deferral before
    assert rec.deliveries[0].relay == "mta6.am0.yahoodns.net[67.195.204.73]:25"
    assert rec.time == datetime(2026, 12, 6, 20, 20, 0, tzinfo=HCM)  # arrival, not the retry
    assert rec.deliveries[0].time == datetime(2026, 12, 6, 20, 30, 2, tzinfo=HCM)
    assert (rec.size, rec.nrcpt, rec.sasl_username) == (900, 1, "binh.tt@demo.gov.vn")


# A bounce (5xx): the recipient is bounced, and Postfix's bounce daemon queues a
# non-delivery notification (its own queue id, from=<>) back to the sender, naming both ids.
BOUNCE_WITH_NOTICE = """\
Dec  6 20:13:01 mail postfix/submission/smtpd[5631]: 9A1B2C3D4E5: client=localhost[127.0.0.1], sasl_method=PLAIN, sasl_username=an.nv@demo.gov.vn
Dec  6 20:13:01 mail postfix/cleanup[5639]: 9A1B2C3D4E5: message-id=<t3@demo.gov.vn>
Dec  6 20:13:01 mail postfix/qmgr[5628]: 9A1B2C3D4E5: from=<an.nv@demo.gov.vn>, size=291, nrcpt=1 (queue active)
Dec  6 20:13:01 mail postfix/smtp[5649]: 9A1B2C3D4E5: to=<nobody@gmail.com>, relay=127.0.0.1[127.0.0.1]:40821, delay=0.2, delays=0.01/0.01/0.02/0.15, dsn=5.1.1, status=bounced (host 127.0.0.1[127.0.0.1] said: 550 5.1.1 <nobody@gmail.com>: Recipient address rejected: no such user (in reply to RCPT TO command))
Dec  6 20:13:01 mail postfix/cleanup[5639]: E74ED20E0DD: message-id=<20261206201301.E74ED20E0DD@mail.demo.gov.vn>
Dec  6 20:13:01 mail postfix/qmgr[5628]: E74ED20E0DD: from=<>, size=2767, nrcpt=1 (queue active)
Dec  6 20:13:01 mail postfix/bounce[5658]: 9A1B2C3D4E5: sender non-delivery notification: E74ED20E0DD
Dec  6 20:13:01 mail postfix/qmgr[5628]: 9A1B2C3D4E5: removed
Dec  6 20:13:01 mail postfix/lmtp[5693]: E74ED20E0DD: to=<an.nv@demo.gov.vn>, relay=127.0.0.1[127.0.0.1]:54301, delay=0.01, delays=0/0/0/0, dsn=2.0.0, status=sent (250 2.0.0 <an.nv@demo.gov.vn> eGqPOM3BFWtBFgAAg+zDdQ Saved)
Dec  6 20:13:01 mail postfix/qmgr[5628]: E74ED20E0DD: removed
"""


def test_bounce_is_kept_apart_and_its_notification_names_the_message():
    result, _ = read(BOUNCE_WITH_NOTICE)
    original, notice = result.messages
    assert original.queue_id == "9A1B2C3D4E5"
    assert by_rcpt(original) == {"nobody@gmail.com": ("bounced", "5.1.1", 0)}
    assert notice.queue_id == "E74ED20E0DD"
    assert notice.notice_of == "9A1B2C3D4E5"
    assert notice.direction == "local"  # Postfix's own mail, not the user's
    assert notice.sender == "" and notice.sender_domain is None  # the null sender <>
    assert notice.sasl_username is None
    assert by_rcpt(notice) == {"an.nv@demo.gov.vn": ("sent", "2.0.0", 0)}


# Given up after maximal_queue_lifetime: qmgr says so once for the message; every recipient
# still deferred is then expired (a recipient already sent stays sent).
EXPIRED = """\
Dec  1 08:00:00 mail postfix/smtpd[11]: 1C2D3E4F5A: client=unknown[10.1.2.4], sasl_method=PLAIN, sasl_username=chi.lt@demo.gov.vn
Dec  1 08:00:00 mail postfix/qmgr[12]: 1C2D3E4F5A: from=<chi.lt@demo.gov.vn>, size=500, nrcpt=2 (queue active)
Dec  1 08:00:01 mail postfix/smtp[13]: 1C2D3E4F5A: to=<a@dead.example>, relay=none, delay=1, delays=0/0/1/0, dsn=4.4.1, status=deferred (connect to mx.dead.example[192.0.2.1]:25: Connection timed out)
Dec  1 08:00:01 mail postfix/smtp[13]: 1C2D3E4F5A: to=<b@live.example>, relay=mx.live.example[192.0.2.2]:25, delay=1, delays=0/0/0.5/0.5, dsn=2.0.0, status=sent (250 ok)
Dec  6 08:00:05 mail postfix/qmgr[12]: 1C2D3E4F5A: from=<chi.lt@demo.gov.vn>, status=expired, returned to sender
Dec  6 08:00:05 mail postfix/qmgr[12]: 1C2D3E4F5A: removed
"""


def test_an_admins_force_expiry_is_expiry_too():
    # `postsuper -e` (as the real Postfix of test_postfix_live logs it): "force-expired"
    text = EXPIRED.replace("status=expired, returned", "status=force-expired, returned")
    assert "force-expired" in text
    rec = only(read(text)[0])
    assert by_rcpt(rec)["a@dead.example"] == ("expired", "4.4.1", 0)


def test_expiry_turns_the_deferred_recipients_expired():
    result, _ = read(EXPIRED)
    rec = only(result)
    assert by_rcpt(rec) == {
        "a@dead.example": ("expired", "4.4.1", 0),
        "b@live.example": ("sent", "2.0.0", 0),
    }
    assert rec.deliveries[0].relay is None  # relay=none: no server was reached
    assert rec.deliveries[0].time == datetime(2026, 12, 6, 8, 0, 5, tzinfo=HCM)


# Mail from outside: no SASL user; the sender's domain is what the evaluation looks at
# (registrations with Facebook, banks).
INBOUND = """\
Dec  6 20:13:01 mail postfix/smtpd[5645]: B524520E0D4: client=mail-ej1-f41.facebook.com[69.171.232.143]
Dec  6 20:13:01 mail postfix/cleanup[5639]: B524520E0D4: message-id=<abc@facebookmail.com>
Dec  6 20:13:01 mail postfix/qmgr[5628]: B524520E0D4: from=<Notification+zj4@FacebookMail.com>, size=332, nrcpt=1 (queue active)
Dec  6 20:13:01 mail postfix/lmtp[5693]: B524520E0D4: to=<binh.tt@demo.gov.vn>, orig_to=<vanthu@demo.gov.vn>, relay=127.0.0.1[127.0.0.1]:24, delay=0.2, delays=0.15/0.02/0.01/0.01, dsn=2.0.0, status=sent (250 2.0.0 <binh.tt@demo.gov.vn> uxwvN83BFWtBFgAAg+zDdQ Saved)
Dec  6 20:13:01 mail postfix/qmgr[5628]: B524520E0D4: removed
"""


def test_inbound_keeps_the_sender_domain_and_has_no_user():
    rec = only(read(INBOUND)[0])
    assert rec.direction == "in" and rec.sasl_username is None
    assert rec.sender_domain == "facebookmail.com"
    (d,) = rec.deliveries
    assert (d.recipient, d.orig_recipient, d.domain) == (
        "binh.tt@demo.gov.vn",
        "vanthu@demo.gov.vn",  # an alias expanded: the address the sender wrote
        "demo.gov.vn",
    )


def test_pickup_is_local_mail():
    rec = only(
        read(
            """\
Dec  6 09:00:00 mail postfix/pickup[9]: 0A1B2C3D4E: uid=33 from=<www-data>
Dec  6 09:00:00 mail postfix/cleanup[8]: 0A1B2C3D4E: message-id=<x@mail>
Dec  6 09:00:00 mail postfix/qmgr[7]: 0A1B2C3D4E: from=<www-data@mail.demo.gov.vn>, size=300, nrcpt=1 (queue active)
Dec  6 09:00:01 mail postfix/qmgr[7]: 0A1B2C3D4E: removed
"""
        )[0]
    )
    assert rec.direction == "local" and rec.deliveries == ()
    # removed before any delivery line: still a message, one row with no recipient
    (row,) = delivery_rows([rec])
    assert row["recipient"] is None and row["status"] is None and row["size"] == 300


def test_stamps_all_three_forms_end_in_the_agencys_zone():
    text = """\
Dec  6 13:13:01 mail postfix/qmgr[1]: 1A2B3C4D5E: from=<a@x.vn>, size=1, nrcpt=1 (queue active)
Dec 06 13:13:02 mail postfix/qmgr[1]: 1A2B3C4D5E: removed
2026-12-06T20:13:03.123456+07:00 mail postfix/qmgr[1]: 2A2B3C4D5E: from=<a@x.vn>, size=1, nrcpt=1 (queue active)
2026-12-06T13:13:04Z mail postfix/qmgr[1]: 2A2B3C4D5E: removed
"""
    # syslog stamps in the server's zone (UTC here), RFC 3339 with their own offset
    result, _ = read(text, log_tz=ZoneInfo("UTC"))
    first, second = result.messages
    assert first.time == datetime(2026, 12, 6, 13, 13, 1, tzinfo=UTC)
    assert first.time.utcoffset().total_seconds() == 7 * 3600  # shown in the agency's zone
    assert second.time == datetime(2026, 12, 6, 13, 13, 3, 123456, tzinfo=UTC)
    assert second.time.tzinfo == HCM
    assert result.stats.damaged == 0


def test_syslog_year_turns_over_at_new_year():
    text = """\
Dec 31 23:59:59 mail postfix/qmgr[1]: 1A2B3C4D5E: from=<a@x.vn>, size=1, nrcpt=1 (queue active)
Jan  1 00:00:01 mail postfix/qmgr[1]: 1A2B3C4D5E: removed
Jan  1 00:00:02 mail postfix/qmgr[1]: 2A2B3C4D5E: removed
"""
    result, state = read(text, state=LogState(year=2026))
    assert result.messages[0].time == datetime(2026, 12, 31, 23, 59, 59, tzinfo=HCM)
    assert result.messages[1].time == datetime(2027, 1, 1, 0, 0, 2, tzinfo=HCM)
    assert (state.year, state.month) == (2027, 1)


def test_unknown_and_damaged_lines_are_counted_and_skipped():
    text = """\
Dec  6 20:13:01 mail dovecot: imap-login: Login: user=<a@x.vn>, method=PLAIN, rip=10.0.0.7
Dec  6 20:13:01 mail postfix/smtpd[5]: NOQUEUE: reject: RCPT from unknown[1.2.3.4]: 554 5.7.1 <x@gmail.com>: Relay access denied; from=<s@spam.example> to=<x@gmail.com> proto=ESMTP helo=<x>
Dec  6 20:13:01 mail postfix/smtpd[5]: warning: hostname 1-2-3-4.example does not resolve to address 1.2.3.4
this is not a log line at all
Dec  6 20:13:01 mail postfix/smtp[6]: 1A2B3C4D5E: to=<cut@gmail.com>, relay=gm
Dec 99 20:13:01 mail postfix/qmgr[1]: 1A2B3C4D5E: removed

Dec  6 20:13:02 mail postfix/smtp[6]: 1A2B3C4D5E: to=<ok@gmail.com>, relay=gmail[1.1.1.1]:25, delay=1, delays=0/0/0/1, dsn=2.0.0, status=sent (250 ok)
Dec  6 20:13:02 mail postfix/qmgr[1]: 1A2B3C4D5E: removed
"""
    result, _ = read(text)
    s = result.stats
    assert (s.lines, s.foreign, s.ignored, s.damaged, s.used) == (9, 1, 3, 3, 2)
    rec = only(result)
    assert [d.recipient for d in rec.deliveries] == ["ok@gmail.com"]
    assert rec.complete is False and rec.direction is None  # its start was not in the log


def test_partial_last_line_waits_for_the_next_read():
    data = SUBMISSION_WITH_BCC.encode()
    cut = data.index(b"removed") - 20  # inside the last line
    state = LogState(year=2026)
    first = read_chunk(data[:cut], state, tz=HCM)
    assert first.messages == []
    assert first.consumed == data.rindex(b"\n", 0, cut) + 1
    assert first.stats.partial == cut - first.consumed
    # the reader starts again at `consumed` with the state it saved (JSON, as the store keeps it)
    state = LogState.from_json(state.to_json())
    second = read_chunk(data[first.consumed :], state, tz=HCM)
    rec = only(second)
    assert len(rec.deliveries) == 3 and rec.sasl_username == "an.nv@demo.gov.vn"
    assert second.consumed == len(data) - first.consumed and second.stats.partial == 0
    assert first.stats.lines + second.stats.lines == SUBMISSION_WITH_BCC.count("\n")


def test_a_queue_id_split_across_a_rotation_is_assembled():
    # maillog.1 ends after the deferral; maillog (new) has the retry and the removal.
    state = LogState(year=2026)
    r1 = read_chunk(DEFERRED_THEN_SENT.encode(), state, tz=HCM)
    saved = state.to_json()
    assert "5D1E820E0D2" in saved and r1.messages == []
    r2 = read_chunk(RETRY.encode(), LogState.from_json(saved), tz=HCM)
    rec = only(r2)
    assert rec.message_id == "<t2@demo.gov.vn>" and rec.sasl_username == "binh.tt@demo.gov.vn"
    assert by_rcpt(rec) == {"slow@yahoo.com": ("sent", "2.0.0", 1)}


def test_state_json_round_trip_keeps_everything():
    state = LogState(year=2026)
    read(DEFERRED_THEN_SENT, state)
    again = LogState.from_json(state.to_json())
    assert again == state
    assert again.open_messages() == state.open_messages()
    with pytest.raises(ValueError, match="version"):
        LogState.from_json('{"version": 99}')


def test_drop_stale_gives_up_on_a_lost_removed_line():
    state = LogState(year=2026)
    read(DEFERRED_THEN_SENT, state)
    assert state.drop_stale(datetime(2026, 12, 6, 20, 0, tzinfo=HCM)) == []
    (rec,) = state.drop_stale(datetime(2026, 12, 7, tzinfo=HCM))
    assert rec.removed is False and rec.queue_id == "5D1E820E0D2" and state.open == {}


# Zimbra's MTA hands every message to amavis (a content filter on :10024), which re-injects
# it on :10025 as a new queue id, from localhost, without the SASL user. The reply to the
# hand-off names the new id; the new message inherits who sent it, and the hop is marked.
AMAVIS = """\
Dec  6 10:00:00 zm postfix/submission/smtpd[1]: 3F1A2B3C4D: client=unknown[10.1.2.3], sasl_method=PLAIN, sasl_username=an.nv@demo.gov.vn
Dec  6 10:00:00 zm postfix/cleanup[2]: 3F1A2B3C4D: message-id=<z1@demo.gov.vn>
Dec  6 10:00:00 zm postfix/qmgr[3]: 3F1A2B3C4D: from=<an.nv@demo.gov.vn>, size=800, nrcpt=1 (queue active)
Dec  6 10:00:01 zm postfix/smtpd[4]: 7E8F9A0B1C: client=localhost[127.0.0.1]
Dec  6 10:00:01 zm postfix/cleanup[2]: 7E8F9A0B1C: message-id=<z1@demo.gov.vn>
Dec  6 10:00:01 zm postfix/qmgr[3]: 7E8F9A0B1C: from=<an.nv@demo.gov.vn>, size=1300, nrcpt=1 (queue active)
Dec  6 10:00:01 zm postfix/smtp[5]: 3F1A2B3C4D: to=<friend@yahoo.com>, relay=127.0.0.1[127.0.0.1]:10024, delay=1, delays=0/0/0/1, dsn=2.0.0, status=sent (250 2.0.0 from MTA(smtp:[127.0.0.1]:10025): 250 2.0.0 Ok: queued as 7E8F9A0B1C)
Dec  6 10:00:01 zm postfix/qmgr[3]: 3F1A2B3C4D: removed
Dec  6 10:00:02 zm postfix/smtp[6]: 7E8F9A0B1C: to=<friend@yahoo.com>, relay=mta7.am0.yahoodns.net[98.136.96.91]:25, delay=0.9, delays=0/0/0.4/0.5, dsn=2.0.0, status=sent (250 ok dirdel)
Dec  6 10:00:02 zm postfix/qmgr[3]: 7E8F9A0B1C: removed
"""


def test_content_filter_hand_off_keeps_the_user_on_the_real_delivery():
    hop, real = read(AMAVIS)[0].messages
    assert hop.deliveries[0].handed_to == "7E8F9A0B1C"
    assert real.via_queue_id == "3F1A2B3C4D"
    assert real.sasl_username == "an.nv@demo.gov.vn" and real.direction == "out"
    assert real.deliveries[0].handed_to is None


def test_long_queue_ids_are_read():
    rec = only(
        read(
            """\
Dec  6 10:00:00 mail postfix/smtpd[1]: 4Qx9Yz1Rq2z9vBk: client=unknown[10.1.2.3], sasl_method=PLAIN, sasl_username=a@x.vn
Dec  6 10:00:01 mail postfix/qmgr[3]: 4Qx9Yz1Rq2z9vBk: removed
"""
        )[0]
    )
    assert rec.queue_id == "4Qx9Yz1Rq2z9vBk" and rec.sasl_username == "a@x.vn"


def test_rows_fit_the_dataset_schema():
    result, _ = read(SUBMISSION_WITH_BCC + BOUNCE_WITH_NOTICE + INBOUND)
    rows = delivery_rows(result.messages)
    assert len(rows) == 3 + 1 + 1 + 1  # one per recipient
    table = pa.Table.from_pylist(rows, schema=MAIL_LOG_DELIVERIES)
    assert table.schema == MAIL_LOG_DELIVERIES
    assert set(rows[0]) == set(MAIL_LOG_DELIVERIES.names)
    first = table.slice(0, 1).to_pylist()[0]
    assert first["time"] == datetime(2026, 12, 6, 13, 13, 1, tzinfo=UTC)  # stored as UTC
    assert str(first["log_date"]) == "2026-12-06"  # the agency's date
    assert table.column("direction").to_pylist() == ["out"] * 4 + ["local", "in"]


def test_domain_of():
    assert domain_of("a@Gmail.COM.") == "gmail.com"
    assert domain_of("MAILER-DAEMON") is None
    assert domain_of(None) is None


def test_every_column_is_in_the_data_dictionary():
    from pathlib import Path

    text = (Path(__file__).parents[2] / "docs" / "data-dictionary.md").read_text()
    section = text.split("## `mail_log_deliveries`", 1)[1].split("\n## ", 1)[0]
    documented = {line.split("`")[1] for line in section.splitlines() if line.startswith("| `")}
    assert documented == set(MAIL_LOG_DELIVERIES.names)


def test_an_aborted_session_is_dropped_not_counted_as_a_message():
    # The client authenticated, got a queue id at RCPT, and left before the end of DATA:
    # Postfix logs no more for 6A7B8C9D0E — it was never queued, never sent.
    state = LogState(year=2026)
    read(
        """\
Dec  6 09:00:00 mail postfix/submission/smtpd[1]: 6A7B8C9D0E: client=unknown[10.1.2.3], sasl_method=PLAIN, sasl_username=an.nv@demo.gov.vn
Dec  6 09:00:30 mail postfix/submission/smtpd[1]: lost connection after DATA (0 bytes) from unknown[10.1.2.3]
""",
        state,
    )
    assert list(state.open) == ["6A7B8C9D0E"]
    assert state.drop_stale(datetime(2026, 12, 7, tzinfo=HCM)) == [] and state.open == {}


# An official address forwarded by an alias to a private Gmail: local(8) re-queues it as a
# new queue id ("forwarded as"); that copy is the server's doing, not the sender's submission.
FORWARDED = """\
Dec  6 11:00:00 mail postfix/smtpd[1]: 2B3C4D5E6F: client=mail-qk1.google.com[209.85.222.41]
Dec  6 11:00:00 mail postfix/cleanup[2]: 2B3C4D5E6F: message-id=<g1@mail.gmail.com>
Dec  6 11:00:00 mail postfix/qmgr[3]: 2B3C4D5E6F: from=<someone@gmail.com>, size=4000, nrcpt=1 (queue active)
Dec  6 11:00:00 mail postfix/cleanup[2]: 8C9D0E1F2A: message-id=<g1@mail.gmail.com>
Dec  6 11:00:00 mail postfix/qmgr[3]: 8C9D0E1F2A: from=<someone@gmail.com>, size=4200, nrcpt=1 (queue active)
Dec  6 11:00:00 mail postfix/local[4]: 2B3C4D5E6F: to=<an.private@gmail.com>, orig_to=<an.nv@demo.gov.vn>, relay=local, delay=0.1, delays=0.05/0/0/0.05, dsn=2.0.0, status=sent (forwarded as 8C9D0E1F2A)
Dec  6 11:00:00 mail postfix/qmgr[3]: 2B3C4D5E6F: removed
Dec  6 11:00:01 mail postfix/smtp[5]: 8C9D0E1F2A: to=<an.private@gmail.com>, orig_to=<an.nv@demo.gov.vn>, relay=gmail-smtp-in.l.google.com[142.250.4.26]:25, delay=1, delays=0/0/0.5/0.5, dsn=2.0.0, status=sent (250 2.0.0 OK)
Dec  6 11:00:01 mail postfix/qmgr[3]: 8C9D0E1F2A: removed
"""


def test_forwarded_copy_is_local_and_points_back():
    inbound, copy = read(FORWARDED)[0].messages
    assert inbound.direction == "in" and inbound.deliveries[0].handed_to == "8C9D0E1F2A"
    assert inbound.deliveries[0].orig_recipient == "an.nv@demo.gov.vn"
    assert (copy.direction, copy.via_queue_id, copy.sasl_username) == ("local", "2B3C4D5E6F", None)
    assert copy.complete and copy.deliveries[0].recipient == "an.private@gmail.com"


def test_address_verification_probes_are_not_mail():
    # reject_unverified_recipient: verify(8) sends a probe that is never delivered
    result, state = read(
        """\
Dec  6 12:00:00 mail postfix/cleanup[2]: 3D4E5F6A7B: message-id=<20261206120000.3D4E5F6A7B@mail.demo.gov.vn>
Dec  6 12:00:00 mail postfix/qmgr[3]: 3D4E5F6A7B: from=<double-bounce@mail.demo.gov.vn>, size=262, nrcpt=1 (queue active)
Dec  6 12:00:01 mail postfix/smtp[5]: 3D4E5F6A7B: to=<x@partner.gov.vn>, relay=mx.partner.gov.vn[192.0.2.9]:25, delay=1, delays=0/0/0.5/0.5, dsn=2.1.5, status=deliverable (250 2.1.5 Ok)
Dec  6 12:00:01 mail postfix/qmgr[3]: 3D4E5F6A7B: removed
"""
    )
    assert result.messages == [] and state.open == {} and result.stats.damaged == 0


def test_error_and_local_agents_are_deliveries_like_the_others():
    # error(8) answers for a destination Postfix already knows is down ("delivery temporarily
    # suspended"); local(8) delivers to a system mailbox. Both log to= lines like smtp/lmtp.
    rec = only(
        read(
            """\
Dec  6 14:00:00 mail postfix/smtpd[1]: 4E5F6A7B8C: client=unknown[10.1.2.3], sasl_method=PLAIN, sasl_username=binh.tt@demo.gov.vn
Dec  6 14:00:00 mail postfix/qmgr[3]: 4E5F6A7B8C: from=<binh.tt@demo.gov.vn>, size=700, nrcpt=2 (queue active)
Dec  6 14:00:00 mail postfix/local[6]: 4E5F6A7B8C: to=<root@mail.demo.gov.vn>, relay=local, delay=0.02, delays=0.01/0/0/0.01, dsn=2.0.0, status=sent (delivered to mailbox)
Dec  6 14:00:00 mail postfix/error[7]: 4E5F6A7B8C: to=<a@down.example>, relay=none, delay=0.05, delays=0.05/0/0/0, dsn=4.4.1, status=deferred (delivery temporarily suspended: connect to mx.down.example[192.0.2.7]:25: Connection refused)
Dec  6 15:00:00 mail postfix/qmgr[3]: 4E5F6A7B8C: from=<binh.tt@demo.gov.vn>, size=700, nrcpt=2 (queue active)
Dec  6 15:00:01 mail postfix/smtp[5]: 4E5F6A7B8C: to=<a@down.example>, relay=mx.down.example[192.0.2.7]:25, delay=3601, delays=3600/0/0.5/0.5, dsn=2.0.0, status=sent (250 ok)
Dec  6 15:00:01 mail postfix/qmgr[3]: 4E5F6A7B8C: removed
"""
        )[0]
    )
    assert by_rcpt(rec) == {
        "root@mail.demo.gov.vn": ("sent", "2.0.0", 0),
        "a@down.example": ("sent", "2.0.0", 1),
    }
    assert rec.deliveries[0].relay == "local"


def test_docstring_examples_run():
    import doctest

    import connectors.postfix_log

    result = doctest.testmod(connectors.postfix_log)
    assert result.attempted >= 8 and result.failed == 0
