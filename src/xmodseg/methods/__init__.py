"""Registry of training methods by name; a new method is a module that registers itself here."""

from __future__ import annotations

from xmodseg.methods.base import DataNeeds, Method, TrainData

METHODS: dict[str, type[Method]] = {}


def register(cls: type[Method]) -> type[Method]:
    if cls.name in METHODS:
        raise ValueError(f"method '{cls.name}' registered twice")
    METHODS[cls.name] = cls
    return cls


def get_method(name: str) -> type[Method]:
    _import_builtin_methods()
    if name not in METHODS:
        raise KeyError(f"unknown method '{name}' (known: {sorted(METHODS)})")
    return METHODS[name]


def available_methods() -> list[str]:
    _import_builtin_methods()
    return sorted(METHODS)


def _import_builtin_methods() -> None:
    # Imported lazily: each module registers itself on import.
    import xmodseg.methods.supervised  # noqa: F401


__all__ = ["METHODS", "DataNeeds", "Method", "TrainData", "available_methods", "get_method", "register"]
