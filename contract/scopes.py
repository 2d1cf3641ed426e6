"""A scope: a subtree of the unit tree with its own letterhead, recipients, language and
(optionally) policy — the config's ``[[scopes]]`` — and the bundle each gets every month
under ``reports/YYYY-MM/<scope>/``.

    >>> Scope("phu-giao", "PG", recipients=("ct.pg@binhduong.gov.vn",)).folder("2026-11")
    PosixPath('2026-11/phu-giao')
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from contract.letterhead import Letterhead

__all__ = ["Bundle", "Scope"]


@dataclass(frozen=True)
class Scope:
    """One ``[[scopes]]`` entry; ``root`` None: the whole tree (the province's scope)."""

    name: str  # names the bundle's directory: letters, digits, '.', '_', '-'
    root: str | None = None  # the unit code of the subtree's root
    letterhead: Letterhead = field(default_factory=Letterhead)
    recipients: tuple[str, ...] = ()  # addresses the bundle is for (delivered elsewhere)
    language: str | None = None  # None: the evaluation's
    policy: str | None = None  # a preset name or a policy file; None: the evaluation's

    def folder(self, month: str) -> Path:
        """The bundle's directory under the reports directory."""
        return Path(month) / self.name


class Bundle(NamedTuple):
    """A month's bundle as a deliverer needs it: whose, where, to whom."""

    scope: str
    directory: Path
    recipients: tuple[str, ...]
