"""Each scope's bundle: ``reports/YYYY-MM/<scope>/`` with the report about its subtree only
(report.html, report.pdf), the evidence of its people only (violations.csv, review.csv) and
one HR workbook per agency of the scope (``hr_ratings_<agency>.xlsx``), each with that
agency's people only.

    >>> paths = write_bundles(inputs, "2026-11", [(scope, policy)], Path("reports"), result, "vi")
    >>> paths["phu-giao"]
    PosixPath('reports/2026-11/phu-giao')

The figures are those of the whole evaluation under the scope's policy and language, cut to
the scope's people: a person's class, violations and cap are the same in every bundle that
shows them under the same policy. An agency is the nearest unit at or above a person's unit
whose kind is an agency's (contract/units.py: sở, ban, UBND huyện, UBND xã …), stopping at
the scope's root: a scope rooted at an office has one workbook, the office's.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future
from dataclasses import replace
from pathlib import Path

import duckdb
import pyarrow as pa

from analytics.evaluate import (
    EVIDENCE_COLUMNS,
    EVIDENCE_COLUMNS_MAIL_LOGS,
    HEADERS,
    HR_COLUMNS,
    HR_SHEETS,
    EvaluationInputs,
    EvaluationResult,
    _csv_bytes,
    _evidence_table,
    evaluate_month,
    hr_table,
)
from analytics.pdf import PdfPool, pool_size
from analytics.policy import Policy
from analytics.report import month_label, render_report
from analytics.workbook import hr_workbook
from contract.files import atomic_write
from contract.people import Person
from contract.scopes import Scope
from contract.units import UnitTree

__all__ = [
    "BUNDLE_FILES",
    "agencies",
    "members",
    "scope_units",
    "scoped",
    "write_bundle",
    "write_bundles",
]

BUNDLE_FILES = ("report.html", "report.pdf", "violations.csv", "review.csv")  # + workbooks
# the columns a table is cut by: identifiers from this list only, never from input
_KEYS = {
    "person_month": "employee_id",
    "violations": "employee_id",
    "coverage": "employee_id",
    "unit_ranking": "unit_code",
    "unit_month": "unit_code",
}
_HEADS = ("head_email", "head_employee_id", "head_name", "head_usage_class", "head_active_days")


def scope_units(tree: UnitTree, scope: Scope) -> tuple[str, ...]:
    """The unit codes a scope sees: its root's subtree, or the whole tree."""
    if scope.root is None:
        return tuple(c for root in tree.roots() for c in tree.subtree(root))
    return tree.subtree(scope.root)


def members(people: Sequence[Person], units: Iterable[str]) -> list[Person]:
    """The people of these units, in roster order."""
    wanted = set(units)
    return [p for p in people if p.unit_code in wanted]


def agencies(tree: UnitTree, scope: Scope, people: Sequence[Person]) -> dict[str, list[Person]]:
    """The scope's people by agency: the nearest agency at or above each person's unit,
    the scope's root when the way up reaches it first (the root's HR is the scope's)."""
    out: dict[str, list[Person]] = {}
    for p in people:
        agency = p.unit_code
        for code in (p.unit_code, *tree.ancestors(p.unit_code)):
            agency = code
            if code == scope.root or tree.units[code].is_agency or tree.units[code].parent is None:
                break
        out.setdefault(agency, []).append(p)
    return dict(sorted(out.items()))


def _cut(
    con: duckdb.DuckDBPyConnection, name: str, table: pa.Table, keep: list[str], ids: list[str]
) -> pa.Table:
    """``table``'s rows whose key column (:data:`_KEYS`) is in ``keep``, in their order; in
    ``unit_month``, a head who is not one of the people ``ids`` is left out (the head of an
    office may be on another unit's roster rows: outside the scope, so not named in it)."""
    con.register("whole", table)
    hidden = ""
    if name == "unit_month":
        shown = "head_employee_id is null or list_contains($ids, head_employee_id)"
        hidden = (
            "replace (" + ", ".join(f"case when {shown} then {c} end as {c}" for c in _HEADS) + ")"
        )
    text = f"select * {hidden} from whole where list_contains($keep, {_KEYS[name]})"
    params = {"keep": keep, **({"ids": ids} if hidden else {})}
    return con.sql(text, params=params).to_arrow_table()


def scoped(
    result: EvaluationResult, people: Sequence[Person], units: Sequence[str]
) -> EvaluationResult:
    """The evaluation cut to ``people`` (and ``units`` for the unit tables)."""
    ids = [p.employee_id for p in people]
    con = duckdb.connect()
    keep = {"employee_id": ids, "unit_code": list(units)}
    tables = {
        name: _cut(con, name, getattr(result, name), keep[_KEYS[name]], ids) for name in _KEYS
    }
    wanted = set(ids)
    share_prev = result.regular_share_prev
    roots = [r for r in tables["unit_month"].to_pylist() if r["unit_code"] == units[0]]
    if roots and len(units) < result.unit_month.num_rows:  # a subtree: its root's figure
        share_prev = roots[0]["share_regular_prev"]
    return replace(
        result,
        person_month=tables["person_month"],
        unit_ranking=tables["unit_ranking"],
        violations=tables["violations"],
        coverage=tables["coverage"],
        unit_month=tables["unit_month"],
        hr_rows=[r for r in result.hr_rows if r["employee_id"] in wanted],
        regular_share_prev=share_prev,
        paths={},
    )


def write_bundle(
    result: EvaluationResult,
    inputs: EvaluationInputs,
    scope: Scope,
    folder: Path,
    lang: str,
    reports_dir: Path | None = None,
) -> dict[str, Path]:
    """One scope's bundle from the whole evaluation ``result`` (its policy and language).
    Its PDF is laid out in a child process (analytics/pdf.py) that imports WeasyPrint while
    the tables are cut, and lays the report out while the evidence and workbooks are written."""
    with PdfPool(1) as pool:
        paths, pdf = _write_bundle(result, inputs, scope, folder, lang, reports_dir, pool.submit)
        atomic_write(paths["report.pdf"], pdf.result())
    return paths


def _write_bundle(
    result: EvaluationResult,
    inputs: EvaluationInputs,
    scope: Scope,
    folder: Path,
    lang: str,
    reports_dir: Path | None,
    lay_out: Callable[[str], Future[bytes]],
    workbooks: dict[tuple[int, str, str, tuple[str, ...]], bytes] | None = None,
) -> tuple[dict[str, Path], Future[bytes]]:
    """The bundle's files but report.pdf, whose layout ``lay_out`` has been handed: the
    caller writes it last, so a bundle with its report.pdf is a whole one. ``workbooks``
    keeps each agency's workbook by (result, language, agency, its people): an agency in
    two scopes under the same evaluation (the province's and its district's) has the same
    workbook, byte for byte (its date is fixed), made once."""
    tree = inputs.tree()
    units = scope_units(tree, scope)
    people = members(inputs.people, units)
    mine = scoped(result, people, units)
    root_name = tree.units[scope.root].name if scope.root else ""
    letterhead = scope.letterhead
    if not letterhead.issuing_body:
        letterhead = replace(letterhead, issuing_body=root_name or inputs.letterhead.issuing_body)
    view = replace(inputs, people=people, letterhead=letterhead)
    html = render_report(mine, view, lang, reports_dir=reports_dir, units=set(units))
    paths = {"report.html": folder / "report.html", "report.pdf": folder / "report.pdf"}
    pdf = lay_out(html)
    for name, confidence in (("violations.csv", "confirmed"), ("review.csv", "suspected")):
        evidence = _evidence_table(view, mine.violations, confidence, lang)
        paths[name] = folder / name
        columns = EVIDENCE_COLUMNS_MAIL_LOGS if result.mail_logs else EVIDENCE_COLUMNS
        atomic_write(paths[name], _csv_bytes(columns, evidence, lang))
    title = f"{HEADERS['month'][lang]} {month_label(result.month, lang)}"
    headers = {c: HEADERS[c][lang] for c in HR_COLUMNS}
    sheets = [(names[lang], columns) for names, columns in HR_SHEETS]
    for agency, staff in agencies(tree, scope, people).items():
        ids = {p.employee_id for p in staff}
        key = (id(result), lang, agency, tuple(p.employee_id for p in staff))
        name = f"hr_ratings_{agency}.xlsx"
        paths[name] = folder / name
        book = (workbooks or {}).get(key)
        if book is None:
            rows = [r for r in mine.hr_rows if r["employee_id"] in ids]
            heading = f"{tree.units[agency].name} — {title}"
            book = hr_workbook(hr_table(rows), headers, sheets, title=heading)
            if workbooks is not None:
                workbooks[key] = book
        atomic_write(paths[name], book)
    atomic_write(paths["report.html"], html.encode("utf-8"))
    return paths, pdf


def write_bundles(
    inputs: EvaluationInputs,
    month: str,
    scopes: Sequence[tuple[Scope, Policy]],
    reports_dir: Path,
    main: EvaluationResult,
    lang: str,
) -> dict[str, Path]:
    """Every scope's bundle; ``main`` is the month's evaluation under ``inputs.policy`` in
    ``lang``; a scope with another policy or language has the month evaluated once more
    for it (and for any other scope that shares them). The scope name -> its directory."""
    results: dict[tuple[str | None, str], EvaluationResult] = {(None, lang): main}
    out: dict[str, Path] = {}
    pending: list[tuple[Path, Future[bytes]]] = []
    workbooks: dict[tuple[int, str, str, tuple[str, ...]], bytes] = {}
    # the reports are laid out side by side, one child per core, while the next scope's
    # tables are cut and its files written (benchmarks/README.md, province_scale.py)
    with PdfPool(pool_size(len(scopes))) as pool:
        for scope, policy in scopes:
            scope_lang = scope.language or lang
            key = (None if policy == inputs.policy else scope.policy, scope_lang)
            view = replace(inputs, policy=policy)
            if key not in results:
                results[key] = evaluate_month(view, month, lang=scope_lang)
            folder = reports_dir / scope.folder(month)
            paths, pdf = _write_bundle(
                results[key], view, scope, folder, scope_lang, reports_dir, pool.submit, workbooks
            )
            pending.append((paths["report.pdf"], pdf))
            out[scope.name] = folder
        for path, pdf in pending:
            atomic_write(path, pdf.result())
    return out
