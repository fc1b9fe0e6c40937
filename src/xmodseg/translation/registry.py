"""Translators by name (separate from segmentation methods: their product is translated data)."""

from __future__ import annotations

from xmodseg.methods.base import Method

TRANSLATORS: dict[str, type[Method]] = {}


def register_translator(cls: type[Method]) -> type[Method]:
    if cls.name in TRANSLATORS:
        raise ValueError(f"translator '{cls.name}' registered twice")
    TRANSLATORS[cls.name] = cls
    return cls


def get_translator(name: str) -> type[Method]:
    _import_builtin()
    if name not in TRANSLATORS:
        raise KeyError(f"unknown translator '{name}' (known: {sorted(TRANSLATORS)})")
    return TRANSLATORS[name]


def available_translators() -> list[str]:
    _import_builtin()
    return sorted(TRANSLATORS)


def _import_builtin() -> None:
    import xmodseg.translation.cyclegan  # noqa: F401
    import xmodseg.translation.disentangled  # noqa: F401
