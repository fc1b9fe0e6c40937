"""Mapping cached (z-scored) intensities to the generators' tanh range [-1, 1] and back.

SIFA hard-codes this affine map per modality ((-1.8, 4.4) for MR, (-2.8, 3.2) for CT); here the
bounds are the 0.5/99.5 percentiles of the *training* slices, computed when the translator is
trained and stored with it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch

PERCENTILES = (0.5, 99.5)


@dataclass(frozen=True)
class UnitRange:
    low: float
    high: float

    @classmethod
    def fit(cls, images: torch.Tensor, max_values: int = 2_000_000) -> UnitRange:
        flat = images.reshape(-1)
        if flat.numel() > max_values:  # a strided subsample is enough for two percentiles
            flat = flat[:: flat.numel() // max_values + 1]
        lo, hi = np.percentile(flat.numpy(), PERCENTILES)
        return cls(float(lo), float(hi if hi > lo else lo + 1.0))

    def to_unit(self, x: torch.Tensor) -> torch.Tensor:
        return (2 * (x - self.low) / (self.high - self.low) - 1).clamp(-1, 1)

    def from_unit(self, y: torch.Tensor) -> torch.Tensor:
        return (y + 1) / 2 * (self.high - self.low) + self.low

    def to_dict(self) -> dict[str, float]:
        return asdict(self)
