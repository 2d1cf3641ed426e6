"""How fast connectors.postfix_log reads a month of Postfix logs, and in how much memory.

    python benchmarks/postfix_parse.py [--users 10000] [--days 30] [--work DIR] [--chunk-mb 8]
                                       [--reuse] [--nightly]

A synthetic month for an agency of ``--users`` mailboxes, one file per day as logrotate
leaves them (``mail.log-2026-11-01`` …), in the exact line forms the real Postfix of
tests/connectors/test_postfix_live.py writes: authenticated submissions (To/Cc plus Bcc,
official recipients by LMTP, public ones by SMTP; some deferred and sent ten minutes later,
some bounced with a non-delivery notice), mail from outside, connect/disconnect lines and
Dovecot's lines in the same file, all interleaved by time. Weekdays carry the volume.

Then, in a fresh process (so its peak RSS is the reader's alone), each day's file is read
as a night would: the state loaded from JSON, the file read in chunks with ``read_chunk``
from the offset where the last chunk stopped, the records turned into dataset rows per file,
the state saved as JSON. The parsed totals are checked against the generator's own count.
With ``--nightly``, another fresh process reads the month as the collector's nights do
(pipelines.mail_logs: the log rotated each day, read on from the cursor in the store through
the one log reader, each night's Parquet file written and committed), and the totals are
read back from those files. Prints Markdown table rows for benchmarks/README.md.
"""

# ruff: noqa: E501  (the log lines are written out whole, as Postfix writes them)
from __future__ import annotations

import argparse
import json
import random
import resource
import subprocess
import sys
import time
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TZ = ZoneInfo("Asia/Ho_Chi_Minh")
DOMAIN = "demo.gov.vn"
PUBLIC = ["gmail.com", "yahoo.com", "outlook.com", "yahoo.com.vn"]
OUTSIDE = ["facebookmail.com", "vietcombank.com.vn", "gmail.com", "partner.gov.vn", "zalo.me"]
MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]


def stamp(t: datetime) -> str:
    return f"{MONTHS[t.month - 1]} {t.day:2d} {t:%H:%M:%S}"


class Month:
    """Generates the days' lines and counts what it wrote (the truth the parse is checked on)."""

    def __init__(self, users: int, first: date, days: int, seed: int = 25) -> None:
        self.rng = random.Random(seed)
        self.users = [f"user{i:05d}@{DOMAIN}" for i in range(users)]
        self.first, self.days = first, days
        self.qid = 0x1000000000
        self.pid = 1000
        self.carry: dict[date, list[tuple[float, int, str]]] = {}
        self.seq = 0
        self.truth = dict.fromkeys(
            ["out", "in", "notice", "sent", "bounced", "deferred_then_sent", "bcc", "lines"], 0
        )

    def _qid(self) -> str:
        self.qid += 1
        return f"{self.qid:010X}"

    def _put(self, day_lines, t: datetime, prog: str, text: str) -> None:
        self.seq += 1
        line = f"{stamp(t)} mail {prog}[{self.pid + self.seq % 900}]: {text}\n"
        target = t.date()
        if target == self._today:
            day_lines.append((t.timestamp(), self.seq, line))
        else:
            self.carry.setdefault(target, []).append((t.timestamp(), self.seq, line))

    def day(self, d: date) -> list[str]:
        self._today = d
        rng, put = self.rng, self._put
        out: list[tuple[float, int, str]] = self.carry.pop(d, [])
        weekday = d.weekday() < 5
        start = datetime(d.year, d.month, d.day, 7, 30, tzinfo=TZ)
        span = 10 * 3600 if weekday else 4 * 3600
        for user in self.users:
            n_out = rng.choices([0, 1, 2], [0.35, 0.5, 0.15])[0] if weekday else rng.random() < 0.05
            n_in = rng.choices([0, 1, 2], [0.3, 0.4, 0.3])[0] if weekday else rng.random() < 0.15
            for _ in range(int(n_out)):
                self._outbound(out, user, start + timedelta(seconds=rng.randrange(span)))
            for _ in range(int(n_in)):
                self._inbound(out, user, start + timedelta(seconds=rng.randrange(span)))
            if rng.random() < 0.5:
                t = start + timedelta(seconds=rng.randrange(span))
                put(
                    out,
                    t,
                    "dovecot",
                    f"imap-login: Login: user=<{user}>, method=PLAIN, rip=10.1.{rng.randrange(256)}.{rng.randrange(256)}, lip=10.0.0.1, mpid=1, TLS",
                )
        out.sort()
        self.truth["lines"] += len(out)
        return [line for _, _, line in out]

    def _outbound(self, out, user: str, t: datetime) -> None:
        rng, put, q = self.rng, self._put, self._qid()
        rcpts = []
        for _ in range(rng.choice([1, 1, 1, 2, 3])):
            if rng.random() < 0.7:
                rcpts.append(rng.choice(self.users))
            else:
                rcpts.append(f"p{rng.randrange(100000)}@{rng.choice(PUBLIC)}")
        if rng.random() < 0.1:  # a Bcc: only the envelope has it
            rcpts.append(rng.choice(self.users))
            self.truth["bcc"] += 1
        rcpts = list(dict.fromkeys(rcpts))
        ip = f"10.1.{rng.randrange(256)}.{rng.randrange(256)}"
        size = rng.randrange(2_000, 2_000_000)
        put(out, t, "postfix/submission/smtpd", f"connect from unknown[{ip}]")
        put(
            out,
            t,
            "postfix/submission/smtpd",
            f"{q}: client=unknown[{ip}], sasl_method=PLAIN, sasl_username={user}",
        )
        put(out, t, "postfix/cleanup", f"{q}: message-id=<{q}.{rng.randrange(10**9)}@{DOMAIN}>")
        put(
            out,
            t,
            "postfix/qmgr",
            f"{q}: from=<{user}>, size={size}, nrcpt={len(rcpts)} (queue active)",
        )
        put(
            out,
            t + timedelta(seconds=1),
            "postfix/submission/smtpd",
            f"disconnect from unknown[{ip}] ehlo=1 auth=1 mail=1 rcpt={len(rcpts)} data=1 quit=1 commands={5 + len(rcpts)}",
        )
        self.truth["out"] += 1
        end = t + timedelta(seconds=1)
        bounced = False
        for r in rcpts:
            dt = t + timedelta(seconds=1)
            if r.endswith(DOMAIN):
                put(
                    out,
                    dt,
                    "postfix/lmtp",
                    f"{q}: to=<{r}>, relay=mail.{DOMAIN}[private/dovecot-lmtp], delay=0.12, delays=0.05/0.01/0.01/0.05, dsn=2.0.0, status=sent (250 2.0.0 <{r}> x7ZlLtYtZGc Saved)",
                )
                self.truth["sent"] += 1
                continue
            mx = f"mx.{r.split('@')[1]}[203.0.113.{rng.randrange(1, 255)}]:25"
            roll = rng.random()
            if roll < 0.01:
                put(
                    out,
                    dt,
                    "postfix/smtp",
                    f"{q}: to=<{r}>, relay={mx}, delay=0.9, delays=0.01/0/0.4/0.5, dsn=5.1.1, status=bounced (host {mx} said: 550 5.1.1 The email account that you tried to reach does not exist (in reply to RCPT TO command))",
                )
                self.truth["bounced"] += 1
                bounced = True
            elif roll < 0.03:
                put(
                    out,
                    dt,
                    "postfix/smtp",
                    f"{q}: to=<{r}>, relay={mx}, delay=0.9, delays=0.01/0/0.4/0.5, dsn=4.7.0, status=deferred (host {mx} said: 421 4.7.0 Try again later (in reply to MAIL FROM command))",
                )
                later = t + timedelta(seconds=600)
                put(
                    out,
                    later,
                    "postfix/qmgr",
                    f"{q}: from=<{user}>, size={size}, nrcpt={len(rcpts)} (queue active)",
                )
                put(
                    out,
                    later,
                    "postfix/smtp",
                    f"{q}: to=<{r}>, relay={mx}, delay=600, delays=599/0/0.5/0.5, dsn=2.0.0, status=sent (250 2.0.0 OK)",
                )
                self.truth["sent"] += 1
                self.truth["deferred_then_sent"] += 1
                end = max(end, later)
            else:
                put(
                    out,
                    dt,
                    "postfix/smtp",
                    f"{q}: to=<{r}>, relay={mx}, delay=0.9, delays=0.01/0/0.4/0.5, dsn=2.0.0, status=sent (250 2.0.0 OK 1733515982 queued as {rng.randrange(10**8):X})",
                )
                self.truth["sent"] += 1
        if bounced:
            n = self._qid()
            dt = t + timedelta(seconds=1)
            put(
                out, dt, "postfix/cleanup", f"{n}: message-id=<{dt:%Y%m%d%H%M%S}.{n}@mail.{DOMAIN}>"
            )
            put(out, dt, "postfix/qmgr", f"{n}: from=<>, size=4500, nrcpt=1 (queue active)")
            put(out, dt, "postfix/bounce", f"{q}: sender non-delivery notification: {n}")
            put(
                out,
                dt,
                "postfix/lmtp",
                f"{n}: to=<{user}>, relay=mail.{DOMAIN}[private/dovecot-lmtp], delay=0.01, delays=0/0/0/0, dsn=2.0.0, status=sent (250 2.0.0 <{user}> y8ZlLtYtZGc Saved)",
            )
            put(out, dt, "postfix/qmgr", f"{n}: removed")
            self.truth["notice"] += 1
            self.truth["sent"] += 1
        put(out, end + timedelta(seconds=1), "postfix/qmgr", f"{q}: removed")

    def _inbound(self, out, user: str, t: datetime) -> None:
        rng, put, q = self.rng, self._put, self._qid()
        dom = rng.choice(OUTSIDE)
        host = f"mail-{rng.randrange(1000)}.{dom}[198.51.100.{rng.randrange(1, 255)}]"
        put(out, t, "postfix/smtpd", f"connect from {host}")
        put(out, t, "postfix/smtpd", f"{q}: client={host}")
        put(out, t, "postfix/cleanup", f"{q}: message-id=<{rng.randrange(10**12)}@{dom}>")
        put(
            out,
            t,
            "postfix/qmgr",
            f"{q}: from=<noreply{rng.randrange(50)}@{dom}>, size={rng.randrange(3_000, 200_000)}, nrcpt=1 (queue active)",
        )
        put(
            out,
            t,
            "postfix/smtpd",
            f"disconnect from {host} ehlo=1 mail=1 rcpt=1 data=1 quit=1 commands=5",
        )
        put(
            out,
            t + timedelta(seconds=1),
            "postfix/lmtp",
            f"{q}: to=<{user}>, relay=mail.{DOMAIN}[private/dovecot-lmtp], delay=0.1, delays=0.05/0.01/0.01/0.03, dsn=2.0.0, status=sent (250 2.0.0 <{user}> z9ZlLtYtZGc Saved)",
        )
        put(out, t + timedelta(seconds=1), "postfix/qmgr", f"{q}: removed")
        self.truth["in"] += 1
        self.truth["sent"] += 1


def generate(work: Path, users: int, days: int) -> dict[str, int]:
    work.mkdir(parents=True, exist_ok=True)
    month = Month(users, date(2026, 11, 1), days)
    for i in range(days + 1):  # +1: what the last day's retries carry into the next
        d = month.first + timedelta(days=i)
        lines = month.day(d) if i < days else sorted(month.carry.pop(d, []))
        if i == days:
            lines = [line for _, _, line in lines]
            month.truth["lines"] += len(lines)
        (work / f"mail.log-{d:%Y-%m-%d}").write_text("".join(lines))
    return month.truth


def parse(work: Path, chunk: int) -> dict[str, object]:
    """Read every day's file as a night would; the totals and the reader's costs."""
    import pyarrow as pa

    from connectors.postfix_log import LogState, LogStats, delivery_rows, read_chunk
    from contract.mail_logs import MAIL_LOG_DELIVERIES

    # pyarrow imports pandas on its first conversion of dates: not the reader's cost
    pa.Table.from_pylist(delivery_rows([]), schema=MAIL_LOG_DELIVERIES)
    pa.array([date(2026, 11, 1)])
    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    state_json = LogState(year=2026).to_json()
    stats = LogStats()
    got = dict.fromkeys(["out", "in", "notice", "sent", "bounced", "deferred_then_sent"], 0)
    rows_total, max_open, t0 = 0, 0, time.perf_counter()
    cpu0, cpu_parse, cpu_rows = time.process_time(), 0.0, 0.0
    for path in sorted(work.glob("mail.log-*")):
        state = LogState.from_json(state_json)
        records = []
        with path.open("rb") as fh:
            offset = 0
            while True:
                fh.seek(offset)
                data = fh.read(chunk)
                if not data:
                    break
                c = time.process_time()
                r = read_chunk(data, state, tz=TZ)
                cpu_parse += time.process_time() - c
                if r.consumed == 0:  # a line longer than the chunk: take it whole
                    data += fh.readline()
                    r = read_chunk(data, state, tz=TZ)
                stats.add(r.stats)
                stats.partial = 0
                offset += r.consumed
                records += r.messages
        c = time.process_time()
        table = pa.Table.from_pylist(delivery_rows(records), schema=MAIL_LOG_DELIVERIES)
        cpu_rows += time.process_time() - c
        rows_total += table.num_rows
        for rec in records:
            if rec.notice_of:
                got["notice"] += 1
            elif rec.direction in ("out", "in"):
                got[rec.direction] += 1
            for dl in rec.deliveries:
                got["sent"] += dl.status == "sent"
                got["bounced"] += dl.status == "bounced"
                got["deferred_then_sent"] += dl.status == "sent" and dl.deferrals > 0
        max_open = max(max_open, len(state.open))
        state_json = state.to_json()
    seconds = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    return {
        "seconds": seconds,
        "cpu_seconds": cpu,
        "cpu_parse_seconds": cpu_parse,
        "cpu_rows_seconds": cpu_rows,
        "lines_per_cpu_s": stats.lines / cpu,
        "parse_lines_per_cpu_s": stats.lines / cpu_parse,
        "lines": stats.lines,
        "lines_per_s": stats.lines / seconds,
        "damaged": stats.damaged,
        "foreign": stats.foreign,
        "rows": rows_total,
        "max_open_after_a_day": max_open,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "rss_after_imports_mb": base_rss,
        "got": got,
    }


def nightly(work: Path, first_night: bool = False) -> dict[str, object]:
    """Read the month as the collector's nights do (pipelines.mail_logs.collect_mail_log):
    each night ``mail.log`` is rotated to ``mail.log-<day>`` and the day's file becomes the
    new ``mail.log``; the night reads on from its cursor in the store through the one log
    reader (the rest of the rotated file, then the new one), writes its Parquet file and
    commits the cursor and the open queue ids. The totals are read back from the files."""
    import os
    import shutil

    import pyarrow.parquet as pq

    from pipelines.config import MailLogConfig
    from pipelines.mail_logs import collect_mail_log
    from pipelines.storage import DataDir

    days = sorted(work.glob("mail.log-*"))
    run = work / "nightly"
    shutil.rmtree(run, ignore_errors=True)
    log_dir = run / "log"
    log_dir.mkdir(parents=True)
    data = DataDir(run / "data")
    src = MailLogConfig("postfix", "postfix", log_dir / "mail.log", timezone=str(TZ))
    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t0, cpu0 = time.perf_counter(), time.process_time()
    lines, rows, nights = 0, 0, []
    previous = None
    if first_night:  # the month's rotations and today's file, read by one first night
        for i, path in enumerate(days):
            target = log_dir / ("mail.log" if path == days[-1] else path.name)
            os.link(path, target)
            os.utime(target, (1_000_000 + i, 1_000_000 + i))  # oldest first
        os.utime(log_dir / "mail.log")
        days = days[-1:]
    for path in days:
        if previous is not None:  # logrotate: yesterday's file renamed, today's begun
            os.rename(log_dir / "mail.log", log_dir / previous.name)
        if not first_night:
            os.link(path, log_dir / "mail.log")
            os.utime(log_dir / "mail.log")  # written to now, as a live log is
        night = path.name.removeprefix("mail.log-")
        read = collect_mail_log(src, night, data, str(TZ), now=datetime.now(TZ))
        lines += read.stats.lines
        rows += read.rows
        nights.append(night)
        previous = path
    seconds, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # the nights', not the check's
    got = dict.fromkeys(["out", "in", "notice", "sent", "bounced", "deferred_then_sent"], 0)
    seen: set[tuple[str, str]] = set()
    for night in nights:
        for r in pq.read_table(
            data.night_file("mail_log_deliveries", night, "postfix")
        ).to_pylist():
            key = (str(r["log_date"]), r["queue_id"])
            if key not in seen:
                seen.add(key)
                if r["notice_of"]:
                    got["notice"] += 1
                elif r["direction"] in ("out", "in"):
                    got[r["direction"]] += 1
            got["sent"] += r["status"] == "sent"
            got["bounced"] += r["status"] == "bounced"
            got["deferred_then_sent"] += r["status"] == "sent" and (r["deferrals"] or 0) > 0
    return {
        "seconds": seconds,
        "cpu_seconds": cpu,
        "lines": lines,
        "lines_per_cpu_s": lines / cpu,
        "rows": rows,
        "peak_rss_mb": peak,
        "rss_after_imports_mb": base_rss,
        "got": got,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--users", type=int, default=10_000)
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--work", type=Path, default=Path("/tmp/mailusage-postfix-bench"))
    ap.add_argument("--chunk-mb", type=float, default=8)
    ap.add_argument("--parse-only", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--nightly-only", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--first-night-only", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument(
        "--nightly",
        action="store_true",
        help="also read the month through the collector's nights (file reader, cursor, Parquet)",
    )
    ap.add_argument("--reuse", action="store_true", help="read the month already in --work")
    args = ap.parse_args()
    chunk = int(args.chunk_mb * 1024 * 1024)
    if args.parse_only:
        print(json.dumps(parse(args.work, chunk)))
        return
    if args.nightly_only or args.first_night_only:
        print(json.dumps(nightly(args.work, first_night=args.first_night_only)))
        return
    t0 = time.perf_counter()
    if args.reuse:
        truth = json.loads((args.work / "truth.json").read_text())
    else:
        truth = generate(args.work, args.users, args.days)
        (args.work / "truth.json").write_text(json.dumps(truth))
    gen_s = time.perf_counter() - t0
    size_mb = sum(p.stat().st_size for p in args.work.glob("mail.log-*")) / 1e6
    out = subprocess.run(
        [
            sys.executable,
            __file__,
            "--parse-only",
            "--work",
            str(args.work),
            "--chunk-mb",
            str(args.chunk_mb),
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    res = json.loads(out.stdout)
    print(f"generated {truth['lines']:,} lines ({size_mb:,.0f} MB) in {gen_s:.0f} s; truth {truth}")
    print(f"parsed: {res}")
    got = res["got"]
    ok = res["lines"] == truth["lines"] and all(got[k] == truth[k] for k in got)
    print(f"parsed totals equal the generator's: {ok}")
    print(
        "| users | days | lines | MB | wall s | CPU s (parse / rows) | lines per CPU s "
        "(parse alone) | peak RSS MB (after imports) | rows | totals match |"
    )
    print(
        f"| {args.users:,} | {args.days} | {res['lines']:,} | {size_mb:,.0f} | {res['seconds']:.1f} "
        f"| {res['cpu_seconds']:.1f} ({res['cpu_parse_seconds']:.1f} / {res['cpu_rows_seconds']:.1f}) "
        f"| {res['lines_per_cpu_s']:,.0f} ({res['parse_lines_per_cpu_s']:,.0f}) "
        f"| {res['peak_rss_mb']:,.0f} ({res['rss_after_imports_mb']:,.0f}) | {res['rows']:,} | {ok} |"
    )
    if args.nightly:
        print(
            "| read | lines | wall s | CPU s | lines per CPU s | peak RSS MB (after imports) "
            "| rows | totals match |"
        )
        for mode, label in (
            ("--nightly-only", "30 nights"),
            ("--first-night-only", "1 first night"),
        ):
            out = subprocess.run(
                [sys.executable, __file__, mode, "--work", str(args.work)],
                check=True,
                capture_output=True,
                text=True,
            )
            night = json.loads(out.stdout)
            same = night["lines"] == truth["lines"] and all(
                night["got"][k] == truth[k] for k in night["got"]
            )
            print(
                f"| {label} | {night['lines']:,} | {night['seconds']:.1f} "
                f"| {night['cpu_seconds']:.1f} | {night['lines_per_cpu_s']:,.0f} "
                f"| {night['peak_rss_mb']:,.0f} ({night['rss_after_imports_mb']:,.0f}) "
                f"| {night['rows']:,} | {same} |"
            )
            ok = ok and same
    if not ok:
        sys.exit(1)


if __name__ == "__main__":
    main()
