"""Inference weights of the last k checkpoints, so evaluation can report the mean over them.

A GAN-based method's target Dice swings between checkpoints (SIFA's CT->MR, cchen-cc/SIFA #40),
and picking the best checkpoint with target labels is what the official numbers did (#19). We
never select: the model file's main weights are the last iteration's, and `snapshots: k` in a
`train` block keeps the k - 1 checkpoints before it as well; evaluation reports the last
iteration and the mean over all k. Snapshots are written at their iteration into the checkpoint
folder (so an interrupted run keeps them) and copied into the model file when training ends.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from xmodseg.errors import ConfigError, TrainingIncompleteError
from xmodseg.training.checkpoint import save_torch


def snapshot_iterations(iterations: int, checkpoint_every: int, k: int) -> tuple[int, ...]:
    """The k - 1 checkpoint iterations before the last one (the last is the model's main weights)."""
    if k < 1:
        raise ConfigError(f"train.snapshots: need k >= 1 (the last iteration counts), got {k}")
    points = sorted({*range(checkpoint_every, iterations, checkpoint_every), iterations})
    if k > len(points):
        raise ConfigError(
            f"train.snapshots: {k} checkpoints asked for, but {iterations} iterations with checkpoint_every "
            f"{checkpoint_every} make only {len(points)}; lower snapshots or checkpoint_every"
        )
    return tuple(points[len(points) - k : -1])


def _path(folder: str | os.PathLike[str], iteration: int) -> Path:
    return Path(folder) / f"snapshot_{iteration:08d}.pt"


def save_snapshot(folder: str | os.PathLike[str], iteration: int, config_hash: str, net: nn.Module) -> None:
    state = {k: v.detach().cpu().clone() for k, v in net.state_dict().items()}
    save_torch({"iteration": iteration, "config_hash": config_hash, "state_dict": state}, _path(folder, iteration))


def collect_snapshots(folder: str | os.PathLike[str], iterations: tuple[int, ...], config_hash: str) -> list[dict[str, Any]]:
    """[{iteration, state_dict}] for `iterations`, each written by this configuration."""
    out = []
    for it in iterations:
        path = _path(folder, it)
        if not path.is_file():
            raise TrainingIncompleteError(f"{path}: the snapshot of iteration {it} is missing; delete {folder} and retrain")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # truncated, garbage, not plain tensors: name the file, not a torch traceback
            raise TrainingIncompleteError(f"{path}: the snapshot of iteration {it} is unreadable ({type(exc).__name__}); delete {folder} and retrain") from exc
        if not isinstance(state, dict) or state.get("config_hash") != config_hash:
            raise TrainingIncompleteError(f"{path}: written by another configuration; delete {folder} and retrain")
        out.append({"iteration": int(it), "state_dict": state["state_dict"]})
    return out
