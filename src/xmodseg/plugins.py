"""A name -> class registry filled by discovery, so a new method or translator is one module.

Members register themselves when their module is imported. The registry imports every public
module of its package (a new file in `xmodseg/methods/` is found without editing a list) and every
module advertised under its entry-point group by an installed distribution (a lab's own package:
`[project.entry-points."xmodseg.methods"] mine = "mylab.mine"`).
"""

from __future__ import annotations

import importlib
import importlib.metadata
import pkgutil
from typing import Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, kind: str, package: str, entry_point_group: str) -> None:
        self.kind = kind
        self.package = package
        self.entry_point_group = entry_point_group
        self._members: dict[str, type[T]] = {}
        self._discovered = False

    def register(self, cls: type[T]) -> type[T]:
        name = cls.name  # type: ignore[attr-defined]
        known = self._members.get(name)
        if known is not None and known is not cls:
            raise ValueError(f"{self.kind} '{name}' registered twice ({known.__module__} and {cls.__module__})")
        self._members[name] = cls
        return cls

    def get(self, name: str) -> type[T]:
        self._discover()
        if name not in self._members:
            raise KeyError(f"unknown {self.kind} '{name}' (known: {self.names()})")
        return self._members[name]

    def names(self) -> list[str]:
        self._discover()
        return sorted(self._members)

    def _discover(self) -> None:
        if self._discovered:
            return
        self._discovered = True
        pkg = importlib.import_module(self.package)
        for info in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda m: m.name):
            if not info.name.startswith("_"):
                importlib.import_module(f"{self.package}.{info.name}")  # each member registers itself
        for ep in importlib.metadata.entry_points(group=self.entry_point_group):
            importlib.import_module(ep.value.split(":")[0])
