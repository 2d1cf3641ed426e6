"""imapclient's response parser, used without imapclient's client (connectors/imap.py).

``imapclient.response_parser`` is not in imapclient's documented API: its client calls it on
what imaplib returns. connectors/imap_wire.py shapes responses as imaplib does (text, each
literal paired with the text before it), so imap.py hands them to the same parser:
``parse_fetch_response`` (the BODY.PEEK[] of the contact scan) and ``parse_response``
(GETQUOTAROOT's QUOTA). Checked with imapclient 4.1.0.
"""

from __future__ import annotations

from imapclient.response_parser import parse_fetch_response, parse_response

__all__ = ["parse_fetch_response", "parse_response"]
