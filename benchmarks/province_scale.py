"""A province's month at scale: every scope's bundle against one whole-province evaluation
(issue 24.8).

    .venv/bin/python benchmarks/province_scale.py                  # 6,500 people, as recorded
    .venv/bin/python benchmarks/province_scale.py --people 1000    # a quick look

A store of one month (31 nights) is written directly in the collector's layout
(nightly_scale.write_month_store: 30% of staff add 6 messages a day; the first night
backfills 100 each) for ``--people`` mailboxes, with a roster spread over a three-level
unit tree: the province (UBND tỉnh) → 20 sở and ban + 9 UBND huyện → in each huyện 6 phòng
and 7 UBND xã (147 units), every unit with a head. Then, each in a fresh process with its
own peak RSS, timed after its imports (as nightly_scale.py's steps):

 a. the baseline: ``run_evaluation`` of the whole province with every output (CSVs,
    Parquet, the HR workbook, report HTML and PDF), no ``[[scopes]]``;
 b. the same config plus 30 ``[[scopes]]`` (the province, each sở/ban, each huyện, with
    recipients): the whole evaluation and every scope's bundle.

(a) and (b) alternate ``--rounds`` times in the same run (the machine is shared: a busy
minute hits both alike); the best of each is compared. ``--keep DIR`` copies (b)'s
reports there, to compare two trees' bundles byte for byte. Prints a Markdown report
(and writes it to ``--out``) to paste into benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.nightly_scale import DOMAIN, write_month_store  # noqa: E402

MONTH = "2026-11"
DEPARTMENTS = 20  # sở and ban, directly under the province
DISTRICTS = 9  # UBND huyện, directly under the province
OFFICES = 6  # phòng in each huyện
COMMUNES = 7  # UBND xã in each huyện


# -- steps run in child processes --------------------------------------------------------


def step(name: str, tree: Path = ROOT, **kwargs: Any) -> dict[str, Any]:
    """Run ``name`` in a fresh process with ``tree``'s packages (another checkout's, for
    ``--before``); its result plus seconds and peak RSS (MiB)."""
    proc = subprocess.run(
        [sys.executable, __file__, "_step", name, json.dumps(kwargs), str(tree)],
        capture_output=True,
        text=True,
        cwd=tree,
    )
    if proc.returncode != 0:
        raise SystemExit(f"step {name} failed:\n{proc.stderr[-4000:]}")
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


class TreeMemory(threading.Thread):
    """Samples this process and its children (the PDF children) every 0.1 s: the largest
    child's own peak (VmHWM, which is the child's since its exec — unlike RUSAGE_CHILDREN's
    maxrss, which keeps the forking parent's size) and the largest sum of resident sizes of
    the whole tree at one moment (what the machine must hold)."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.child_peak = 0  # KiB
        self.tree_peak = 0  # KiB
        self.stop = threading.Event()

    @staticmethod
    def _status(pid: str) -> dict[str, int]:
        out = {}
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                key, _, value = line.partition(":")
                if key in ("VmRSS", "VmHWM"):
                    out[key] = int(value.split()[0])
        except (OSError, ValueError):
            pass
        return out

    def run(self) -> None:
        me = os.getpid()
        while not self.stop.wait(0.1):
            total = self._status(str(me)).get("VmRSS", 0)
            for pid in self._children(me):
                status = self._status(pid)
                total += status.get("VmRSS", 0)
                self.child_peak = max(self.child_peak, status.get("VmHWM", 0))
            self.tree_peak = max(self.tree_peak, total)

    @staticmethod
    def _children(pid: int) -> set[str]:
        """The children of each thread of ``pid`` (Linux's /proc/PID/task/TID/children)."""
        out: set[str] = set()
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError):  # a thread that has just ended
                out.update((task / "children").read_text().split())
        return out


def _child(name: str, arguments: str, tree: str) -> None:
    sys.path.insert(0, tree)  # its analytics/ and pipelines/, imported below
    kwargs = json.loads(arguments)
    memory = TreeMemory()
    memory.start()
    if name == "evaluate":
        # timed after the imports, as nightly_scale.py's steps
        import analytics.scopes  # noqa: F401  (and analytics.evaluate with it)
        import pipelines.evaluate  # noqa: F401
    started = time.perf_counter()
    result = STEPS[name](**kwargs)
    result["seconds"] = round(time.perf_counter() - started, 2)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    memory.stop.set()
    memory.join()
    result["rss_mib"] = round(usage.ru_maxrss / 1024)
    result["child_rss_mib"] = round(memory.child_peak / 1024)  # the largest PDF child
    result["tree_rss_mib"] = round(memory.tree_peak / 1024)  # all of them at one moment
    result["cpu"] = round(usage.ru_utime + usage.ru_stime, 1)
    result["child_cpu"] = round(children.ru_utime + children.ru_stime, 1)
    print(json.dumps(result))


def evaluate(config: str) -> dict[str, Any]:
    from pipelines.evaluate import run_evaluation

    summary = run_evaluation(config, MONTH)
    return {"people": summary["people"], "bundles": len(summary.get("bundles", {}))}


STEPS = {"evaluate": evaluate, "write_month_store": write_month_store}


# -- the province ------------------------------------------------------------------------


def units() -> list[tuple[str, str, str, str]]:
    """(code, name, parent, kind) of the tree, parents first."""
    out = [("TINH", "UBND tỉnh Bình Dương", "", "UBND tỉnh")]
    for d in range(DEPARTMENTS):
        kind = "ban" if d >= DEPARTMENTS - 2 else "sở"
        out.append((f"S{d:02d}", f"{kind.capitalize()} số {d + 1}", "TINH", kind))
    for h in range(DISTRICTS):
        out.append((f"H{h}", f"UBND huyện số {h + 1}", "TINH", "UBND huyện"))
        for p in range(OFFICES):
            out.append((f"H{h}-P{p}", f"Phòng {p + 1} huyện {h + 1}", f"H{h}", "phòng"))
        for x in range(COMMUNES):
            out.append((f"H{h}-X{x}", f"UBND xã {x + 1} huyện {h + 1}", f"H{h}", "UBND xã"))
    return out


def write_province(root: Path, people: int, scopes: bool) -> Path:
    """roster.csv, units.csv (each unit's head: its first person) and mailusage.toml with
    (``scopes``) the province's, each sở/ban's and each huyện's scope."""
    root.mkdir(parents=True, exist_ok=True)
    tree = units()
    staffed = [u for u in tree if u[0] != "TINH"]
    heads: dict[str, str] = {}
    rows = []
    for i in range(people):
        code, name, _, _ = staffed[i % len(staffed)] if i else tree[0]
        email = f"cb{i:05d}@{DOMAIN}"
        heads.setdefault(code, email)
        rows.append(f"NV{i:05d},Cán bộ {i},{email},{code},{name}\n")
    (root / "roster.csv").write_text(
        "employee_id,full_name,email,unit_code,unit_name\n" + "".join(rows), encoding="utf-8"
    )
    (root / "units.csv").write_text(
        "unit_code,unit_name,parent_code,kind,head_email\n"
        + "".join(f"{c},{n},{p},{k},{heads.get(c, '')}\n" for c, n, p, k in tree),
        encoding="utf-8",
    )
    entries = ""
    if scopes:
        entries = (
            '[[scopes]]\nname = "tinh"\nrecipients = ["chutich@binhduong.gov.vn"]\n'
            'report = { issuing_body = "SỞ THÔNG TIN VÀ TRUYỀN THÔNG" }\n'
        )
        for code, _, parent, _ in tree:
            if parent == "TINH":
                entries += (
                    f'\n[[scopes]]\nname = "{code.lower()}"\nroot = "{code}"\n'
                    f'recipients = ["{heads[code]}"]\n'
                )
    config = root / "mailusage.toml"
    config.write_text(
        f"""[agency]
name = "UBND tỉnh Bình Dương"
timezone = "Asia/Ho_Chi_Minh"
official_domains = ["{DOMAIN}"]
[storage]
data_dir = "../data"
[roster]
path = "roster.csv"
units = "units.csv"
[evaluation]
reports_dir = "reports"
[[sources]]
name = "bench"
host = "127.0.0.1"
master_user = "admin"
password = {{ env = "MU_BENCH_UNUSED" }}

{entries}""",
        encoding="utf-8",
    )
    return config


def _same(one: Path, other: Path) -> bool:
    """Whether two reports directories hold the same files with the same bytes."""
    files = sorted(p.relative_to(one) for p in one.rglob("*") if p.is_file())
    theirs = sorted(p.relative_to(other) for p in other.rglob("*") if p.is_file())
    return files == theirs and all(
        (one / f).read_bytes() == (other / f).read_bytes() for f in files
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--people", type=int, default=6500)
    parser.add_argument("--per-day", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--keep", type=Path, default=None, help="copy (b)'s reports here")
    parser.add_argument(
        "--before",
        type=Path,
        default=None,
        help="another checkout (e.g. `git archive COMMIT | tar -x -C DIR`): (b) is run with "
        "its code too, in the same rounds, and the two trees' bundles compared byte for byte",
    )
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="mu-province-"))
    try:
        store = step(
            "write_month_store",
            data=str(work / "data"),
            mailboxes=args.people,
            first="2026-11-01",
            nights=31,
            per_day=args.per_day,
        )
        whole = write_province(work / "whole", args.people, scopes=False)
        scoped = write_province(work / "scoped", args.people, scopes=True)
        plan = [("whole", whole, ROOT), ("scoped", scoped, ROOT)]
        if args.before:
            plan.append(("before", scoped, args.before.resolve()))
        runs: dict[str, list[dict[str, Any]]] = {label: [] for label, _, _ in plan}
        load = os.getloadavg()
        same = None
        for _ in range(args.rounds):
            for label, config, tree in plan:
                shutil.rmtree(config.parent / "reports", ignore_errors=True)
                runs[label].append(step("evaluate", tree=tree, config=str(config)))
                if label == "scoped" and args.before:
                    shutil.rmtree(work / "after", ignore_errors=True)
                    shutil.copytree(config.parent / "reports", work / "after")
                if label == "before":
                    same = same is not False and _same(work / "after", config.parent / "reports")
        load = tuple(max(a, b) for a, b in zip(load, os.getloadavg(), strict=True))
        if args.keep:
            shutil.rmtree(args.keep, ignore_errors=True)
            shutil.copytree(scoped.parent / "reports", args.keep)
        a = min(runs["whole"], key=lambda r: r["seconds"])
        b = min(runs["scoped"], key=lambda r: r["seconds"])
        files = sum(1 for p in (scoped.parent / "reports" / MONTH).rglob("*") if p.is_file())
        lines = [
            f"{args.people:,} people in {len(units())} units on 3 levels, {b['bundles']} "
            f"scopes; {store['rows']:,} rows in one month's store; {platform.platform()}, "
            f"{os.cpu_count()} cores, Python {platform.python_version()}; load average "
            f"(1/5/15 min, the higher of before and after) {load[0]:.2f} / {load[1]:.2f} / "
            f"{load[2]:.2f}; the best of {args.rounds} alternate rounds.",
            "",
            "| step | seconds (each round) | peak RSS MiB: process / largest PDF child / "
            "the tree at once | CPU s (children) |",
            "|---|---|---:|---:|",
        ]
        rows = [
            ("whole", "(a) whole-province evaluation, every output", a),
            ("scoped", f"(b) the same + {b['bundles']} scopes' bundles ({files} files)", b),
        ]
        if args.before:
            before = min(runs["before"], key=lambda r: r["seconds"])
            rows.append(("before", f"(b) with the code of {args.before.name}", before))
        for label, what, best in rows:
            each = " / ".join(f"{r['seconds']:.1f}" for r in runs[label])
            lines.append(
                f"| {what} | **{best['seconds']:.1f}** ({each}) | {best['rss_mib']} / "
                f"{best['child_rss_mib']} / {best['tree_rss_mib']} | {best['cpu']} "
                f"({best['child_cpu']}) |"
            )
        lines += [
            "",
            f"Every bundle: **{b['seconds'] - a['seconds']:.1f} s** on top of the whole "
            f"evaluation; (b) is **{b['seconds'] / a['seconds']:.2f}x** (a).",
        ]
        if args.before:
            lines.append(
                f"With the code of {args.before.name}: (b) {before['seconds']:.1f} s; every "
                "file of every bundle "
                + ("**byte-identical**" if same else "**different**")
                + " between the two trees, in every round."
            )
        report = "\n".join(lines)
        print(report)
        if args.out:
            args.out.write_text(report + "\n", encoding="utf-8")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "_step":
        _child(sys.argv[2], sys.argv[3], sys.argv[4])
        sys.exit(0)
    sys.exit(main())
