"""A name -> class registry whose built-in members register themselves when their module is
imported (methods, translators; later issues add more without touching this file)."""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from typing import Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, kind: str, builtin_modules: Sequence[str]) -> None:
        self.kind = kind
        self.builtin_modules = tuple(builtin_modules)
        self._members: dict[str, type[T]] = {}

    def register(self, cls: type[T]) -> type[T]:
        name = cls.name  # type: ignore[attr-defined]
        if name in self._members:
            raise ValueError(f"{self.kind} '{name}' registered twice")
        self._members[name] = cls
        return cls

    def get(self, name: str) -> type[T]:
        self._import_builtin()
        if name not in self._members:
            raise KeyError(f"unknown {self.kind} '{name}' (known: {self.names()})")
        return self._members[name]

    def names(self) -> list[str]:
        self._import_builtin()
        return sorted(self._members)

    def _import_builtin(self) -> None:
        for module in self.builtin_modules:  # each registers itself on first import
            importlib.import_module(module)
