"""contract/arrays.py builds what ``pa.array`` builds, without pyarrow importing pandas."""

from __future__ import annotations

import subprocess
import sys
from datetime import date
from pathlib import Path

import pyarrow as pa
import pytest

from contract.arrays import array, empty_table, from_columns, from_rows, scalar
from contract.datasets import DATASETS

ROOT = Path(__file__).resolve().parents[2]

# 17 values: the validity bitmap spans three bytes, the last one partly
CASES = [
    (pa.string(), ["a", None, "Hòa Minh", "", "ẞ🙂", *(f"v{i}" for i in range(11)), None]),
    (pa.string(), ["no", "nulls", "here"]),
    (pa.bool_(), [True, None, False, True, True, False, False, True, None, True, *[False] * 7]),
    (pa.bool_(), [False] * 9),
    (pa.int64(), [0, None, -1, 2**62, -(2**63), 7, *range(10), None]),
    (
        pa.date32(),
        [date(2026, 11, 1), None, date(1969, 12, 31), date(1970, 1, 1), date(9999, 1, 1)],
    ),
    (pa.list_(pa.string()), [["a@gmail.com"], [], None, ["x", None, "y"], ["z"]]),
]


@pytest.mark.parametrize(("type_", "values"), CASES)
def test_each_builder_gives_what_pa_array_gives(type_, values):
    got, want = array(values, type_), pa.array(values, type_)
    assert got.type == want.type
    assert got.equals(want)
    assert got.null_count == want.null_count
    assert got.to_pylist() == values
    got.validate(full=True)


@pytest.mark.parametrize(("type_", "values"), CASES)
def test_no_values_is_an_empty_array_of_the_type(type_, values):
    assert array([], type_).equals(pa.array([], type_))
    assert array(values[:1], type_).equals(pa.array(values[:1], type_))


def test_scalars_and_tables_are_pyarrows_own():
    assert scalar("confirmed", pa.string()).equals(pa.scalar("confirmed", pa.string()))
    assert scalar(None, pa.bool_()).equals(pa.scalar(None, pa.bool_()))
    schema = pa.schema([("id", pa.string()), ("n", pa.int64()), ("day", pa.date32())])
    rows = [{"id": "P01", "n": 3, "day": date(2026, 11, 2), "extra": 1}, {"id": "P02"}]
    assert from_rows(rows, schema).equals(pa.Table.from_pylist(rows, schema=schema))
    columns = {"id": ["P01", None], "n": [1, 2], "day": [None, date(2026, 1, 1)]}
    assert from_columns(columns, schema).equals(pa.Table.from_pydict(columns, schema=schema))


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_an_empty_table_is_the_schemas_own(name):
    assert empty_table(DATASETS[name]).equals(DATASETS[name].empty_table(), check_metadata=True)


def test_a_type_without_a_builder_or_a_wrong_value_is_refused():
    with pytest.raises(TypeError, match="no builder for Arrow type double"):
        array([1.5], pa.float64())
    for value, type_ in ((1.5, pa.int64()), (1, pa.string()), ("2026-11-01", pa.date32())):
        with pytest.raises(TypeError):
            array([value], type_)


PROBE = """
import sys
import pyarrow as pa
import pyarrow.compute as pc
from contract.arrays import array, scalar
{calls}
print("PANDAS", "pandas" in sys.modules)
"""


def _pandas_after(calls: str) -> str:
    code = PROBE.format(calls=calls)
    run = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    return run.stdout.strip()


def test_building_and_comparing_never_imports_pandas():
    calls = (
        "a = array(['x', None], pa.string())\n"
        "pc.equal(a, scalar('x', pa.string()))\n"
        "pc.fill_null(a, scalar('', pa.string()))\n"
        "array([[], None], pa.list_(pa.string()))\n"
        "pa.table([a, pa.nulls(2, pa.string())], names=['a', 'b'])\n"
        "from contract.datasets import DATASETS\n"
        "from contract.arrays import empty_table\n"
        "[empty_table(schema) for schema in DATASETS.values()]\n"
    )
    assert _pandas_after(calls) == "PANDAS False"


@pytest.mark.parametrize(
    "call",
    [
        "pa.array(['x'])",
        "pa.scalar('x')",
        "pc.equal(array(['x'], pa.string()), 'x')",
        "pa.schema([('x', pa.string())]).empty_table()",
    ],
)
def test_pyarrow_itself_still_imports_pandas_for_python_values(call):
    """Why contract/arrays.py exists: this fails once pyarrow stops importing pandas to
    look at a Python value (then the module can go, and pa.array serve again)."""
    assert _pandas_after(call) == "PANDAS True", "pyarrow no longer probes: see contract/arrays.py"
