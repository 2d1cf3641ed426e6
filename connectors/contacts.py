"""The opt-in contact scan: public addresses given as contacts in sent documents.

Pure functions over one raw message (read with BODY.PEEK by the IMAP session): the text
parts and common attachments (txt, html, docx, pdf) are searched for addresses whose
domain is public. Only (address, where found) comes back — never any text.

    >>> find_contacts(raw, is_public=lambda d: d == "gmail.com")
    [('lienhe.ubnd@gmail.com', 'docx')]
"""

from __future__ import annotations

import email
import email.policy
import html
import io
import re
import zipfile
from collections.abc import Callable
from email.message import Message

ADDRESS = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")
_TAG = re.compile(r"<[^>]+>")
# Attachments larger than this are not opened (a scanned 50-page PDF is not a contact sheet).
MAX_PART_BYTES = 10 * 1024 * 1024


def _docx_text(data: bytes) -> str:
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        xml = z.read("word/document.xml").decode("utf-8", "replace")
    return html.unescape(_TAG.sub(" ", xml.replace("</w:p>", "\n")))


def _pdf_text(data: bytes) -> str:
    from pypdf import PdfReader

    reader = PdfReader(io.BytesIO(data))
    return "\n".join(page.extract_text() or "" for page in reader.pages[:50])


def _part_kind(part: Message) -> str | None:
    filename = (part.get_filename() or "").lower()
    ctype = part.get_content_type()
    if filename.endswith(".docx") or ctype.endswith("wordprocessingml.document"):
        return "docx"
    if filename.endswith(".pdf") or ctype == "application/pdf":
        return "pdf"
    if filename.endswith((".html", ".htm")) or ctype == "text/html":
        return "html"
    if filename.endswith(".txt") or ctype == "text/plain":
        return "txt" if filename else "body"
    return None


def _text(part: Message, kind: str) -> str:
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes) or len(payload) > MAX_PART_BYTES:
        return ""
    if kind == "docx":
        return _docx_text(payload)
    if kind == "pdf":
        return _pdf_text(payload)
    charset = part.get_content_charset() or "utf-8"
    try:
        text = payload.decode(charset, "replace")
    except LookupError:
        text = payload.decode("utf-8", "replace")
    return html.unescape(_TAG.sub(" ", text)) if kind == "html" else text


def find_contacts(raw: bytes, is_public: Callable[[str], bool]) -> list[tuple[str, str]]:
    """Distinct (address, where found) pairs of public addresses in a message's documents.

    Headers are not searched (the recipients are counterparts, not contacts). A part that
    cannot be read (broken zip or PDF) is skipped, not fatal.
    """
    msg = email.message_from_bytes(raw, policy=email.policy.compat32)
    found: dict[tuple[str, str], None] = {}
    for part in msg.walk():
        if part.is_multipart():
            continue
        kind = _part_kind(part)
        if kind is None:
            continue
        try:
            text = _text(part, kind)
        except Exception:  # a broken zip or PDF (pypdf raises many kinds) is skipped
            continue
        for address in ADDRESS.findall(text):
            address = address.lower().rstrip(".")
            if is_public(address.rsplit("@", 1)[1]):
                found[(address, kind)] = None
    return list(found)
