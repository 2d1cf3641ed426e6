"""contract.domains: one suffix rule, asserted through Python and through the SQL on the
same table of cases, so that the two cannot disagree."""

import doctest
from datetime import UTC, datetime

import duckdb
import pyarrow as pa
import pytest

import contract.domains
from analytics.queries import month_params, register_domain_lists, sql
from contract.datasets import MESSAGES
from contract.domains import DomainList, public_domains, public_matcher

DEEP = ".".join(f"l{i}" for i in range(20)) + ".gmail.com"  # 22 labels: no depth limit

# (entry, domain, matches)
CASES = [
    ("gmail.com", "gmail.com", True),
    ("gmail.com", "mail.gmail.com", True),
    ("vnn.vn", "hn.vnn.vn", True),
    ("vn", "danang.gov.vn", True),  # a bare top-level entry
    ("gov.vn", "tc.danang.gov.vn", True),  # a public suffix as an entry
    ("vn", "vn", True),
    ("gmail.com", "gmail.com.", True),  # trailing dot on the domain
    ("gmail.com.", "gmail.com", True),  # and on the entry
    ("GMAIL.com", "Mail.GMAIL.Com", True),  # case
    ("gmail.com", DEEP, True),
    ("gmail.com", "notgmail.com", False),  # look-alikes
    ("gmail.com", "gmail.com.vn", False),
    ("gmail.com.vn", "gmail.com", False),
    ("gmail.com", "gmail.co", False),
    ("vn", "vn.com", False),
    ("danang.gov.vn", "gov.vn", False),  # an entry does not cover its parent
    ("gmail.com", "", False),
]


def test_the_docstring_examples_run():
    result = doctest.testmod(contract.domains, optionflags=doctest.ELLIPSIS)
    assert result.attempted >= 6 and result.failed == 0


@pytest.mark.parametrize(("entry", "domain", "expected"), CASES)
def test_python(entry, domain, expected):
    listed = DomainList.of([entry])
    assert listed.matches(domain) is expected
    assert listed.matches(domain) is expected  # the second answer, remembered, too
    assert listed.matches_address(f"an@{domain}") is expected
    assert listed.match_addresses([f"an@{domain}", "x@example.org"]) == [expected, False]
    assert public_matcher([entry])(domain) is (expected or public_matcher()(domain))


def _sql_function(con, function, domains):
    rows = con.sql(
        f"select d, {function}(d) from unnest($d) as t(d)", params={"d": domains}
    ).fetchall()
    return dict(rows)


def test_the_sql_functions_agree_with_python_on_every_case():
    for entry in sorted({e for e, _, _ in CASES}):
        con = duckdb.connect()
        register_domain_lists(con, official=[entry], public=[entry], registration=[entry])
        domains = [d for _, d, _ in CASES]
        for function in ("is_official_domain", "is_public_domain", "is_registration_domain"):
            got = _sql_function(con, function, domains)
            assert got == {d: DomainList.of([entry]).matches(d) for d in domains}, function
    con = duckdb.connect()
    register_domain_lists(con, official=[], public=["gmail.com"], registration=[])
    assert con.sql("select is_public_domain(null)").fetchall() == [(None,)]  # unknown stays null


def _counterpart_classes(official, public, domains):
    """domain -> domain_class as analytics/sql/counterpart_addresses.sql gives it, for a
    message received from x@<domain> each."""
    con = duckdb.connect()
    con.execute("set TimeZone = 'UTC'")
    when = datetime(2026, 11, 5, 3, tzinfo=UTC)
    rows = [
        {
            "source": "s",
            "mailbox": "an@danang.gov.vn",
            "folder": "INBOX",
            "role": "inbox",
            "uidvalidity": 1,
            "uid": i + 1,
            "internal_date": when,
            "sent_date": when,
            "date_source": "header",
            "size": 1,
            "seen": True,
            "from_addr": f"x{i}@{d}",
            "to_addrs": [],
            "cc_addrs": [],
            "message_id": f"<{i}@x>",
            "address_invalid": False,
        }
        for i, d in enumerate(domains)
    ]
    con.register("messages", pa.Table.from_pylist(rows, schema=MESSAGES))
    register_domain_lists(con, official=official, public=public, registration=[])
    text = sql("counterpart_addresses")
    params = {k: v for k, v in month_params("2026-11", "UTC").items() if f"${k}" in text}
    out = con.sql(text, params=params).fetchall()
    names = con.sql(text, params=params).columns
    got = {}
    for row in out:
        r = dict(zip(names, row, strict=True))
        got[r["address"].split("@", 1)[1]] = r["domain_class"]
    return got


@pytest.mark.parametrize("as_list", ["official", "public"])
def test_the_counterpart_query_classes_as_python_does(as_list):
    for entry in sorted({e for e, _, _ in CASES}):
        domains = [d for _, d, _ in CASES if d]  # an address needs a domain to be one
        lists = {"official": [], "public": [], as_list: [entry]}
        got = _counterpart_classes(lists["official"], lists["public"], domains)
        want = {d: as_list if DomainList.of([entry]).matches(d) else "other" for d in domains}
        assert got == want, entry


def test_official_wins_over_public_and_the_real_list_covers_vietnamese_subdomains():
    got = _counterpart_classes(
        ["danang.gov.vn"], public_domains(), ["hn.vnn.vn", "gmail.com", "danang.gov.vn"]
    )
    assert got == {"hn.vnn.vn": "public", "gmail.com": "public", "danang.gov.vn": "official"}
    got = _counterpart_classes(["gmail.com"], public_domains(), ["gmail.com"])
    assert got == {"gmail.com": "official"}
