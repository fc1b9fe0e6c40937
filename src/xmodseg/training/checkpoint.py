"""Atomic checkpoints kept outside Snakemake's declared outputs.

Snakemake deletes the declared outputs of a failed job; checkpoints live in their own folder so a
rerun (or a requeued SLURM job) resumes instead of starting over.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import torch

from xmodseg.atomic import atomic_path

log = logging.getLogger(__name__)

LAST = "last.pt"


def save_torch(obj: Any, path: str | os.PathLike[str]) -> None:
    """torch.save, atomically and byte-reproducibly: given a file name, torch names the records
    inside the zip after it (here the random temporary name), so the same weights would hash
    differently on every save; through a file object the record prefix is always "archive"."""
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        torch.save(obj, fh)


def save_checkpoint(folder: str | os.PathLike[str], state: dict[str, Any]) -> Path:
    path = Path(folder) / LAST
    save_torch(state, path)
    return path


def load_checkpoint(folder: str | os.PathLike[str], config_hash: str) -> dict[str, Any] | None:
    """The last checkpoint if it was written by the same configuration, else None."""
    path = Path(folder) / LAST
    if not path.is_file():
        return None
    state = torch.load(path, map_location="cpu", weights_only=True)  # tensors and plain data only: no code runs on load
    if state.get("config_hash") != config_hash:
        log.warning("ignoring %s: written by a different configuration (%s != %s)", path, state.get("config_hash"), config_hash)
        return None
    return state
