"""Atomic checkpoints kept outside Snakemake's declared outputs.

Snakemake deletes the declared outputs of a failed job; checkpoints live in their own folder so a
rerun (or a requeued SLURM job) resumes instead of starting over. The checkpoint a new one replaces
is kept as `previous.pt`: if `last.pt` is ever unreadable (disk fault, truncated copy), the rerun
sets it aside under a `.corrupt-<time>` name (never deleted: it is evidence) and resumes from the
previous one, or from scratch, saying so, instead of failing on every rerun.
"""

from __future__ import annotations

import logging
import os
import pickle
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from xmodseg.atomic import atomic_path
from xmodseg.errors import TrainingIncompleteError

log = logging.getLogger(__name__)

LAST = "last.pt"
PREVIOUS = "previous.pt"
REQUIRED_KEYS = ("iteration", "config_hash", "method", "rng")


class CorruptCheckpointError(TrainingIncompleteError):
    """A checkpoint that cannot be used; the message names the file (and where it was set aside)."""

    def __init__(self, message: str, path: Path | None = None) -> None:
        super().__init__(message)
        self.path = path


@dataclass
class Resume:
    """What a run resumes from: `state` (None: from scratch), the file it came from, and the
    unreadable checkpoints set aside on the way ((original, new name) pairs)."""

    state: dict[str, Any] | None = None
    path: Path | None = None
    set_aside: list[tuple[Path, Path]] = field(default_factory=list)


def save_torch(obj: Any, path: str | os.PathLike[str]) -> None:
    """torch.save, atomically and byte-reproducibly: given a file name, torch names the records
    inside the zip after it (here the random temporary name), so the same weights would hash
    differently on every save; through a file object the record prefix is always "archive"."""
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        torch.save(obj, fh)


def save_checkpoint(folder: str | os.PathLike[str], state: dict[str, Any]) -> Path:
    """Write `last.pt` atomically; the one it replaces becomes `previous.pt` only once the new one
    is complete (a kill in between leaves `previous.pt`, which a rerun resumes from)."""
    path = Path(folder) / LAST
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            torch.save(state, fh)
        if path.is_file():
            os.replace(path, path.with_name(PREVIOUS))
    return path


def load_checkpoint(folder: str | os.PathLike[str], config_hash: str) -> dict[str, Any] | None:
    """The last checkpoint if it was written by the same configuration, else None (raises what
    torch raises on an unreadable file; `resume_checkpoint` is the forgiving reader)."""
    path = Path(folder) / LAST
    if not path.is_file():
        return None
    state = torch.load(path, map_location="cpu", weights_only=True)  # tensors and plain data only: no code runs on load
    if state.get("config_hash") != config_hash:
        log.warning("ignoring %s: written by a different configuration (%s != %s)", path, state.get("config_hash"), config_hash)
        return None
    return state


def read_checkpoint(path: Path) -> dict[str, Any]:
    """One checkpoint file, or CorruptCheckpointError naming it (unreadable, truncated, not plain
    tensors and data, or missing a part every checkpoint has)."""
    try:
        fh = open(path, "rb")
    except OSError as exc:  # permissions, I/O: not the file's content, so nothing is set aside
        raise TrainingIncompleteError(f"cannot read the checkpoint {path}: {exc}") from exc
    with fh:
        try:
            state = torch.load(fh, map_location="cpu", weights_only=True)  # no code runs on load
        except Exception as exc:  # torch raises RuntimeError, EOFError, KeyError, UnpicklingError, OSError, ...
            raise CorruptCheckpointError(f"{path} is unreadable ({type(exc).__name__}: {_first_line(exc)})", path) from exc
    missing = [k for k in REQUIRED_KEYS if not isinstance(state, dict) or k not in state]
    if missing or not isinstance(state["iteration"], int) or state["iteration"] < 0:
        raise CorruptCheckpointError(f"{path} is not a complete checkpoint (missing or bad: {missing or ['iteration']})", path)
    return state


def set_aside(path: Path) -> Path:
    """Rename an unusable checkpoint to `<name>.corrupt-<UTC time>` next to it (never delete)."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    target = path.with_name(f"{path.name}.corrupt-{stamp}")
    n = 1
    while target.exists():
        n += 1
        target = path.with_name(f"{path.name}.corrupt-{stamp}-{n}")
    os.replace(path, target)
    return target


def resume_checkpoint(folder: str | os.PathLike[str], config_hash: str) -> Resume:
    """The newest usable checkpoint of this configuration: `last.pt`, else `previous.pt`, else
    none. Each unreadable one is set aside with a warning that names it and says what happens."""
    out = Resume()
    for name in (LAST, PREVIOUS):
        path = Path(folder) / name
        if not path.is_file():
            continue
        try:
            state = read_checkpoint(path)
        except CorruptCheckpointError as exc:
            aside = set_aside(path)
            out.set_aside.append((path, aside))
            fallback = Path(folder) / PREVIOUS
            then = f"trying {fallback}" if name == LAST and fallback.is_file() else "training restarts from iteration 0"
            log.warning("%s; kept as %s; %s", exc, aside, then)
            continue
        if state.get("config_hash") != config_hash:
            log.warning("ignoring %s: written by a different configuration (%s != %s)", path, state.get("config_hash"), config_hash)
            return out
        out.state, out.path = state, path
        if out.set_aside:
            log.warning("resuming from %s (iteration %d) instead of the unreadable %s", path, state["iteration"], out.set_aside[0][0])
        return out
    return out


def _first_line(exc: BaseException) -> str:
    if isinstance(exc, pickle.UnpicklingError):  # torch suggests turning safe loading off: never here
        return "not plain tensors and data, or not a torch file at all; nothing in it was run"
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else "no message"
