"""The opt-in contact scan: documents built here, delivered to the real Dovecot, scanned."""

from __future__ import annotations

from email.message import EmailMessage

import pyarrow.parquet as pq

from connectors.contacts import find_contacts
from contract.domains import public_matcher
from devkit.synth import make_docx
from pipelines.mailbox import ContactScan
from pipelines.storage import DataDir
from tests.collect_one import collect_one
from tests.conftest import imap_source
from tests.groundtruth import BASE, flag_names

IS_PUBLIC = public_matcher()


def pdf(text: str) -> bytes:
    """A one-page PDF with one line of Helvetica text (written by hand, offsets computed)."""
    stream = f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n%s\nendstream" % (len(stream), stream),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for i, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (i, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref,
    )
    return bytes(out)


def document_mail(sender: str, n: int) -> bytes:
    msg = EmailMessage()
    msg["From"], msg["To"] = sender, "vanthu@danang.gov.vn"
    msg["Date"] = "Mon, 2 Nov 2026 10:00:00 +0700"
    msg["Message-ID"] = f"<doc{n}@danang.gov.vn>"
    msg["Subject"] = "Công văn số 12/UBND"
    msg.set_content("Kính gửi Văn thư. Trả lời về địa chỉ vanthu@danang.gov.vn.")
    msg.add_alternative("<p>Đầu mối: <b>hotro.phuong@gmail.com</b></p>", subtype="html")
    msg.add_attachment(
        make_docx("Liên hệ: Lienhe.UBND@Gmail.com hoặc ubnd@danang.gov.vn"),
        maintype="application",
        subtype="vnd.openxmlformats-officedocument.wordprocessingml.document",
        filename="cong-van.docx",
    )
    msg.add_attachment(
        pdf("Email: phongtn@hn.vnn.vn"),
        maintype="application",
        subtype="pdf",
        filename="to-trinh.pdf",
    )
    msg.add_attachment(
        b"\x00not a zip",
        maintype="application",
        subtype="vnd.openxmlformats-officedocument.wordprocessingml.document",
        filename="broken.docx",
    )
    return msg.as_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def test_find_contacts_in_text_html_docx_and_pdf():
    got = set(find_contacts(document_mail("a@danang.gov.vn", 1), IS_PUBLIC))
    assert got == {
        ("hotro.phuong@gmail.com", "html"),
        ("lienhe.ubnd@gmail.com", "docx"),
        ("phongtn@hn.vnn.vn", "pdf"),
    }


def test_scan_of_sent_mail_on_the_real_server(dovecot, tmp_path):
    mailbox = "scan@danang.gov.vn"
    dovecot.add_user(mailbox, "user-secret")
    dovecot.deliver(mailbox, "Sent", document_mail(mailbox, 1), when=BASE, seen=False)
    big = document_mail(mailbox, 2) + b"x" * 5000
    dovecot.deliver(mailbox, "Sent", big, when=BASE + 60, seen=False)
    dovecot.deliver(mailbox, "INBOX", document_mail("other@gmail.com", 3), when=BASE)
    dovecot.finish_seeding(mailbox)
    before = flag_names(dovecot, mailbox)
    src = imap_source(dovecot)
    scan = ContactScan(IS_PUBLIC, max_bytes=len(big) - 1)
    collect_one(src, mailbox, "2026-11-20", DataDir(tmp_path), scan=scan)
    rows = pq.read_table(tmp_path / "contacts" / "night=2026-11-20" / "part-0.parquet")
    got = {
        (r["message_id"], r["address"], r["where_found"], r["skipped"] is not None)
        for r in rows.to_pylist()
    }
    assert got == {
        ("<doc1@danang.gov.vn>", "hotro.phuong@gmail.com", "html", False),
        ("<doc1@danang.gov.vn>", "lienhe.ubnd@gmail.com", "docx", False),
        ("<doc1@danang.gov.vn>", "phongtn@hn.vnn.vn", "pdf", False),
        ("<doc2@danang.gov.vn>", None, None, True),  # too large: skipped, with the reason
    }
    assert set(rows.column_names) == {
        "mailbox",
        "uid",
        "message_id",
        "address",
        "where_found",
        "sent_date",
        "skipped",
    }  # no text is stored
    assert flag_names(dovecot, mailbox) == before  # BODY.PEEK: still unseen
