"""A name -> class registry filled by discovery, so a new method or translator is one module.

Members register themselves when their module is imported. The registry imports every public
module of its package (a new file in `xmodseg/methods/` is found without editing a list) and every
module advertised under its entry-point group by an installed distribution (a lab's own package:
`[project.entry-points."xmodseg.methods"] mine = "mylab.mine"`).

Planning reads only what each member declares (`Registry.declared`: name, data needs, inputs,
`train` keys), and importing the member modules means importing torch (seconds per Snakemake start).
So the declarations are cached as JSON next to the package's bytecode, under a fingerprint of every
source file they can depend on (this package and the distributions behind the entry points): a
changed, added or removed file imports the modules again, like a stale `.pyc`.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import json
import logging
import pkgutil
import sys
from collections.abc import Mapping
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Generic, TypeVar

T = TypeVar("T")
log = logging.getLogger(__name__)
CACHE_FORMAT = 1


class Registry(Generic[T]):
    def __init__(self, kind: str, package: str, entry_point_group: str) -> None:
        self.kind = kind
        self.package = package
        self.entry_point_group = entry_point_group
        self._members: dict[str, type[T]] = {}
        self._discovered = False
        self._declared: Declarations | None = None

    def register(self, cls: type[T]) -> type[T]:
        name = cls.name  # type: ignore[attr-defined]
        known = self._members.get(name)
        if known is not None and known is not cls:
            raise ValueError(f"{self.kind} '{name}' registered twice ({known.__module__} and {cls.__module__})")
        self._members[name] = cls
        self._declared = None
        return cls

    def get(self, name: str) -> type[T]:
        self._discover()
        if name not in self._members:
            raise KeyError(f"unknown {self.kind} '{name}' (known: {self.names()})")
        return self._members[name]

    def names(self) -> list[str]:
        self._discover()
        return sorted(self._members)

    @property
    def declared(self) -> Declarations:
        """The members' declarations (what planning reads), from the cache when it is current;
        a registry in the sense of `xmodseg.config.models.Registry`."""
        if self._declared is None:
            self._declared = Declarations(self, self._load_declarations())
        return self._declared

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

    def _describe(self) -> dict[str, dict[str, Any]]:
        return {name: json.loads(json.dumps(cls.declaration())) for name, cls in sorted(self._members.items())}  # type: ignore[attr-defined]

    def _load_declarations(self) -> dict[str, dict[str, Any]]:
        if self._discovered:  # the classes are here already
            return self._describe()
        path, fingerprint = self._cache_path(), self._fingerprint()
        if path is not None and fingerprint is not None:
            try:
                cached = json.loads(path.read_text(encoding="utf-8"))
                if cached.get("fingerprint") == fingerprint:
                    return {**cached["members"], **self._describe()}  # + members registered by hand in this process
            except (OSError, ValueError, KeyError, TypeError, AttributeError):
                pass  # missing or unreadable: discover below
        self._discover()
        members = self._describe()
        if path is not None and fingerprint is not None:
            self._write_cache(path, {"fingerprint": fingerprint, "members": members})
        return members

    def _cache_path(self) -> Path | None:
        pkg = sys.modules.get(self.package)
        paths = list(getattr(pkg, "__path__", []))
        return Path(paths[0]) / "__pycache__" / f"{self.kind}-declarations.json" if len(paths) == 1 else None

    def _fingerprint(self) -> str | None:
        """sha256 over every .py file of the top-level package (declarations inherit from its base
        classes) and of the distributions behind the entry points; None if one cannot be read."""
        h = hashlib.sha256(f"{CACHE_FORMAT} {sys.version_info[:2]}".encode())
        try:
            top = sys.modules[self.package.split(".")[0]]
            roots = [Path(p) for p in getattr(top, "__path__", [])]
            for ep in sorted(importlib.metadata.entry_points(group=self.entry_point_group), key=lambda e: (e.name, e.value)):
                h.update(f"\0ep {ep.name}={ep.value}".encode())
                dist = ep.dist
                if dist is None or dist.files is None:
                    return None
                for name in sorted(str(f) for f in dist.files if str(f).endswith(".py")):
                    _update_file(h, name, Path(str(dist.locate_file(name))))
            for root in roots:
                for path in sorted(root.rglob("*.py")):
                    _update_file(h, str(path.relative_to(root)), path)
        except (OSError, KeyError) as exc:
            log.debug("no %s declaration cache: %s", self.kind, exc)
            return None
        return h.hexdigest()

    def _write_cache(self, path: Path, doc: dict[str, Any]) -> None:
        from xmodseg.atomic import write_json

        try:
            write_json(path, doc)
        except OSError as exc:  # a read-only install: every planning imports the modules
            log.debug("cannot write %s: %s", path, exc)


def _update_file(h: Any, name: str, path: Path) -> None:
    h.update(f"\0{name}\0".encode())
    h.update(path.read_bytes())


class Declared:
    """One member's declaration: the attributes `xmodseg.config.models` reads of a class (name,
    needs, inputs, translated_source, check_params), from plain data."""

    def __init__(self, registry: Registry[Any], data: Mapping[str, Any]) -> None:
        self._registry = registry
        self._data = data
        self.name: str = data["name"]
        self.needs = SimpleNamespace(**data["needs"])
        self.inputs = {role: SimpleNamespace(**{k: tuple(v) if isinstance(v, list) else v for k, v in spec.items()}) for role, spec in data["inputs"].items()}
        self.translated_source = bool(data["translated_source"])
        self.params: tuple[str, ...] = tuple(data["params"])  # the keys a `train` block may hold

    def check_params(self, params: Mapping[str, Any], where: str, *, internal: bool = False) -> None:
        """An unknown key (or a class with checks of its own) asks the class itself, so the error is
        the class's own (ConfigError naming the key and the valid ones)."""
        allowed = self._data["internal_params"] if internal else self._data["params"]
        if self._data["own_checks"] or any(k not in allowed for k in params):
            self._registry.get(self.name).check_params(params, where, internal=internal)

    def __repr__(self) -> str:
        return f"Declared({self._data!r})"


class Declarations:
    """name -> Declared, with the `names()` / `get(name)` of a registry (the same KeyError)."""

    def __init__(self, registry: Registry[Any], members: Mapping[str, Mapping[str, Any]]) -> None:
        self._registry = registry
        self._members = {name: Declared(registry, data) for name, data in members.items()}

    def names(self) -> list[str]:
        return sorted(self._members)

    def get(self, name: str) -> Declared:
        if name not in self._members:
            raise KeyError(f"unknown {self._registry.kind} '{name}' (known: {self.names()})")
        return self._members[name]
