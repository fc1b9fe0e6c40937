"""Declared inputs of a training job: check the roles, hash every file, record it.

A method or translator declares what it consumes (`Trainable.inputs`: role -> InputSpec); the job
gets `--input ROLE=PATH`. Each input's sha256 joins the resume hash under its role's key (so a new
upstream model restarts a run that consumes it instead of resuming it) and the sidecar's `inputs`
block, which the audit re-checks.

Example:
    >>> resolved = resolve_inputs(method_cls, {"teacher": "results/models/.../model.pt"}, "--input")  # doctest: +SKIP
    >>> resolved.ids()  # doctest: +SKIP
    {'teacher': '9f2c...'}
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from xmodseg.errors import ConfigError
from xmodseg.hashing import sha256_file, sha256_json
from xmodseg.preprocess.pipeline import MANIFEST
from xmodseg.training.trainable import Trainable, check_roles


def input_sha256(path: str | os.PathLike[str]) -> str:
    """A file's sha256; a folder's: its manifest's (a slice cache), else that of a listing of every
    file's relative path and sha256 in sorted order."""
    p = Path(path)
    if p.is_file():
        return sha256_file(p)
    if (p / MANIFEST).is_file():
        return sha256_file(p / MANIFEST)
    files = sorted(f for f in p.rglob("*") if f.is_file())
    return sha256_json([[f.relative_to(p).as_posix(), sha256_file(f)] for f in files])


@dataclass(frozen=True)
class ResolvedInputs:
    """role -> path and role -> sha256 of the inputs a job was given."""

    paths: Mapping[str, Path] = field(default_factory=dict)
    sha256: Mapping[str, str] = field(default_factory=dict)

    def ids(self) -> dict[str, str]:
        """The resume hash's data ids (role -> sha256)."""
        return dict(self.sha256)

    def record(self) -> dict[str, dict[str, str]]:
        """The sidecar's `inputs` block: {role: {"path", "sha256"}}."""
        return {role: {"path": str(self.paths[role]), "sha256": self.sha256[role]} for role in sorted(self.paths)}


def resolve_inputs(cls: type[Trainable], given: Mapping[str, Any] | None, where: str = "--input") -> ResolvedInputs:
    """Check `given` (role -> path) against `cls.inputs` and hash every file (before any training)."""
    paths = check_roles(cls, given or {}, where)
    for role, path in paths.items():
        if not path.exists():
            raise ConfigError(f"{where} {role}={path}: no such file or folder (input '{role}' of {cls.name}, kind {cls.inputs[role].kind})")
    return ResolvedInputs(paths, {role: input_sha256(path) for role, path in paths.items()})
