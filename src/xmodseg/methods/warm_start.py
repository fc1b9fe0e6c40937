"""Warm starts from the translation stage: a CycleGAN translator's generator and intensity ranges.

SIFA (G_t) and MKD (the image alignment module's G_a->t) start from a trained translator's
source -> target generator, declared as the input `warm_start`. The file is read with tensors and
plain data only (no code runs on load); anything else is refused naming the file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from xmodseg.errors import ConfigError, InputDataError
from xmodseg.nn.layers import ResnetGenerator
from xmodseg.training.intensity import UnitRange


def cyclegan_generator(path: Path, who: str) -> tuple[ResnetGenerator, dict[str, UnitRange], dict[str, Any]]:
    """(the translator's source -> target generator with its weights, its {"source", "target"}
    intensity ranges, the generator's constructor arguments); `who` names the consumer in errors
    (e.g. "sifa warm_start")."""
    try:
        payload = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated or not plain tensors: name the file instead of a torch traceback
        raise InputDataError(f"{who}: {path} is unreadable ({type(exc).__name__}); rerun its translate job") from exc
    arch = payload.get("architecture", {}) if isinstance(payload, dict) else {}
    if arch.get("kind") != "resnet_generator" or "intensity_ranges" not in payload:
        raise ConfigError(f"{who}: {path} is not a CycleGAN translator model (architecture {arch.get('kind')!r})")
    g = ResnetGenerator(**arch["kwargs"])
    g.load_state_dict(payload["state_dict"])
    return g, {k: UnitRange.from_dict(v) for k, v in payload["intensity_ranges"].items()}, dict(arch["kwargs"])
