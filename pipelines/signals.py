"""Server-side signals collected with the nightly run: the `logins` dataset.

Each `[[logins]]` source writes `logins/night=N/<source>.parquet`. A log source keeps its
read position in `_state/logs/<source>.json` ({night, before, after}), committed after the
file is written, so re-running a night re-reads the same lines and a killed run loses none.
"""

from __future__ import annotations

import json
from contextlib import closing
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pyarrow as pa

from connectors.base import SourceError
from connectors.graph import GraphSource
from connectors.logins import (
    LogCursor,
    Login,
    LoginSourceError,
    read_dovecot_dict,
    read_exchange_export,
    read_log,
    read_zimbra_export,
)
from connectors.zimbra import read_audit_log
from contract.datasets import LOGINS
from contract.files import atomic_write
from pipelines.config import LoginSourceConfig
from pipelines.sources import OpenSource, build_source
from pipelines.storage import LOG_STATES, DataDir, NightConflict

LOG_KINDS = ("dovecot-log", "zimbra-audit")  # read on from a cursor, night by night


def _state_path(data: DataDir, name: str) -> Path:
    return data.root / LOG_STATES / f"{name}.json"


def _start_cursor(data: DataDir, name: str, night: str) -> LogCursor | None:
    path = _state_path(data, name)
    if not path.exists():
        return None
    state = json.loads(path.read_text())
    if night < state["night"]:
        raise NightConflict(
            f"night {state['night']} is already read from {name}"
            f" (if night {state['night']} was a mistake: mailusage forget-night {state['night']})"
        )
    if night == state["night"] and state.get("before_unknown"):  # restored by forget-night
        raise NightConflict(
            f"night {night} cannot be read again from {name}: forget-night kept the position "
            "it ended at, not the one it started from; collect a later night"
        )
    raw = state["before"] if night == state["night"] else state["after"]
    return LogCursor(**raw) if raw else None


def _commit(
    data: DataDir, name: str, night: str, before: LogCursor | None, after: LogCursor
) -> None:
    path = _state_path(data, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    # The night this one replaces, as forget-night would restore it (one night back).
    previous = None
    if path.exists():
        old = json.loads(path.read_text())
        if old["night"] < night:
            previous = {k: old.get(k) for k in ("night", "before", "before_unknown") if k in old}
        else:
            previous = old.get("previous")
    text = json.dumps(
        {
            "night": night,
            "before": asdict(before) if before else None,
            "after": asdict(after),
            "previous": previous,
        }
    )
    atomic_write(path, text.encode("utf-8"))


def read_source(
    src: LoginSourceConfig, cursor: LogCursor | None = None, graph: OpenSource | None = None
) -> tuple[list[Login], LogCursor | None]:
    """Every login a source gives now; for a log, those after ``cursor`` and the new cursor.
    ``graph``: for graph-signin, the night's open Graph source (its token); without it,
    one is opened for this read and closed after."""
    tz = ZoneInfo(src.timezone)
    if src.kind == "graph-signin":
        assert src.graph is not None
        if graph is not None:
            return read_graph_sign_ins(graph.connector, src.name), None  # type: ignore[arg-type]
        with closing(build_source(src.graph)) as opened:
            return read_graph_sign_ins(opened.connector, src.name), None  # type: ignore[arg-type]
    if src.kind == "dovecot-dict":
        return read_dovecot_dict(src.doveadm, src.dict_uri, src.name), None
    if src.path is None:
        raise LoginSourceError(f"{src.name}: no path configured")
    if src.kind == "dovecot-log":
        return read_log(src.path, cursor, tz=tz, source=src.name, ignore_remote=src.ignore_remote)
    if src.kind == "zimbra-audit":
        return read_audit_log(
            src.path, cursor, tz=tz, source=src.name,
            ignore_accounts=src.ignore_accounts, ignore_remote=src.ignore_remote,
        )  # fmt: skip
    if src.kind == "exchange-csv":
        return read_exchange_export(src.path, tz=tz, source=src.name, day_first=src.day_first), None
    return read_zimbra_export(src.path, source=src.name), None


def read_graph_sign_ins(graph: GraphSource, name: str) -> list[Login]:
    """Each user's last successful sign-in (Entra ID signInActivity)."""
    try:
        return [
            Login(who, datetime.fromtimestamp(when, UTC), kind, None, name)
            for who, kind, when in graph.sign_ins()
        ]
    except SourceError as exc:
        hint = ""
        if "NonPremium" in exc.reason:
            hint = " (signInActivity needs an Entra ID P1 or P2 licence in the tenant)"
        elif "Authorization_RequestDenied" in exc.reason or "AccessDenied" in exc.reason:
            hint = " (the app needs AuditLog.Read.All and User.Read.All, admin-consented)"
        raise LoginSourceError(f"{name}: {exc.reason}{hint}") from exc


def collect_logins(
    src: LoginSourceConfig, night: str, data: DataDir, graph: OpenSource | None = None
) -> int:
    """Read one login source for one night and write its rows; returns how many
    (``graph``: the night's open Graph source, for graph-signin)."""
    before = _start_cursor(data, src.name, night) if src.kind in LOG_KINDS else None
    logins, after = read_source(src, before, graph)
    rows = sorted(
        {(x.mailbox, x.login_at, x.protocol, x.remote_addr, x.source) for x in logins},
        key=lambda r: (r[0], r[1], r[2] or "", r[3] or ""),
    )
    table = pa.Table.from_pylist(
        [dict(zip(LOGINS.names, r, strict=True)) for r in rows], schema=LOGINS
    )
    data.write_table("logins", night, src.name, table)
    if after is not None:
        _commit(data, src.name, night, before, after)
    return int(table.num_rows)
