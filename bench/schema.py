"""Build typed dataclasses from plain dicts, refusing bad input with one sentence.

Field metadata understood: ``positive`` (number must be > 0), ``nonnegative``, ``below``, ``at_most``,
``choices`` (allowed values), ``doc`` (shown by ``sslbench suites``).
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from typing import Any

from bench.errors import SSLBenchError, choices


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp).replace("typing.", ""))


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Check ``value`` against type hint ``tp``; return the converted value."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, where)
            except SSLBenchError as err:
                errors.append(str(err))
        raise SSLBenchError(errors[0] if errors else f"{where} must not be null.")
    if origin is tuple:
        item_tps = typing.get_args(tp)
        if not isinstance(value, (list, tuple)):
            raise SSLBenchError(f"{where} must be a list, got {value!r}.")
        if len(item_tps) == 2 and item_tps[1] is Ellipsis:
            return tuple(_coerce(v, item_tps[0], f"{where}[{i}]") for i, v in enumerate(value))
        if len(value) != len(item_tps):
            raise SSLBenchError(f"{where} must have {len(item_tps)} entries, got {value!r}.")
        return tuple(_coerce(v, t, f"{where}[{i}]") for i, (v, t) in enumerate(zip(value, item_tps)))
    if origin is list:
        (item_tp,) = typing.get_args(tp)
        if not isinstance(value, (list, tuple)):
            raise SSLBenchError(f"{where} must be a list, got {value!r}.")
        return [_coerce(v, item_tp, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise SSLBenchError(f"{where} must be a mapping, got {value!r}.")
        _, val_tp = typing.get_args(tp)
        return {str(k): _coerce(v, val_tp, f"{where}.{k}") for k, v in value.items()}
    if dataclasses.is_dataclass(tp):
        return build(tp, value, where)
    if tp is Any or tp is dict:
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise SSLBenchError(f"{where} must be true or false, got {value!r}.")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise SSLBenchError(f"{where} must be a number, got {value!r}.")
        try:
            number = float(value)
        except OverflowError:
            raise SSLBenchError(f"{where} is too large to be a number.") from None
        if not math.isfinite(number):
            raise SSLBenchError(f"{where} must be a finite number, got {value!r}.")
        return number
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise SSLBenchError(f"{where} must be an integer, got {value!r}.")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise SSLBenchError(f"{where} must be a string, got {value!r}.")
        return value
    raise SSLBenchError(f"{where} has unsupported type {_type_name(tp)}.")


def _check_field(field: dataclasses.Field, value: Any, where: str) -> None:
    meta = field.metadata
    if value is None:
        return
    if "choices" in meta and value not in meta["choices"]:
        raise SSLBenchError(
            f"{where} is {value!r}, which is not one of the valid choices: {choices(meta['choices'])}."
        )
    numbers = value if isinstance(value, list) else [value]
    for number in numbers:
        if meta.get("positive") and isinstance(number, (int, float)) and not number > 0:
            raise SSLBenchError(f"{where} must be positive, got {value!r}.")
        if meta.get("nonnegative") and isinstance(number, (int, float)) and number < 0:
            raise SSLBenchError(f"{where} must not be negative, got {value!r}.")
        if "below" in meta and isinstance(number, (int, float)) and not number < meta["below"]:
            raise SSLBenchError(f"{where} must be below {meta['below']}, got {value!r}.")
        if "at_most" in meta and isinstance(number, (int, float)) and number > meta["at_most"]:
            raise SSLBenchError(f"{where} must be at most {meta['at_most']}, got {value!r}.")


def build(cls: type, data: Any, where: str) -> Any:
    """Instantiate dataclass ``cls`` from ``data``; ``where`` names the place in errors."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise SSLBenchError(f"{where} must be a mapping of keys to values, got {data!r}.")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = [k for k in data if k not in fields]
    if unknown:
        raise SSLBenchError(
            f"unknown key '{unknown[0]}' in {where}; valid keys are: {choices(fields)}."
        )
    kwargs = {}
    for name, field in fields.items():
        sub = f"{where}.{name}"
        if name in data:
            if "choices" in field.metadata and data[name] not in field.metadata["choices"]:
                _check_field(field, data[name], sub)  # a wrong type among choices: name the choices
            value = _coerce(data[name], hints[name], sub)
            _check_field(field, value, sub)
            kwargs[name] = value
        elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            raise SSLBenchError(f"{where} is missing the required key '{name}'.")
    return cls(**kwargs)


def merge(base: dict, override: dict) -> dict:
    """Recursive dict merge; ``override`` wins."""
    out = dict(base)
    for key, value in (override or {}).items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out
