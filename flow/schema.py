"""Typed loading of plain YAML data into frozen dataclasses, with precise error messages.

Supported field types: bool, int, float, str, StrEnum subclasses, ``X | None``, unions ``X | Y`` (the first
that fits), ``tuple[X, ...]``, fixed-length ``tuple[X, Y]``, ``dict[str, X]``, nested dataclasses and ``Any``
(plain data kept as it is). Range limits come from ``field(metadata={"min": .., "max": ..})``; a field without
a default must be given.
"""

from __future__ import annotations

import dataclasses
import difflib
import enum
import math
import re
import types
import typing
from typing import Any

from flow.errors import FlowError


def closest(name: str, choices: list[str]) -> str:
    """Return ' (did you mean 'x'?)' for the nearest choice, or '' when nothing is close."""
    match = difflib.get_close_matches(name, choices, n=1, cutoff=0.5)
    return f" (did you mean '{match[0]}'?)" if match else ""


def build(cls: type, data: Any, source: str, path: str = "") -> Any:
    """Build dataclass ``cls`` from a mapping; messages read ``<source>: <path.key> ...``."""
    where = f"{source}: {path.rstrip('.')}" if path else source
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise FlowError(f"{where}: expected a mapping of keys, got {type(data).__name__} {data!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in data:
        if key not in fields:
            raise FlowError(
                f"{source}: unknown key '{path}{key}'{closest(str(key), list(fields))}; "
                f"allowed under {path.rstrip('.') or 'the top level'}: {', '.join(fields)}"
            )
    required = [name for name, f in fields.items() if _required(f)]
    missing = [name for name in required if name not in data]
    if missing:
        raise FlowError(f"{source}: missing key '{path}{missing[0]}'; required under "
                        f"{path.rstrip('.') or 'the top level'}: {', '.join(required)}")  # fmt: skip
    hints = typing.get_type_hints(cls)
    values = {}
    for name, f in fields.items():
        if name in data:
            values[name] = _convert(hints[name], data[name], source, f"{path}{name}", f.metadata)
    try:
        return cls(**values)
    except (FlowError, TypeError, ValueError) as exc:  # cross-field checks in __post_init__ name their key
        raise FlowError(f"{source}: {path}{exc}") from None


def _required(f: dataclasses.Field) -> bool:
    return f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING


def _describe(tp: Any) -> str:
    if tp is Any:
        return "any value"
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return "one of " + ", ".join(repr(m.value) for m in tp)
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return " or ".join("null" if a is type(None) else _describe(a) for a in typing.get_args(tp))
    if origin is tuple:
        args = typing.get_args(tp)
        if args[-1] is not Ellipsis:
            return f"a list of {len(args)}: " + ", ".join(map(_describe, args))
        return f"a list of {_describe(args[0])}"
    if origin is dict:
        return f"a mapping of names to {_describe(typing.get_args(tp)[1])}"
    if dataclasses.is_dataclass(tp):
        return "a mapping"
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string"}.get(tp, str(tp))


def _convert(tp: Any, value: Any, source: str, path: str, meta: Any = None) -> Any:
    where = f"{source}: {path}"
    if tp is Any:
        return value
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None:
            return None
        for arg in args[:-1]:  # the first alternative that fits; the last one's message when none does
            try:
                return _convert(arg, value, source, path, meta)
            except FlowError:
                pass
        try:
            return _convert(args[-1], value, source, path, meta)
        except FlowError:
            if len(args) == 1:
                raise
            raise FlowError(f"{where}: got {_short(value)}, expected {_describe(tp)}") from None
    if dataclasses.is_dataclass(tp):
        return build(tp, value, source, f"{path}.")
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise FlowError(f"{where}: got {value!r}, expected {_describe(tp)}")
        args = typing.get_args(tp)
        if args[-1] is Ellipsis:
            args = (args[0],) * len(value)
        elif len(value) != len(args):
            raise FlowError(f"{where}: got {_short(value)}, expected {_describe(tp)}")
        pairs = enumerate(zip(args, value, strict=True))
        return tuple(_convert(item, v, source, f"{path}[{i}]", meta) for i, (item, v) in pairs)
    if origin is dict:
        if not isinstance(value, dict):
            raise FlowError(f"{where}: got {value!r}, expected {_describe(tp)}")
        item = typing.get_args(tp)[1]
        return {str(k): _convert(item, v, source, f"{path}.{k}", meta) for k, v in value.items()}
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        allowed = [m.value for m in tp]
        if value not in allowed:
            raise FlowError(
                f"{where}: got {value!r}{closest(str(value), allowed)}; allowed: {', '.join(map(str, allowed))}"
            )
        return tp(value)
    ok = {
        bool: isinstance(value, bool),
        int: isinstance(value, int) and not isinstance(value, bool),
        float: isinstance(value, int | float) and not isinstance(value, bool),
        str: isinstance(value, str),
    }.get(tp)
    if not ok:
        raise FlowError(f"{where}: got {_short(value)}, expected {_describe(tp)}")
    if tp is int:
        _check_range(value, where, meta or {})  # its own bounds first: the most precise message
    if tp is int and abs(value) > MAX_INT:
        raise FlowError(f"{where}: got {_short(value)}, too large; allowed: at most {MAX_INT} in magnitude")
    if tp is float:
        try:
            value = float(value)
        except OverflowError:  # an integer literal beyond float's range
            raise FlowError(f"{where}: got {_short(value)}, too large for a number; allowed: finite numbers "
                            "(at most about 1.8e308)") from None  # fmt: skip
        if math.isnan(value) or (math.isinf(value) and not (meta or {}).get("infinite")):
            raise FlowError(f"{where}: got {value!r}; allowed: a finite number")
    if tp is str:
        _check_pattern(value, where, meta or {})
    elif tp is not int:  # ints were checked above
        _check_range(value, where, meta or {})
    return value


MAX_INT = 2**63 - 1  # what numpy's int64 and the C++ side can hold


def _short(value: Any) -> str:
    """repr of ``value``, abbreviated for huge integers and long strings (error messages stay one short line)."""
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_INT:
        sign = "a negative" if value < 0 else "an"
        return f"{sign} integer of about {int(value.bit_length() * math.log10(2)) + 1} digits"  # str() may refuse
    text = repr(value)
    return text if len(text) <= 200 else text[:200] + "..."


def _check_pattern(value: str, where: str, meta: Any) -> None:
    pattern = meta.get("pattern")
    if pattern is not None and not re.fullmatch(pattern, value):
        raise FlowError(f"{where}: got {value!r}; allowed: {meta['pattern_doc']} (pattern {pattern})")


def _check_range(value: Any, where: str, meta: Any) -> None:
    lo, hi = meta.get("min"), meta.get("max")
    lo_open, hi_open = meta.get("min_exclusive", False), meta.get("max_exclusive", False)
    too_low = lo is not None and (value <= lo if lo_open else value < lo)
    too_high = hi is not None and (value >= hi if hi_open else value > hi)
    if too_low or too_high:
        left = "(" if lo_open else "["
        right = ")" if hi_open else "]"
        span = f"{left}{'-inf' if lo is None else lo}, {'inf' if hi is None else hi}{right}"
        raise FlowError(f"{where}: got {_short(value)}, allowed range {span}")


def to_plain(obj: Any) -> Any:
    """Turn a dataclass tree back into YAML/JSON-ready plain data (``ABSENT`` fields left out when None)."""
    if dataclasses.is_dataclass(obj):
        return {
            f.name: to_plain(getattr(obj, f.name))
            for f in dataclasses.fields(obj)
            if not (f.metadata.get("absent") and getattr(obj, f.name) is None)
        }
    if isinstance(obj, enum.Enum):
        return obj.value
    if isinstance(obj, tuple | list):
        return [to_plain(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_plain(v) for k, v in obj.items()}
    return obj


IDENTIFIER = r"[A-Za-z_][A-Za-z0-9_]{0,63}"  # what may reach a file name, a C++ identifier or a shell


def identifier() -> Any:
    """Field metadata for names that reach generated C++, file names or build scripts."""
    return {"pattern": IDENTIFIER, "pattern_doc": "a letter or _, then letters, digits or _ (at most 64)"}


def rng(lo: float | None = None, hi: float | None = None, **kw: bool) -> Any:
    """Field metadata for a range check: ``field(default=1, metadata=rng(1, 64))``."""
    return {"min": lo, "max": hi, **kw}


ABSENT = {"absent": True}  # field metadata: may be left out of the data (None then), left out again by to_plain
