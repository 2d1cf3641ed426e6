"""Graph call budget: HTTP requests per mailbox and per night, with a same-run baseline.

    .venv/bin/python benchmarks/graph_budget.py [--mailboxes 300] [--messages 60]

Against the local Graph tenant (devkit/graph.py): ``--mailboxes`` mailboxes of
``--messages`` messages each (Inbox, Sent Items and one child folder of the Inbox), and
three nights: the first, a quiet one, and one with 3 new messages and 2 read-state changes
per mailbox. Measured for the collector (a night of every mailbox through the collector's
one path, tests/collect_one.py): HTTP requests, batch parts (what Graph throttles on) and
seconds per mailbox.

Baseline, in the same run: the obvious client without delta or $batch — list the folders,
then GET every folder's messages (``$select`` of the same fields, pages of 500) every night,
and GET the inbox rules: what "read it all again" costs. The endpoint is a Python test
server, so seconds say little about Exchange Online; the request counts are what a tenant's
throttling budget sees (10,000 requests per 10 minutes per app and mailbox).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from connectors.graph import GraphSettings, GraphSource
from devkit.graph import CLIENT_ID, TENANT, GMessage, GraphWorld, graph_endpoint
from pipelines.collect import run_night
from pipelines.storage import DataDir
from tests.collect_one import one_night

T0 = datetime(2026, 11, 1, 8, tzinfo=UTC)
SELECT = "receivedDateTime,sentDateTime,from,toRecipients,ccRecipients,isRead,internetMessageId"


def seed(world: GraphWorld, mailboxes: list[str], per: int, start: datetime) -> None:
    for k, m in enumerate(mailboxes):
        for i in range(per):
            when = start + timedelta(minutes=i, seconds=k % 60)
            folder = ("Inbox", "Sent Items", "Dự án")[i % 3]
            parent = f"{m}:inbox" if folder == "Dự án" else None
            world.deliver(
                m,
                folder,
                GMessage("", when, when, when, "vp@bench.gov.vn", [m], message_id=f"<{k}.{i}@b>"),
                parent=parent,
            )


def naive_night(base: str, ca: str, token: str, mailboxes: list[str]) -> None:
    """Every folder's messages read again, one request per page, no batch."""
    s = requests.Session()
    h = {"Authorization": f"Bearer {token}", "Prefer": "odata.maxpagesize=500"}
    for m in mailboxes:
        folders = []
        url: str | None = f"{base}/v1.0/users/{m}/mailFolders?$top=250"
        while url:
            body = s.get(url, headers=h, verify=ca).json()
            folders += body["value"]
            url = body.get("@odata.nextLink")
        for f in list(folders):
            if f.get("childFolderCount"):
                kids = s.get(
                    f"{base}/v1.0/users/{m}/mailFolders/{f['id']}/childFolders",
                    headers=h,
                    verify=ca,
                ).json()
                folders += kids["value"]
        for f in folders:  # the delta endpoint's initial round doubles as a paged list here
            url = f"{base}/v1.0/users/{m}/mailFolders/{f['id']}/messages/delta?$select={SELECT}"
            while url:
                body = s.get(url, headers=h, verify=ca).json()
                url = body.get("@odata.nextLink")
        s.get(f"{base}/v1.0/users/{m}/mailFolders/inbox/messageRules", headers=h, verify=ca)


def measure(world: GraphWorld, run: Callable[[], None]) -> tuple[float, int, int]:
    calls, parts = len(world.calls), len(world.parts)
    started = time.perf_counter()
    run()
    return time.perf_counter() - started, len(world.calls) - calls, len(world.parts) - parts


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mailboxes", type=int, default=300)
    ap.add_argument("--messages", type=int, default=60)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp, graph_endpoint(Path(tmp)) as (base, world, ca):
        boxes = [f"u{i:05d}@bench.gov.vn" for i in range(args.mailboxes)]
        seed(world, boxes, args.messages, T0)
        settings = GraphSettings(
            tenant_id=TENANT,
            client_id=CLIENT_ID,
            authority=base,
            graph_url=f"{base}/v1.0",
            ca_file=str(ca),
        )
        src = GraphSource(settings, secret=lambda: world.secret, name="bench")
        data = DataDir(Path(tmp) / "data")
        token = src.tenant.token()

        def night(n: str) -> Callable[[], None]:
            def go() -> None:
                summary = run_night(one_night(src, n, data, src), [(m, src.name) for m in boxes])
                assert all(o.status == "ok" for o in summary.outcomes)

            return go

        rows = []
        for label, n, change in (
            ("first night", "2026-11-20", None),
            ("quiet night", "2026-11-21", None),
            ("3 new + 2 read per mailbox", "2026-11-22", True),
        ):
            if change:
                seed(world, boxes, 3, T0 + timedelta(days=1))
                for m in boxes:
                    world.mark_read(m, "Inbox", 0)
                    world.mark_read(m, "Inbox", 1)
            secs, calls, parts = measure(world, night(n))
            nsecs, ncalls, _ = measure(world, lambda: naive_night(base, str(ca), token, boxes))
            rows.append((label, calls, parts, secs, ncalls, nsecs))
        k = len(boxes)
        print(f"{k} mailboxes x {args.messages} messages, 4 folders each (1 a child folder)")
        print(
            "| night | requests / mailbox | batch parts / mailbox | ms / mailbox | "
            "naive requests / mailbox | naive ms / mailbox |"
        )
        print("|---|---|---|---|---|---|")
        for label, calls, parts, secs, ncalls, nsecs in rows:
            print(
                f"| {label} | {calls / k:.2f} | {parts / k:.2f} | {1000 * secs / k:.1f} | "
                f"{ncalls / k:.2f} | {1000 * nsecs / k:.1f} |"
            )


if __name__ == "__main__":
    main()
