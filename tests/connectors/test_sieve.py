"""Forwarding rules over ManageSieve from the real Dovecot (Pigeonhole managesieved)."""

from __future__ import annotations

import pytest

from connectors.base import AuthError, SourceError
from connectors.sieve import Forward, SieveSettings, SieveSource, redirects
from devkit.dovecot import MASTER_USER, LocalDovecot
from tests.conftest import MASTER_PASSWORD

SCRIPT = """require ["copy", "vacation", "fileinto"];
# Roundcube managesieve filters
if header :contains "subject" "công văn" { redirect :copy "Van.Thu@Gmail.com"; }
redirect "archive@danang.gov.vn";
vacation :days 3 "Tôi đang nghỉ phép";
"""


def source(server: LocalDovecot, **kw) -> SieveSource:
    settings = dict(
        host="127.0.0.1",
        port=server.sieve_port,
        ca_file=str(server.ca_file),
        master_user=MASTER_USER,
    )
    settings.update(kw)
    return SieveSource(SieveSettings(**settings), password_for=lambda _m: MASTER_PASSWORD)


@pytest.fixture(scope="module")
def sieve_users(dovecot):
    if dovecot.sieve_port is None:
        pytest.fail("dovecot-managesieved is not installed (make test installs it)")
    dovecot.add_user("fwd@danang.gov.vn", "user-secret")
    dovecot.add_user("nofilter@danang.gov.vn", "user-secret")
    dovecot.set_sieve("fwd@danang.gov.vn", "roundcube", SCRIPT)
    dovecot.finish_seeding()
    return dovecot


def test_redirects_are_forwarding_and_vacation_is_not(sieve_users):
    assert source(sieve_users).forwards("fwd@danang.gov.vn") == [
        Forward("fwd@danang.gov.vn", "van.thu@gmail.com", "roundcube", True, True),
        Forward("fwd@danang.gov.vn", "archive@danang.gov.vn", "roundcube", False, False),
    ]


def test_no_active_script_means_no_forwarding(sieve_users):
    assert source(sieve_users).forwards("nofilter@danang.gov.vn") == []


def test_wrong_master_password(sieve_users):
    src = SieveSource(source(sieve_users).settings, password_for=lambda _m: "wrong")
    with pytest.raises(AuthError, match=r"ManageSieve login failed for fwd@danang\.gov\.vn"):
        src.forwards("fwd@danang.gov.vn")


def test_untrusted_certificate_is_refused(sieve_users):
    with pytest.raises(SourceError, match="TLS"):
        source(sieve_users, ca_file=None).forwards("fwd@danang.gov.vn")


def test_unparseable_script_is_a_clear_error():
    with pytest.raises(SourceError, match="does not parse"):
        list(redirects('redirect "unterminated'))
