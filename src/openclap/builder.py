"""One dict -> dataclass builder for every typed config (model presets, training recipes).

``build(cls, data)`` checks keys (unknown ones fail, naming the allowed ones), types (``int``, ``float``,
``str``, ``bool``, ``Literal[...]``, ``X | None``, ``list``, ``tuple``, ``dict``, nested dataclasses) and
raises the caller's error class with the dotted path of the bad value. A partial mapping for a nested
dataclass field overrides that field's default instance (``optim: {lr: 1e-4}`` keeps a task's other
optimiser defaults). ``check_literals(obj)`` checks a
built or hand-made dataclass's ``Literal`` fields, so ``__post_init__`` need not repeat the allowed values.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, Literal

from openclap.errors import ConfigError


def _coerce(hint: Any, value: Any, where: str, error: type[Exception]) -> Any:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None:
            if type(None) in args:
                return None
            raise error(f"{where} may not be null")
        inner = [a for a in args if a is not type(None)]
        for i, option in enumerate(inner):
            try:
                return _coerce(option, value, where, error)
            except error:
                if i == len(inner) - 1:
                    raise
    if origin is Literal:
        if value not in args:
            raise error(f"{where} must be one of {list(args)}, got {value!r}")
        return value
    if dataclasses.is_dataclass(hint):
        if isinstance(value, hint):
            return value
        if isinstance(value, str) and hasattr(hint, "from_string"):  # e.g. a manifest given by its path
            return hint.from_string(value)
        return build(hint, value, where, error)
    if origin is list:
        items = value if isinstance(value, list) else [value]  # a single item is a one-item list
        return [_coerce(args[0], v, f"{where}[{i}]", error) for i, v in enumerate(items)]
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise error(f"{where} must be a list, got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(args[0], v, f"{where}[{i}]", error) for i, v in enumerate(value))
        if args and len(value) != len(args):
            raise error(f"{where} must be a list of {len(args)} values, got {value!r}")
        return (
            tuple(_coerce(a, v, f"{where}[{i}]", error) for i, (a, v) in enumerate(zip(args, value)))
            if args
            else tuple(value)
        )
    if origin is dict:
        if not isinstance(value, dict):
            raise error(f"{where} must be a mapping, got {value!r}")
        return (
            {str(k): _coerce(args[1], v, f"{where}.{k}", error) for k, v in value.items()} if args else value
        )
    if hint is float:
        if isinstance(value, str):  # YAML 1.1 reads "3e-4" (no dot) as a string
            try:
                value = float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise error(f"{where} must be a number, got {value!r}")
        return float(value)
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise error(f"{where} must be an integer, got {value!r}")
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise error(f"{where} must be true or false, got {value!r}")
        return value
    if hint is str:
        if not isinstance(value, str):
            raise error(f"{where} must be a string, got {value!r}")
        return value
    return value


def build(cls: type, data: Any, where: str | None = None, error: type[Exception] = ConfigError) -> Any:
    """Build dataclass ``cls`` from a mapping; unknown keys and wrong types raise ``error``."""
    where = where or cls.__name__
    if not isinstance(data, dict):
        raise error(f"{where}: expected a mapping, got {type(data).__name__}")
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - fields)
    if unknown:
        raise error(f"{where}: unknown key(s) {unknown}; allowed keys: {sorted(fields)}")
    hints = typing.get_type_hints(cls)
    data = dict(data)
    for f in dataclasses.fields(cls):
        # a partial mapping for a nested config overrides the field's own default (e.g. a task's optimiser
        # defaults), not the nested class's
        if f.name in data and isinstance(data[f.name], dict) and f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
            if dataclasses.is_dataclass(default):
                base = {g.name: getattr(default, g.name) for g in dataclasses.fields(default) if g.init}
                data[f.name] = {**base, **data[f.name]}
    kwargs = {k: _coerce(hints[k], v, f"{where}.{k}", error) for k, v in data.items()}
    try:
        return cls(**kwargs)
    except TypeError as exc:  # a required field is missing
        raise error(f"{where}: {exc}") from exc


def check_literals(obj: Any, error: type[Exception] = ConfigError, where: str | None = None) -> None:
    """Raise ``error`` when a ``Literal``-typed field of dataclass ``obj`` holds a value outside its choices."""
    hints = typing.get_type_hints(type(obj))
    for f in dataclasses.fields(obj):
        hint = hints[f.name]
        options = typing.get_args(hint)
        if typing.get_origin(hint) in (typing.Union, types.UnionType):  # Literal[...] | None
            literal = [a for a in options if typing.get_origin(a) is Literal]
            if not literal or getattr(obj, f.name) is None:
                continue
            options = typing.get_args(literal[0])
        elif typing.get_origin(hint) is not Literal:
            continue
        value = getattr(obj, f.name)
        if value not in options:
            prefix = f"{where}." if where else ""
            raise error(f"{prefix}{f.name} must be one of {list(options)}, got {value!r}")
