"""Monthly evaluation flow: the collected month -> reports/YYYY-MM/ (usage, ranking,
violations with evidence, review list, HR rating input).

Deployment: the 1st of each month at 06:00 Asia/Ho_Chi_Minh, for the previous month.
Prefect is imported only when the flow itself is asked for (``pipelines.evaluate.evaluate``):
the CLI without a Prefect API and the notebooks call :func:`run_evaluation` without paying
Prefect's import (~1 s here, ~2 s with the `analyst` extra: benchmarks/README.md).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from analytics.evaluate import EvaluationInputs, evaluate_month, rated
from analytics.policy import Policy, check_month, load_policy, load_waivers
from analytics.scopes import write_bundles
from contract.arrays import scalar
from contract.months import days_in, has_begun, has_ended, last_ended_month, today_in
from contract.roster import RosterNotes, load_roster
from contract.scopes import Bundle, Scope
from contract.units import load_tree
from contract.usage import regular_share
from pipelines.config import Config, ConfigError, load_config


def last_month(tz: Any) -> str:
    """The month before the current one in the agency's zone: ``"2026-10"`` in November."""
    return last_ended_month(today_in(tz))


class MonthNotEnded(Exception):
    """The month has not ended in the agency's zone: its figures would be partial (or,
    for a month not yet begun, made of mistaken nights). Asked for with ``partial``."""


def check_ended(cfg: Config, month: str | None, partial: bool = False) -> None:
    """Refuse a month that has not ended (agency zone) unless ``partial``; a month that
    has not begun is refused always.

    >>> check_ended(cfg, "2026-12")   # on 2026-12-05
    Traceback (most recent call last):
    MonthNotEnded: month 2026-12 has not ended (today is 2026-12-05 in Asia/Ho_Chi_Minh) ...
    """
    if month is None:
        return  # last month: ended
    check_month(month)  # a PolicyError, as the evaluation would raise
    today = today_in(cfg.tz)
    if not has_begun(month, today):
        raise MonthNotEnded(
            f"month {month} has not begun (today is {today} in {cfg.timezone}): nothing of "
            "it can have been collected; a night stored under it is a mistaken --date "
            "(mailusage forget-night, docs/operator-guide.md §5c)"
        )
    if not has_ended(month, today) and not partial:
        raise MonthNotEnded(
            f"month {month} has not ended (today is {today} in {cfg.timezone}): its figures "
            "would be partial; add --partial to evaluate the days collected so far"
        )


def evaluation_inputs(cfg: Config) -> EvaluationInputs:
    """Everything an evaluation reads, from the config (also what notebooks start from)."""
    notes = RosterNotes()
    people = load_roster(cfg.roster_path, lambda: [s.name for s in cfg.sources], notes)
    return EvaluationInputs(
        data_dir=cfg.data_dir,
        people=people,
        units=load_tree(cfg.units_path, people, cfg.roster_path, notes.lines),
        timezone=cfg.timezone,
        official_domains=cfg.official_domains,
        policy=load_policy(cfg.policy),
        waivers=load_waivers(cfg.waivers_path),
        public_domains_extra=cfg.public_domains_extra,
        letterhead=cfg.letterhead,
        signals=cfg.signals(),
    )


def scope_policies(cfg: Config, inputs: EvaluationInputs) -> list[tuple[Scope, Policy]]:
    """Each ``[[scopes]]`` entry with its policy (its own, or the evaluation's); a root that
    is not a unit of the tree is a ConfigError naming the entry."""
    tree = inputs.tree()
    out = []
    for i, scope in enumerate(cfg.scopes):
        if scope.root is not None and scope.root not in tree.units:
            where = cfg.units_path.name if cfg.units_path else "the roster's units"
            raise ConfigError(f"scopes[{i}].root {scope.root!r} is not a unit of {where}")
        out.append((scope, load_policy(scope.policy) if scope.policy else inputs.policy))
    return out


def month_bundles(cfg: Config, month: str) -> list[Bundle]:
    """The month's bundles written so far, in the config's order: (scope name, directory,
    recipients) — what a deliverer mails, and to whom.

    >>> month_bundles(cfg, "2026-11")[0]
    Bundle(scope='province', directory=PosixPath('/srv/reports/2026-11/province'), ...)
    """
    check_month(month)
    found = [(s, cfg.reports_dir / s.folder(month)) for s in cfg.scopes]
    return [Bundle(s.name, d, s.recipients) for s, d in found if (d / "report.pdf").exists()]


def _rows_with(column: Any, value: str) -> int:
    """How many values of a text column are ``value`` (an Arrow scalar, not a Python one:
    pyarrow would import pandas to look at it; contract/arrays.py)."""
    return int(pc.sum(pc.equal(column, scalar(value, pa.string()))).as_py() or 0)


def run_evaluation(
    config_path: str,
    month: str | None = None,
    language: str | None = None,
    partial: bool = False,
) -> dict[str, Any]:
    cfg = load_config(config_path)
    check_ended(cfg, month, partial)
    month = month or last_month(cfg.tz)
    inputs = evaluation_inputs(cfg)
    lang = language or cfg.language
    scopes = scope_policies(cfg, inputs)  # a wrong root stops the run before any file
    result = evaluate_month(inputs, month, out_dir=cfg.reports_dir, lang=lang)
    bundles = write_bundles(inputs, month, scopes, cfg.reports_dir, result, lang) if scopes else {}
    pm = result.person_month
    share = regular_share(rated(pm)["usage_class"].to_pylist())
    confidence = result.violations["confidence"]
    return {
        "month": month,
        # days of the month with a collected night, against the days it has: a partial
        # month is said so wherever its figures are shown
        "days_collected": pc.max(pm["nights_collected"]).as_py() or 0,
        "days": days_in(month),
        "policy": inputs.policy.name,
        "people": len(result.hr_rows),
        "regular_share": None if share is None else round(share, 4),
        "capped": sum(1 for r in result.hr_rows if r["capped"]),
        "confirmed_evidence": _rows_with(confidence, "confirmed"),
        "suspected_evidence": _rows_with(confidence, "suspected"),
        "paths": {k: str(v) for k, v in result.paths.items()},
        "unit_ranking": result.unit_ranking.to_pylist(),
        **({"bundles": {k: str(v) for k, v in bundles.items()}} if scopes else {}),
    }


def _evaluate_flow(
    config_path: str, month: str | None = None, partial: bool = False
) -> dict[str, Any]:
    """Monthly evaluation flow. ``month`` defaults to last month in the agency's zone; a
    month that has not ended is refused (the run Failed) unless ``partial``. With a
    ``[delivery]`` section, the month's bundles are then mailed (a task with retries,
    pipelines/delivery.py); a partial month is never mailed."""
    from prefect import get_run_logger

    summary = run_evaluation(config_path, month, partial=partial)
    get_run_logger().info(
        "evaluated %s with %s: %s people, %s capped; %s of %s days collected; files in %s",
        summary["month"],
        summary["policy"],
        summary["people"],
        summary["capped"],
        summary["days_collected"],
        summary["days"],
        Path(next(iter(summary["paths"].values()))).parent,
    )
    cfg = load_config(config_path)
    if cfg.delivery is not None and not partial:
        from pipelines.delivery import delivery_task

        summary["delivery"] = delivery_task(cfg)(config_path, summary["month"])
    return summary


def __getattr__(name: str) -> Any:
    """``evaluate``, the Prefect flow (prefect.yaml's ``pipelines/evaluate.py:evaluate``),
    built on first use so that importing this module does not import Prefect."""
    if name != "evaluate":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from prefect import flow

    built = flow(name="evaluate", log_prints=False)(_evaluate_flow)
    globals()["evaluate"] = built  # one Flow object per process
    return built
