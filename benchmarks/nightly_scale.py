"""A province's nights at scale: what a night and a month cost, against baselines in the same run.

    .venv/bin/python benchmarks/nightly_scale.py                  # 10,000 x 100, as recorded
    .venv/bin/python benchmarks/nightly_scale.py --mailboxes 300  # a quick look

One private Dovecot (plain IMAP on loopback, master user, Maildir written directly), then:

 1. seed N mailboxes x M messages (2/3 INBOX, 1/3 Sent) straight into Maildir files, and let
    Dovecot index them (`doveadm mailbox status -A`), then warm its cache with one raw read;
 2. baseline: imapclient as documented, every mailbox read in full (`user*master` login);
 3. mailusage's first night;
 4. baseline: the login floor — per mailbox one connection, AUTHENTICATE PLAIN with
    authzid, one LIST-STATUS, LOGOUT, pipelined on a raw socket, at 2, 4 and 8 connections
    (best kept); then two quiet nights of mailusage, before each of which 1% of the
    mailboxes get 5 messages (the better of the two is compared: this VM varies by ~10%
    from one minute to the next);
 5. the store is given a month of history (night 2's files copied to the nights up to
    30, the folder index and cursors advanced as quiet nights would leave them); then
    nights 31 and 32, 1% grown before each, the better against the quiet nights' better;
 6. a month's evaluation over E mailboxes x 31 nights (default 6,500) written straight into
    the store, against DuckDB over the same rows in one file per night running the same
    SQL; then the same month with a year (365 nights) of history before it.

Every measured step runs in a fresh process, so its peak RSS is its own. Prints a Markdown
report (and writes it to --out) to paste into benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import platform
import resource
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PASSWORD = "bench-master"
DOMAIN = "binhduong.gov.vn"
FIRST_NIGHT = date(2026, 11, 1)
PEERS = [f"cb{i:05d}@{DOMAIN}" for i in range(50)] + [f"p{i}@gmail.com" for i in range(8)]


# -- steps run in child processes --------------------------------------------------------


def step(name: str, **kwargs: Any) -> dict[str, Any]:
    """Run ``name`` in a fresh process; its result plus seconds and peak RSS (MiB)."""
    arguments = _arguments(kwargs)
    try:
        proc = subprocess.run(
            [sys.executable, __file__, "_step", name, arguments],
            capture_output=True,
            text=True,
            cwd=ROOT,
        )
    finally:
        os.unlink(arguments)
    if proc.returncode != 0:
        raise SystemExit(f"step {name} failed:\n{proc.stderr[-4000:]}")
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


def _arguments(kwargs: dict[str, Any]) -> str:
    """A file holding a step's arguments (10,000 mailbox names do not fit in argv)."""
    fd, path = tempfile.mkstemp(prefix="mu-step-", suffix=".json")
    with os.fdopen(fd, "w") as fh:
        json.dump(kwargs, fh)
    os.chmod(path, 0o644)  # the seeding step reads it after dropping to Dovecot's account
    return path


def _child(name: str, path: str) -> None:
    kwargs = json.loads(Path(path).read_text())
    if name.startswith(("evaluate", "collect")):
        # Timed after the imports (Prefect's alone is ~1.7 s here): a fixed cost of the
        # process, not of the night or the month being measured.
        from pipelines.prefect_defaults import prefect_defaults

        prefect_defaults()  # the collect step may run the flow (--prefect)
        import analytics.evaluate  # noqa: F401
        import pipelines.collect
        import pipelines.evaluate  # noqa: F401
    started = time.perf_counter()
    result = STEPS[name](**kwargs)
    result["seconds"] = round(time.perf_counter() - started, 2)
    result["rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    print(json.dumps(result))


def seed_part(root: str, mailboxes: list[str], messages: int, uid: int, gid: int) -> dict[str, Any]:
    """Maildir files of some mailboxes, written as the server's account."""
    os.setgid(gid)
    os.setuid(uid)
    base = int(datetime(2026, 9, 1, tzinfo=UTC).timestamp())
    span = int(datetime(2026, 10, 31, tzinfo=UTC).timestamp()) - base
    n = 0
    for k, mbx in enumerate(mailboxes):
        home = Path(root) / "mail" / mbx / "Maildir"
        for sub in ("cur", "new", "tmp"):
            (home / ".Sent" / sub).mkdir(parents=True, exist_ok=True)
        (home / ".Sent" / "maildirfolder").touch()
        for i in range(messages):
            when = base + (span * i) // messages + k % 3600
            sent = i % 3 == 2
            peer = PEERS[(i * 7 + k) % len(PEERS)]
            raw = _message(mbx if sent else peer, peer if sent else mbx, when, f"{i}.{k}")
            folder = home / ".Sent" if sent else home
            size = len(raw)
            path = (
                folder / "cur" / f"{when}.M{i}P{k}.bench,S={size},W={size}:2,{'S' if i % 2 else ''}"
            )
            path.write_bytes(raw)
            os.utime(path, (when, when))
            n += 1
    return {"messages": n}


def _message(sender: str, to: str, when: int, mid: str) -> bytes:
    stamp = datetime.fromtimestamp(when, UTC).strftime("%a, %d %b %Y %H:%M:%S +0000")
    return (
        f"From: {sender}\r\nTo: {to}\r\nCc: vp@{DOMAIN}\r\nDate: {stamp}\r\n"
        f"Message-ID: <{mid}@bench.{DOMAIN}>\r\nSubject: =?utf-8?b?VsSDbiBi4bqjbg==?= {mid}\r\n"
        f"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
        f"Kính gửi anh chị, tài liệu số {mid}.\r\n"
    ).encode()


def raw_full_read(port: int, mailboxes: list[str], connections: int) -> dict[str, Any]:
    """Every mailbox read in full on raw sockets, nothing parsed (warms Dovecot's cache)."""
    from connectors.imap_helpers import FETCH_ITEMS

    def one(mbx: str) -> int:
        with socket.create_connection(("127.0.0.1", port)) as s:
            f = s.makefile("rb")
            f.readline()
            s.sendall(
                _auth(b"a", mbx)
                + b'b EXAMINE "INBOX"\r\nc UID FETCH 1:* '
                + FETCH_ITEMS.encode()
                + b'\r\nd EXAMINE "Sent"\r\ne UID FETCH 1:* '
                + FETCH_ITEMS.encode()
                + b"\r\nf LOGOUT\r\n"
            )
            got = 0
            while line := f.readline():
                got += b" FETCH (" in line
                if line.startswith(b"f OK"):
                    break
            return got

    with ThreadPoolExecutor(connections) as pool:
        fetched = sum(pool.map(one, mailboxes))
    return {"messages": fetched}


def naive_full_read(port: int, mailboxes: list[str], connections: int) -> dict[str, Any]:
    """imapclient as its documentation shows: log in, every folder, fetch everything."""
    from imapclient import IMAPClient

    from connectors.imap_helpers import FETCH_ITEMS
    from devkit.dovecot import MASTER_USER

    items = ["INTERNALDATE", "RFC822.SIZE", "FLAGS", FETCH_ITEMS.split(" ", 4)[4][:-1]]

    def one(mbx: str) -> int:
        client = IMAPClient("127.0.0.1", port=port, ssl=False)
        client.login(f"{mbx}*{MASTER_USER}", PASSWORD)
        got = 0
        for _flags, _delim, name in client.list_folders():
            info = client.select_folder(name, readonly=True)
            last = int(info[b"UIDNEXT"]) - 1
            if last >= 1:
                # imapclient 4.1 turns "1:*" into ints and fails: pass the UIDs.
                got += len(client.fetch(list(range(1, last + 1)), items))
        client.logout()
        return got

    with ThreadPoolExecutor(connections) as pool:
        fetched = sum(pool.map(one, mailboxes))
    return {"messages": fetched}


def _auth(tag: bytes, mbx: str) -> bytes:
    from devkit.dovecot import MASTER_USER

    msg = base64.b64encode(f"{mbx}\0{MASTER_USER}\0{PASSWORD}".encode())
    return tag + b" AUTHENTICATE PLAIN " + msg + b"\r\n"


def login_floor(port: int, mailboxes: list[str], connections: int) -> dict[str, Any]:
    """Per mailbox: connect, AUTHENTICATE PLAIN with authzid, one LIST-STATUS, LOGOUT —
    all pipelined in one write after the greeting; read until LOGOUT's OK."""
    lock = threading.Lock()
    folders = [0]

    def one(mbx: str) -> None:
        with socket.create_connection(("127.0.0.1", port)) as s:
            f = s.makefile("rb")
            f.readline()
            s.sendall(
                _auth(b"a", mbx)
                + b'b LIST "" "*" RETURN (STATUS (MESSAGES UIDNEXT UIDVALIDITY HIGHESTMODSEQ))\r\n'
                + b"c LOGOUT\r\n"
            )
            n = 0
            while line := f.readline():
                n += line.startswith(b"* STATUS")
                if line.startswith(b"c OK"):
                    break
            with lock:
                folders[0] += n

    with ThreadPoolExecutor(connections) as pool:
        list(pool.map(one, mailboxes))
    return {"folders": folders[0]}


def collect_night(config: str, night: str, prefect: bool = False) -> dict[str, Any]:
    from pipelines.collect import collect, run_collection
    from pipelines.night import summary_dict

    if prefect:
        result = collect(config_path=config, night=night)
    else:
        result = summary_dict(run_collection(config, night))
    cpu = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "ok": result["ok"],
        "failed": result["failed"],
        "messages_new": result["messages_new"],
        "cpu_user": round(cpu.ru_utime, 1),
        "cpu_system": round(cpu.ru_stime, 1),
    }


def evaluate_mailusage(config: str, month: str) -> dict[str, Any]:
    from pipelines.evaluate import run_evaluation

    summary = run_evaluation(config, month)
    return {"people": summary["people"], "regular_share": summary["regular_share"]}


def evaluate_queries(config: str, month: str) -> dict[str, Any]:
    """mailusage's evaluation without writing its outputs (CSV, Parquet, report)."""
    from analytics.evaluate import evaluate_month
    from pipelines.config import load_config
    from pipelines.evaluate import evaluation_inputs

    result = evaluate_month(evaluation_inputs(load_config(config)), month)
    return {"people": result.person_month.num_rows}


def render_pdf(html: str) -> dict[str, Any]:
    """The report's PDF layout alone (WeasyPrint, in its child process), from the HTML the
    evaluation wrote."""
    from analytics.pdf import report_pdf

    data = report_pdf(Path(html).read_text(encoding="utf-8"))
    return {"bytes": len(data)}


def evaluate_floor(data: str, roster: str, month: str) -> dict[str, Any]:
    """The same SQL over a plain glob of one file per night: DuckDB and nothing else."""
    import duckdb
    import pyarrow as pa

    from analytics.evaluate import roster_table
    from analytics.policy import load_policy
    from analytics.queries import month_params, register_domain_lists, register_mail_logs, sql
    from contract.domains import public_domains
    from contract.months import previous_month
    from contract.roster import load_roster

    policy = load_policy("lien-chieu-2014")
    con = duckdb.connect()
    con.execute("set TimeZone = 'UTC'")
    for name in ("messages", "mailbox_status", "run_mailboxes", "logins", "forwarding", "contacts"):
        files = sorted(str(p) for p in Path(data).glob(f"{name}/*/*.parquet"))
        if files:
            con.read_parquet(files, hive_partitioning=True).create_view(name)
    for name in ("logins", "forwarding", "contacts"):
        if not list(Path(data).glob(f"{name}/*/*.parquet")):
            from contract.datasets import DATASETS

            con.register(
                name, DATASETS[name].empty_table().append_column("night", pa.array([], pa.date32()))
            )
    register_mail_logs(con, [])  # no mail log: the SQL's mail log inputs are empty
    con.register("roster", roster_table(load_roster(Path(roster))))
    register_domain_lists(
        con,
        official=[DOMAIN],
        public=public_domains(),
        registration=policy.registration_domains,
    )
    usage = {
        "regular_days": policy.regular_min_active_days,
        "occasional_days": policy.occasional_min_active_days,
    }

    def run(q: str, **params: Any) -> pa.Table:
        text = sql(q)
        return con.sql(
            text, params={k: v for k, v in params.items() if f"${k}" in text}
        ).to_arrow_table()

    p = month_params(month, "Asia/Ho_Chi_Minh")
    con.register(
        "person_month_prev",
        run("person_month", **month_params(previous_month(month), "Asia/Ho_Chi_Minh"), **usage),
    )
    pm = run("person_month", **p, **usage)
    con.register("person_month", pm)
    con.register("counterpart_addresses", run("counterpart_addresses", **p))
    run("counterparts")
    run("unit_ranking", min_nights_collected=policy.min_nights_collected)
    run(
        "violations",
        **p,
        mandatory_use=policy.mandatory_use,
        min_nights_collected=policy.min_nights_collected,
        suspected_min_mailboxes=policy.suspected_min_mailboxes,
        suspected_min_units=policy.suspected_min_units,
    )
    run("coverage", **p)
    return {"people": pm.num_rows}


def write_month_store(
    data: str, mailboxes: int, first: str, nights: int, per_day: int
) -> dict[str, Any]:
    """A store of ``nights`` nights as the collector writes it: per night one messages file
    (``per_day`` new messages per mailbox, the first night a 100-message backfill) and one
    mailbox_status file (INBOX and Sent per mailbox), plus run records."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from contract.datasets import MAILBOX_STATUS, MESSAGES, RUN_MAILBOXES

    rng = np.random.default_rng(7)
    names = np.array([f"cb{i:05d}@{DOMAIN}" for i in range(mailboxes)], dtype=object)
    active = rng.random(mailboxes) < 0.3  # the 30 % who use their mailbox regularly
    start = date.fromisoformat(first)
    rows = 0
    for k in range(nights):
        night = start + timedelta(days=k)
        day0 = int(datetime(night.year, night.month, night.day, tzinfo=UTC).timestamp()) - 86400
        per = np.where(active, per_day, 0) if k else np.full(mailboxes, 100)
        idx = np.repeat(np.arange(mailboxes), per)
        n = len(idx)
        sent = rng.random(n) < 0.3
        when = (
            day0 - (0 if k else 86400 * 60) + rng.integers(0, 86400 * (1 if k else 60), n)
        ).astype("int64")
        uid = np.concatenate([np.arange(1, c + 1) for c in per]) + (
            100 + (k - 1) * per_day if k else 0
        )
        peers = np.array(PEERS, dtype=object)[rng.integers(0, len(PEERS), n)]
        table = pa.table(
            {
                "source": pa.array(["bench"] * n),
                "mailbox": pa.array(names[idx]),
                "folder": pa.array(np.where(sent, "Sent", "INBOX")),
                "role": pa.array(np.where(sent, "sent", "inbox")),
                "uidvalidity": pa.array(np.where(sent, 2, 1)),
                "uid": pa.array(uid.astype("int64")),
                "internal_date": pa.array(when).cast(pa.timestamp("s", tz="UTC")),
                "sent_date": pa.array(when).cast(pa.timestamp("s", tz="UTC")),
                "date_source": pa.array(["header"] * n),
                "size": pa.array(rng.integers(800, 90000, n)),
                "seen": pa.array(rng.random(n) < 0.8),
                "from_addr": pa.array(np.where(sent, names[idx], peers)),
                "to_addrs": pa.array(
                    [[p] for p in np.where(sent, peers, names[idx])], pa.list_(pa.string())
                ),
                "cc_addrs": pa.array([[] for _ in range(n)], pa.list_(pa.string())),
                "message_id": pa.array([f"<{k}.{i}@b>" for i in range(n)]),
                "address_invalid": pa.array(np.zeros(n, bool)),
            },
            schema=MESSAGES,
        ).sort_by([("sent_date", "ascending")])
        out = Path(data) / "messages" / f"night={night}" / "part-0.parquet"
        out.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, out, compression="zstd", row_group_size=65536)
        m2 = np.repeat(names, 2)
        status = pa.table(
            {
                "source": pa.array(["bench"] * len(m2)),
                "mailbox": pa.array(m2),
                "folder": pa.array(["INBOX", "Sent"] * mailboxes),
                "role": pa.array(["inbox", "sent"] * mailboxes),
                "folder_status": pa.array(["ok"] * len(m2)),
                "messages": pa.array(np.full(len(m2), 100)),
                "unseen": pa.array(np.zeros(len(m2), "int64")),
                "uidnext": pa.array(np.full(len(m2), 101)),
                "uidvalidity": pa.array([1, 2] * mailboxes),
                "highestmodseq": pa.array(np.full(len(m2), 5)),
                "last_uid": pa.array(np.full(len(m2), 100)),
                "fetched": pa.array(np.zeros(len(m2), "int64")),
                "full_reread": pa.array(np.zeros(len(m2), bool)),
                "read_activity": pa.array(np.repeat(np.where(active, 3, 0), 2)),
                "folder_bytes": pa.nulls(len(m2), pa.int64()),
                "unreadable": pa.array(np.zeros(len(m2), "int64")),
                "quota_used_bytes": pa.array(np.full(len(m2), 1 << 30)),
                "quota_limit_bytes": pa.array(np.full(len(m2), 5 << 30)),
                "sent_folder": pa.array(["Sent"] * len(m2)),
            },
            schema=MAILBOX_STATUS,
        )
        out = Path(data) / "mailbox_status" / f"night={night}" / "part-0.parquet"
        out.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(status, out, compression="zstd")
        runs = pa.table(
            {
                "run_id": pa.array([f"r{k}"] * mailboxes),
                "source": pa.array(["bench"] * mailboxes),
                "mailbox": pa.array(names),
                "status": pa.array(["ok"] * mailboxes),
                "reason": pa.array([""] * mailboxes),
                "messages_new": pa.array(per.astype("int64")),
                "folders": pa.array(np.full(mailboxes, 2)),
                "seconds": pa.array(np.full(mailboxes, 0.02)),
            },
            schema=RUN_MAILBOXES,
        )
        out = Path(data) / "run_mailboxes" / f"night={night}" / f"r{k}.parquet"
        out.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(runs, out, compression="zstd")
        rows += n + len(m2)
    return {"rows": rows}


STEPS = {
    "seed_part": seed_part,
    "raw_full_read": raw_full_read,
    "naive_full_read": naive_full_read,
    "login_floor": login_floor,
    "collect_night": collect_night,
    "evaluate_mailusage": evaluate_mailusage,
    "evaluate_queries": evaluate_queries,
    "evaluate_floor": evaluate_floor,
    "render_pdf": render_pdf,
    "write_month_store": write_month_store,
}


# -- the run -----------------------------------------------------------------------------


def write_config(
    root: Path, port: int, people: list[str], concurrency: int, logs: Path | None = None
) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "roster.csv").write_text(
        "employee_id,full_name,email,unit_code,unit_name\n"
        + "".join(
            f"NV{i:05d},Cán bộ {i},{m},U{i % 90:02d},Đơn vị {i % 90}\n"
            for i, m in enumerate(people)
        ),
        encoding="utf-8",
    )
    from devkit.dovecot import MASTER_USER

    config = root / "mailusage.toml"
    config.write_text(
        f"""[agency]
name = "Benchmark"
timezone = "Asia/Ho_Chi_Minh"
official_domains = ["{DOMAIN}"]
[storage]
data_dir = "data"
[roster]
path = "roster.csv"
[collect]
concurrency = {concurrency}
retries = 1
retry_delay_seconds = [5]
[[sources]]
name = "bench"
host = "127.0.0.1"
port = {port}
security = "plain"
master_user = "{MASTER_USER}"
password = {{ env = "MU_BENCH_MASTER" }}
timeout = 120
""",
        encoding="utf-8",
    )
    if logs is not None:  # collect.changed_only, on Dovecot's own log (mail_log plugin on)
        text = config.read_text(encoding="utf-8")
        text = text.replace("[collect]\n", "[collect]\nchanged_only = true\n", 1)
        text += f'[[logins]]\nname = "dovecot"\nkind = "dovecot-log"\npath = "{logs}"\n'
        text += "mail_log_plugin = true\n"
        config.write_text(text, encoding="utf-8")
    return config


def grow_by_lmtp(server: Any, mailboxes: list[str], tag: str) -> int:
    """5 new INBOX messages in each of these mailboxes, delivered over LMTP as Postfix
    would: Dovecot logs each delivery, which is what a `changed_only` night reads."""
    import smtplib

    now = int(time.time())
    with smtplib.LMTP("127.0.0.1", server.lmtp_port) as lmtp:
        for k, mbx in enumerate(mailboxes):
            for i in range(5):
                lmtp.sendmail(
                    PEERS[i], [mbx], _message(PEERS[i], mbx, now - 3600 + i, f"{tag}.{i}.{k}")
                )
    return 5 * len(mailboxes)


def logins_logged(server: Any) -> int:
    """Logins the server has logged so far (its own count of what a night cost it)."""
    return (server.root / "dovecot.log").read_bytes().count(b"Login: user=<")


def grow(server: Any, mailboxes: list[str], tag: str) -> int:
    """5 new INBOX messages in each of these mailboxes (as delivered mail arrives)."""
    now = int(time.time())
    for k, mbx in enumerate(mailboxes):
        for i in range(5):
            server.deliver(
                mbx,
                "INBOX",
                _message(PEERS[i], mbx, now - 3600 + i, f"{tag}.{i}.{k}"),
                when=now - 3600 + i,
            )
        server.finish_seeding(mbx)
    return 5 * len(mailboxes)


def fake_history(data: Path, from_night: str, nights: list[str]) -> None:
    """The store as 28 quiet nights would leave it: night 2's files under each later night,
    the folder index's rows of night 2 repeated, every cursor's night moved to the last."""
    for ds in ("messages", "mailbox_status", "run_mailboxes", "runs"):
        src = data / ds / f"night={from_night}"
        if not src.exists():  # a night with no new messages has no messages file
            continue
        for night in nights:
            shutil.copytree(src, data / ds / f"night={night}")
    con = sqlite3.connect(data / "_state" / "store.sqlite")
    with con:
        for night in nights:
            con.execute(
                "insert into folder_nights select mailbox, folder, uidvalidity, ?, rows "
                "from folder_nights where night = ?",
                (night, from_night),
            )
        rows = con.execute("select mailbox, state from cursors").fetchall()
        for mbx, state in rows:
            s = json.loads(state)
            s["night"], s["before"] = nights[-1], s["after"]
            con.execute(
                "update cursors set night = ?, state = ? where mailbox = ?",
                (nights[-1], json.dumps(s), mbx),
            )
    con.close()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--mailboxes", type=int, default=10_000)
    p.add_argument("--messages", type=int, default=100)
    p.add_argument("--concurrency", type=int, default=8, help="mailusage's (and the naive read's)")
    p.add_argument("--eval-mailboxes", type=int, default=6_500)
    p.add_argument("--eval-per-day", type=int, default=6, help="messages a regular user's day adds")
    p.add_argument(
        "--sweep",
        type=lambda v: [int(x) for x in v.split(",") if x],
        default=[2, 4],
        help="more quiet nights at these concurrencies (default 2,4)",
    )
    p.add_argument("--skip-collect", action="store_true", help="only the evaluation part")
    p.add_argument(
        "--prefect", action="store_true", help="also a quiet night through the Prefect flow"
    )
    p.add_argument("--workdir", type=Path, default=None)
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "nightly_scale.last.md")
    args = p.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="mu-scale-", dir="/var/tmp"))
    work.mkdir(parents=True, exist_ok=True)
    os.environ["MU_BENCH_MASTER"] = PASSWORD
    os.environ.setdefault("PREFECT_HOME", str(work / "prefect"))
    lines = [
        f"### {date.today()} — {platform.platform()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}",
        "",
    ]

    def row(what: str, r: dict[str, Any], extra: str = "") -> None:
        lines.append(f"| {what} | {r['seconds']:,.1f} | {r['rss_mib']:,} | {extra} |")
        print(lines[-1], flush=True)

    if not args.skip_collect:
        collect_part(args, work, lines, row)
    evaluation_part(args, work, lines, row)
    text = "\n".join(lines) + "\n"
    args.out.write_text(text, encoding="utf-8")
    print(text)
    return 0


def collect_part(args: argparse.Namespace, work: Path, lines: list[str], row: Any) -> None:
    from devkit.dovecot import LocalDovecot

    n, m = args.mailboxes, args.messages
    people = [f"cb{i:05d}@{DOMAIN}" for i in range(n)]
    # mail_log and LMTP: the log-driven quiet night reads what Dovecot logs of each change
    server = LocalDovecot.start(work / "dovecot", master_password=PASSWORD, mail_log=True, mta=True)
    try:
        t = time.perf_counter()
        server.add_users({mbx: "pw" for mbx in people})
        server.finish_seeding()
        half = (n + 1) // 2
        seeders = [
            subprocess.Popen(
                [
                    sys.executable,
                    __file__,
                    "_step",
                    "seed_part",
                    _arguments(
                        {
                            "root": str(server.root),
                            "mailboxes": part,
                            "messages": m,
                            "uid": server.account.pw_uid,
                            "gid": server.account.pw_gid,
                        }
                    ),
                ],
                cwd=ROOT,
                stdout=subprocess.DEVNULL,
            )
            for part in (people[:half], people[half:])
            if part
        ]
        for s in seeders:
            assert s.wait() == 0
        seeded = time.perf_counter() - t
        t = time.perf_counter()
        (work / "users.txt").write_text("".join(f"{mbx}\n" for mbx in people))
        server.doveadm("mailbox", "status", "-F", str(work / "users.txt"), "messages", "*")
        indexed = time.perf_counter() - t
        lines += [
            f"{n:,} mailboxes x {m} messages ({n * m:,}), Maildir written in {seeded:.0f} s, "
            f"indexed by Dovecot in {indexed:.0f} s; mailusage concurrency {args.concurrency}.",
            "",
            "| step | seconds | peak RSS MiB | notes |",
            "|---|---:|---:|---|",
        ]
        port = server.imap_port
        warm = step("raw_full_read", port=port, mailboxes=people, connections=4)
        row(
            "raw sockets, every mailbox read in full, no parsing (warms Dovecot's cache)",
            warm,
            f"{warm['messages']:,} messages",
        )
        naive1 = step("naive_full_read", port=port, mailboxes=people, connections=1)
        row(
            "**baseline**: imapclient as documented (one connection), every mailbox read in full",
            naive1,
            f"{naive1['messages']:,} messages",
        )
        naive = step("naive_full_read", port=port, mailboxes=people, connections=args.concurrency)
        row(
            f"**baseline**: the same on {args.concurrency} connections (threads)",
            naive,
            f"{naive['messages']:,} messages",
        )
        config = write_config(work, port, people, args.concurrency)
        data = work / "data"
        first = step("collect_night", config=str(config), night="2026-11-01")
        row(
            "mailusage first night",
            first,
            _night_note(first)
            + f"; **{naive1['seconds'] / first['seconds']:.2f}x faster than the naive read**, "
            f"{naive['seconds'] / first['seconds']:.2f}x its {args.concurrency}-connection form",
        )
        grown = people[:: max(1, n // max(1, n // 100))][: max(1, n // 100)]
        floors = {
            c: step("login_floor", port=port, mailboxes=people, connections=c) for c in (2, 4, 8)
        }
        best = min(floors.values(), key=lambda r: r["seconds"])
        for c, r in floors.items():
            row(
                f"login floor, raw socket, {c} connections",
                r,
                f"{n / r['seconds']:.0f} mailboxes/s",
            )

        # Two quiet nights (and two nights after the history, below): this VM varies by
        # ~10% from one minute to the next, so each side of a target is the better of two.
        def better_of_two(nights: tuple[str, str], label: str) -> dict[str, Any]:
            results = []
            for night in nights:
                grow(server, grown, f"g{night}")
                results.append(step("collect_night", config=str(config), night=night))
                row(label.format(day=int(night[-2:])), results[-1], _night_note(results[-1]))
            return min(results, key=lambda r: r["seconds"])

        quiet = better_of_two(
            ("2026-11-02", "2026-11-03"), "mailusage quiet night {day} (1% grew by 5 messages)"
        )
        row(
            "quiet night, the better of the two",
            quiet,
            f"**{quiet['seconds'] / best['seconds']:.2f}x the floor**, "
            f"**{naive1['seconds'] / quiet['seconds']:.2f}x faster than the naive read**, "
            f"{naive['seconds'] / quiet['seconds']:.2f}x its {args.concurrency}-connection form",
        )
        used = 3
        for c in args.sweep:
            used += 1
            grow(server, grown, f"s{c}")
            cfg_c = write_config(work / f"c{c}", port, people, c)
            shutil.rmtree(work / f"c{c}" / "data", ignore_errors=True)
            (work / f"c{c}" / "data").symlink_to(data)
            night = (FIRST_NIGHT + timedelta(days=used - 1)).isoformat()
            r = step("collect_night", config=str(cfg_c), night=night)
            row(
                f"the same quiet night at concurrency {c}",
                r,
                _night_note(r) + f"; {r['seconds'] / best['seconds']:.2f}x the floor",
            )
        if args.prefect:
            used += 1
            grow(server, grown, "gp")
            night = (FIRST_NIGHT + timedelta(days=used - 1)).isoformat()
            flow = step("collect_night", config=str(config), night=night, prefect=True)
            row(
                "the same quiet night through the Prefect flow (temporary server included)",
                flow,
                _night_note(flow),
            )
        history = [(FIRST_NIGHT + timedelta(days=k)).isoformat() for k in range(used, 30)]
        fake_history(data, "2026-11-02", history)
        os.sync()  # the copies' writeback must not land inside night 31's time
        files = sum(1 for _ in data.rglob("*.parquet"))
        late = better_of_two(
            ("2026-12-01", "2026-12-02"), "mailusage night {day} of December, after 30 nights"
        )
        row(
            "after 30 nights, the better of the two",
            late,
            f"{files:,} Parquet files in the store before night 31; "
            f"**{late['seconds'] / quiet['seconds']:.2f}x the quiet nights' better**",
        )
        logged_part(work, server, people, grown, data, args, best, row)
        lines.append("")
    finally:
        server.stop()


def logged_part(
    work: Path,
    server: Any,
    people: list[str],
    grown: list[str],
    data: Path,
    args: argparse.Namespace,
    best: dict[str, Any],
    row: Any,
) -> None:
    """Nights with `collect.changed_only` on the same store (issue 25.3): the first one
    reads every mailbox by rule; then two nights, 1% grown over LMTP before each, log in
    only where Dovecot's log saw a change and on each mailbox's sweep night (1 in 7)."""
    root = work / "logged"
    config = write_config(
        root, server.imap_port, people, args.concurrency, server.root / "dovecot.log"
    )
    shutil.rmtree(root / "data", ignore_errors=True)
    (root / "data").symlink_to(data)
    n = len(people)

    def night(date: str, label: str) -> dict[str, Any]:
        grow_by_lmtp(server, grown, f"l{date}")
        before = logins_logged(server)
        r = step("collect_night", config=str(config), night=date)
        r["logins"] = logins_logged(server) - before
        row(label, r, _night_note(r) + f"; {r['logins']:,} logins")
        return r

    full = night("2026-12-03", "`changed_only`: its first night (every mailbox read, by rule)")
    results = [
        night(d, f"`changed_only` night {d[-2:]} (1% grew by 5 messages over LMTP)")
        for d in ("2026-12-04", "2026-12-05")
    ]
    better = min(results, key=lambda r: r["seconds"])
    row(
        "log-driven quiet night, the better of the two",
        better,
        f"**{better['seconds'] / best['seconds']:.2f}x the login floor** (target <= 0.2x); "
        f"**{better['logins']:,} logins = {better['logins'] / full['logins']:.2f} of a full "
        f"night's {full['logins']:,}** (target <= 0.2); {n:,} mailboxes",
    )


def _night_note(r: dict[str, Any]) -> str:
    return (
        f"ok {r['ok']:,}, failed {r['failed']}, {r['messages_new']:,} new; "
        f"CPU {r['cpu_user']:.0f} s user + {r['cpu_system']:.0f} s system"
    )


def evaluation_part(args: argparse.Namespace, work: Path, lines: list[str], row: Any) -> None:
    e = args.eval_mailboxes
    people = [f"cb{i:05d}@{DOMAIN}" for i in range(e)]
    lines += [
        f"Month evaluation: {e:,} mailboxes, stores written directly in the collector's layout "
        f"(30% of staff add {args.eval_per_day} messages a day; the first night backfills 100 "
        "each).",
        "",
        "| step | seconds | peak RSS MiB | notes |",
        "|---|---:|---:|---|",
    ]
    results = {}
    for label, first, nights in (("one month", "2026-11-01", 31), ("a year", "2025-12-01", 366)):
        root = work / f"eval-{nights}"
        root.mkdir(parents=True, exist_ok=True)
        config = write_config(root, 1, people, 1)
        store = step(
            "write_month_store",
            data=str(root / "data"),
            mailboxes=e,
            first=first,
            nights=nights,
            per_day=args.eval_per_day,
        )
        files = sum(1 for _ in (root / "data").rglob("*.parquet"))
        floor = step(
            "evaluate_floor",
            data=str(root / "data"),
            roster=str(root / "roster.csv"),
            month="2026-11",
        )
        queries = step("evaluate_queries", config=str(config), month="2026-11")
        mine = step("evaluate_mailusage", config=str(config), month="2026-11")
        results[label] = mine
        row(
            f"DuckDB floor: the evaluation's SQL over a glob, {label} of history",
            floor,
            f"{store['rows']:,} rows in {files:,} files",
        )
        row(
            f"mailusage evaluation, outputs not written, {label} of history",
            queries,
            f"**{queries['seconds'] / floor['seconds']:.2f}x the floor**",
        )
        row(
            f"mailusage evaluate 2026-11 with every output (CSVs, xlsx, Parquet, report "
            f"HTML and PDF), {label}",
            mine,
            f"**{mine['seconds'] / floor['seconds']:.2f}x the floor**",
        )
        pdf = step("render_pdf", html=str(root / "reports" / "2026-11" / "report.html"))
        rest = mine["seconds"] - pdf["seconds"]
        row(
            f"of which the report's PDF layout (WeasyPrint, in a process of its own), {label}",
            pdf,
            f"{pdf['bytes']:,} bytes; the evaluation without it: {rest:.1f} s, "
            f"**{rest / floor['seconds']:.2f}x the floor**",
        )
    year, month = results["a year"], results["one month"]
    lines += [
        "",
        f"A month over a year of history costs **{year['seconds'] / month['seconds']:.2f}x** "
        f"a month over one month ({year['rss_mib']} vs {month['rss_mib']} MiB).",
        "",
    ]


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "_step":
        _child(sys.argv[2], sys.argv[3])
        sys.exit(0)
    sys.exit(main())
