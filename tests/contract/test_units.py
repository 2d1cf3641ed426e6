"""contract.units: the unit tree read from units.csv, checked like the roster, and a flat
roster's units as a one-level tree."""

import doctest
from pathlib import Path

import pytest

import contract.sheets
import contract.units
from contract.people import Person
from contract.roster import RosterError, RosterNotes, load_roster
from contract.units import Unit, UnitsError, UnitTree, load_tree, load_units

HEADER = "unit_code,unit_name,parent_code,kind,head_email\n"
# A province, two levels below it: a department, a district with an office and a commune.
PROVINCE = (
    HEADER
    + "BD,UBND tỉnh Bình Dương,,UBND tỉnh,chutich@binhduong.gov.vn\n"
    + "STTTT,Sở Thông tin và Truyền thông,BD,sở,gd.stttt@binhduong.gov.vn\n"
    + "PG,UBND huyện Phú Giáo,BD,UBND huyện,ct.pg@binhduong.gov.vn\n"
    + "PG-VHTT,Phòng Văn hóa - Thông tin,PG,phòng,\n"
    + "PG-AB,UBND xã An Bình,PG,UBND xã,ct.ab@binhduong.gov.vn\n"
)


def write(tmp_path: Path, text: str, name: str = "units.csv", encoding: str = "utf-8") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding=encoding)
    return path


def test_the_docstring_examples_run():
    for module in (contract.units, contract.sheets):
        result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
        assert result.attempted >= 1 and result.failed == 0, module.__name__


def test_a_three_level_tree_and_its_relations(tmp_path):
    tree = load_units(write(tmp_path, PROVINCE))
    assert tree.roots() == ("BD",)
    assert tree.children("PG") == ("PG-VHTT", "PG-AB")
    assert tree.ancestors("PG-AB") == ("PG", "BD")
    assert tree.descendants("BD") == ("STTTT", "PG", "PG-VHTT", "PG-AB")
    assert tree.subtree("PG") == ("PG", "PG-VHTT", "PG-AB")
    assert [tree.depth(c) for c in tree.units] == [0, 1, 1, 2, 2]
    assert tree.levels == 3
    # the office's staff are the district's; the commune keeps its own
    assert {c: tree.agency_of(c) for c in tree.units} == {
        "BD": "BD",
        "STTTT": "STTTT",
        "PG": "PG",
        "PG-VHTT": "PG",
        "PG-AB": "PG-AB",
    }
    assert tree.units["PG"] == Unit(
        "PG", "UBND huyện Phú Giáo", "BD", "UBND huyện", "ct.pg@binhduong.gov.vn", 4
    )
    assert tree.head_of("ct.ab@binhduong.gov.vn") == ("PG-AB",)


def test_excel_sheets_are_read_as_the_roster_is(tmp_path):
    """Semicolons with a BOM (Excel on a Vietnamese Windows), tabs, and Excel's empty rows."""
    semi = PROVINCE.replace(",", ";") + ";;;;\n"
    tabs = PROVINCE.replace(",", "\t")
    for text, encoding in ((semi, "utf-8-sig"), (tabs, "utf-8")):
        tree = load_units(write(tmp_path, text, encoding=encoding))
        assert list(tree.units) == ["BD", "STTTT", "PG", "PG-VHTT", "PG-AB"]
        assert tree.units["PG-AB"].parent == "PG"


@pytest.mark.parametrize(
    ("rows", "expected"),
    [
        ("X,Xã,NOPE,UBND xã,\n", ["line 7: parent_code NOPE is not a unit of this file"]),
        ("PG,Again,BD,UBND huyện,\n", ["line 7: unit_code PG repeats line 4"]),
        ("../x,Bad,BD,phòng,\n", ["line 7: unit_code '../x' may hold only"]),
        ("Y,Y,BD,,\n", ["line 7: kind is empty"]),
        ("Z,Z,BD,phòng,not-an-address\n", ["line 7: head_email 'not-an-address'"]),
        ("S,Self,S,phòng,\n", ["line 7: unit S is its own parent"]),
        (
            "C1,Một,C3,phòng,\nC2,Hai,C1,phòng,\nC3,Ba,C2,phòng,\n",
            ["the parents go round: C1 (line 7) -> C3 (line 9) -> C2 (line 8) -> C1 (line 7)"],
        ),
    ],
)
def test_a_bad_tree_names_the_file_and_the_line(tmp_path, rows, expected):
    path = write(tmp_path, PROVINCE + rows)
    with pytest.raises(UnitsError) as caught:
        load_units(path)
    message = str(caught.value)
    assert message.startswith(f"{path}:")
    for part in expected:
        assert part in message
    assert isinstance(caught.value, RosterError)  # stops whatever stops on a bad roster


def test_a_missing_column_and_a_missing_file(tmp_path):
    with pytest.raises(UnitsError, match=r"missing required column.*parent_code"):
        load_units(write(tmp_path, "unit_code;unit_name;kind\nA;A;phòng\n"))
    with pytest.raises(UnitsError, match=r"units file .* not found"):
        load_units(tmp_path / "nope.csv")


def _roster(tmp_path: Path, rows: str) -> Path:
    return write(tmp_path, "employee_id,full_name,email,unit_code,unit_name\n" + rows, "r.csv")


def test_a_person_in_a_unit_not_in_the_tree_names_the_roster_line(tmp_path):
    units = write(tmp_path, PROVINCE)
    roster = _roster(
        tmp_path,
        "1,An,an@binhduong.gov.vn,PG-AB,UBND xã An Bình\n"
        "2,Bình,binh@binhduong.gov.vn,PG-TL,UBND xã Tân Long\n"
        "3,Cường,cuong@binhduong.gov.vn,PG,Huyện Phú Giáo\n",
    )
    notes = RosterNotes()
    people = load_roster(roster, notes=notes)
    with pytest.raises(UnitsError) as caught:
        load_tree(units, people, roster, notes.lines)
    message = str(caught.value)
    assert message.startswith(f"{roster}: 2 problem(s)")
    assert "line 3: unit_code PG-TL is not in units.csv" in message
    assert "line 4: unit PG is named 'Huyện Phú Giáo' here and 'UBND huyện Phú Giáo'" in message


def test_a_flat_roster_is_a_one_level_tree(tmp_path):
    people = [
        Person("1", "An", "", "A", "UBND phường"),
        Person("2", "Bình", "", "B", "Phòng Tài chính"),
        Person("3", "Cường", "", "A", "UBND phường"),
    ]
    tree = load_tree(None, people)
    assert tree == UnitTree.flat(people)
    assert tree.roots() == ("A", "B") and tree.levels == 1
    assert [tree.units[c].name for c in tree.roots()] == ["UBND phường", "Phòng Tài chính"]
    assert all(tree.depth(c) == 0 and tree.agency_of(c) == c for c in tree.units)
    assert tree.descendants("A") == ()


def test_an_agency_by_its_kind_in_any_case_or_unicode_form():
    import unicodedata

    decomposed = unicodedata.normalize("NFD", "UBND  Xã")  # Excel may keep what was pasted
    assert Unit("X", "UBND xã An Bình", "PG", decomposed).is_agency
    assert not Unit("T", "Tổ dân phố", "X", "tổ").is_agency
