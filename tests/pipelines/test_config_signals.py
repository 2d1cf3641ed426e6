"""What each configured source says it measures (Config.signals): the connector's
declaration, narrowed by what the config sets up around it."""

from __future__ import annotations

from pipelines.config import load_config

CONFIG = """
[agency]
official_domains = ["danang.gov.vn"]
[roster]
path = "roster.csv"
[[sources]]
name = "dovecot"
host = "127.0.0.1"
master_user = "svc"
password = { env = "MU_X" }
[[sources]]
name = "dovecot-sieve"
host = "127.0.0.1"
master_user = "svc"
password = { env = "MU_X" }
sieve = { port = 4190 }
[[sources]]
name = "exchange"
kind = "ews"
endpoint = "https://mail.danang.gov.vn/EWS/Exchange.asmx"
username = "svc@danang.gov.vn"
password = { env = "MU_X" }
[[sources]]
name = "m365"
kind = "graph"
tenant_id = "00000000-0000-0000-0000-000000000001"
client_id = "00000000-0000-0000-0000-000000000002"
client_secret = { env = "MU_X" }
usage_report = false
"""


def signals(tmp_path, logins: str = ""):
    path = tmp_path / "mailusage.toml"
    path.write_text(CONFIG + logins, encoding="utf-8")
    return {
        name: (s.read_activity, s.logins, s.quota, s.forwarding, s.folder_sizes)
        for name, s in load_config(path).signals().items()
    }


def test_without_a_login_source_no_source_measures_logins(tmp_path):
    assert signals(tmp_path) == {
        "dovecot": (True, False, True, False, False),
        "dovecot-sieve": (True, False, True, True, False),
        "exchange": (True, False, False, True, True),  # EWS has no quota operation
        "m365": (True, False, False, True, False),  # usage_report = false: no quota
    }


def test_a_login_source_covers_the_sources_its_records_are_of(tmp_path):
    logins = """
[[logins]]
kind = "dovecot-dict"
[[logins]]
kind = "graph-signin"
source = "m365"
"""
    got = {name: s[1] for name, s in signals(tmp_path, logins).items()}
    assert got == {"dovecot": True, "dovecot-sieve": True, "exchange": False, "m365": True}
    export = '\n[[logins]]\nkind = "exchange-csv"\npath = "logons.csv"\n'
    got = {name: s[1] for name, s in signals(tmp_path, export).items()}
    assert got == {"dovecot": False, "dovecot-sieve": False, "exchange": True, "m365": True}


def test_a_postfix_mail_log_covers_the_imap_sources_submissions(tmp_path):
    def submissions(extra: str) -> dict[str, bool]:
        path = tmp_path / "mailusage.toml"
        path.write_text(CONFIG + extra, encoding="utf-8")
        return {name: s.submissions for name, s in load_config(path).signals().items()}

    assert submissions("") == dict.fromkeys(["dovecot", "dovecot-sieve", "exchange", "m365"], False)
    log = '\n[[mail_logs]]\nname = "mta"\nkind = "postfix"\npath = "/var/log/mail.log"\n'
    assert submissions(log) == {
        "dovecot": True,
        "dovecot-sieve": True,
        "exchange": False,  # Exchange submits through its own transport
        "m365": False,
    }
