"""mailusage: official-mail usage, collected nightly and evaluated monthly.

$ mailusage doctor --config mailusage.toml
$ mailusage collect --config mailusage.toml --date 2026-11-23
$ mailusage evaluate --config mailusage.toml --month 2026-11
$ mailusage deliver --config mailusage.toml --month 2026-11 --dry-run
$ mailusage remind --config mailusage.toml --date 2026-11-15 --dry-run
$ mailusage export --config mailusage.toml --scope phu-giao --month 2026-11 --out pg.duckdb
$ mailusage forget-night --config mailusage.toml 2027-01-15 --dry-run
$ mailusage compact --config mailusage.toml
$ mailusage demo

`--config` may be left out when MAILUSAGE_CONFIG names the file (as in the notebooks).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections import Counter
from datetime import date
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from pipelines.prefect_defaults import prefect_defaults


def _console(stderr: bool = False) -> Console:
    # Piped to a log (cron, CI), a table is easier to read and grep unwrapped.
    console = Console(stderr=stderr)
    return console if console.is_terminal else Console(stderr=stderr, width=200)


err = _console(stderr=True)
out = _console()


def _night(value: str) -> str:
    try:
        return date.fromisoformat(value).isoformat()
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{value!r} is not a date YYYY-MM-DD") from exc


def _prefect_api() -> str | None:
    """The Prefect API the operator configured, if any (none: no server is started).

    Asking Prefect costs its whole import (~1 s here, ~2 s with the `analyst` extra, whose
    jsonschema then builds rfc3987 grammars): it is asked only when PREFECT_API_URL is
    set or a file Prefect reads its settings from could set it (its profiles file, or
    ``prefect.toml``, ``.env``, ``pyproject.toml`` in the working directory).

    >>> _prefect_api()        # PREFECT_API_URL=http://127.0.0.1:4200/api
    'http://127.0.0.1:4200/api'
    """
    if os.environ.get("PREFECT_API_URL"):
        return os.environ["PREFECT_API_URL"]
    already = "prefect.settings" in sys.modules  # loaded anyway (a test harness, a flow)
    if not already and not any(_mentions_api(path) for path in _prefect_setting_files()):
        return None
    from prefect.settings import PREFECT_API_URL

    return PREFECT_API_URL.value() or None


def _prefect_setting_files() -> list[Path]:
    home = Path(os.environ.get("PREFECT_HOME") or Path.home() / ".prefect").expanduser()
    profiles = os.environ.get("PREFECT_PROFILES_PATH") or home / "profiles.toml"
    return [Path(profiles), Path("prefect.toml"), Path(".env"), Path("pyproject.toml")]


def _mentions_api(path: Path) -> bool:
    # A plain text test is enough: it decides only whether Prefect is asked at all.
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
    return "PREFECT_API_URL" in text or ("[api]" in text and "url" in text)


def _read_config(args: argparse.Namespace) -> Any:
    """The config ``--config`` names (a ``pipelines.config.Config``), or None once the
    reason it cannot be read is printed (the command then exits 2)."""
    from pipelines.config import ConfigError, load_config

    try:
        return load_config(args.config)
    except ConfigError as exc:
        err.print(f"[red]error:[/red] {escape(str(exc))}")
        return None


def cmd_collect(args: argparse.Namespace) -> int:
    from contract.roster import RosterError, load_roster
    from pipelines.collect import run_collection
    from pipelines.config import ConfigError, load_config
    from pipelines.mailbox import MailboxOutcome
    from pipelines.night import (
        NightFailed,
        preflight,
        skipped_behind,
        summary_dict,
        summary_line,
    )
    from pipelines.storage import CollectionBusy

    try:
        cfg = load_config(args.config)
        people = load_roster(cfg.roster_path)
        total = sum(1 for p in people if p.email)
        preflight(cfg, people, args.date)  # a future date, a missing secret: nothing written
    except (ConfigError, RosterError) as exc:
        err.print(f"[red]error:[/red] {escape(str(exc))}")
        return 2
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    with Progress(
        TextColumn("collecting"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.description}"),
        console=err,
        disable=args.quiet or not err.is_terminal,
    ) as progress:
        bar = progress.add_task("", total=total)

        def tick(outcome: MailboxOutcome) -> None:
            progress.update(bar, advance=1, description=outcome.mailbox)

        try:
            if args.prefect or _prefect_api():  # the run shows in a Prefect UI
                from pipelines.collect import collect  # the flow: imports Prefect

                result = collect(config_path=str(cfg.path), night=args.date)
            else:  # the same code, without a temporary Prefect server
                result = summary_dict(run_collection(cfg, args.date, progress=tick))
        except NightFailed as exc:  # the flow run is Failed; the night is still committed
            result = exc.result
        except CollectionBusy as exc:
            err.print(f"[red]error:[/red] {escape(str(exc))}")
            return 3
        except ConfigError as exc:  # refused inside the run (the same checks, raced)
            err.print(f"[red]error:[/red] {escape(str(exc))}")
            return 2
    code = 1 if result["failed"] or result["skipped"] else 0
    behind = skipped_behind(result)
    if args.quiet:
        out.print(summary_line(result))
        if behind:
            err.print(f"[red]error:[/red] {escape(behind)}")
        return code
    table = Table(title=f"night {result['night']} — run {result['run_id']}")
    for col in ("mailbox", "status", "new messages", "folders", "reason"):
        table.add_column(col)
    for o in result["outcomes"]:
        colour = {"ok": "green", "failed": "red", "skipped": "yellow"}[o["status"]]
        table.add_row(
            escape(o["mailbox"]),
            f"[{colour}]{o['status']}[/{colour}]",
            str(o["messages_new"]),
            str(o["folders"]),
            escape(o["reason"]),
        )
    out.print(table)
    out.print(summary_line(result))  # mailboxes and login sources counted apart
    if behind:
        err.print(f"[red]error:[/red] {escape(behind)}")
    return code


def cmd_forget_night(args: argparse.Namespace) -> int:
    from pipelines.storage import CollectionBusy, DataDir

    cfg = _read_config(args)
    if cfg is None:
        return 2
    data = DataDir(cfg.data_dir)
    night = args.night
    try:
        with data.collect_lock(f"forget-night {night}"):
            data.recover()
            plan = data.plan_forget(night)
            refusal = plan.refusal()
            if refusal:
                err.print(f"[red]error:[/red] {escape(refusal)}")
                return 2
            if not (plan.files or plan.restore or plan.logs):
                out.print(f"night {night}: nothing is stored for it; nothing to do")
                return 0
            verb = "would" if args.dry_run else "will"
            back = Counter(
                s.night if s else "no night (their first)" for s in plan.restore.values()
            )
            out.print(f"night {night}: {verb} remove {len(plan.files)} file(s):")
            for path in plan.files:
                out.print(f"  {escape(str(path.relative_to(cfg.data_dir)))}")
            to = ", ".join(f"{n} mailbox(es) to {when}" for when, n in sorted(back.items()))
            out.print(
                f"and {verb} restore the cursors of {len(plan.restore)} mailbox(es) to the "
                f"night before: {to or 'none'}"
            )
            for name, log in sorted(plan.logs.items()):
                where = f"night {log.night or '?'}" if log else "nothing read"
                label = name if name.startswith("mail_logs:") else f"logins:{name}"
                out.print(f"  {escape(label)}: read position back to {where}")
            if plan.unknown_start:
                out.print(
                    f"[yellow]note:[/yellow] {len(plan.unknown_start)} mailbox(es) go back to "
                    "the cursors this night started from, but the start of the night before "
                    "is not kept: that earlier night cannot be collected again (later ones can)"
                )
            if args.dry_run:
                out.print("dry run: nothing was changed")
                return 0
            data.forget(plan)
    except CollectionBusy as exc:
        err.print(f"[red]error:[/red] {escape(str(exc))}")
        return 3
    out.print(
        f"night {night} forgotten; collect the nights after the last good one again "
        "(mailusage collect --date YYYY-MM-DD)"
    )
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    from mailusage.doctor import run_doctor

    cfg = _read_config(args)
    if cfg is None:
        return 2
    if args.probe:
        return _print_probe(cfg, args.probe)
    checks = run_doctor(cfg)
    table = Table(title=f"mailusage doctor — {cfg.path}")
    for col in ("subject", "check", "status", "detail"):
        table.add_column(col)
    for c in checks:
        colour = {"ok": "green", "warn": "yellow", "fail": "red"}[c.status]
        table.add_row(
            escape(c.subject), c.check, f"[{colour}]{c.status}[/{colour}]", escape(c.detail)
        )
    out.print(table)
    failed = [c for c in checks if c.status == "fail"]
    out.print(f"{len(failed)} failure(s)" if failed else "all checks passed")
    return 1 if failed else 0


def _print_probe(cfg: Any, mailbox: str) -> int:
    from mailusage.probe import probe

    result = probe(cfg, mailbox)
    table = Table(title=f"mailusage doctor --probe {escape(result.mailbox)} — {result.source}")
    for col in ("#", "protocol", "request", "status", "ms", "refused / unexpected"):
        table.add_column(col)
    for i, ex in enumerate(result.exchanges, 1):
        colour = "yellow" if ex.expected else "red" if ex.refused else "green"
        table.add_row(
            str(i),
            ex.protocol,
            escape(ex.request),
            f"[{colour}]{escape(ex.status)}[/{colour}]",
            f"{ex.ms:.0f}",
            escape(ex.refused) + (" (expected: handled by the collector)" if ex.expected else ""),
        )
    out.print(table)
    for status, text in result.findings:
        colour = {"ok": "green", "warn": "yellow", "fail": "red"}[status]
        out.print(f"[{colour}]{status}[/{colour}] {escape(text)}")
    refused = sum(1 for ex in result.exchanges if ex.refused and not ex.expected)
    out.print(
        f"{len(result.exchanges)} request(s), {refused} refused or unexpected; nothing stored"
    )
    return 0 if result.ok else 1


def _month(value: str) -> str:
    from analytics.policy import PolicyError, check_month

    try:
        return check_month(value)
    except PolicyError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def cmd_evaluate(args: argparse.Namespace) -> int:
    from analytics.evaluate import MonthNotCollected
    from analytics.policy import PolicyError
    from contract.roster import RosterError
    from pipelines.config import ConfigError

    cfg = _read_config(args)
    if cfg is None:
        return 2
    from pipelines.evaluate import MonthNotEnded, check_ended, run_evaluation

    try:
        check_ended(cfg, args.month, args.partial)  # before a Prefect server is started
        if args.prefect or _prefect_api():  # the run shows in a Prefect UI
            from pipelines.evaluate import evaluate  # Prefect is imported only for a flow

            result = evaluate(config_path=str(cfg.path), month=args.month, partial=args.partial)
        else:  # the same code, without a temporary Prefect server
            result = run_evaluation(str(cfg.path), args.month, partial=args.partial)
    except (PolicyError, RosterError, ConfigError, MonthNotCollected, MonthNotEnded) as exc:
        err.print(f"[red]error:[/red] {escape(str(exc))}")
        return 2
    table = Table(title=f"unit ranking {result['month']} ({result['policy']})")
    for col in (
        "rank",
        "unit",
        "mailboxes",
        "regular",
        "share regular",
        "change",
        "unattended unit mailboxes",
    ):
        table.add_column(col)
    for u in result["unit_ranking"]:
        share = u["share_regular"]
        change = u["share_regular_change"]
        table.add_row(
            str(u["rank"]),
            u["unit_name"],
            str(u["mailboxes"]),
            str(u["regular"]),
            f"{share:.0%}" if share is not None else "-",
            f"{change:+.0%}" if change is not None else "-",
            str(u["unit_mailboxes_unattended"]),
        )
    out.print(table)
    if result["days_collected"] < result["days"]:
        out.print(
            f"[yellow]partial month:[/yellow] {result['days_collected']} of {result['days']} "
            "days collected; usage is counted over those days only"
        )
    share = result["regular_share"]
    out.print(
        f"regular users: {share:.0%} (Bình Dương baseline 30%); "
        if share is not None
        else "no mailboxes; ",
        end="",
    )
    out.print(
        f"{result['capped']} people capped; {result['confirmed_evidence']} confirmed "
        f"and {result['suspected_evidence']} suspected evidence rows"
    )
    for name, path in result["paths"].items():
        out.print(f"  {name}: {path}")
    for name, path in result.get("bundles", {}).items():  # [[scopes]]: one bundle each
        out.print(f"  scope {name}: {path}/")
    if "delivery" in result:  # the flow delivered (a task of its own, with retries)
        out.print(f"delivery: {result['delivery']['outcomes']}")
    elif cfg.delivery is not None and not args.partial:
        return _deliver(cfg, result["month"], dry_run=False, resend=False)
    return 0


def _deliver(cfg: Any, month: str, *, dry_run: bool, resend: bool) -> int:
    """Mail the month's bundles (or list them): a table of what became of each message."""
    from pipelines.delivery import DeliveryError, deliver_month

    try:
        report = deliver_month(cfg, month, dry_run=dry_run, resend=resend)
    except DeliveryError as exc:
        err.print(f"[red]error:[/red] {escape(str(exc))}")
        return 2
    table = Table(title=f"delivery {month}" + (" (dry run: nothing sent)" if dry_run else ""))
    for col in ("bundle", "recipient", "outcome", "message-id", "detail"):
        table.add_column(col)
    colours = {"sent": "green", "failed": "red", "possibly sent": "yellow"}
    for o in report.outcomes:
        colour = colours.get(o.outcome, "default")
        table.add_row(
            escape(o.bundle),
            escape(o.recipient),
            f"[{colour}]{o.outcome}[/{colour}]",
            escape(o.message_id),
            escape(o.detail),
        )
    out.print(table)
    for name, files in report.attachments.items():
        for file, size, digest in files:
            out.print(f"  {escape(name)}: {escape(file)} {size:,} bytes sha256 {digest}")
    if not report.outcomes:
        out.print("no recipients: set [delivery] recipients")
    unsure = [o for o in report.outcomes if o.outcome in ("failed", "possibly sent")]
    return 1 if unsure else 0


def cmd_deliver(args: argparse.Namespace) -> int:
    from analytics.policy import check_month

    cfg = _read_config(args)
    if cfg is None:
        return 2
    if cfg.delivery is None:
        err.print(f"[red]error:[/red] {escape(str(cfg.path))} has no [delivery] section")
        return 2
    from pipelines.evaluate import last_month

    month = check_month(args.month) if args.month else last_month(cfg.tz)
    return _deliver(cfg, month, dry_run=args.dry_run, resend=args.resend)


def cmd_remind(args: argparse.Namespace) -> int:
    from contract.roster import RosterError
    from pipelines.config import ConfigError

    cfg = _read_config(args)
    if cfg is None:
        return 2
    if cfg.reminders is None:
        err.print(f"[red]error:[/red] {escape(str(cfg.path))} has no [reminders] section")
        return 2
    from pipelines.remind import reminder_day, run_reminders

    day = reminder_day(cfg, args.date)
    today = reminder_day(cfg, None)
    if day > today:
        err.print(
            f"[red]error:[/red] {day} is after today ({today} in {cfg.timezone}): its days "
            "are not collected yet"
        )
        return 2
    try:
        report = run_reminders(cfg, day, dry_run=args.dry_run)
    except (ConfigError, RosterError) as exc:
        err.print(f"[red]error:[/red] {escape(str(exc))}")
        return 2
    if not report.reminder_day:
        days = ", ".join(str(d) for d in cfg.reminders.days)
        out.print(f"{day} is not a reminder day (reminders.days = [{days}]): nothing to do")
        return 0
    title = f"reminders {day}" + (" (dry run: nothing sent)" if args.dry_run else "")
    table = Table(title=title)
    for col in ("to", "unit", "recipient", "people", "outcome", "detail"):
        table.add_column(col)
    colours = {"sent": "green", "failed": "red", "possibly sent": "yellow"}
    for m in report.messages:
        colour = colours.get(m.outcome, "default")
        table.add_row(
            m.kind,
            escape(m.unit_code),
            escape(m.recipient),
            str(len(m.people)),
            f"[{colour}]{m.outcome}[/{colour}]",
            escape(m.detail),
        )
    out.print(table)
    if not report.messages:
        out.print("nobody to remind: every unit's staff is active so far this month")
    if report.units_without_head:
        out.print(
            "[yellow]note:[/yellow] units with people to remind but no head in "
            f"reminders.heads: {escape(', '.join(report.units_without_head))}"
        )
    unsure = [m for m in report.messages if m.outcome in ("failed", "possibly sent")]
    return 1 if unsure else 0


def cmd_export(args: argparse.Namespace) -> int:
    from analytics.evaluate import MonthNotCollected
    from analytics.export import ExportError, export_scope, months_between, resolve_scope
    from analytics.policy import PolicyError
    from contract.roster import RosterError
    from pipelines.config import ConfigError

    if args.month and (args.from_month or args.to_month):
        err.print("[red]error:[/red] give --month, or --from and --to, not both")
        return 2
    first = args.month or args.from_month
    last = args.month or args.to_month or args.from_month
    if not first:
        err.print("[red]error:[/red] --month (or --from and --to) is needed")
        return 2
    cfg = _read_config(args)
    if cfg is None:
        return 2
    out_path = Path(args.out)
    if out_path.exists() and not args.force:
        err.print(f"[red]error:[/red] {escape(str(out_path))} exists (--force replaces it)")
        return 2
    key = None
    if args.pseudonymise:
        from pipelines.secrets import export_key

        try:
            key = export_key(cfg)
        except ConfigError as exc:
            err.print(f"[red]error:[/red] {escape(str(exc))}")
            return 2
    from pipelines.evaluate import evaluation_inputs, scope_policies

    try:
        months = months_between(first, last)
        inputs = evaluation_inputs(cfg)
        scope = resolve_scope(args.scope, cfg.scopes, inputs.tree())
        policies = dict((s.name, p) for s, p in scope_policies(cfg, inputs))
        summary = export_scope(
            inputs,
            scope,
            months,
            out_path,
            policy=policies.get(scope.name),  # a [[scopes]] entry's own policy
            key=key,
            agency=cfg.agency,
        )
    except (ExportError, ConfigError, RosterError, PolicyError, MonthNotCollected) as exc:
        err.print(f"[red]error:[/red] {escape(str(exc))}")
        return 2
    form = "pseudonymised" if summary.pseudonymised else "in the clear (names and addresses)"
    out.print(
        f"{escape(str(summary.path))}: scope {escape(summary.scope)}, {summary.people} "
        f"people, {', '.join(summary.months)}, {form}"
    )
    for name, rows in summary.tables.items():
        out.print(f"  {name}: {rows:,} rows")
    return 0


def cmd_compact(args: argparse.Namespace) -> int:
    from pipelines.migrate import convert_layout
    from pipelines.storage import CollectionBusy, DataDir

    cfg = _read_config(args)
    if cfg is None:
        return 2
    data = DataDir(cfg.data_dir)
    try:
        with data.collect_lock("compact"):
            data.recover()
            done = convert_layout(data)
    except CollectionBusy as exc:
        err.print(f"[red]error:[/red] {escape(str(exc))}")
        return 3
    if done is None:
        out.print(f"{cfg.data_dir}: already one file per dataset per night; nothing to do")
    else:
        out.print(
            f"{cfg.data_dir}: {done.files_read:,} per-mailbox files of {done.mailboxes:,} "
            f"mailboxes -> {done.night_files:,} night files ({done.rows:,} message rows); "
            f"{done.files_dropped:,} uncommitted files dropped"
        )
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from mailusage.demo import run_demo

    return run_demo(
        args.workdir,
        cli=main,
        staff=args.staff,
        nights=args.nights,
        graph=args.graph,
        months=args.months,
        serve=args.serve,
        province=args.province,
    )


def _positive(value: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number of at least 1")
    return int(value)


_BAD = "the config or the roster is wrong (the message says where)"


def _command(
    sub: Any, name: str, summary: str, description: str, exits: dict[int, str]
) -> argparse.ArgumentParser:
    """A subcommand whose --help says what it does and what each exit code means."""
    codes = "\n".join(f"  {code}  {meaning}" for code, meaning in sorted(exits.items()))
    parser: argparse.ArgumentParser = sub.add_parser(
        name,
        help=summary,
        description=description,
        epilog=f"exit codes:\n{codes}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    return parser


def _config(p: argparse.ArgumentParser) -> None:
    """``--config FILE``, defaulting to $MAILUSAGE_CONFIG (checked in :func:`main`)."""
    env = os.environ.get("MAILUSAGE_CONFIG")
    p.add_argument(
        "--config",
        metavar="FILE",
        default=env or None,
        help="the TOML config file (default: $MAILUSAGE_CONFIG"
        + (f", now {env})" if env else ", not set now: then --config is needed)"),
    )
    p.set_defaults(config_parser=p)


def _prefect_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--prefect",
        action="store_true",
        help="run as a Prefect flow even without PREFECT_API_URL (a temporary local "
        "server is started, ~10 s); with PREFECT_API_URL set it always does",
    )


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("mailusage")
    except PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown"


class _Version(argparse.Action):
    """``--version``, looked up only when asked (importlib.metadata costs start-up time)."""

    def __call__(self, parser: argparse.ArgumentParser, *args: Any, **kwargs: Any) -> None:
        print(f"mailusage {_version()}")  # to stdout, as argparse's own "version" action
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mailusage",
        description=__doc__.splitlines()[0],
        epilog="Run `mailusage COMMAND --help` for a command's options.",
    )
    parser.add_argument("--version", action=_Version, nargs=0, help="print the release and exit")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    p = _command(
        sub,
        "collect",
        "one nightly collection of every roster mailbox",
        "Reads every roster mailbox's metadata (read-only) into the data directory: one "
        "night, committed whole; a bad mailbox is recorded with its reason and the night "
        "goes on. Re-running a night replaces it.",
        {
            0: "every mailbox collected",
            1: "some mailbox failed (recorded with its reason in run_mailboxes), or was "
            "skipped because a later night is already committed (see forget-night)",
            2: "the config or the roster is wrong, a secret is not set, or --date is after "
            "today (the message says which); nothing was written",
            3: "another collection holds this data directory; nothing was changed",
        },
    )
    _config(p)
    p.add_argument(
        "--date",
        type=_night,
        default=None,
        help="the night to record, YYYY-MM-DD, not after today (default: today in the "
        "agency's zone)",
    )
    p.add_argument("--quiet", action="store_true", help="one summary line, no table")
    _prefect_flag(p)
    p.set_defaults(func=cmd_collect)
    p = _command(
        sub,
        "doctor",
        "check every source and the roster",
        "Checks the config (with the settings in force and which are defaults), the roster, "
        "and per source TCP, TLS, login, master-user rights, CONDSTORE, QUOTA, the Sent "
        "folder and the server signals configured. Changes nothing. With --probe MAILBOX: "
        "that mailbox's whole night against its source, every request shown with its "
        "status and what the server refused; nothing is stored.",
        {0: "every check passed", 1: "some check failed (the table says which)", 2: _BAD},
    )
    _config(p)
    p.add_argument(
        "--probe",
        metavar="MAILBOX",
        help="send one mailbox's night to its source and show every request (stores nothing)",
    )
    p.set_defaults(func=cmd_doctor)
    p = _command(
        sub,
        "evaluate",
        "the monthly evaluation: ranking, violations, HR CSV",
        "Turns a collected month into reports/YYYY-MM/: person_month.parquet (usage per "
        "person), unit_month.parquet (every unit of the tree, its units below included, "
        "ranked among its siblings), unit_ranking.csv, violations.csv (evidence), review.csv "
        "(suspected, never capped), hr_ratings.csv and hr_ratings.xlsx (HR's rating input), "
        "report.html and report.pdf (the chairman's report); with [[scopes]], each scope's "
        "bundle in reports/YYYY-MM/<scope>/. "
        "A partial month says how many of its days were collected. With a [delivery] "
        "section, a whole month's bundles are then mailed (see `deliver`).",
        {
            0: "evaluated (and, with [delivery], every bundle mailed)",
            1: "evaluated, but some message of the delivery failed (see `deliver`)",
            2: _BAD + ", a malformed month, a month with no collected night, or a month "
            "that has not ended (without --partial)",
        },
    )
    _config(p)
    p.add_argument(
        "--month",
        type=_month,
        default=None,
        help="YYYY-MM (default: last month in the agency's time zone)",
    )
    p.add_argument(
        "--partial",
        action="store_true",
        help="evaluate a month that has not ended yet, over the days collected so far "
        "(the report and the HR file say so)",
    )
    _prefect_flag(p)
    p.set_defaults(func=cmd_evaluate)
    p = _command(
        sub,
        "deliver",
        "mail the month's evaluated bundles to their recipients",
        "Mails each bundle of the month (reports/YYYY-MM/: report.pdf, hr_ratings*.xlsx, "
        "violations.csv) to its recipients through [delivery]'s SMTP server, one message "
        "each, and records what went to whom in the state store: a rerun sends only what "
        "has not gone. `evaluate` does this itself when [delivery] is configured.",
        {
            0: "every message sent (or sent before), or listed with --dry-run",
            1: "some message failed, or may have gone in a run that was stopped (the table "
            "says which; the rest are recorded and not sent again)",
            2: _BAD + ", no [delivery] section, a bundle file missing or too large",
        },
    )
    _config(p)
    p.add_argument(
        "--month",
        type=_month,
        default=None,
        help="YYYY-MM (default: last month in the agency's time zone)",
    )
    p.add_argument("--dry-run", action="store_true", help="list what would be sent; send nothing")
    p.add_argument(
        "--resend",
        action="store_true",
        help="send again to recipients the store says were already sent to",
    )
    p.set_defaults(func=cmd_deliver)
    p = _command(
        sub,
        "remind",
        "remind unit heads of their staff not yet active this month",
        "On a day of reminders.days, sends each unit head (reminders.heads) the list of "
        "their unit's staff not yet active this month so far (days active, last login; "
        "'unknown' where a signal is missing), and with reminders.notify_staff each such "
        "person a short note; through [delivery]'s server, rate-limited, recorded so that "
        "a rerun the same day sends nothing new. A day not in reminders.days does nothing.",
        {
            0: "sent (or sent before), listed with --dry-run, or not a reminder day",
            1: "some reminder failed or may have gone in a run that was stopped",
            2: _BAD + ", no [reminders] section, a head's unit not in the roster, the "
            "SMTP password not set, or --date after today",
        },
    )
    _config(p)
    p.add_argument(
        "--date",
        type=_night,
        default=None,
        help="the day, YYYY-MM-DD, not after today (default: today in the agency's zone)",
    )
    p.add_argument("--dry-run", action="store_true", help="list what would be sent; send nothing")
    p.set_defaults(func=cmd_remind)
    p = _command(
        sub,
        "export",
        "one scope's data as a DuckDB file for an analyst, optionally pseudonymised",
        "Writes OUT, one DuckDB file holding only the scope's people: the roster rows of "
        "its units, their mailboxes' collected rows (messages, mailbox_status, logins, "
        "forwarding, contacts, mail_log_deliveries) for the months asked, those months' "
        "person_month, unit_month and violations, and a readme table. A roster person "
        "outside the scope is written outside-scope@<domain>. With --pseudonymise, every "
        "address, employee id, message id and folder is a keyed hash (the key: [export] "
        "key) and names are dropped; domains and their classes stay. The columns are "
        "listed in docs/data-dictionary.md, 'Analyst exports'.",
        {
            0: "written",
            2: _BAD + ", an unknown --scope, a month with no collected night, OUT exists "
            "(without --force), or --pseudonymise without a usable [export] key; nothing "
            "was written",
        },
    )
    _config(p)
    p.add_argument(
        "--scope",
        required=True,
        help="a [[scopes]] name, a unit_code of the tree (that unit and every unit below "
        "it), or `all` for the whole tree",
    )
    p.add_argument("--month", type=_month, default=None, help="the month, YYYY-MM")
    p.add_argument("--from", dest="from_month", type=_month, default=None, help="first month")
    p.add_argument("--to", dest="to_month", type=_month, default=None, help="last month")
    p.add_argument("--out", required=True, metavar="OUT", help="the DuckDB file to write")
    p.add_argument(
        "--pseudonymise",
        action="store_true",
        help="keyed hashes instead of addresses and ids, names dropped ([export] key)",
    )
    p.add_argument("--force", action="store_true", help="replace OUT when it exists")
    p.set_defaults(func=cmd_export)
    p = _command(
        sub,
        "forget-night",
        "undo a committed night (a mistaken --date): files removed, cursors restored",
        "Removes every file of NIGHT from the data directory and puts every mailbox's "
        "cursors (and every login log's read position) back to where that night started, "
        "so that the next nights are collected as if it had never run. Only the latest "
        "committed night of its mailboxes can be forgotten: a later one is forgotten "
        "first. --dry-run lists what would be done.",
        {
            0: "forgotten, dry run, or nothing stored for that night",
            2: _BAD + ", or a later night is committed for some of its mailboxes "
            "(nothing was changed)",
            3: "a collection holds this data directory; nothing was changed",
        },
    )
    _config(p)
    p.add_argument("night", type=_night, metavar="NIGHT", help="the night to forget, YYYY-MM-DD")
    p.add_argument("--dry-run", action="store_true", help="list what would be removed and restored")
    p.set_defaults(func=cmd_forget_night)
    p = _command(
        sub,
        "compact",
        "convert a data directory of one file per mailbox to one per night",
        "Converts a data directory written by mailusage 0.1 to one file per dataset per "
        "night, keeping every committed row once (the first collect does the same).",
        {0: "converted, or nothing to convert", 2: _BAD, 3: "a collection is running"},
    )
    _config(p)
    p.set_defaults(func=cmd_compact)
    p = _command(
        sub,
        "demo",
        "a local Dovecot with a small agency, collected end to end",
        "Starts a private Dovecot on 127.0.0.1, builds a synthetic agency, lives through last "
        "month night by night (or the last --months N months), evaluates each month and "
        "checks the findings against what it planted. With --serve its Dovecot stays up "
        "afterwards, so the operator commands (doctor, collect, evaluate) can be tried on "
        "the demo's config: the commands to paste are printed, the master password is in "
        "a 0600 file beside the config and only read by them.",
        {
            0: "every planted violation found, none falsely confirmed (with --province: "
            "in every scope's bundle too)",
            1: "the self-check disagreed, or a night or the evaluation failed",
            2: "the work directory holds files an earlier demo did not write",
        },
    )
    p.add_argument(
        "--workdir", default="demo-data", help="where the demo writes (default demo-data)"
    )
    p.add_argument(
        "--staff",
        type=_positive,
        default=None,
        help="staff members (default 40; with --province 240)",
    )
    p.add_argument(
        "--province",
        action="store_true",
        help="a small province instead of one district: a three-level units.csv (the UBND "
        "tỉnh, two sở, two UBND huyện with offices and communes), a [[scopes]] bundle for "
        "the province, each sở and each huyện, each checked against the truth",
    )
    p.add_argument(
        "--months",
        type=_positive,
        default=1,
        help="live through the last N months, each evaluated in turn, so the report's "
        "12-month trend has N points (default 1; a month takes ~2 minutes here)",
    )
    p.add_argument(
        "--nights",
        type=_positive,
        default=None,
        help="simulate only the first N days of each month (default: all)",
    )
    p.add_argument(
        "--graph",
        action="store_true",
        help='put one unit\'s mailboxes on a local Microsoft Graph tenant (kind = "graph")',
    )
    p.add_argument(
        "--serve",
        action="store_true",
        help="keep the demo's Dovecot running afterwards, until Ctrl-C or SIGTERM, and "
        "print the operator commands that use it",
    )
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    prefect_defaults()  # before any command imports Prefect
    parser = build_parser()
    args = parser.parse_args(argv)
    needs = getattr(args, "config_parser", None)
    if needs is not None and not args.config:  # exit 2 with the command's usage
        needs.error("--config FILE is needed (or set MAILUSAGE_CONFIG to the config file)")
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
