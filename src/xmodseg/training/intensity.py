"""Mapping cached intensities to the generators' tanh range [-1, 1] and back.

Two modes, chosen per domain (`intensity:` in a translator's or SIFA's `train` block):

- `percentile` (our own caches, z-scored): the bounds are the 0.5/99.5 percentiles of the
  *training* slices, computed when the model is trained and stored with it; values outside are
  clamped, and the clamped fraction of the training voxels is logged and recorded.
- `sifa_fixed` (the SIFA/PnP-AdaNet release caches, whose manifest says `intensity_space:
  sifa_unit`): the cache already holds SIFA's fixed-constant mapping (methods.md §2.7), so the map
  is the identity: no refit, no clamp, exactly what SIFA's networks saw.

`auto` (the default) picks `sifa_fixed` for caches in SIFA's space and `percentile` otherwise.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from xmodseg.errors import ConfigError

log = logging.getLogger(__name__)

PERCENTILES = (0.5, 99.5)
MODES = ("auto", "percentile", "sifa_fixed")
SIFA_UNIT_SPACE = "sifa_unit"  # manifest `intensity_space` of caches already in SIFA's [-1, 1]


@dataclass(frozen=True)
class UnitRange:
    low: float
    high: float
    mode: str = "percentile"  # or "sifa_fixed" (identity, no clamp)
    clamped_fraction: float | None = None  # of the training voxels, when fitted

    @classmethod
    def fit(cls, images: torch.Tensor, max_values: int = 2_000_000) -> UnitRange:
        flat = images.reshape(-1)
        if flat.numel() > max_values:  # a strided subsample is enough for two percentiles
            flat = flat[:: flat.numel() // max_values + 1]
        values = flat.numpy()
        lo, hi = np.percentile(values, PERCENTILES)
        hi = hi if hi > lo else lo + 1.0
        clamped = float(np.count_nonzero((values < lo) | (values > hi))) / max(values.size, 1)
        return cls(float(lo), float(hi), "percentile", clamped)

    @classmethod
    def sifa_fixed(cls) -> UnitRange:
        return cls(-1.0, 1.0, "sifa_fixed", 0.0)

    @property
    def clamps(self) -> bool:
        return self.mode != "sifa_fixed"

    def to_unit(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "sifa_fixed":
            return x
        return (2 * (x - self.low) / (self.high - self.low) - 1).clamp(-1, 1)

    def from_unit(self, y: torch.Tensor) -> torch.Tensor:
        if self.mode == "sifa_fixed":
            return y
        return (y + 1) / 2 * (self.high - self.low) + self.low

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> UnitRange:
        """Also reads model files written before the modes existed ({low, high}: percentile)."""
        return cls(float(d["low"]), float(d["high"]), str(d.get("mode", "percentile")), d.get("clamped_fraction"))


def unit_range_for(images: torch.Tensor, intensity_space: str, mode: str, what: str) -> UnitRange:
    """The range of one domain's training slices under `mode`; `what` names the domain in messages."""
    if mode not in MODES:
        raise ConfigError(f"intensity: '{mode}' is not one of {list(MODES)}")
    in_sifa_space = intensity_space == SIFA_UNIT_SPACE
    if mode == "sifa_fixed" and not in_sifa_space:
        raise ConfigError(
            f"intensity: sifa_fixed needs a cache in SIFA's fixed [-1, 1] space (the SIFA/PnP-AdaNet release), but the "
            f"{what} cache is '{intensity_space}'; use intensity: auto or percentile"
        )
    if mode == "sifa_fixed" or (mode == "auto" and in_sifa_space):
        log.info("intensity %s: sifa_fixed (cache already in SIFA's [-1, 1]; no refit, no clamp)", what)
        return UnitRange.sifa_fixed()
    r = UnitRange.fit(images)
    log.info(
        "intensity %s: percentile range [%.4g, %.4g] (%.1f/%.1f percentiles of the training slices); %.3f%% of training voxels clamped",
        what, r.low, r.high, *PERCENTILES, 100.0 * (r.clamped_fraction or 0.0),
    )
    return r
