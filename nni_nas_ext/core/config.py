"""Typed, frozen configuration dataclasses with validation derived from field metadata.

A strategy's configuration (and a trial's, a search space's, an NNI adapter's: every layer has settings, so
the machinery lives in the core; standard library only) is a frozen dataclass whose fields are declared with
:func:`option`: the default, the allowed range or choices and a one-line doc live next to the type
annotation, and everything else derives from them (the shape of NNI's ``nni/experiment/config/algorithm.py``):

* constructing the dataclass validates every field (subclass :class:`Config`), so a direct
  ``NashConfig(n_steps=0)`` fails exactly as ``classArgs: {n_steps: 0}`` does;
* :func:`parse_config` builds one from a plain mapping such as NNI's ``classArgs`` and rejects unknown
  keys, listing the known ones with close-match suggestions;
* :func:`describe_config` lists ``(name, type, default, range, doc)`` rows for documentation and help.

Supported field types: ``bool``, ``int``, ``float``, ``str``, ``tuple[str, ...]`` / ``tuple[int, ...]``
(given as a JSON list) and ``Optional[...]`` of any of these (``None`` allowed). ``bool`` is not accepted
for ``int``/``float`` (``True`` is not 1 here); an ``int`` is accepted for a ``float``. Ranges are
inclusive: ``minimum <= value <= maximum``.

Example
-------
>>> @dataclass(frozen=True)
... class Example(Config):
...     steps: int = option(3, minimum=1, doc="how many steps")
>>> parse_config(Example, {"steps": 5}).steps
5
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple, TypeVar

__all__ = ["Config", "ConfigError", "ConfigRow", "describe_config", "option", "parse_config"]

C = TypeVar("C", bound="Config")

_META = "nni_nas_ext.config"


class ConfigError(ValueError):
    """A configuration value or key is not acceptable.

    Attributes
    ----------
    key
        The offending key (``None`` when the whole mapping is wrong).
    value
        The value that was given (``None`` for a missing key).
    """

    def __init__(self, message: str, *, key: str | None = None, value: Any = None) -> None:
        super().__init__(message)
        self.key = key
        self.value = value


@dataclass(frozen=True)
class _Option:
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[Any, ...] | None = None  # for a sequence type: the allowed items
    doc: str = ""
    non_empty: bool = False
    unique: bool = False


def option(default: Any = dataclasses.MISSING, *, minimum: float | None = None, maximum: float | None = None,
           choices: Sequence[Any] | None = None, doc: str = "", non_empty: bool = False,
           unique: bool = False) -> Any:
    """Declare a configuration field.

    Parameters
    ----------
    default
        The default value (leave out for a required key). Sequences should be given as tuples.
    minimum, maximum
        Inclusive bounds of a number (or of every item of a number sequence).
    choices
        Allowed values of a ``str`` field, or allowed items of a sequence field.
    doc
        One line: what the key means, and the paper's value where there is one.
    non_empty, unique
        For sequence fields: at least one item; no item twice.
    """
    meta = _Option(minimum, maximum, tuple(choices) if choices is not None else None, doc, non_empty, unique)
    if isinstance(default, list):
        default = tuple(default)
    return dataclasses.field(default=default, metadata={_META: meta})


@dataclass(frozen=True)
class Config:
    """Base of typed configurations: validates and normalises every field on construction.

    Subclasses are ``@dataclass(frozen=True)`` with fields declared by :func:`option`; they may set
    :attr:`config_name` (used in messages) and extend ``__post_init__`` for checks across fields
    (call ``super().__post_init__()`` first).
    """

    config_name: ClassVar[str] = ""

    def __post_init__(self) -> None:
        hints = _hints(type(self))
        for f in dataclasses.fields(self):
            value = _check_value(type(self), f.name, hints[f.name], _option_of(f), getattr(self, f.name))
            object.__setattr__(self, f.name, value)

    def to_dict(self) -> dict[str, Any]:
        """The configuration as plain JSON (sequences as lists); :func:`parse_config` reads it back."""
        return {f.name: _to_json(getattr(self, f.name)) for f in dataclasses.fields(self)}

    def check_task(self, task: Config) -> None:
        """Checks across configurations: raise :class:`ConfigError` if the trials' configuration ``task`` cannot
        give this one what it needs (e.g. a strategy minimising latency needs trials that measure it). The
        settings splitter calls it on the strategy's configuration; nothing to check by default."""


class ConfigRow(NamedTuple):
    """One key of a configuration, for documentation and command-line help."""

    name: str
    type: str
    default: str
    range: str
    doc: str


def parse_config(cls: type[C], mapping: Mapping[str, Any] | None) -> C:
    """Build ``cls`` from a mapping such as NNI's ``classArgs``, validating every key and value.

    Missing keys take their defaults; ``None`` is the empty mapping.

    Raises
    ------
    ConfigError
        For a non-mapping, an unknown key (the message lists the known keys and close matches), a
        missing required key, or a value of the wrong type or out of range (the message names the key,
        the value, the expected type and the allowed range).
    """
    name = _name(cls)
    if mapping is None:
        mapping = {}
    if not isinstance(mapping, Mapping):
        raise ConfigError(f"{name}: the configuration must be a mapping of keys to values, "
                          f"but got {_show(mapping)} ({type(mapping).__name__})", value=mapping)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    for key in mapping:
        if not isinstance(key, str) or key not in fields:
            close = difflib.get_close_matches(str(key), list(fields), n=3)
            hint = f"; did you mean {' or '.join(map(repr, close))}?" if close else "."
            raise ConfigError(f"{name}: unknown key {key!r}{hint} Known keys are {sorted(fields)}.",
                              key=str(key), value=mapping[key])
    for f in fields.values():
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        if required and f.name not in mapping:
            tp = _hints(cls)[f.name]
            raise ConfigError(f"{name}: the key {f.name!r} is required ({_describe_type(tp)}"
                              f"{_range_suffix(_option_of(f), tp)})", key=f.name)
    return cls(**dict(mapping))


def describe_config(cls: type[Config]) -> list[ConfigRow]:
    """``(name, type, default, range, doc)`` of every key, in declaration order."""
    hints = _hints(cls)
    rows = []
    for f in dataclasses.fields(cls):
        opt = _option_of(f)
        if f.default is not dataclasses.MISSING:
            default = json.dumps(_to_json(f.default))
        elif f.default_factory is not dataclasses.MISSING:
            default = json.dumps(_to_json(f.default_factory()))
        else:
            default = "(required)"
        rows.append(ConfigRow(f.name, _describe_type(hints[f.name]), default, _describe_range(opt, hints[f.name]),
                              opt.doc))
    return rows


# --------------------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------------------


def _name(cls: type) -> str:
    return getattr(cls, "config_name", "") or cls.__name__


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _option_of(f: dataclasses.Field) -> _Option:
    return f.metadata.get(_META, _Option())


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _optional_inner(tp: Any) -> Any | None:
    """``X`` for ``Optional[X]``, else ``None``."""
    if typing.get_origin(tp) is typing.Union:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(tp)) == 2:
            return args[0]
    return None


def _sequence_item(tp: Any) -> Any | None:
    """``X`` for ``tuple[X, ...]``, else ``None``."""
    if typing.get_origin(tp) is tuple:
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return args[0]
    return None


def _describe_type(tp: Any) -> str:
    inner = _optional_inner(tp)
    if inner is not None:
        return f"{_describe_type(inner)} or null"
    item = _sequence_item(tp)
    if item is not None:
        return f"list[{_describe_type(item)}]"
    return getattr(tp, "__name__", str(tp))


def _describe_range(opt: _Option, tp: Any = None) -> str:
    parts = []
    each = "each " if tp is not None and _sequence_item(_optional_inner(tp) or tp) is not None else ""
    if opt.choices is not None:
        parts.append(f"{each}one of " + ", ".join(json.dumps(c) for c in opt.choices))
    bounds = ""
    if opt.minimum is not None and opt.maximum is not None:
        bounds = f"[{_num(opt.minimum)}, {_num(opt.maximum)}]"
        bounds = f"each item in {bounds}" if each else bounds
    elif opt.minimum is not None or opt.maximum is not None:
        bounds = f">= {_num(opt.minimum)}" if opt.minimum is not None else f"<= {_num(opt.maximum or 0)}"
        bounds = f"each item {bounds}" if each else bounds
    if bounds:
        parts.append(bounds)
    if opt.non_empty:
        parts.append("non-empty")
    if opt.unique:
        parts.append("no duplicates")
    return "; ".join(parts)


def _range_suffix(opt: _Option, tp: Any = None) -> str:
    text = _describe_range(opt, tp)
    return "" if not text else f" in {text}" if text.startswith("[") else f", {text}"


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() and abs(x) < 2**63 else repr(x)


class _Invalid(Exception):
    """Internal: a value does not fit; :func:`_check_value` turns it into a :class:`ConfigError`."""

    def __init__(self, problem: str | None = None) -> None:
        super().__init__(problem)
        self.problem = problem


def _check_value(cls: type, key: str, tp: Any, opt: _Option, value: Any) -> Any:
    """The validated, normalised value of field ``key`` (lists become tuples, ints floats where due)."""
    try:
        return _convert(tp, opt, value)
    except _Invalid as exc:
        expected = f"{_describe_type(tp)}{_range_suffix(opt, tp)}"
        why = f" ({exc.problem})" if exc.problem else ""
        raise ConfigError(f"{_name(cls)}: {key!r} must be {expected}, but got {_show(value)} "
                          f"of type {type(value).__name__}{why}", key=key, value=value) from None


def _convert(tp: Any, opt: _Option, value: Any) -> Any:
    inner = _optional_inner(tp)
    if inner is not None:
        return None if value is None else _convert(inner, opt, value)
    item_type = _sequence_item(tp)
    if item_type is None:
        return _convert_scalar(tp, opt, value)
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
        raise _Invalid("give a list")
    items = []
    for i, item in enumerate(value):
        try:
            items.append(_convert_scalar(item_type, opt, item))
        except _Invalid:
            raise _Invalid(f"item {i} is {_show(item)}{_close(item, opt)}") from None
    if opt.non_empty and not items:
        raise _Invalid("it is empty")
    if opt.unique:
        twice = [x for i, x in enumerate(items) if x in items[:i]]
        if twice:
            raise _Invalid(f"{twice[0]!r} appears twice")
    return tuple(items)


def _convert_scalar(tp: Any, opt: _Option, value: Any) -> Any:
    if tp is bool:
        if not isinstance(value, bool):
            raise _Invalid("use true or false")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _Invalid("a bool is not an int" if isinstance(value, bool) else None)
    elif tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _Invalid("a bool is not a number" if isinstance(value, bool) else None)
        try:
            value = float(value)
        except OverflowError:
            raise _Invalid("too large") from None
        if not math.isfinite(value):
            raise _Invalid("not finite")
    elif tp is str:
        if not isinstance(value, str):
            raise _Invalid()
    else:  # a declaration error, not a user error
        raise TypeError(f"unsupported configuration type {tp!r}")
    if opt.choices is not None and value not in opt.choices:
        raise _Invalid(f"not an allowed value{_close(value, opt)}")
    if opt.minimum is not None and value < opt.minimum or opt.maximum is not None and value > opt.maximum:
        raise _Invalid("out of range")
    return value


def _close(value: Any, opt: _Option) -> str:
    """``"; did you mean 'x'?"`` for a string close to one of the choices."""
    if not isinstance(value, str) or opt.choices is None:
        return ""
    close = difflib.get_close_matches(value, [c for c in opt.choices if isinstance(c, str)], n=2)
    return f"; did you mean {' or '.join(map(repr, close))}?" if close else ""


def _to_json(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_to_json(v) for v in value]
    return value
