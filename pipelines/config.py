"""The one TOML config file: loaded and validated (the roster CSV is read by contract.roster).

Secrets are references only — ``{ env = "NAME" }`` or ``{ prefect_secret = "block-name" }``
— read into :class:`pipelines.secrets.SecretRef` and resolved there, when a login needs them.

    >>> cfg = load_config("mailusage.toml")
    >>> cfg.sources[0].name, cfg.data_dir
    ('dovecot', PosixPath('/var/lib/mailusage'))
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from connectors.ews_settings import ACCESS, AUTH_NAMES, EWS_SIGNALS, EwsSettings
from connectors.settings import (
    GRAPH_SIGNALS,
    IMAP_SIGNALS,
    GraphSettings,
    ImapSettings,
    SieveSettings,
    ZimbraAdminSettings,
    imapd_audit_log,
)
from contract.letterhead import Letterhead
from contract.scopes import Scope
from contract.signals import Signals
from pipelines.errors import ConfigError as ConfigError  # the schema's error, named here too
from pipelines.schema import Kind, check_keys, from_table, keys_of
from pipelines.secrets import SecretRef


@dataclass(frozen=True)
class DeliveryConfig:
    """``[delivery]``: the SMTP submission server the month's bundles (and the reminders)
    are sent through — STARTTLS, then AUTH as ``user`` — and who receives the bundle."""

    host: str
    user: str
    sender: str  # `from` in the TOML: the From address
    password: SecretRef = field(repr=False)
    port: int = 587
    recipients: tuple[str, ...] = ()  # the one bundle's recipients (no [[scopes]])
    ca_file: str | None = None  # the agency's own CA, when the server's certificate is from it
    max_size_mb: float = 20.0  # a message above this is refused before sending
    timeout: float = 60.0
    retries: int = 2  # Prefect task retries of a bundle whose sending failed transiently
    retry_delay_seconds: tuple[int, ...] = (60, 300)

    @property
    def max_bytes(self) -> int:
        return int(self.max_size_mb * 1_000_000)


_DELIVERY_TOML = {"sender": "from"}


@dataclass(frozen=True)
class ExportConfig:
    """``[export]``: the key pseudonymised analyst exports are hashed under
    (``mailusage export --pseudonymise``; analytics/export.py), by reference."""

    key: SecretRef = field(repr=False)


@dataclass(frozen=True)
class ReminderConfig:
    """``[reminders]``: on these days of the month, each unit head gets the list of their
    unit's staff not yet active this month (sent through ``[delivery]``'s server).

    ``heads`` maps a roster ``unit_code`` to its head's address (or addresses) until the
    unit tree gives them (pipelines/remind.py, :func:`unit_heads`)."""

    days: tuple[int, ...]
    heads: dict[str, tuple[str, ...]] = field(default_factory=dict)
    notify_staff: bool = False  # opt-in: each listed person also gets a short note
    rate_per_minute: int = 30  # messages sent per minute at most


# -- the config's shape ---------------------------------------------------------------
# Every section and key the file may hold, with the type its value must have. Anything
# else is refused with the nearest valid name: a typo such as `concurency` or
# `[evalution]` must not fall back to a default in silence.

SECTIONS: dict[str, dict[str, Kind]] = {
    "agency": {"name": str, "timezone": str, "official_domains": list},
    "storage": {"data_dir": str},
    "roster": {"path": str, "units": str},  # units: the unit tree (contract/units.py)
    "collect": {
        "concurrency": int,
        "retries": int,
        "retry_delay_seconds": list,
        "allowed_failures": int,
        "changed_only": bool,
        "sweep_every": int,
        "log_silence_hours": (int, float),
    },
    "evaluation": {
        "policy": str,
        "waivers": str,
        "reports_dir": str,
        "language": str,
        "public_domains": list,
    },
    # the report's letterhead and signature block (Nghị định 30/2020/NĐ-CP layout)
    "report": keys_of(Letterhead),
    # the month's bundles mailed over SMTP submission (pipelines/delivery.py)
    "delivery": {
        **keys_of(DeliveryConfig, toml=_DELIVERY_TOML, internal=("password",)),
        "password": (dict, str),
    },
    # reminders to unit heads before the month closes (pipelines/remind.py)
    "reminders": keys_of(ReminderConfig, kinds={"heads": dict}),
    # the key of pseudonymised analyst exports (analytics/export.py), by reference
    "export": {"key": (dict, str)},
}
TOP_LEVEL: dict[str, Kind] = {
    **{name: dict for name in SECTIONS},
    "sources": list,
    "logins": list,
    "scopes": list,
    "mail_logs": list,
}
# a [[scopes]] entry: a subtree's bundle (contract/scopes.py); `report` as the [report] section
_SCOPE_KEYS: dict[str, Kind] = {
    "name": str,
    "root": str,
    "recipients": list,
    "language": str,
    "policy": str,
    "report": dict,
}


@dataclass(frozen=True)
class SourceConfig:
    """One mail server: ``kind = "imap"`` (with ``imap`` settings), ``"ews"`` (``ews``) or
    ``"graph"`` (``graph``). Settings only: pipelines/sources.py builds and opens it."""

    name: str
    kind: str
    imap: ImapSettings | None
    password: SecretRef = field(repr=False)
    sieve: SieveSettings | None = None
    ews: EwsSettings | None = None
    ews_forwarding: bool = True  # read inbox rules with GetInboxRules
    graph: GraphSettings | None = None
    zimbra: ZimbraConfig | None = None

    def signals(
        self, logins: tuple[LoginSourceConfig, ...] = (), mail_logs: tuple[MailLogConfig, ...] = ()
    ) -> Signals:
        """What this source measures (see :meth:`Config.signals`)."""
        if self.graph is not None:
            declared = GRAPH_SIGNALS
            quota, forwarding = self.graph.usage_report, self.graph.forwarding
        elif self.ews is not None:
            declared = EWS_SIGNALS
            quota, forwarding = False, self.ews_forwarding
        else:
            declared = IMAP_SIGNALS
            admin = self.zimbra is not None and self.zimbra.admin is not None
            quota = True  # RFC 2087 where the server has it; else Zimbra's admin API
            forwarding = self.sieve is not None or self.zimbra is not None or admin
        covered = any(
            (self.name == lg.graph.name)
            if lg.graph is not None
            else self.kind in LOGIN_COVERS[lg.kind]
            for lg in logins
        )
        return replace(
            declared,
            quota=declared.quota and quota,
            forwarding=forwarding,
            logins=covered,
            submissions=any(self.kind in MAIL_LOG_COVERS[m.kind] for m in mail_logs),
        )


@dataclass(frozen=True)
class ZimbraConfig:
    """An IMAP source's `zimbra = { … }`: the admin SOAP API (forwarding, quota) and/or a
    `zmprov` export to read forwarding from instead."""

    admin: ZimbraAdminSettings | None
    password: SecretRef | None = field(default=None, repr=False)
    export: Path | None = None


_ZIMBRA_URL = {"url": "admin_url"}  # ZimbraAdminSettings.url, as the config names it
_ZIMBRA_KEYS: dict[str, Kind] = {
    **keys_of(ZimbraAdminSettings, toml=_ZIMBRA_URL),
    "password": (dict, str),
    "export": str,
}


def _zimbra(raw: dict[str, Any], where: str, base: Path) -> ZimbraConfig:
    check_keys(raw, _ZIMBRA_KEYS, where)
    admin, password = None, None
    if "admin_url" in raw:
        if not re.match(r"https?://[^/]+/", raw["admin_url"]):
            raise ConfigError(
                f"{where}.admin_url must be the admin SOAP URL, e.g. "
                "https://mail.example.gov.vn:7071/service/admin/soap"
            )
        if not raw.get("admin_user") or "password" not in raw:
            raise ConfigError(f"{where}: admin_url needs admin_user and password = {{ env = ... }}")
        password = _secret(raw["password"], f"{where}.password")
        admin = from_table(
            ZimbraAdminSettings,
            raw,
            toml=_ZIMBRA_URL,
            given={"ca_file": _ca_file(raw, where, base)},
            where=where,
        )
    export = (base / raw["export"]).resolve() if raw.get("export") else None
    if admin is None and export is None:
        raise ConfigError(f"{where}: give admin_url (the admin SOAP API) or export (a zmprov file)")
    return ZimbraConfig(admin, password, export)


def _with_imapd_audit(logins: tuple[LoginSourceConfig, ...]) -> tuple[LoginSourceConfig, ...]:
    """Each `zimbra-audit` source, followed by `<name>.imapd` reading `imapd-audit.log` in
    the same directory when the standalone zimbra-imapd writes one there (its IMAP logins
    are not in audit.log). A source of its own: its own cursor and night file. Not added
    when a `[[logins]]` entry already reads that file."""
    paths = {src.path for src in logins}
    names = {src.name for src in logins}
    out: list[LoginSourceConfig] = []
    for src in logins:
        out.append(src)
        if src.kind != "zimbra-audit" or src.path is None:
            continue
        imapd = imapd_audit_log(src.path)
        if imapd == src.path or imapd in paths or not imapd.exists():
            continue
        name = f"{src.name}.imapd"
        if name in names:
            raise ConfigError(
                f"logins: {name!r} is taken; it names {src.name}'s {imapd.name} beside {src.path}"
            )
        out.append(replace(src, name=name, path=imapd))
    return tuple(out)


LOGIN_KINDS = (
    "dovecot-dict",
    "dovecot-log",
    "exchange-csv",
    "zimbra",
    "zimbra-audit",
    "graph-signin",
)
_PATHLESS = ("dovecot-dict", "graph-signin")
# The source kinds a login source's records are of: a Dovecot or Zimbra log covers the
# IMAP sources, an Exchange export the EWS and Graph ones; graph-signin its named source.
LOGIN_COVERS: dict[str, tuple[str, ...]] = {
    "dovecot-dict": ("imap",),
    "dovecot-log": ("imap",),
    "exchange-csv": ("ews", "graph"),
    "zimbra": ("imap",),
    "zimbra-audit": ("imap",),
    "graph-signin": (),
}


@dataclass(frozen=True)
class LoginSourceConfig:
    """Where login times come from (see connectors/logins.py)."""

    name: str
    kind: str
    path: Path | None = None
    dict_uri: str = "proxy::lastlogin"
    doveadm: tuple[str, ...] = ("doveadm",)
    ignore_remote: tuple[str, ...] = ()
    timezone: str = "Asia/Ho_Chi_Minh"
    day_first: bool = False
    ignore_accounts: tuple[str, ...] = ()  # zimbra-audit: the collector's own admin account
    # dovecot-log: Dovecot's mail_log plugin logs every change (flag_change included), so
    # for collect.changed_only a login alone is no change (pipelines/quiet.py)
    mail_log_plugin: bool = False
    graph: SourceConfig | None = field(default=None, repr=False)  # graph-signin: its source


# `source = "NAME"` names a graph-signin's Graph source; `doveadm` is a command line or its words
_LOGIN_TOML = {"graph": "source"}
_LOGIN_KEYS: dict[str, Kind] = keys_of(
    LoginSourceConfig, toml=_LOGIN_TOML, kinds={"graph": str, "doveadm": (str, list)}
)


def _login_source(
    raw: dict[str, Any], index: int, base: Path, tz: str, sources: tuple[SourceConfig, ...]
) -> LoginSourceConfig:
    where = f"logins[{index}]"
    kind = raw.get("kind")
    if kind not in LOGIN_KINDS:
        raise ConfigError(f"{where}.kind must be one of {', '.join(LOGIN_KINDS)}")
    check_keys(raw, _LOGIN_KEYS, where)
    path = raw.get("path")
    if kind not in _PATHLESS and not path:
        raise ConfigError(f"{where}.path is required for kind {kind!r}")
    graph = None
    if kind == "graph-signin":
        graphs = {s.name: s for s in sources if s.graph is not None}
        graph = graphs.get(raw.get("source", ""))
        if graph is None:
            raise ConfigError(
                f'{where}.source must name a kind = "graph" source ({", ".join(graphs) or "none"})'
            )
    doveadm = raw.get("doveadm", ["doveadm"])
    if isinstance(doveadm, str):
        doveadm = doveadm.split()
    given = {
        "name": _name(raw, where, f"{kind}-{index}"),
        "path": (base / path).resolve() if path else None,
        "doveadm": tuple(doveadm),
        "timezone": raw.get("timezone", tz),
        "ignore_accounts": tuple(a.lower() for a in raw.get("ignore_accounts", [])),
        "graph": graph,
    }
    return from_table(LoginSourceConfig, raw, toml=_LOGIN_TOML, given=given, where=where)


MAIL_LOG_KINDS = ("postfix",)
# Postfix is the MTA of the IMAP servers (Dovecot with Postfix, Zimbra); Exchange and
# Microsoft 365 submit through their own transport, which this log does not see.
MAIL_LOG_COVERS: dict[str, tuple[str, ...]] = {"postfix": ("imap",)}


@dataclass(frozen=True)
class MailLogConfig:
    """A mail system's own log, read on every night into ``mail_log_deliveries``
    (connectors/postfix_log.py parses it; pipelines/mail_logs.py collects it)."""

    name: str
    kind: str  # postfix (Debian's, or Zimbra's MTA)
    path: Path  # the log file, or a directory of it and its rotations
    timezone: str = "Asia/Ho_Chi_Minh"  # the zone of stamps without one (default: the agency's)
    # The collector's own test mail: never counted as anyone's.
    ignore_senders: tuple[str, ...] = ()
    ignore_accounts: tuple[str, ...] = ()
    # A queue id with no line for this long is written as incomplete (its `removed` lost).
    stale_after_days: int = 7


_MAIL_LOG_KEYS: dict[str, Kind] = keys_of(MailLogConfig)


def _mail_log(raw: dict[str, Any], index: int, base: Path, tz: str) -> MailLogConfig:
    where = f"mail_logs[{index}]"
    kind = raw.get("kind")
    if kind not in MAIL_LOG_KINDS:
        raise ConfigError(f"{where}.kind must be one of {', '.join(MAIL_LOG_KINDS)}")
    check_keys(raw, _MAIL_LOG_KEYS, where)
    if not raw.get("path"):
        raise ConfigError(f"{where}.path is required (the mail log, or its directory)")
    zone = raw.get("timezone", tz)
    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ConfigError(f"{where}.timezone {zone!r} is not a known time zone") from exc
    if raw.get("stale_after_days", 7) < 1:
        raise ConfigError(f"{where}.stale_after_days must be 1 or more")
    given = {
        "name": _name(raw, where, kind if index == 0 else f"{kind}-{index}"),
        "path": (base / raw["path"]).resolve(),
        "timezone": zone,
        "ignore_senders": tuple(a.lower() for a in raw.get("ignore_senders", [])),
        "ignore_accounts": tuple(a.lower() for a in raw.get("ignore_accounts", [])),
    }
    return from_table(MailLogConfig, raw, given=given, where=where)


@dataclass(frozen=True)
class Config:
    path: Path
    agency: str
    timezone: str
    data_dir: Path
    roster_path: Path
    official_domains: tuple[str, ...]
    sources: tuple[SourceConfig, ...]
    concurrency: int = 8
    retries: int = 2
    retry_delay_seconds: tuple[int, ...] = (10, 60)
    allowed_failures: int = 0  # failed mailboxes a night may have and its flow run pass
    # log in only to mailboxes the logs saw an event in (pipelines/quiet.py), each mailbox
    # read at least every `sweep_every` nights; a log silent for longer means a full night
    changed_only: bool = False
    sweep_every: int = 7
    log_silence_hours: float = 12.0
    policy: str = "lien-chieu-2014"
    waivers_path: Path | None = None
    reports_dir: Path = Path("reports")
    language: str = "vi"
    public_domains_extra: tuple[str, ...] = ()
    logins: tuple[LoginSourceConfig, ...] = ()
    mail_logs: tuple[MailLogConfig, ...] = ()
    letterhead: Letterhead = field(default_factory=Letterhead)
    units_path: Path | None = None  # [roster] units: the unit tree; None: the roster's units, flat
    scopes: tuple[Scope, ...] = ()  # [[scopes]]: a bundle each under reports/YYYY-MM/<name>/
    delivery: DeliveryConfig | None = None
    reminders: ReminderConfig | None = None
    export: ExportConfig | None = None

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def source(self, name: str | None) -> SourceConfig:
        if name is None:
            return self.sources[0]
        for s in self.sources:
            if s.name == name:
                return s
        raise KeyError(name)

    def signals(self) -> dict[str, Signals]:
        """What each source measures, as set up here: its protocol's declaration, with
        forwarding and quota only where configured, logins only where a login source
        covers it (see :data:`LOGIN_COVERS`). The first entry is the roster's default."""
        return {s.name: s.signals(self.logins, self.mail_logs) for s in self.sources}


def _secret(raw: Any, where: str) -> SecretRef:
    if isinstance(raw, str):
        raise ConfigError(
            f"{where}: passwords are never written in the config; use "
            f'{{ env = "VAR" }} or {{ prefect_secret = "block" }}'
        )
    if not isinstance(raw, dict) or not raw.keys() & {"env", "prefect_secret", "env_prefix"}:
        raise ConfigError(f"{where}: expected {{ env = ... }} or {{ prefect_secret = ... }}")
    check_keys(raw, {"env": str, "prefect_secret": str, "env_prefix": str}, where)
    return SecretRef(raw.get("env"), raw.get("prefect_secret"), raw.get("env_prefix"))


# Keys every [[sources]] entry has beside its protocol's settings; a password written as
# a string is refused by _secret, with why.
_SOURCE_KEYS: dict[str, Kind] = {"name": str, "kind": str}
_IMAP_KEYS: dict[str, Kind] = {
    **_SOURCE_KEYS,
    **keys_of(ImapSettings, internal=("read_chunk",)),  # read_chunk: the wire's, not the config's
    "password": (dict, str),
    "sieve": dict,
    "zimbra": dict,
}
# a [[sources]] entry's `sieve = { … }`: the rest comes from the IMAP settings beside it
_SIEVE_KEYS = keys_of(SieveSettings, internal=("host", "ca_file", "master_user", "timeout"))


def _ca_file(raw: dict[str, Any], where: str, base: Path) -> str | None:
    """The source's `ca_file`, resolved against the config's directory; it must exist."""
    if raw.get("ca_file") is None:
        return None
    ca_path = (base / raw["ca_file"]).resolve()
    if not ca_path.exists():
        raise ConfigError(f"{where}.ca_file {ca_path} does not exist")
    return str(ca_path)


_EWS_KEYS: dict[str, Kind] = {
    **_SOURCE_KEYS,
    # max_changes: SyncFolderItems' page, fixed by the protocol's limit
    **keys_of(EwsSettings, internal=("max_changes",), kinds={"version": (str, float)}),
    "password": (dict, str),
    "forwarding": bool,  # read inbox rules with GetInboxRules
}


def _ews_source(raw: dict[str, Any], where: str, base: Path, name: str) -> SourceConfig:
    check_keys(raw, _EWS_KEYS, where)
    endpoint = raw.get("endpoint", "")
    if not re.match(r"https?://[^/]+/", endpoint):
        raise ConfigError(
            f"{where}.endpoint is required: the EWS URL, e.g. "
            "https://mail.example.gov.vn/EWS/Exchange.asmx (no autodiscover is done)"
        )
    auth = raw.get("auth", "ntlm")
    if auth not in AUTH_NAMES:
        raise ConfigError(f"{where}.auth must be one of {', '.join(AUTH_NAMES)}")
    access = raw.get("access", "impersonation")
    if access not in ACCESS:
        raise ConfigError(f"{where}.access must be one of {', '.join(ACCESS)}")
    if access != "user" and not raw.get("username"):
        raise ConfigError(f"{where}.username (the service account) is required with {access!r}")
    if "password" not in raw:
        raise ConfigError(f"{where}.password is required (a reference, e.g. {{ env = ... }})")
    version = str(raw.get("version", "15.1.2507.6"))
    if not re.fullmatch(r"\d+\.\d+(\.\d+){0,2}", version):
        raise ConfigError(f"{where}.version must be an Exchange build like 15.1.2507.6")
    page_size = int(raw.get("page_size", 1000))
    if not 1 <= page_size <= 1000:
        raise ConfigError(f"{where}.page_size must be between 1 and 1000 (the EWS limit)")
    settings = from_table(
        EwsSettings,
        raw,
        given={"version": version, "ca_file": _ca_file(raw, where, base)},
        where=where,
    )
    return SourceConfig(
        name,
        "ews",
        None,
        _secret(raw["password"], f"{where}.password"),
        ews=settings,
        ews_forwarding=bool(raw.get("forwarding", True)),
    )


_GRAPH_KEYS: dict[str, Kind] = {
    **_SOURCE_KEYS,
    **keys_of(GraphSettings),
    "client_secret": (dict, str),
    "certificate_password": (dict, str),
}


def _graph_source(raw: dict[str, Any], where: str, base: Path, name: str) -> SourceConfig:
    """`kind = "graph"`: Exchange Online through Microsoft Graph, app-only."""
    check_keys(raw, _GRAPH_KEYS, where)
    for key in ("tenant_id", "client_id"):
        if not raw.get(key):
            raise ConfigError(f"{where}.{key} is required (the app registration's {key})")
    cert = raw.get("certificate_path")
    if cert is None and "client_secret" not in raw:
        raise ConfigError(
            f"{where}: give client_secret = {{ env = ... }} or certificate_path (a PEM with "
            "the private key and certificate)"
        )
    if cert is not None:
        cert_path = (base / cert).resolve()
        if not cert_path.exists():
            raise ConfigError(f"{where}.certificate_path {cert_path} does not exist")
        cert = str(cert_path)
        secret = (
            _secret(raw["certificate_password"], f"{where}.certificate_password")
            if "certificate_password" in raw
            else SecretRef()  # the key is not encrypted: nothing to resolve
        )
    else:
        secret = _secret(raw["client_secret"], f"{where}.client_secret")
    for key in ("authority", "graph_url"):
        if key in raw and not re.match(r"https://[^/]+", raw[key]):
            raise ConfigError(f"{where}.{key} must be an https:// URL (MSAL accepts no other)")
    page_size = int(raw.get("page_size", 500))
    if not 1 <= page_size <= 1000:
        raise ConfigError(f"{where}.page_size must be between 1 and 1000")
    settings = from_table(
        GraphSettings,
        raw,
        given={"certificate_path": cert, "ca_file": _ca_file(raw, where, base)},
        where=where,
    )
    return SourceConfig(name, "graph", None, secret, graph=settings)


_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def _name(raw: dict[str, Any], where: str, default: str) -> str:
    """A source's name: it names files in the data directory, so nothing path-like."""
    name = raw.get("name", default)
    if not isinstance(name, str) or not _NAME.match(name):
        raise ConfigError(
            f"{where}.name {str(name)[:80]!r} may hold only letters, digits, '.', '_' and '-' "
            "(64 at most, starting with a letter or digit): it names files"
        )
    return name


def _source(raw: dict[str, Any], index: int, base: Path) -> SourceConfig:
    where = f"sources[{index}]"
    kind = raw.get("kind", "imap")
    raw = {**raw, "name": _name(raw, where, f"source{index}")}
    if kind == "ews":
        return _ews_source(raw, where, base, raw["name"])
    if kind == "graph":
        return _graph_source(raw, where, base, raw["name"])
    if kind != "imap":
        raise ConfigError(f"{where}.kind must be imap, ews or graph, not {kind!r}")
    check_keys(raw, _IMAP_KEYS, where)
    if "host" not in raw:
        raise ConfigError(f"{where}.host is required")
    security = raw.get("security", "tls")
    if security not in ("tls", "starttls", "plain"):
        raise ConfigError(f"{where}.security must be tls, starttls or plain, not {security!r}")
    auth = raw.get("auth", "master-sasl")
    if auth not in ("master-sasl", "master-separator", "user"):
        raise ConfigError(f"{where}.auth must be master-sasl, master-separator or user")
    if auth != "user" and not raw.get("master_user"):
        raise ConfigError(f"{where}.master_user is required with auth = {auth!r}")
    if "password" not in raw:
        raise ConfigError(f"{where}.password is required (a reference, e.g. {{ env = ... }})")
    settings = from_table(
        ImapSettings, raw, given={"ca_file": _ca_file(raw, where, base)}, where=where
    )
    sieve = None
    if "sieve" in raw:
        sv = raw["sieve"]
        check_keys(sv, _SIEVE_KEYS, f"{where}.sieve")
        if sv.get("security", "starttls") not in ("starttls", "plain"):
            raise ConfigError(f"{where}.sieve.security must be starttls or plain")
        if auth == "master-separator":
            raise ConfigError(f"{where}.sieve needs auth = master-sasl or user")
        sieve = from_table(
            SieveSettings,
            sv,
            given={
                "host": settings.host,
                "ca_file": settings.ca_file,
                "master_user": settings.master_user if auth != "user" else None,
                "timeout": settings.timeout,
            },
        )
    zimbra = _zimbra(raw["zimbra"], f"{where}.zimbra", base) if "zimbra" in raw else None
    if zimbra is not None and sieve is not None:
        raise ConfigError(
            f"{where}: sieve and zimbra together: Zimbra forwards by account attributes "
            "(zimbraPrefMailForwardingAddress), not by Sieve; keep zimbra"
        )
    return SourceConfig(
        raw.get("name", f"source{index}"),
        kind,
        settings,
        _secret(raw["password"], f"{where}.password"),
        sieve,
        zimbra=zimbra,
    )


def _letterhead(report: dict[str, Any], issuing_body: str, where: str = "") -> Letterhead:
    """A `[report]` table (or a scope's `report = { … }`) as the letterhead."""
    return from_table(
        Letterhead,
        report,
        given={
            "issuing_body": report.get("issuing_body", issuing_body),
            "recipients": tuple(str(r) for r in report.get("recipients", [])),
        },
        where=where,
    )


_ADDRESS = re.compile(r"^[^@\s,;<>\"]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$")


def _addresses(values: Any, where: str) -> tuple[str, ...]:
    """Mail addresses, lower-cased; one that is not an address is refused by its key."""
    values = [values] if isinstance(values, str) else values
    if not isinstance(values, list):
        raise ConfigError(f"{where} must be an address or a list of addresses")
    out = []
    for value in values:
        if not isinstance(value, str) or not _ADDRESS.match(value.strip()):
            raise ConfigError(f"{where}: {str(value)[:80]!r} is not a mail address")
        out.append(value.strip().lower())
    return tuple(out)


def _delivery(raw: dict[str, Any], base: Path) -> DeliveryConfig:
    where = "delivery"
    for key in ("host", "user", "from", "password"):
        if key not in raw:
            raise ConfigError(f"{where}.{key} is required")
    if not 1 <= raw.get("port", 587) <= 65535:
        raise ConfigError(f"{where}.port must be between 1 and 65535")
    if raw.get("max_size_mb", 20) <= 0:
        raise ConfigError(f"{where}.max_size_mb must be more than 0")
    if raw.get("retries", 2) < 0:
        raise ConfigError(f"{where}.retries must be 0 or more")
    return from_table(
        DeliveryConfig,
        raw,
        toml=_DELIVERY_TOML,
        given={
            "sender": _addresses(raw["from"], f"{where}.from")[0],
            "recipients": _addresses(raw.get("recipients", []), f"{where}.recipients"),
            "password": _secret(raw["password"], f"{where}.password"),
            "ca_file": _ca_file(raw, where, base),
        },
        where=where,
    )


def _policy(value: str, base: Path) -> str:
    """A policy preset's name as it is; a policy file resolved against the config's folder."""
    return str((base / value).resolve()) if value.endswith(".toml") else value


def _scope(raw: dict[str, Any], index: int, base: Path) -> Scope:
    """One `[[scopes]]` entry: its root is checked against the unit tree when the tree is
    read (pipelines/evaluate.py), the rest here."""
    where = f"scopes[{index}]"
    check_keys(raw, _SCOPE_KEYS, where)
    if "name" not in raw:
        raise ConfigError(f"{where}.name is required: it names the bundle's directory")
    name = _name(raw, where, "")
    root = raw.get("root") or None
    recipients = raw.get("recipients", [])
    bad = [r for r in recipients if not isinstance(r, str) or not _ADDRESS.match(r)]
    if bad:
        raise ConfigError(f"{where}.recipients: not an address: {', '.join(map(repr, bad))}")
    language = raw.get("language")
    if language not in (None, "vi", "en"):
        raise ConfigError(f"{where}.language must be vi or en")
    report = raw.get("report", {})
    check_keys(report, SECTIONS["report"], f"{where}.report")
    return Scope(
        name=name,
        root=root,
        letterhead=_letterhead(report, "", f"{where}.report"),
        recipients=tuple(r.lower() for r in recipients),
        language=language,
        policy=_policy(raw["policy"], base) if "policy" in raw else None,
    )


def _reminders(raw: dict[str, Any]) -> ReminderConfig:
    where = "reminders"
    days = raw.get("days")
    if not days:
        raise ConfigError(f"{where}.days is required: the days of the month, e.g. [15, 25]")
    for day in days:
        # 28 at most: every month has the day, so no month goes without its reminder
        if not isinstance(day, int) or isinstance(day, bool) or not 1 <= day <= 28:
            raise ConfigError(f"{where}.days: {day!r} is not a day from 1 to 28")
    if raw.get("rate_per_minute", 30) < 1:
        raise ConfigError(f"{where}.rate_per_minute must be 1 or more")
    heads = {
        str(unit): _addresses(value, f"{where}.heads.{unit}")
        for unit, value in raw.get("heads", {}).items()
    }
    return from_table(
        ReminderConfig,
        raw,
        given={"days": tuple(sorted(set(days))), "heads": heads},
        where=where,
    )


# Logs read on from a cursor, whose lines say which mailboxes changed (pipelines/quiet.py).
CHANGE_LOG_KINDS = ("dovecot-log", "zimbra-audit")


def _check_changed_only(
    sources: tuple[SourceConfig, ...],
    logins: tuple[LoginSourceConfig, ...],
    mail_logs: tuple[MailLogConfig, ...],
) -> None:
    """`collect.changed_only` needs logs that see every change: logins (a client's reading,
    moving, deleting) and deliveries (Postfix's log, or Dovecot's own LMTP lines), and IMAP
    sources (whose unchanged folders a night can carry)."""
    other = [s.name for s in sources if s.kind != "imap"]
    if other:
        raise ConfigError(
            f"collect.changed_only: only IMAP sources can be carried from their logs, not "
            f"{', '.join(other)}"
        )
    if len(sources) > 1:  # which log covers which server cannot be told yet
        raise ConfigError(
            "collect.changed_only: one IMAP source only (its server's logs configured); "
            f"this config has {len(sources)}"
        )
    if not any(lg.kind in CHANGE_LOG_KINDS for lg in logins):
        raise ConfigError(
            'collect.changed_only needs a login log ([[logins]] kind = "dovecot-log" or '
            '"zimbra-audit"): without it a client\'s reading and deleting go unseen'
        )
    if not mail_logs and not any(lg.kind == "dovecot-log" for lg in logins):
        raise ConfigError(
            "collect.changed_only needs a delivery log: [[mail_logs]] (Postfix), or Dovecot's "
            "own log when Dovecot delivers by LMTP"
        )


def load_config(path: str | Path) -> Config:
    """Read and check the TOML config; relative paths are relative to the file."""
    path = Path(path).resolve()
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(f"config file {path} not found") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    base = path.parent
    check_keys(raw, TOP_LEVEL, "")
    for section, keys in SECTIONS.items():
        check_keys(raw.get(section, {}), keys, section)
    for array in ("sources", "logins", "scopes", "mail_logs"):
        if not all(isinstance(entry, dict) for entry in raw.get(array, [])):
            raise ConfigError(f"{array}: each entry must be a [[{array}]] table")
    agency = raw.get("agency", {})
    tz = agency.get("timezone", "Asia/Ho_Chi_Minh")
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ConfigError(f"agency.timezone {tz!r} is not a known time zone") from exc
    sources_raw = raw.get("sources")
    if not sources_raw:
        raise ConfigError("at least one [[sources]] entry is required")
    sources = tuple(_source(s, i, base) for i, s in enumerate(sources_raw))
    names = [s.name for s in sources]
    if len(set(names)) != len(names):
        raise ConfigError(f"source names must be unique: {names}")
    collect = raw.get("collect", {})
    concurrency = int(collect.get("concurrency", 8))
    if not 1 <= concurrency <= 64:
        raise ConfigError("collect.concurrency must be between 1 and 64")
    allowed_failures = collect.get("allowed_failures", 0)
    if allowed_failures < 0:
        raise ConfigError("collect.allowed_failures must be 0 or more")
    sweep_every = collect.get("sweep_every", 7)
    if not 1 <= sweep_every <= 31:
        raise ConfigError("collect.sweep_every must be between 1 and 31 (nights)")
    silence = collect.get("log_silence_hours", 12)
    if not 1 <= silence <= 168:
        raise ConfigError("collect.log_silence_hours must be between 1 and 168")
    roster = raw.get("roster", {}).get("path")
    if not roster:
        raise ConfigError("roster.path is required")
    units = raw.get("roster", {}).get("units")
    evaluation = raw.get("evaluation", {})
    language = evaluation.get("language", "vi")
    if language not in ("vi", "en"):
        raise ConfigError("evaluation.language must be vi or en")
    policy = _policy(evaluation.get("policy", "lien-chieu-2014"), base)
    waivers = evaluation.get("waivers")
    logins = _with_imapd_audit(
        tuple(_login_source(r, i, base, tz, sources) for i, r in enumerate(raw.get("logins", [])))
    )
    mail_logs = tuple(_mail_log(r, i, base, tz) for i, r in enumerate(raw.get("mail_logs", [])))
    if len({m.name for m in mail_logs}) != len(mail_logs):
        raise ConfigError(f"mail_logs names must be unique: {[m.name for m in mail_logs]}")
    report = raw.get("report", {})
    letterhead = _letterhead(report, agency.get("name", ""))
    scopes = tuple(_scope(r, i, base) for i, r in enumerate(raw.get("scopes", [])))
    scope_names = [s.name for s in scopes]
    if len(set(scope_names)) != len(scope_names):
        raise ConfigError(
            f"scopes: each name must be unique (they name directories): {scope_names}"
        )
    if collect.get("changed_only", False):
        _check_changed_only(sources, logins, mail_logs)
    delivery = _delivery(raw["delivery"], base) if "delivery" in raw else None
    reminders = _reminders(raw["reminders"]) if "reminders" in raw else None
    if reminders is not None and delivery is None:
        raise ConfigError(
            "reminders: needs a [delivery] section (the SMTP server reminders are sent through)"
        )
    export = None
    if "export" in raw:
        if "key" not in raw["export"]:
            raise ConfigError('export.key is required: { env = "VAR" } naming the hashing key')
        export = ExportConfig(_secret(raw["export"]["key"], "export.key"))
    return Config(
        export=export,
        scopes=scopes,
        delivery=delivery,
        reminders=reminders,
        letterhead=letterhead,
        logins=logins,
        mail_logs=mail_logs,
        policy=policy,
        waivers_path=(base / waivers).resolve() if waivers else None,
        reports_dir=(base / evaluation.get("reports_dir", "reports")).resolve(),
        language=language,
        public_domains_extra=tuple(d.lower() for d in evaluation.get("public_domains", [])),
        path=path,
        agency=agency.get("name", ""),
        timezone=tz,
        data_dir=(base / raw.get("storage", {}).get("data_dir", "data")).resolve(),
        roster_path=(base / roster).resolve(),
        units_path=(base / units).resolve() if units else None,
        official_domains=tuple(d.lower() for d in agency.get("official_domains", [])),
        sources=sources,
        concurrency=concurrency,
        retries=int(collect.get("retries", 2)),
        retry_delay_seconds=tuple(int(x) for x in collect.get("retry_delay_seconds", [10, 60])),
        allowed_failures=allowed_failures,
        changed_only=bool(collect.get("changed_only", False)),
        sweep_every=sweep_every,
        log_silence_hours=float(silence),
    )
