"""Collector throughput against the protocol limit, measured in the same run; peak memory.

    .venv/bin/python benchmarks/collect_throughput.py [--messages 50000] [--big 200000]

1. Seeds one mailbox of N messages (Maildir files; Dovecot indexes it on a warm-up read).
2. Baseline: a raw-socket reader sends the same UID FETCH and reads until the tagged OK,
   parsing nothing — what the server and the wire allow.
3. The collector: connectors.imap messages() over the same transport, every field parsed.
4. For reference: imapclient's own fetch() of the same items.
5. Peak RSS of a child process running a full one-mailbox night (tests/collect_one.py: the
   collector's one path, Parquet and commit included) at N
   and at the big size: flat memory means the second is not much above the first.
Prints a Markdown table to paste into benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import platform
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from connectors.imap import ImapSettings, ImapSource  # noqa: E402
from connectors.imap_helpers import FETCH_ITEMS  # noqa: E402
from devkit.dovecot import MASTER_USER, LocalDovecot  # noqa: E402
from devkit.synth import make_message  # noqa: E402

PASSWORD = "bench-master"
PEERS = [f"peer{i}@danang.gov.vn" for i in range(40)] + [f"p{i}@gmail.com" for i in range(10)]


def seed(server: LocalDovecot, mailbox: str, n: int) -> None:
    rng = random.Random(n)
    server.add_user(mailbox, "pw")
    base = time.time() - n * 60
    for i in range(n):
        when = base + i * 60
        raw = make_message(
            rng.choice(PEERS),
            [mailbox, *rng.sample(PEERS, rng.randint(0, 2))],
            date=when,
            message_id=f"<{i}.bench@danang.gov.vn>",
            from_name="Nguyễn Văn An" if i % 3 else None,
        )
        server.deliver(mailbox, "INBOX", raw, when=when, seen=i % 2 == 0)
    server.finish_seeding(mailbox)


def source(server: LocalDovecot) -> ImapSource:
    return ImapSource(
        ImapSettings(
            host="127.0.0.1", port=server.imap_port, security="plain", master_user=MASTER_USER
        ),
        password_for=lambda _m: PASSWORD,
    )


def raw_reader(server: LocalDovecot, mailbox: str, n: int) -> float:
    """Messages/s of a bare socket: login, EXAMINE, UID FETCH, read to the tagged OK."""
    with socket.create_connection(("127.0.0.1", server.imap_port)) as sock:
        f = sock.makefile("rb")
        f.readline()

        def cmd(line: bytes, tag: bytes) -> None:
            sock.sendall(line)
            while not f.readline().startswith(tag + b" "):
                pass

        cmd(f"a LOGIN {mailbox}*{MASTER_USER} {PASSWORD}\r\n".encode(), b"a")
        cmd(b"b EXAMINE INBOX\r\n", b"b")
        start = time.perf_counter()
        sock.sendall(b"c UID FETCH 1:%d %s\r\n" % (n, FETCH_ITEMS.encode()))
        tail = b""
        while True:
            chunk = f.read1(256 * 1024)
            if not chunk:
                raise ConnectionError("closed")
            tail = (tail + chunk)[-256:]
            if b"\r\nc OK" in tail:
                break
        elapsed = time.perf_counter() - start
        sock.sendall(b"d LOGOUT\r\n")
    return n / elapsed


def collector(server: LocalDovecot, mailbox: str) -> float:
    with source(server).open(mailbox) as session:
        folder = next(f for f in session.folders() if f.role == "inbox")
        start = time.perf_counter()
        count = sum(len(b) for b in session.messages(folder, 1, folder.uidnext - 1))
        elapsed = time.perf_counter() - start
    return count / elapsed


def imapclient_fetch(server: LocalDovecot, mailbox: str, n: int) -> float:
    from imapclient import IMAPClient

    client = IMAPClient("127.0.0.1", port=server.imap_port, ssl=False)
    client.login(f"{mailbox}*{MASTER_USER}", PASSWORD)
    client.select_folder("INBOX", readonly=True)
    items = [
        "UID",
        "INTERNALDATE",
        "RFC822.SIZE",
        "FLAGS",
        "BODY.PEEK[HEADER.FIELDS (FROM TO CC DATE MESSAGE-ID)]",
    ]
    start = time.perf_counter()
    got = 0
    for lo in range(1, n + 1, 5000):  # imapclient 4.1 cannot take "1:*"
        got += len(client.fetch(range(lo, min(lo + 5000, n + 1)), items))
    elapsed = time.perf_counter() - start
    client.logout()
    return got / elapsed


CHILD = """
import resource, sys, time
sys.path.insert(0, {root!r})
from pathlib import Path
from connectors.imap import ImapSettings, ImapSource
from tests.collect_one import collect_one
from pipelines.storage import DataDir
src = ImapSource(ImapSettings(host="127.0.0.1", port={port}, security="plain",
                 master_user={master!r}), password_for=lambda _m: {pw!r})
t = time.perf_counter()
out = collect_one(src, {mailbox!r}, "2026-11-23", DataDir(Path({data!r})))
dt = time.perf_counter() - t
print(out.messages_new, dt, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def full_collection(server: LocalDovecot, mailbox: str, data: Path) -> tuple[int, float, int]:
    """(messages, seconds, peak RSS KiB) of a one-mailbox night in a fresh process."""
    code = CHILD.format(
        root=str(ROOT),
        port=server.imap_port,
        master=MASTER_USER,
        pw=PASSWORD,
        mailbox=mailbox,
        data=str(data),
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    n, secs, rss = out.stdout.split()
    return int(n), float(secs), int(rss)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=50_000)
    parser.add_argument("--big", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory() as tmp,
        LocalDovecot.start(Path(tmp) / "dovecot", master_password=PASSWORD) as server,
    ):
        mailbox = "bench@danang.gov.vn"
        t = time.perf_counter()
        seed(server, mailbox, args.messages)
        print(f"seeded {args.messages} messages in {time.perf_counter() - t:.1f} s", flush=True)
        raw_reader(server, mailbox, args.messages)  # warm: Dovecot builds its cache once
        raws, ours = [], []
        for _ in range(args.repeat):  # interleaved, so both see the same machine state
            raws.append(raw_reader(server, mailbox, args.messages))
            ours.append(collector(server, mailbox))
        theirs = imapclient_fetch(server, mailbox, args.messages)
        raw, col = statistics.median(raws), statistics.median(ours)
        small = full_collection(server, mailbox, Path(tmp) / "data-small")

        big_mailbox = "big@danang.gov.vn"
        seed(server, big_mailbox, args.big)
        raw_reader(server, big_mailbox, args.big)
        big = full_collection(server, big_mailbox, Path(tmp) / "data-big")

    print()
    print(
        f"machine: {platform.node()} {platform.machine()}, Python {platform.python_version()},"
        f" {len(__import__('os').sched_getaffinity(0))} cores"
    )
    print("| reader | messages/s | ratio to raw |")
    print("|---|---|---|")
    print(f"| raw socket, no parsing (baseline) | {raw:,.0f} | 1.00 |")
    print(f"| mailusage collector (all fields parsed) | {col:,.0f} | {col / raw:.2f} |")
    print(f"| imapclient fetch() (reference) | {theirs:,.0f} | {theirs / raw:.2f} |")
    print()
    print("| one-mailbox night (IMAP + Parquet) | messages | seconds | messages/s | peak RSS |")
    print("|---|---|---|---|---|")
    for label, (n, secs, rss) in (("small", small), ("big", big)):
        print(f"| {label} | {n:,} | {secs:.1f} | {n / secs:,.0f} | {rss / 1024:.0f} MiB |")
    pairs = [o / r for o, r in zip(ours, raws, strict=True)]
    print(f"\nraw runs: {[round(x) for x in raws]}; collector runs: {[round(x) for x in ours]}")
    print(f"per-pair ratios: {[round(p, 2) for p in pairs]}, median {statistics.median(pairs):.2f}")


if __name__ == "__main__":
    main()
