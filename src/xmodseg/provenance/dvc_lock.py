"""What dvc.lock recorded for a file: its md5, directly or through a directory output's listing.

dvc.lock stores one md5 per stage output; for a directory it is the md5 of a `.dir` listing kept in
the DVC cache ({"relpath", "md5"} per file). Reading both lets an audit compare a single model or
metrics file with what `dvc commit` recorded, without asking DVC to re-hash the whole workspace.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import yaml


def md5_file(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    h = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def dvc_executable() -> str:
    """The `dvc` next to this interpreter (the project's venv), else the one on PATH."""
    local = Path(sys.executable).parent / "dvc"
    return str(local) if local.exists() else "dvc"


@dataclass(frozen=True)
class Recorded:
    """md5 recorded for a path, the stage that owns it; `md5` None means not recorded (`why`)."""

    md5: str | None
    stage: str | None
    why: str = ""


class DvcLock:
    def __init__(self, repo: str | os.PathLike[str] = ".") -> None:
        self.repo = Path(repo)
        lock = self.repo / "dvc.lock"
        self.data: dict[str, Any] | None = yaml.safe_load(lock.read_text()) if lock.is_file() else None
        self._cache_dir: Path | None = None

    @property
    def exists(self) -> bool:
        return self.data is not None

    def cache_dir(self) -> Path:
        if self._cache_dir is None:
            out = subprocess.run([dvc_executable(), "cache", "dir"], cwd=self.repo, capture_output=True, text=True, check=False)
            self._cache_dir = Path(out.stdout.strip()) if out.returncode == 0 and out.stdout.strip() else self.repo / ".dvc" / "cache"
        return self._cache_dir

    def _listing(self, dir_md5: str) -> list[dict[str, str]] | None:
        name = dir_md5
        path = self.cache_dir() / "files" / "md5" / name[:2] / name[2:]
        if not path.is_file():
            return None
        return json.loads(path.read_text())

    def recorded(self, path: str | os.PathLike[str]) -> Recorded:
        """The md5 dvc.lock holds for `path` (relative to the repository)."""
        if self.data is None:
            return Recorded(None, None, "no dvc.lock (run `xmodseg record`)")
        target = PurePosixPath(Path(path).as_posix())
        for stage, body in (self.data.get("stages") or {}).items():
            for out in body.get("outs") or []:
                out_path = PurePosixPath(out["path"])
                if target == out_path:
                    return Recorded(out.get("md5"), stage)
                if out_path in target.parents and str(out.get("md5", "")).endswith(".dir"):
                    listing = self._listing(out["md5"])
                    if listing is None:
                        return Recorded(None, stage, f"DVC cache lacks the listing {out['md5']} of {out_path} (run `dvc pull`)")
                    rel = target.relative_to(out_path).as_posix()
                    for entry in listing:
                        if entry["relpath"] == rel:
                            return Recorded(entry["md5"], stage)
                    return Recorded(None, stage, f"{rel} is not in the recorded listing of {out_path}")
        return Recorded(None, None, f"no dvc.lock stage outputs {target}")

    def unrecorded(self, path: str | os.PathLike[str]) -> bool:
        """True when dvc.lock holds nothing for `path` (no dvc.lock, or no stage outputs it): the run
        was not recorded, which is not a mismatch."""
        rec = self.recorded(path)
        return rec.md5 is None and rec.stage is None

    def check(self, path: str | os.PathLike[str]) -> tuple[bool, str]:
        """(matches, message) for a workspace file against dvc.lock."""
        rec = self.recorded(path)
        if rec.md5 is None:
            return False, f"{path}: {rec.why}"
        full = self.repo / path
        if not full.is_file():
            return False, f"{path}: missing (recorded in dvc.lock stage {rec.stage})"
        actual = md5_file(full)
        if actual != rec.md5:
            return False, f"{path}: md5 {actual[:12]} differs from dvc.lock ({rec.md5[:12]}, stage {rec.stage})"
        return True, f"{path}: matches dvc.lock stage {rec.stage}"
