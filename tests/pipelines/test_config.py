"""The config file's schema (pipelines/config.py, pipelines/schema.py): every key of every
table reaches its settings field, defaults are the dataclasses' own, and a typo or a value of
the wrong type is refused with the key's name."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import pytest

from connectors.ews_settings import EwsSettings
from connectors.settings import GraphSettings, ImapSettings, SieveSettings, ZimbraAdminSettings
from contract.letterhead import Letterhead
from pipelines.config import ConfigError, LoginSourceConfig, load_config

# Every key set to a value other than its default (the test below checks that it is), so
# each key is seen to reach its field; valid where the config checks values.
FULL = """
[agency]
name = "UBND quận Liên Chiểu"
official_domains = ["danang.gov.vn"]
[roster]
path = "roster.csv"
units = "units.csv"
[report]
parent_body = "UBND QUẬN LIÊN CHIỂU"
issuing_body = "PHÒNG VĂN HÓA VÀ THÔNG TIN"
number = "/BC-VHTT"
place = "Liên Chiểu"
signer_title = "TRƯỞNG PHÒNG"
signer_name = "Nguyễn Văn An"
recipients = ["Chủ tịch UBND quận", "Lưu: VT"]

[[sources]]
name = "dovecot"
host = "mail.danang.gov.vn"
port = 1993
security = "starttls"
ca_file = "ca.pem"
verify = false
auth = "master-separator"
master_user = "svc"
master_separator = "%"
timeout = 5
batch_size = 100
password = { env = "MU_X" }

[[sources]]
name = "sieve"
host = "mail.danang.gov.vn"
master_user = "svc"
password = { env = "MU_X" }
sieve = { port = 2000, security = "plain" }

[[sources]]
name = "zimbra"
host = "zimbra.danang.gov.vn"
master_user = "svc"
password = { env = "MU_X" }
zimbra = { admin_url = "https://zimbra.danang.gov.vn:7071/service/admin/soap", admin_user = "admin@danang.gov.vn", password = { env = "MU_Z" }, ca_file = "ca.pem", timeout = 7.5 }

[[sources]]
name = "exchange"
kind = "ews"
endpoint = "https://mail.danang.gov.vn/EWS/Exchange.asmx"
username = "svc@danang.gov.vn"
password = { env = "MU_X" }
auth = "basic"
access = "delegate"
version = 15.2
max_connections = 2
page_size = 500
get_item_batch = 50
timeout = 30
max_wait = 60
retry_wait = 2
settle_seconds = 5
ca_file = "ca.pem"
forwarding = false

[[sources]]
name = "m365"
kind = "graph"
tenant_id = "contoso.onmicrosoft.com"
client_id = "6f1e0000-0000-0000-0000-000000000002"
certificate_path = "ca.pem"
authority = "https://login.example.test"
graph_url = "https://graph.example.test/v1.0"
page_size = 100
read_size = true
forwarding = false
usage_report = false
timeout = 10
max_wait = 20
retry_wait = 1
max_connections = 3
ca_file = "ca.pem"

[[logins]]
name = "dovecot-log"
kind = "dovecot-log"
path = "mail.log"
dict_uri = "proxy::other"
doveadm = "sudo doveadm"
ignore_remote = ["10.0.0.5"]
timezone = "UTC"
day_first = true
ignore_accounts = ["Admin@danang.gov.vn"]
mail_log_plugin = true

[[logins]]
name = "signin"
kind = "graph-signin"
source = "m365"
"""


@pytest.fixture
def cfg_path(tmp_path: Path) -> Path:
    (tmp_path / "ca.pem").write_text("-----BEGIN CERTIFICATE-----\n", encoding="utf-8")
    path = tmp_path / "mailusage.toml"
    path.write_text(FULL, encoding="utf-8")
    return path


def _changed(obj: object, *, derived: tuple[str, ...] = ()) -> list[str]:
    """The fields of ``obj`` still at their dataclass default (``derived`` ones aside)."""
    return [
        f.name
        for f in fields(obj)  # type: ignore[arg-type]
        if f.name not in derived and getattr(obj, f.name) == f.default
    ]


def test_every_key_reaches_its_field(cfg_path: Path):
    cfg = load_config(cfg_path)
    by_name = {s.name: s for s in cfg.sources}
    imap = by_name["dovecot"].imap
    assert isinstance(imap, ImapSettings)
    assert _changed(imap, derived=("read_chunk",)) == []  # read_chunk: not a config key
    assert (imap.port, imap.timeout, imap.master_separator) == (1993, 5.0, "%")
    assert imap.ca_file == str(cfg_path.parent / "ca.pem")  # resolved beside the file

    sieve = by_name["sieve"].sieve
    assert isinstance(sieve, SieveSettings)
    assert (sieve.port, sieve.security) == (2000, "plain")
    # the rest is the IMAP source's own
    assert (sieve.host, sieve.master_user) == ("mail.danang.gov.vn", "svc")

    zimbra = by_name["zimbra"].zimbra
    assert zimbra is not None and isinstance(zimbra.admin, ZimbraAdminSettings)
    assert _changed(zimbra.admin) == []
    assert zimbra.admin.url.endswith(":7071/service/admin/soap")  # admin_url in the file
    assert zimbra.admin.timeout == 7.5

    ews = by_name["exchange"].ews
    assert isinstance(ews, EwsSettings)
    assert _changed(ews, derived=("max_changes",)) == []
    assert ews.version == "15.2"  # a TOML number, kept as the build string
    assert by_name["exchange"].ews_forwarding is False

    graph = by_name["m365"].graph
    assert isinstance(graph, GraphSettings)
    assert _changed(graph) == []

    log, signin = cfg.logins
    assert isinstance(log, LoginSourceConfig)
    assert _changed(log, derived=("graph",)) == []
    assert log.doveadm == ("sudo", "doveadm")  # a command line, split into words
    assert log.ignore_accounts == ("admin@danang.gov.vn",)
    assert signin.graph is by_name["m365"]  # `source` names the Graph source

    assert _changed(cfg.letterhead) == []
    assert cfg.letterhead.recipients == ("Chủ tịch UBND quận", "Lưu: VT")
    assert cfg.units_path == cfg_path.parent / "units.csv"  # the unit tree, beside the file


def test_absent_keys_take_the_dataclasses_defaults(tmp_path: Path):
    path = tmp_path / "mailusage.toml"
    path.write_text(
        """
[agency]
name = "Phường Hòa Minh"
[roster]
path = "roster.csv"
[[sources]]
host = "mail.danang.gov.vn"
master_user = "svc"
password = { env = "MU_X" }
[[sources]]
name = "exchange"
kind = "ews"
endpoint = "https://mail.danang.gov.vn/EWS/Exchange.asmx"
username = "svc"
password = { env = "MU_X" }
""",
        encoding="utf-8",
    )
    cfg = load_config(path)
    assert cfg.sources[0].imap == ImapSettings(host="mail.danang.gov.vn", master_user="svc")
    assert cfg.sources[1].ews == EwsSettings(
        endpoint="https://mail.danang.gov.vn/EWS/Exchange.asmx", username="svc"
    )
    # the letterhead's issuing body defaults to the agency's name
    assert cfg.letterhead == Letterhead(issuing_body="Phường Hòa Minh")
    assert cfg.units_path is None  # no tree: the roster's units, one flat level


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (
            "batch_size = 100",
            "batchsize = 100",
            "sources[0]: unknown key 'batchsize' (did you mean 'batch_size'?)",
        ),
        (
            "get_item_batch = 50",
            "get_items_batch = 50",
            "sources[3]: unknown key 'get_items_batch' (did you mean 'get_item_batch'?)",
        ),
        (
            "read_size = true",
            "read_sizes = true",
            "sources[4]: unknown key 'read_sizes' (did you mean 'read_size'?)",
        ),
        (
            "admin_user =",
            "adminuser =",
            "sources[2].zimbra: unknown key 'adminuser' (did you mean 'admin_user'?)",
        ),
        (
            "day_first = true",
            "dayfirst = true",
            "logins[0]: unknown key 'dayfirst' (did you mean 'day_first'?)",
        ),
        (
            'place = "Liên Chiểu"',
            'plaec = "Liên Chiểu"',
            "report: unknown key 'plaec' (did you mean 'place'?)",
        ),
        (
            "sieve = { port = 2000,",
            "sieve = { prot = 2000,",
            "sources[1].sieve: unknown key 'prot' (did you mean 'port'?)",
        ),
        # read_chunk and max_changes are settings of the wire, not keys of the config
        ("batch_size = 100", "read_chunk = 100", "sources[0]: unknown key 'read_chunk'"),
        ("get_item_batch = 50", "max_changes = 50", "sources[3]: unknown key 'max_changes'"),
        (
            "batch_size = 100",
            "batch_size = true",
            "sources[0].batch_size must be an integer, not True",
        ),
        (
            "timeout = 5\n",
            'timeout = "5"\n',
            "sources[0].timeout must be an integer or a number, not '5'",
        ),
        ("verify = false", 'verify = "no"', "sources[0].verify must be true or false, not 'no'"),
        ('recipients = ["Chủ', 'recipients = "Chủ', "report.recipients must be a list"),
    ],
)
def test_a_typo_or_a_wrong_type_is_refused_with_its_key(cfg_path: Path, old, new, message):
    text = cfg_path.read_text(encoding="utf-8")
    assert old in text
    if new.startswith('recipients = "Chủ'):  # a string where a list belongs
        text = text.replace(
            'recipients = ["Chủ tịch UBND quận", "Lưu: VT"]', 'recipients = "Chủ tịch"'
        )
    else:
        text = text.replace(old, new, 1)
    cfg_path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        load_config(cfg_path)
    assert str(err.value).startswith(message), str(err.value)
