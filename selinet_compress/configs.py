"""Dataclass configs from plain dicts (YAML, JSON, checkpoints) with strict, helpful validation."""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, TypeVar

from selinet_compress.errors import UserError, did_you_mean

T = TypeVar("T")


def dataclass_from_dict(cls: type[T], data: Any, where: str) -> T:
    """Build ``cls`` from ``data``; unknown keys and wrongly typed values fail with a clear message.

    ``where`` names the source for the message ("recipes/int8_static.yaml", "checkpoint m.pt").
    """
    if not isinstance(data, dict):
        raise UserError(f"{where}: expected a mapping of {cls.__name__} fields, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for key, value in data.items():
        if key not in fields:
            raise UserError(f"unknown key '{key}' in {where}{did_you_mean(str(key), fields)}")
        kwargs[key] = _coerce(value, hints[key], f"{where}: '{key}'")
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise UserError(f"{where}: {exc}") from None


def _coerce(value: Any, hint: Any, where: str) -> Any:
    """Check ``value`` against a simple type hint; lists become tuples where a tuple is declared."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, where)
            except UserError as exc:
                errors.append(str(exc))
        raise UserError(errors[0] if errors else f"{where}: invalid value {value!r}")
    if origin is typing.Literal:
        if value not in args:
            raise UserError(
                f"{where}: invalid value {value!r}{did_you_mean(str(value), [str(a) for a in args])}"
            )
        return value
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise UserError(f"{where}: expected a list, got {value!r}")
        item = args[0] if args else Any
        return tuple(_coerce(v, item, where) for v in value)
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise UserError(f"{where}: expected a list, got {value!r}")
        item = args[0] if args else Any
        return [_coerce(v, item, where) for v in value]
    if origin is dict:
        if not isinstance(value, dict):
            raise UserError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    if hint is bool:
        if not isinstance(value, bool):
            raise UserError(f"{where}: expected true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise UserError(f"{where}: expected an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise UserError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise UserError(f"{where}: expected a string, got {value!r}")
        return value
    return value


def to_plain(obj: Any) -> Any:
    """A JSON/YAML/torch.load(weights_only)-safe copy: dataclasses and tuples become dicts and lists."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_plain(v) for v in obj]
    if isinstance(obj, dict):
        return {str(k): to_plain(v) for k, v in obj.items()}
    return obj
