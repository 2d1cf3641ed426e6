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
    parent_body: str = ""
    issuing_body: str = ""
    number: str = ""
    place: str = ""
    signer_title: str = ""
    signer_name: str = ""
    recipients: tuple[str, ...] = ()
