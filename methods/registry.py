"""Registry of methods by name, and the one place that builds a method from config."""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil

import methods
from bench.errors import SSLBenchError, choices
from bench.schema import build

_REGISTRY: dict[str, type] = {}
_LOADED = False


def register(cls):
    """Class decorator: make a method available under ``cls.name``."""
    _REGISTRY[cls.name] = cls
    return cls


def _load_all() -> None:
    """Import every module of the ``methods`` package: a method's ``@register`` is all it takes."""
    global _LOADED
    if not _LOADED:
        for module in sorted(m.name for m in pkgutil.iter_modules(methods.__path__)):
            importlib.import_module(f"methods.{module}")
        _LOADED = True


def method_names() -> list[str]:
    _load_all()
    return sorted(_REGISTRY)


def get_method(name: str) -> type:
    _load_all()
    if name not in _REGISTRY:
        raise SSLBenchError(f"unknown method '{name}'; valid choices are: {choices(_REGISTRY)}.")
    return _REGISTRY[name]


def resolve_hparams(name: str, overrides: dict | None, suite_optimizer: dict | None = None):
    """Paper defaults of method ``name``, then the suite's optimizer, then ``overrides``."""
    cls = get_method(name)
    defaults = dataclasses.asdict(cls.Hparams())
    overrides = dict(overrides or {})
    user_optimizer = overrides.pop("optimizer", {})
    optimizer = {**defaults["optimizer"], **(suite_optimizer or {})}
    if isinstance(user_optimizer, dict):
        optimizer.update(user_optimizer)
    else:
        optimizer = user_optimizer  # not a mapping: build() names the error
    merged = {**defaults, **overrides, "optimizer": optimizer}
    return build(cls.Hparams, merged, f"hyper-parameters of method '{name}'")
