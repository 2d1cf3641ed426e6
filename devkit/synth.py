"""Synthetic but believable mail for the demo, tests and benchmarks.

>>> raw = make_message("an.nv@demo.gov.vn", ["b@gmail.com"], date=1793588400,
...                    message_id="<1@demo>", from_name="Nguyễn Văn An")
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from datetime import UTC, datetime
from email.header import Header
from email.utils import format_datetime

FAMILY = ("Nguyễn", "Trần", "Lê", "Phạm", "Hoàng", "Huỳnh", "Phan", "Vũ", "Võ", "Đặng", "Bùi", "Đỗ")
MIDDLE = ("Văn", "Thị", "Hữu", "Đức", "Minh", "Thanh", "Ngọc", "Quốc")
GIVEN = (
    "An",
    "Bình",
    "Châu",
    "Dũng",
    "Giang",
    "Hà",
    "Hải",
    "Hạnh",
    "Hùng",
    "Lan",
    "Linh",
    "Long",
    "Mai",
    "Nam",
    "Phúc",
    "Quân",
    "Sơn",
    "Tâm",
    "Thảo",
    "Trang",
    "Tuấn",
    "Việt",
)
UNITS = (
    ("VP", "Văn phòng HĐND và UBND"),
    ("TCKH", "Phòng Tài chính - Kế hoạch"),
    ("VHTT", "Phòng Văn hóa và Thông tin"),
    ("NV", "Phòng Nội vụ"),
    ("XHP", "UBND xã Hòa Phú"),
    ("XHB", "UBND xã Hòa Bắc"),
)


def _ascii(text: str) -> str:
    import unicodedata

    text = text.replace("Đ", "D").replace("đ", "d")
    return "".join(c for c in unicodedata.normalize("NFD", text) if not unicodedata.combining(c))


def person_name(rng: random.Random) -> tuple[str, str]:
    """(full name, local part): ("Nguyễn Văn An", "an.nv")."""
    fam, mid, given = rng.choice(FAMILY), rng.choice(MIDDLE), rng.choice(GIVEN)
    local = f"{_ascii(given).lower()}.{_ascii(fam)[0].lower()}{_ascii(mid)[0].lower()}"
    return f"{fam} {mid} {given}", local


def make_message(
    from_addr: str | None,
    to: Sequence[str],
    *,
    date: float | None,
    message_id: str | None,
    cc: Sequence[str] = (),
    from_name: str | None = None,
    subject: str = "Báo cáo công việc",
    body: str = "Kính gửi anh/chị,\r\nĐề nghị xem tài liệu đính kèm.\r\n",
    raw_headers: Sequence[str] = (),
) -> bytes:
    """A complete message with CRLF line ends (so RFC822.SIZE equals its length)."""
    lines = []
    if from_addr is not None:
        if from_name:
            lines.append(f"From: {Header(from_name, 'utf-8').encode()} <{from_addr}>")
        else:
            lines.append(f"From: {from_addr}")
    if to:
        lines.append("To: " + ",\r\n ".join(to))
    if cc:
        lines.append("Cc: " + ", ".join(cc))
    if date is not None:
        lines.append("Date: " + format_datetime(datetime.fromtimestamp(date, UTC).astimezone()))
    if message_id:
        lines.append(f"Message-ID: {message_id}")
    lines.append(f"Subject: {Header(subject, 'utf-8').encode()}")
    lines.extend(raw_headers)
    lines += [
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=utf-8",
        "Content-Transfer-Encoding: 8bit",
    ]
    return ("\r\n".join(lines) + "\r\n\r\n" + body).encode("utf-8")


def make_docx(text: str) -> bytes:
    """A minimal .docx (a zip with word/document.xml) holding one paragraph of ``text``."""
    import io
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("[Content_Types].xml", "<Types/>")
        z.writestr(
            "word/document.xml",
            '<w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/'
            f'2006/main"><w:body><w:p><w:r><w:t>{text}</w:t></w:r></w:p></w:body>'
            "</w:document>",
        )
    return buf.getvalue()
