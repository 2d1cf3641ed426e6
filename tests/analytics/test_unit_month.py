"""analytics/sql/unit_month.sql: each unit's own and subtree figures and its rank among its
siblings, checked against truth computed here, independently of the SQL: a Python walk up
the parents and the share rule of contract/usage.py."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from analytics.evaluate import evaluate_month
from analytics.queries import Workspace
from contract.units import Unit, UnitTree
from contract.usage import RATED_CLASSES, regular_share
from tests.analytics.fixture import ROSTER, addr
from tests.analytics.test_evaluate import MONTH, inputs

# A province with three levels: its office and two districts; district D1 with an office
# and two communes, one of which has nobody rated; a department with no staff of its own.
TREE = UnitTree.of(
    [
        Unit("P", "UBND tỉnh", None, "UBND tỉnh", "p1@x.gov.vn"),
        Unit("S", "Sở Nội vụ", "P", "sở", "s1@x.gov.vn"),
        Unit("S-VP", "Văn phòng Sở", "S", "phòng"),
        Unit("D1", "UBND huyện Một", "P", "UBND huyện", "d1@x.gov.vn"),
        Unit("D1-O", "Phòng Văn hóa", "D1", "phòng", "nobody@x.gov.vn"),
        Unit("D1-C1", "UBND xã Một", "D1", "UBND xã", "c1@x.gov.vn"),
        Unit("D1-C2", "UBND xã Hai", "D1", "UBND xã"),
        Unit("D2", "UBND huyện Hai", "P", "UBND huyện"),
        Unit("D2-C1", "UBND xã Ba", "D2", "UBND xã"),
    ]
)
# (employee_id, unit_code, usage_class, is_unit_mailbox, active_days)
PEOPLE = [
    ("p1", "P", "regular", False, 20),
    ("p2", "P", "inactive", False, 0),
    ("s1", "S-VP", "occasional", False, 3),
    ("s2", "S-VP", "regular", False, 9),
    ("d1", "D1", "occasional", False, 2),
    ("o1", "D1-O", "regular", False, 15),
    ("o2", "D1-O", "no_mailbox", False, 0),
    ("c1", "D1-C1", "regular", False, 12),
    ("c2", "D1-C1", "inactive", False, 0),
    ("c3", "D1-C1", "regular", False, 10),
    ("ux", "D1-C1", "inactive", True, 0),  # a unit mailbox: not a person
    ("c4", "D1-C2", "not_collected", False, 0),  # nobody rated: the share is unknown
    ("e1", "D2-C1", "regular", False, 8),
    ("e2", "D2-C1", "occasional", False, 1),
]
# last month: D2 had no data at all (its share then unknown, not 0)
PREVIOUS = {"p1": "regular", "p2": "regular", "o1": "inactive", "c1": "regular"}


def _person_month(classes: dict[str, str]) -> pa.Table:
    rows = [
        {
            "employee_id": e,
            "full_name": f"Người {e}",
            "mailbox": f"{e}@x.gov.vn",
            "unit_code": unit,
            "is_unit_mailbox": unit_mailbox,
            "has_mailbox": cls != "no_mailbox",
            "usage_class": classes.get(e, "not_collected"),
            "active_days": days,
        }
        for e, unit, cls, unit_mailbox, days in PEOPLE
    ]
    return pa.Table.from_pylist(rows)


def truth(tree_parents: dict[str, str | None], people, previous) -> dict[str, dict]:
    """Each unit's figures, counted by walking every person up their unit's parents."""

    def chain(unit: str) -> list[str]:
        out = [unit]
        while tree_parents[out[-1]] is not None:
            out.append(tree_parents[out[-1]])  # type: ignore[arg-type]
        return out

    out: dict[str, dict] = {
        u: {"own": [], "all": [], "prev": [], "depth": len(chain(u)) - 1} for u in tree_parents
    }
    for e, unit, cls, unit_mailbox, _ in people:
        if unit_mailbox:
            continue
        out[unit]["own"].append(cls)
        for u in chain(unit):
            out[u]["all"].append(cls)
            out[u]["prev"].append(previous.get(e, "not_collected"))
    for figures in out.values():
        share = regular_share(figures["all"])
        figures["share"] = None if share is None else round(share, 4)
        prev = regular_share(figures["prev"])
        figures["share_prev"] = None if prev is None else round(prev, 4)
        own = regular_share(figures["own"])
        figures["own_share"] = None if own is None else round(own, 4)
    for u, figures in out.items():  # rank: 1 + siblings with a higher share; unknown last
        siblings = [v for k, v in out.items() if tree_parents[k] == tree_parents[u]]
        key = -1.0 if figures["share"] is None else figures["share"]
        figures["rank"] = 1 + sum(
            (-1.0 if s["share"] is None else s["share"]) > key for s in siblings
        )
        figures["siblings"] = len(siblings)
    return out


def _run(tree: UnitTree, pm: pa.Table, prev: pa.Table) -> list[dict]:
    ws = Workspace(duckdb.connect())
    ws.register("person_month", pm)
    ws.register("person_month_prev", prev)
    ws.load_units(tree)
    return ws.run("unit_month", rated_classes=sorted(RATED_CLASSES)).to_pylist()


def test_every_level_against_truth_computed_apart():
    rows = _run(TREE, _person_month({e: c for e, _, c, _, _ in PEOPLE}), _person_month(PREVIOUS))
    parents = {c: u.parent for c, u in TREE.units.items()}
    want = truth(parents, PEOPLE, PREVIOUS)
    # each unit before its children, in the tree's order
    assert [r["unit_code"] for r in rows] == ["P", "S", "S-VP", "D1", "D1-O", "D1-C1", "D1-C2",
                                              "D2", "D2-C1"]  # fmt: skip
    for r in rows:
        w = want[r["unit_code"]]
        rated = [c for c in w["all"] if c in RATED_CLASSES]
        assert r["parent_code"] == parents[r["unit_code"]]
        assert r["depth"] == w["depth"] == TREE.depth(r["unit_code"])
        assert r["own_headcount"] == len(w["own"])
        assert r["own_rated"] == sum(c in RATED_CLASSES for c in w["own"])
        assert r["own_regular"] == w["own"].count("regular")
        assert r["own_share_regular"] == w["own_share"]
        assert r["headcount"] == len(w["all"])
        assert r["rated"] == len(rated)
        for cls in ("regular", "occasional", "inactive", "no_mailbox", "not_collected"):
            assert r[cls] == w["all"].count(cls), (r["unit_code"], cls)
        assert r["mailboxes"] == len(w["all"]) - w["all"].count("no_mailbox")
        assert r["share_regular"] == w["share"], r["unit_code"]
        assert r["share_regular_prev"] == w["share_prev"], r["unit_code"]
        assert (r["rank_among_siblings"], r["siblings"]) == (w["rank"], w["siblings"])
    by = {r["unit_code"]: r for r in rows}
    # the hand-counted values the walk must give, so the truth itself is checked
    assert (by["P"]["headcount"], by["P"]["rated"], by["P"]["regular"]) == (13, 11, 6)
    assert (by["D1"]["headcount"], by["D1"]["share_regular"]) == (7, 0.6)
    assert by["D1-C2"]["share_regular"] is None  # nobody rated: unknown, never 0
    assert by["D1-C2"]["rank_among_siblings"] == 3  # unknown ranks last among its siblings
    assert by["D2"]["share_regular_prev"] is None  # no data last month: unknown
    assert by["S"]["own_headcount"] == 0 and by["S"]["headcount"] == 2
    # heads: found by their address; a head's address nobody in the roster has stays null
    assert (by["D1"]["head_employee_id"], by["D1"]["head_usage_class"]) == ("d1", "occasional")
    assert (by["D1-C1"]["head_name"], by["D1-C1"]["head_active_days"]) == ("Người c1", 12)
    assert by["D1-O"]["head_email"] == "nobody@x.gov.vn"
    assert by["D1-O"]["head_employee_id"] is None and by["D1-O"]["head_usage_class"] is None
    assert by["D2"]["head_email"] is None


def test_no_unit_mailbox_and_no_stranger_is_counted():
    """The unit mailbox of D1-C1 is rated inactive: were it counted, D1-C1's share would
    be 2/4, not 2/3."""
    rows = _run(TREE, _person_month({e: c for e, _, c, _, _ in PEOPLE}), _person_month({}))
    by = {r["unit_code"]: r for r in rows}
    assert (by["D1-C1"]["rated"], by["D1-C1"]["share_regular"]) == (3, 0.6667)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    from tests.analytics.fixture import build

    root = tmp_path_factory.mktemp("units")
    build(root / "data")
    return root


def test_the_evaluation_writes_unit_month_for_a_tree(data_dir, tmp_path):
    """The fixture agency as a district: unit A (a ward) with a residential group A1 below
    it (P09 moved there), B an office, both under the district Q, which has no staff."""
    rows = [(r[0], r[1], "A1", "Tổ dân phố 1", *r[4:]) if r[0] == "P09" else r for r in ROSTER]
    tree = UnitTree.of(
        [
            Unit("Q", "UBND quận Liên Chiểu", None, "UBND quận"),
            Unit("A", "UBND phường Hòa Minh", "Q", "UBND phường", addr("P01")),
            Unit("A1", "Tổ dân phố 1", "A", "tổ"),
            Unit("B", "Phòng Tài chính - Kế hoạch", "Q", "phòng", addr("P06")),
        ]
    )
    given = inputs(data_dir, rows=rows)
    given = type(given)(**{**given.__dict__, "units": tree})
    result = evaluate_month(given, MONTH, out_dir=tmp_path / "reports")
    got = {r["unit_code"]: r for r in result.unit_month.to_pylist()}
    pm = result.person_month.to_pylist()
    parents = {c: u.parent for c, u in tree.units.items()}
    people = [
        (p["employee_id"], p["unit_code"], p["usage_class"], p["is_unit_mailbox"], 0) for p in pm
    ]
    want = truth(parents, people, {"P01": "regular", "P02": "inactive"})
    for code, w in want.items():
        assert got[code]["headcount"] == len(w["all"])
        assert got[code]["share_regular"] == w["share"], code
        assert got[code]["rank_among_siblings"] == w["rank"], code
        assert got[code]["depth"] == w["depth"]
    # hand-counted: 11 people (UA is a unit mailbox), 9 rated, 3 regular (P01, P02, P03)
    assert (got["Q"]["headcount"], got["Q"]["rated"], got["Q"]["regular"]) == (11, 9, 3)
    assert (got["A"]["own_headcount"], got["A"]["headcount"]) == (4, 5)
    assert (got["A"]["head_employee_id"], got["A"]["head_usage_class"]) == ("P01", "regular")
    assert (got["B"]["head_employee_id"], got["B"]["head_usage_class"]) == ("P06", "inactive")
    written = pq.read_table(result.paths["unit_month"])
    assert written.to_pylist() == result.unit_month.to_pylist()
    # people sit in the leaves as before: the flat ranking is unchanged by the tree
    assert {r["unit_code"] for r in result.unit_ranking.to_pylist()} == {"A", "A1", "B"}
    # the report: each parent's units ranked among themselves, and the heads apart
    html = result.paths["report"].read_text(encoding="utf-8")
    level = html.split('id="level-1"', 1)[1].split("</table>", 1)[0]
    assert "Các đơn vị trực thuộc UBND quận Liên Chiểu" in level
    # A's share (2 of its 5 rated) above B's (1 of 4)
    assert level.index("UBND phường Hòa Minh") < level.index("Phòng Tài chính - Kế hoạch")
    assert "Các đơn vị trực thuộc UBND phường Hòa Minh" in html.split('id="level-2"', 1)[1]
    heads = html.split('id="heads-table"', 1)[1].split("</table>", 1)[0]
    assert "Nguyễn Văn An" in heads and "Huỳnh Thị Giang" in heads
    assert "1 trên 2 người đứng đầu đơn vị sử dụng hộp thư công vụ thường xuyên" in html


def test_a_flat_roster_is_one_level_ranked_as_the_unit_ranking(data_dir, tmp_path):
    result = evaluate_month(inputs(data_dir), MONTH, out_dir=tmp_path / "reports")
    flat = {r["unit_code"]: r for r in result.unit_month.to_pylist()}
    for r in result.unit_ranking.to_pylist():
        u = flat[r["unit_code"]]
        assert (u["depth"], u["parent_code"], u["siblings"]) == (0, None, 2)
        assert u["rank_among_siblings"] == r["rank"]
        assert u["own_headcount"] == u["headcount"] == r["headcount"]
        for column in ("regular", "occasional", "inactive", "share_regular"):
            assert u[column] == r[column], column
        assert u["share_regular_prev"] == r["share_regular_prev"]
    # and the report has no part of a tree it does not have
    html = result.paths["report"].read_text(encoding="utf-8")
    assert 'id="levels"' not in html and 'id="heads"' not in html


def test_every_column_is_in_the_data_dictionary():
    rows = _run(TREE, _person_month({}), _person_month({}))
    doc = (Path(__file__).resolve().parents[2] / "docs" / "data-dictionary.md").read_text("utf-8")
    section = doc.split("### `unit_month.parquet`", 1)[1].split("\n### ", 1)[0]
    missing = [c for c in rows[0] if f"`{c}`" not in section]
    assert missing == []
