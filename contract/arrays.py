"""Arrow arrays, scalars and tables from Python values, built from their bytes.

pyarrow's own constructors from Python values — ``pa.array``, ``pa.scalar``,
``Table.from_pydict``/``from_pylist`` of lists, and every ``pyarrow.compute`` call given a
Python value (``pc.equal(column, "x")``) — first ask whether the value is a pandas object,
and that question imports pandas whenever it is installed (``_is_array_like`` in pyarrow's
``array.pxi``, through ``pandas_api._have_pandas_internal()``): ~0.18 s of an evaluation's
start-up (benchmarks/README.md, "Start-up"). These build the same arrays from the values'
buffers (``Array.from_buffers``), which never asks; tests/contract/test_arrays.py checks
them against ``pa.array`` and that pandas stays out.

    >>> array(["Hòa Minh", None], pa.string()).to_pylist()
    ['Hòa Minh', None]
    >>> import pyarrow.compute as pc
    >>> pc.equal(array(["confirmed", "suspected"], pa.string()), scalar("confirmed", pa.string()))
    <pyarrow.lib.BooleanArray object at ...>
    [
      true,
      false
    ]
"""

from __future__ import annotations

from array import array as _numbers
from collections.abc import Callable, Mapping, Sequence
from datetime import date
from itertools import accumulate
from typing import Any

import pyarrow as pa

__all__ = ["array", "empty_table", "from_columns", "from_rows", "scalar"]

_EPOCH = date(1970, 1, 1).toordinal()


def array(values: Sequence[Any], type: pa.DataType) -> pa.Array:
    """``values`` (None is null) as an Arrow array of ``type``: string, bool, int64, date32
    or a list of strings — what ``pa.array(values, type)`` gives, without its pandas probe.

    >>> array([["a@gmail.com"], [], None], pa.list_(pa.string())).to_pylist()
    [['a@gmail.com'], [], None]
    """
    build = _BUILDERS.get(type)
    if build is None:
        raise TypeError(f"no builder for Arrow type {type}")
    built = build(values, _validity(values))
    built.validate()  # buffer sizes agree with the length (cheap; not a full scan)
    return built


def scalar(value: Any, type: pa.DataType) -> pa.Scalar:
    """One value as an Arrow scalar of ``type`` (for ``pyarrow.compute``'s arguments).

    >>> scalar(None, pa.bool_())
    <pyarrow.BooleanScalar: None>
    """
    return array([value], type)[0]


def from_columns(columns: Mapping[str, Sequence[Any]], schema: pa.Schema) -> pa.Table:
    """``Table.from_pydict(columns, schema=schema)`` of Python lists, without the probe.

    >>> from_columns({"n": [1, None]}, pa.schema([("n", pa.int64())])).to_pydict()
    {'n': [1, None]}
    """
    return pa.Table.from_arrays([array(columns[f.name], f.type) for f in schema], schema=schema)


def from_rows(rows: Sequence[Mapping[str, Any]], schema: pa.Schema) -> pa.Table:
    """``Table.from_pylist(rows, schema=schema)``: a key a row lacks is null, keys the
    schema lacks are left out.

    >>> from_rows([{"n": 1, "x": "not a column"}, {}], pa.schema([("n", pa.int64())])).num_rows
    2
    """
    return from_columns({f.name: [r.get(f.name) for r in rows] for f in schema}, schema)


def empty_table(schema: pa.Schema) -> pa.Table:
    """``schema.empty_table()``, which builds each column with ``pa.array([])``.

    >>> empty_table(pa.schema([("night", pa.date32())])).num_rows
    0
    """
    return pa.Table.from_arrays([pa.nulls(0, f.type) for f in schema], schema=schema)


def _bits(flags: Sequence[bool]) -> pa.Buffer:
    """Arrow's bitmap: bit ``i % 8`` (least significant first) of byte ``i // 8`` is
    ``flags[i]`` — the bytes of one little-endian integer whose bit ``i`` is ``flags[i]``."""
    digits = "".join("1" if f else "0" for f in reversed(flags)) or "0"
    return pa.py_buffer(int(digits, 2).to_bytes((len(flags) + 7) // 8, "little"))


def _validity(values: Sequence[Any]) -> pa.Buffer | None:
    """None when no value is null (as pyarrow leaves it), else the bitmap of the non-null."""
    if all(v is not None for v in values):
        return None
    return _bits([v is not None for v in values])


def _strings(values: Sequence[str | None], validity: pa.Buffer | None) -> pa.Array:
    # str.encode(v): a value that is not text is a TypeError, as with pa.array
    encoded = [b"" if v is None else str.encode(v, "utf-8") for v in values]
    offsets = _numbers("i", accumulate(map(len, encoded), initial=0))  # int32: OverflowError
    data = pa.py_buffer(b"".join(encoded))  # past 2 GiB, as pa.array's string would refuse
    return pa.Array.from_buffers(pa.string(), len(values), [validity, pa.py_buffer(offsets), data])


def _booleans(values: Sequence[bool | None], validity: pa.Buffer | None) -> pa.Array:
    return pa.Array.from_buffers(
        pa.bool_(), len(values), [validity, _bits([bool(v) for v in values])]
    )


def _int64s(values: Sequence[int | None], validity: pa.Buffer | None) -> pa.Array:
    data = _numbers("q", [0 if v is None else v for v in values])
    return pa.Array.from_buffers(pa.int64(), len(values), [validity, pa.py_buffer(data)])


def _dates(values: Sequence[date | None], validity: pa.Buffer | None) -> pa.Array:
    days = _numbers("i", [0 if v is None else date.toordinal(v) - _EPOCH for v in values])
    return pa.Array.from_buffers(pa.date32(), len(values), [validity, pa.py_buffer(days)])


def _string_lists(values: Sequence[Sequence[str] | None], validity: pa.Buffer | None) -> pa.Array:
    items = [list(v) if v is not None else [] for v in values]
    offsets = _numbers("i", accumulate(map(len, items), initial=0))
    child = array([s for item in items for s in item], pa.string())
    return pa.Array.from_buffers(
        pa.list_(pa.string()), len(values), [validity, pa.py_buffer(offsets)], children=[child]
    )


_BUILDERS: dict[pa.DataType, Callable[[Sequence[Any], pa.Buffer | None], pa.Array]] = {
    pa.string(): _strings,
    pa.bool_(): _booleans,
    pa.int64(): _int64s,
    pa.date32(): _dates,
    pa.list_(pa.string()): _string_lists,
}
