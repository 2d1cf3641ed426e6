"""EWS collection throughput against the local EWS endpoint, with a same-run baseline.

    .venv/bin/python benchmarks/ews_throughput.py [--messages 20000] [--repeat 3]

Baseline: the same kind of SOAP requests the collector needs (item pages, GetItem batches;
the baseline pages with FindItem, unrestricted, the collector with SyncFolderItems),
written by hand, posted with one requests.Session and parsed with lxml only as far as the
item ids — what any EWS client must pay on this endpoint. Measured: the connector
(exchangelib, unmodified) producing finished Message records. The endpoint is the Python
test endpoint (devkit/ews.py), so absolute numbers say little about a real Exchange
server; the ratio says what exchangelib and our record building cost on top of the protocol.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import requests
from lxml import etree

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from connectors.ews import EwsSettings, EwsSource
from devkit.ews import SOAP, EwsEndpoint, Item, M, T

SVC, PASSWORD, MAILBOX = "svc@bench.gov.vn", "bench", "an.nv@bench.gov.vn"
NOW = datetime(2026, 11, 23, tzinfo=UTC)

ENVELOPE = (
    f'<s:Envelope xmlns:s="{SOAP}" xmlns:t="{T}" xmlns:m="{M}"><s:Header>'
    '<t:RequestServerVersion Version="Exchange2016"/><t:ExchangeImpersonation><t:ConnectingSID>'
    f"<t:PrimarySmtpAddress>{MAILBOX}</t:PrimarySmtpAddress></t:ConnectingSID>"
    "</t:ExchangeImpersonation></s:Header><s:Body>{body}</s:Body></s:Envelope>"
)
FIND = (
    '<m:FindItem Traversal="Shallow"><m:ItemShape><t:BaseShape>IdOnly</t:BaseShape>'
    "<t:AdditionalProperties>"
    + "".join(
        f'<t:FieldURI FieldURI="{u}"/>'
        for u in (
            "item:DateTimeReceived",
            "item:DateTimeSent",
            "item:ParentFolderId",
            "item:Size",
            "message:IsRead",
        )
    )
    + "</t:AdditionalProperties></m:ItemShape>"
    '<m:IndexedPageItemView MaxEntriesReturned="{size}" Offset="{offset}" BasePoint="Beginning"/>'
    '<m:ParentFolderIds><t:DistinguishedFolderId Id="{folder}"/></m:ParentFolderIds></m:FindItem>'
)
GET = (
    "<m:GetItem><m:ItemShape><t:BaseShape>IdOnly</t:BaseShape><t:AdditionalProperties>"
    + "".join(
        f'<t:FieldURI FieldURI="{u}"/>'
        for u in (
            "message:From",
            "message:ToRecipients",
            "message:CcRecipients",
            "message:InternetMessageId",
        )
    )
    + "</t:AdditionalProperties></m:ItemShape><m:ItemIds>{ids}</m:ItemIds></m:GetItem>"
)


def seed(ep: EwsEndpoint, n: int) -> None:
    rng = random.Random(7)
    mbx = ep.mailbox(MAILBOX)
    for k in range(n):
        t = NOW - timedelta(seconds=rng.randrange(1_000, 60 * 86_400))
        folder = "sentitems" if k % 5 == 0 else "inbox"
        mbx.add(
            folder,
            Item(
                t,
                t,
                rng.randrange(2_000, 90_000),
                k % 3 > 0,
                "x@gmail.com",
                [MAILBOX],
                ["y@bench.gov.vn"],
                f"<{k}@bench>",
            ),
        )


def raw(ep: EwsEndpoint, page: int, batch: int) -> int:
    """The protocol's floor: the same calls, by hand; returns the items completed."""
    session = requests.Session()
    session.auth = (SVC, PASSWORD)
    headers = {"Content-Type": "text/xml; charset=utf-8"}
    done = 0
    for folder in ("inbox", "sentitems"):
        offset = 0
        while True:
            body = ENVELOPE.format(body=FIND.format(size=page, offset=offset, folder=folder))
            root = etree.fromstring(session.post(ep.url, data=body, headers=headers).content)
            ids = root.xpath("//t:ItemId/@Id", namespaces={"t": T})
            for i in range(0, len(ids), batch):
                chunk = "".join(f'<t:ItemId Id="{x}"/>' for x in ids[i : i + batch])
                reply = session.post(
                    ep.url, data=ENVELOPE.format(body=GET.format(ids=chunk)), headers=headers
                )
                done += len(
                    etree.fromstring(reply.content).xpath("//t:Message", namespaces={"t": T})
                )
            root_folder = root.find(f".//{{{M}}}RootFolder")
            offset += len(ids)
            if root_folder is None or root_folder.get("IncludesLastItemInRange") == "true":
                break
    return done


def collector(ep: EwsEndpoint, page: int, batch: int) -> int:
    source = EwsSource(
        EwsSettings(
            endpoint=ep.url,
            username=SVC,
            auth="basic",
            page_size=page,
            get_item_batch=batch,
            settle_seconds=0,
        ),
        password_for=lambda _m: PASSWORD,
        clock=lambda: NOW.timestamp(),
    )
    with source.open(MAILBOX) as session:
        session.resume({})
        folders = session.folders()
        return sum(len(b) for b in session.fetch([(f, 1, f.uidnext - 1) for f in folders]))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=20_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--page", type=int, default=1000)
    ap.add_argument("--batch", type=int, default=100)
    args = ap.parse_args()
    # Schema validation of every message is the tests' job, not a cost to measure here.
    ep = EwsEndpoint({SVC: PASSWORD}, impersonators={SVC: "*"}, validate=False)
    seed(ep, args.messages)
    rates: dict[str, list[float]] = {"raw": [], "collector": []}
    with ep.running():
        for _ in range(args.repeat):
            for name, fn in (("raw", raw), ("collector", collector)):
                start = time.perf_counter()
                n = fn(ep, args.page, args.batch)
                rates[name].append(n / (time.perf_counter() - start))
                assert n == args.messages, (name, n)
    raw_rate = statistics.median(rates["raw"])
    col_rate = statistics.median(rates["collector"])
    print(
        f"{args.messages} messages, page {args.page}, GetItem batch {args.batch}, "
        f"{args.repeat} interleaved runs"
    )
    print(f"raw SOAP + lxml (baseline)  {raw_rate:10,.0f} msg/s")
    print(f"collector (exchangelib)     {col_rate:10,.0f} msg/s   ratio {col_rate / raw_rate:.2f}")
    print(
        "pairs:",
        [f"{r:,.0f}/{c:,.0f}" for r, c in zip(rates["raw"], rates["collector"], strict=True)],
    )


if __name__ == "__main__":
    main()
