"""A scope's data for an analyst: one DuckDB file with the scope's people only — their
roster rows, their mailboxes' collected rows for the months asked, and those months'
person_month, unit_month and violations cut to the scope — optionally pseudonymised.

    >>> summary = export_scope(inputs, ExportScope.of(tree, "PG"), ["2026-11"], Path("pg.duckdb"))
    >>> summary.tables["messages"], summary.pseudonymised
    (1843, False)

Why one DuckDB file and not a set of Parquet files: it is a single file to hand over, to
open in the DuckDB CLI, DBeaver or ``duckdb.connect(path)`` from pandas, with every table
typed and the ``readme`` table inside it saying what it holds; a Parquet set is a directory
whose files can be separated from their README.

Who is in it: the scope's members (the roster rows of the units of its subtree). Rows are
kept when they are about a member's mailbox (``mailbox``; in ``mail_log_deliveries`` a row
whose submitter, ``sasl_username``, or recipient is a member). A member's mail names their
counterparts: an external address is kept (it is the member's correspondence, and the
evidence of a violation); the address of a roster person *outside* the scope (their
official or declared personal address) is written ``outside-scope@<domain>``, so that the
file names nobody of another unit while the domain and its class stay.

Which rows: the collection nights the months' evaluations read (:func:`month_nights`:
from the first day of the month before the first month asked — the first month's
evaluation compares with it — to the night after the last) for the datasets kept by
night (``mailbox_status``, ``forwarding``); the same days by their own dates for the
others (``messages`` and ``contacts`` by ``sent_date``, ``logins`` by ``login_at``,
``mail_log_deliveries`` by ``time``, read over :func:`mail_log_nights`).

Pseudonymised (a key given): every address becomes ``<16 hex>@<domain>`` — HMAC-SHA256
under the key of the lower-cased address, truncated — and every employee id, message id,
queue id, folder name and client address a 16-hex keyed hash; names and rule names are
dropped; domains and their classes (the ``domains`` table) are kept. The same key gives
the same pseudonym in every export, so months and scopes join; another key, other ones.
:data:`COLUMN_RULES` says what happens to each column; a column it does not know stops the
export (a new column is never exported in the clear by default).
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from analytics.evaluate import EvaluationInputs, evaluate_month, roster_table
from analytics.policy import Policy
from analytics.queries import MAIL_LOGS, Workspace, mail_log_nights, month_nights
from analytics.scopes import members, scope_units, scoped
from contract.datasets import dataset_files
from contract.domains import DomainList, domain_of, public_domains
from contract.months import month_bounds, next_month, previous_month
from contract.people import Person
from contract.scopes import Scope
from contract.units import UnitTree

__all__ = [
    "COLUMN_RULES",
    "OUTSIDE",
    "TABLES",
    "ExportError",
    "ExportSummary",
    "Pseudonymiser",
    "export_scope",
    "months_between",
    "resolve_scope",
]

OUTSIDE = "outside-scope"  # the local part written for a roster person outside the scope
# The tables of the file, in the order they are written (names from this list only).
TABLES = (
    "readme",
    "units",
    "roster",
    "messages",
    "mailbox_status",
    "logins",
    "forwarding",
    "contacts",
    "mail_log_deliveries",
    "person_month",
    "unit_month",
    "violations",
    "domains",
)
# What a pseudonymised export does with each column: keep, drop, address (<hash>@domain),
# addresses (a list of them), id / text (a keyed hash). Clear exports keep every column,
# but the ``address`` ones of roster people outside the scope are written outside-scope@.
_ADDRESS = ("address", "addresses")
_BY_NAME: dict[str, str] = {
    **dict.fromkeys(
        (
            "mailbox",
            "email",
            "from_addr",
            "target",
            "address",
            "sasl_username",
            "sender",
            "recipient",
            "orig_recipient",
            "head_email",
            "counterpart",
        ),
        "address",
    ),
    **dict.fromkeys(("to_addrs", "cc_addrs", "personal_emails"), "addresses"),
    **dict.fromkeys(("employee_id", "head_employee_id"), "id"),
    **dict.fromkeys(
        (
            "message_id",
            "queue_id",
            "notice_of",
            "via_queue_id",
            "handed_to",
            "folder",
            "sent_folder",
            "remote_addr",
            "client",
        ),
        "text",
    ),
    **dict.fromkeys(("full_name", "head_name", "rule_name"), "drop"),
}


def _names(text: str) -> list[str]:
    """Column names written as words (the kept columns, grouped by table below)."""
    return text.split()


_KEPT = _names(
    # readme, domains
    "key value domain is_official is_public is_registration month night "
    # units, roster
    "unit_code unit_name parent_code kind depth is_unit_mailbox on_leave start_date "
    "mailbox_issued logins_measured forwarding_measured submissions_measured "
    # messages, mailbox_status
    "source role uidvalidity uid internal_date sent_date date_source size seen "
    "address_invalid folder_status messages unseen uidnext highestmodseq last_uid fetched "
    "full_reread read_activity folder_bytes unreadable quota_used_bytes quota_limit_bytes "
    # logins, forwarding, contacts
    "login_at protocol keeps_copy conditional where_found skipped "
    # mail_log_deliveries
    "log_date time direction sender_domain nrcpt complete removed recipient_domain status "
    "relay dsn status_time deferrals "
    # person_month
    "has_mailbox sent received read_nights active_days last_activity last_login "
    "nights_collected storage_share joined_mid_month usage_class unmeasured exemption "
    "msgs_official msgs_public msgs_other public_addresses sent_submitted "
    "sent_folder_logged submission_days "
    # unit_month
    "position rank_among_siblings siblings own_headcount own_rated own_regular "
    "own_share_regular headcount mailboxes rated regular occasional inactive no_mailbox "
    "not_collected share_regular share_regular_prev share_regular_change head_usage_class "
    "head_active_days "
    # violations
    "code confidence rule evidence_date seen_night evidence_source"
)
# person_month's sent_folder is a count (the Sent folder's messages), not a folder name
_OVERRIDES = {("person_month", "sent_folder"): "keep"}
COLUMN_RULES: dict[str, str] = {**dict.fromkeys(_KEPT, "keep"), **_BY_NAME}


class ExportError(Exception):
    """The export cannot be made as asked; the message says why (nothing is written)."""


def rule_of(table: str, column: str) -> str:
    """What a pseudonymised export does with ``table.column``.

    >>> rule_of("messages", "to_addrs"), rule_of("person_month", "sent_folder")
    ('addresses', 'keep')
    """
    rule = _OVERRIDES.get((table, column)) or COLUMN_RULES.get(column)
    if rule is None:
        raise ExportError(
            f"{table}.{column} has no export rule (analytics/export.py COLUMN_RULES): "
            "a column is never exported without one"
        )
    return rule


class Pseudonymiser:
    """Keyed hashes: HMAC-SHA256 under ``key`` of the lower-cased value, 16 hex digits.

    >>> p = Pseudonymiser(b"a key of at least sixteen bytes")
    >>> p.address("P01@LienChieu.DaNang.gov.vn")
    'ca8c49a90fac0b85@lienchieu.danang.gov.vn'
    """

    def __init__(self, key: bytes) -> None:
        self._key = key

    def _hash(self, kind: str, value: str) -> str:
        message = f"{kind}\0{value.strip().lower()}".encode()
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()[:16]

    def address(self, value: str) -> str:
        """``<hash>@<domain>``; a value that is not an address is hashed whole."""
        if "@" not in value:
            return self._hash("text", value) if value else value
        return f"{self._hash('address', value)}@{domain_of(value)}"

    def id(self, value: str) -> str:
        return self._hash("employee_id", value) if value else value

    def text(self, value: str) -> str:
        return self._hash("text", value) if value else value

    def key_id(self) -> str:
        """Names the key without revealing it: two exports with the same ``key_id`` were
        made with the same key, so their pseudonyms join."""
        return self._hash("key-id", "mailusage export")


@dataclass(frozen=True)
class ExportSummary:
    path: Path
    scope: str
    months: tuple[str, ...]
    people: int
    pseudonymised: bool
    tables: dict[str, int] = field(default_factory=dict)  # table -> rows


def months_between(first: str, last: str) -> list[str]:
    """``months_between("2026-11", "2027-01")`` -> ``['2026-11', '2026-12', '2027-01']``."""
    if last < first:
        raise ExportError(f"--to {last} is before --from {first}")
    out = [first]
    while out[-1] != last:
        out.append(next_month(out[-1]))
    return out


def resolve_scope(name: str, scopes: Iterable[Scope], tree: UnitTree) -> Scope:
    """``--scope``: ``all`` (the whole tree), a ``[[scopes]]`` name, or a unit code.

    >>> from contract.units import Unit
    >>> tree = UnitTree.of([Unit("PG", "UBND huyện Phú Giáo")])
    >>> resolve_scope("PG", [], tree).root, resolve_scope("all", [], tree).root
    ('PG', None)
    """
    if name == "all":
        return Scope("all")
    for scope in scopes:
        if scope.name == name:
            return scope
    if name in tree.units:
        return Scope(name, name)
    named = ", ".join(s.name for s in scopes) or "none configured"
    raise ExportError(
        f"--scope {name!r} is neither a [[scopes]] name ({named}) nor a unit_code of the "
        "tree; use `all` for the whole tree"
    )


def _map_strings(column: pa.ChunkedArray | pa.Array, fn: Callable[[str], str]) -> pa.Array:
    """``fn`` over a string column, once per distinct value (nulls stay null)."""
    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    encoded = pc.dictionary_encode(array)
    values = pa.array([fn(v) for v in encoded.dictionary.to_pylist()], pa.string())
    return pc.take(values, encoded.indices)


def _map_lists(column: pa.ChunkedArray | pa.Array, fn: Callable[[str], str]) -> pa.Array:
    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    values = _map_strings(array.values, fn)
    return pa.ListArray.from_arrays(array.offsets, values, mask=pc.is_null(array))


def _transform(
    name: str,
    table: pa.Table,
    outsiders: frozenset[str],
    pseudo: Pseudonymiser | None,
) -> pa.Table:
    """``table`` as the file holds it: outsiders' addresses masked; with ``pseudo``, every
    column by its rule (:func:`rule_of`)."""

    def address(value: str) -> str:
        if value.strip().lower() in outsiders:
            return f"{OUTSIDE}@{domain_of(value)}"
        if pseudo is None or value.startswith(f"{OUTSIDE}@"):
            return value
        return pseudo.address(value)

    columns, names = [], []
    for col in table.column_names:
        rule = rule_of(name, col)
        data = table[col]
        if rule == "address":
            data = _map_strings(data, address)
        elif rule == "addresses":
            data = _map_lists(data, address)
        elif pseudo is not None and rule == "drop":
            continue
        elif pseudo is not None and rule in ("id", "text"):
            data = _map_strings(data, pseudo.id if rule == "id" else pseudo.text)
        columns.append(data)
        names.append(col)
    return pa.Table.from_arrays(columns, names=names)


# The rows of each dataset about the scope's mailboxes ($emails), in the period
# [$start, $end): identifiers from this fixed table only, values bound.
_ROWS = {
    "messages": "list_contains($emails, mailbox) and sent_date >= $start and sent_date < $end",
    "mailbox_status": "list_contains($emails, mailbox)",  # the view reads the nights only
    "logins": "list_contains($emails, mailbox) and login_at >= $start and login_at < $end",
    "forwarding": "list_contains($emails, mailbox)",
    "contacts": "list_contains($emails, mailbox) and sent_date >= $start and sent_date < $end",
    MAIL_LOGS: (
        "(list_contains($emails, sasl_username) or list_contains($emails, recipient)) "
        "and coalesce(time, status_time) >= $start and coalesce(time, status_time) < $end"
    ),
}


def _dataset_rows(
    inputs: EvaluationInputs,
    people: Sequence[Person],
    months: Sequence[str],
    domains: Mapping[str, list[str]],
) -> dict[str, pa.Table]:
    first, last = months[0], months[-1]
    start = month_bounds(previous_month(first), inputs.timezone)[0]
    end = month_bounds(last, inputs.timezone)[1]
    logs = dataset_files(
        inputs.data_dir, MAIL_LOGS, mail_log_nights(first)[0], mail_log_nights(last)[1]
    )
    ws = Workspace.open(
        inputs.data_dir,
        roster_table(people, inputs.signals_of),
        official=domains["official"],
        public=domains["public"],
        registration=domains["registration"],
        nights=(month_nights(first)[0], month_nights(last)[1]),
        mail_logs=logs,
    )
    emails = sorted({p.email.lower() for p in people if p.email})
    out = {}
    for name, where in _ROWS.items():
        used = {"emails": emails, "start": start, "end": end}
        params = {k: v for k, v in used.items() if f"${k}" in where}
        out[name] = ws.con.sql(
            f"select * from {name} where {where}", params=params
        ).to_arrow_table()
    return out


def _evaluated(
    inputs: EvaluationInputs,
    tree: UnitTree,
    scope: Scope,
    policy: Policy,
    people: Sequence[Person],
    months: Sequence[str],
) -> dict[str, pa.Table]:
    """person_month, unit_month and violations of each month cut to the scope (as its
    bundle cuts them: analytics/scopes.py), a ``month`` column first."""
    units = scope_units(tree, scope)
    parts: dict[str, list[pa.Table]] = {"person_month": [], "unit_month": [], "violations": []}
    for month in months:
        mine = scoped(evaluate_month(replace(inputs, policy=policy), month), people, units)
        for name, tables in parts.items():
            table: pa.Table = getattr(mine, name)
            tables.append(table.add_column(0, "month", pa.array([month] * table.num_rows)))
    return {
        name: pa.concat_tables(tables, promote_options="default") for name, tables in parts.items()
    }


def _units_table(tree: UnitTree, units: Sequence[str]) -> pa.Table:
    return pa.table(
        {
            "unit_code": list(units),
            "unit_name": [tree.units[c].name for c in units],
            "parent_code": [tree.units[c].parent for c in units],
            "kind": [tree.units[c].kind for c in units],
            "depth": [tree.depth(c) for c in units],
            "head_email": [tree.units[c].head_email or None for c in units],
        },
        schema=pa.schema(
            [
                ("unit_code", pa.string()),
                ("unit_name", pa.string()),
                ("parent_code", pa.string()),
                ("kind", pa.string()),
                ("depth", pa.int64()),
                ("head_email", pa.string()),
            ]
        ),
    )


def _domains_table(tables: Mapping[str, pa.Table], lists: Mapping[str, list[str]]) -> pa.Table:
    """Every domain the file names (of its addresses, and the mail log's domain columns),
    with its classes under the one domain rule (contract/domains.py)."""
    found: set[str] = set()
    for name, table in tables.items():
        for col in table.column_names:
            rule = rule_of(name, col)
            values: list[str | None] = []
            if rule == "address":
                values = pc.unique(table[col]).to_pylist()
            elif rule == "addresses":
                values = pc.unique(pc.list_flatten(table[col])).to_pylist()
            elif col in ("sender_domain", "recipient_domain"):
                found.update(v for v in pc.unique(table[col]).to_pylist() if v)
            found.update(domain_of(v) for v in values if v and "@" in v)
    domains = pa.array(sorted(found), pa.string())
    return pa.table(
        {
            "domain": domains,
            "is_official": DomainList.of(lists["official"]).match_array(domains),
            "is_public": DomainList.of(lists["public"]).match_array(domains),
            "is_registration": DomainList.of(lists["registration"]).match_array(domains),
        }
    )


def export_scope(
    inputs: EvaluationInputs,
    scope: Scope,
    months: Sequence[str],
    out: Path,
    *,
    policy: Policy | None = None,
    key: bytes | None = None,
    agency: str = "",
) -> ExportSummary:
    """Write the scope's export to ``out`` (replaced whole, atomically: a reader never
    sees half a file). ``key``: pseudonymised under it. ``policy``: the scope's own (the
    evaluation's when None)."""
    if not months:
        raise ExportError("no month to export")
    tree = inputs.tree()
    units = scope_units(tree, scope)
    people = members(inputs.people, units)
    # every address the roster gives its people outside the scope (a member's wins)
    mine = {a.lower() for p in people for a in (p.email, *p.personal_emails) if a}
    roster = {a.lower() for p in inputs.people for a in (p.email, *p.personal_emails) if a}
    outsiders = frozenset(roster - mine)
    policy = policy or inputs.policy
    lists = {
        "official": list(inputs.official_domains),
        "public": public_domains(inputs.public_domains_extra),
        "registration": list(policy.registration_domains),
    }
    found: dict[str, pa.Table] = {
        "units": _units_table(tree, units),
        "roster": roster_table(people, inputs.signals_of),
        **_dataset_rows(inputs, people, months, lists),
        **_evaluated(inputs, tree, scope, policy, people, months),
    }
    # outsiders masked in both forms; the domains are those of the masked addresses
    masked = {n: _transform(n, t, outsiders, None) for n, t in found.items()}
    pseudo = Pseudonymiser(key) if key is not None else None
    tables = (
        masked
        if pseudo is None
        else {n: _transform(n, t, outsiders, pseudo) for n, t in masked.items()}
    )
    tables["domains"] = _domains_table(masked, lists)
    counts = {n: t.num_rows for n, t in tables.items()}
    first, last = months[0], months[-1]
    nights = (month_nights(first)[0], month_nights(last)[1])
    period = (previous_month(first), last)
    about = {
        "what": "mailusage analyst export: one scope's people only (docs/data-dictionary.md, "
        "'Analyst exports', lists every table and column)",
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "agency": agency,
        "scope": scope.name,
        "scope_root": scope.root or "(the whole tree)",
        "units": str(len(units)),
        "people": str(len(people)),
        "months": ", ".join(months),
        "nights": f"{nights[0]} .. {nights[1]} (mailbox_status, forwarding)",
        "period": f"{period[0]} .. {period[1]} (messages, contacts, logins, mail log, by date)",
        "policy": policy.name,
        "pseudonymised": "yes" if pseudo else "no",
        "key_id": pseudo.key_id() if pseudo else "",
        "outside_scope": f"{OUTSIDE}@<domain>: the address of a roster person outside the scope",
        **{f"rows.{n}": str(c) for n, c in counts.items()},
    }
    tables["readme"] = pa.table({"key": list(about), "value": list(about.values())})
    _write(out, {n: tables[n] for n in TABLES})
    return ExportSummary(out, scope.name, tuple(months), len(people), pseudo is not None, counts)


def _write(out: Path, tables: Mapping[str, pa.Table]) -> None:
    """One DuckDB file, built beside ``out`` and renamed over it once checkpointed."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    try:
        con = duckdb.connect(str(tmp))
        try:
            for name, table in tables.items():
                con.register("incoming", table)
                con.execute(f"create table {name} as select * from incoming")  # names: TABLES
                con.unregister("incoming")
            con.execute("checkpoint")
        finally:
            con.close()
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
        Path(f"{tmp}.wal").unlink(missing_ok=True)
