"""How a TOML table maps onto a settings dataclass: each setting is written once, as a field
with its type and default, and both the keys a table may hold and the object built from it
follow from that field (pipelines/config.py declares the config with these).

    >>> from dataclasses import dataclass
    >>> @dataclass(frozen=True)
    ... class Example:
    ...     host: str
    ...     port: int = 4190
    ...     timeout: float = 30.0
    ...     names: tuple[str, ...] = ()
    >>> keys_of(Example)["timeout"]
    (<class 'int'>, <class 'float'>)
    >>> from_table(Example, {"host": "mail.gov.vn", "timeout": 5, "names": ["a"]})
    Example(host='mail.gov.vn', port=4190, timeout=5.0, names=('a',))
    >>> from_table(Example, {}, where="sources[0].sieve")
    Traceback (most recent call last):
    pipelines.errors.ConfigError: sources[0].sieve.host is required
    >>> check_keys({"hots": "x"}, keys_of(Example), "sources[0]")
    Traceback (most recent call last):
    pipelines.errors.ConfigError: sources[0]: unknown key 'hots' (did you mean 'host'?)
"""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Collection, Mapping
from dataclasses import MISSING, fields
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args, get_origin, get_type_hints

from pipelines.errors import ConfigError

__all__ = ["NUMBER", "Kind", "check_keys", "from_table", "keys_of"]

Kind = type | tuple[type, ...]
NUMBER = (int, float)  # TOML writes `timeout = 60` and `timeout = 60.5` alike
T = TypeVar("T")

_TYPE_NAMES: dict[type, str] = {
    str: "a string",
    int: "an integer",
    float: "a number",
    bool: "true or false",
    list: "a list [...]",
    dict: "a table { ... }",
}


def check_keys(raw: Mapping[str, Any], known: Mapping[str, Kind], where: str) -> None:
    """Refuse a key ``known`` does not list (suggesting the nearest) or a value of the
    wrong type: a typo such as ``concurency`` must not fall back to a default in silence."""
    for key, value in raw.items():
        if key not in known:
            what = "section" if not where and isinstance(value, dict) else "key"
            near = difflib.get_close_matches(key, list(known), n=1, cutoff=0.6)
            hint = f"did you mean {near[0]!r}?" if near else "valid: " + ", ".join(sorted(known))
            prefix = f"{where}: " if where else ""
            raise ConfigError(f"{prefix}unknown {what} {key!r} ({hint})")
        kind = known[key]
        kinds: tuple[type, ...] = kind if isinstance(kind, tuple) else (kind,)
        # bool is an int to Python, not to a config file: `concurrency = true` is a mistake
        ok = isinstance(value, kinds) and not (isinstance(value, bool) and bool not in kinds)
        if not ok:
            expected = " or ".join(_TYPE_NAMES.get(k, k.__name__) for k in kinds)
            name = f"{where}.{key}" if where else key
            raise ConfigError(f"{name} must be {expected}, not {value!r}")


def _base(hint: Any) -> Any:
    """``X | None`` -> X; a Literal of strings -> str; anything else as it is."""
    if get_origin(hint) in (types.UnionType, typing.Union):
        rest = [a for a in get_args(hint) if a is not type(None)]
        if len(rest) != 1:
            raise TypeError(f"a setting is one type (or None), not {hint}")
        return _base(rest[0])
    if get_origin(hint) is Literal:
        return str
    return hint


def _kind(hint: Any) -> Kind:
    """The TOML value a field of this annotation is written as."""
    base = _base(hint)
    if base is float:
        return NUMBER
    if base in (str, int, bool):
        return typing.cast(type, base)
    if base is Path:
        return str
    if get_origin(base) is tuple:
        return list
    raise TypeError(f"no TOML form for a setting of type {hint}")


def _hints(cls: type) -> dict[str, Any]:
    return get_type_hints(cls, include_extras=False)


def keys_of(
    cls: type,
    *,
    toml: Mapping[str, str] | None = None,
    kinds: Mapping[str, Kind] | None = None,
    internal: Collection[str] = (),
) -> dict[str, Kind]:
    """The keys a TOML table for ``cls`` may hold and the type of each: every field but the
    ``internal`` ones (tuning the config does not offer), by its TOML name where ``toml``
    renames it, typed from its annotation unless ``kinds`` widens it."""
    toml, kinds = toml or {}, kinds or {}
    hints = _hints(cls)
    return {
        toml.get(f.name, f.name): kinds.get(f.name) or _kind(hints[f.name])
        for f in fields(cls)
        if f.name not in internal
    }


def _convert(value: Any, hint: Any) -> Any:
    base = _base(hint)
    if base is float:
        return float(value)
    if base is Path:
        return Path(value)
    if get_origin(base) is tuple:
        return tuple(value)
    if base is str:
        return str(value)  # `version = 15.1` is the string "15.1"
    return value  # str, int, bool: check_keys has checked the type


def from_table(
    cls: type[T],
    raw: Mapping[str, Any],
    *,
    toml: Mapping[str, str] | None = None,
    given: Mapping[str, Any] | None = None,
    where: str = "",
) -> T:
    """``cls`` from a TOML table already passed through :func:`check_keys`: each field from
    ``given`` (values the caller checked, resolved or derived), else from its key converted
    to the field's type, else its default."""
    toml, given = toml or {}, given or {}
    hints = _hints(cls)
    values: dict[str, Any] = {}
    for f in fields(typing.cast(Any, cls)):  # a dataclass: keys_of's fields() checks it
        key = toml.get(f.name, f.name)
        if f.name in given:
            values[f.name] = given[f.name]
        elif key in raw:
            values[f.name] = _convert(raw[key], hints[f.name])
        elif f.default is MISSING and f.default_factory is MISSING:
            raise ConfigError(f"{where}.{key} is required" if where else f"{key} is required")
    return cls(**values)
