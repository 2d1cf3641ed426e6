"""The report's letterhead and signature block, from the config's `[report]` section.

    >>> Letterhead(issuing_body="PHÒNG VĂN HÓA VÀ THÔNG TIN", signer_title="TRƯỞNG PHÒNG")
    Letterhead(parent_body='', issuing_body='PHÒNG VĂN HÓA VÀ THÔNG TIN', ...)

The layout is that of an administrative report (Nghị định 30/2020/NĐ-CP): the parent and
issuing bodies and the number on the left, the national motto and the place and date on
the right, the recipients ("Nơi nhận") and the signer's title and name at the foot.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Letterhead:
    """Each field is a key of the config's `[report]` section."""

    parent_body: str = ""  # e.g. "UBND QUẬN LIÊN CHIỂU"
    issuing_body: str = ""  # e.g. "PHÒNG VĂN HÓA VÀ THÔNG TIN" (default: agency.name)
    number: str = ""  # e.g. "/BC-VHTT", printed after "Số: "
    place: str = ""  # e.g. "Liên Chiểu", before the date line
    signer_title: str = ""  # e.g. "TRƯỞNG PHÒNG"
    signer_name: str = ""  # printed under the space left to sign; may stay empty
    recipients: tuple[str, ...] = ()  # "Nơi nhận", e.g. ["Chủ tịch UBND quận", "Lưu: VT"]
