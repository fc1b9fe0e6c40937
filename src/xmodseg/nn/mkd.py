"""MKD's inference network: the mean of its segmenters' softmax maps on real target images.

The segmenters (MONAI U-Nets, `networks.monai_unet`) were trained on images mapped to [-1, 1] (the
image alignment module's range), so the network maps cached target intensities the same way
before segmenting, with the range stored as a buffer in the model file; the rest is
`xmodseg.nn.ensemble.MeanSoftmax` (log of the mean probability). One member (`members: 1`) is single-segmenter inference (S_real only).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from xmodseg.nn.ensemble import MeanSoftmax
from xmodseg.nn.networks import architecture, monai_unet
from xmodseg.nn.sifa import map_to_unit


class SoftmaxEnsemble(MeanSoftmax):
    intensity_range: torch.Tensor  # a buffer (typed here: Module.__getattr__ cannot say it is a tensor)

    def __init__(
        self,
        members: Sequence[nn.Module],
        intensity_range: Sequence[float] = (-1.0, 1.0),
        intensity_mode: str = "percentile",
    ) -> None:
        super().__init__(members)
        self.intensity_mode = intensity_mode  # "sifa_fixed": inputs are already in [-1, 1] (no map, no clamp)
        self.register_buffer("intensity_range", torch.tensor([float(v) for v in intensity_range]))

    def to_unit(self, x: torch.Tensor) -> torch.Tensor:
        return map_to_unit(x, self.intensity_range, self.intensity_mode)

    def inputs(self, x: torch.Tensor) -> torch.Tensor:
        return self.to_unit(x)


@architecture("mkd_ensemble")
def mkd_ensemble(
    unet: Mapping[str, Any],
    members: int = 2,
    intensity_range: Sequence[float] = (-1.0, 1.0),
    intensity_mode: str = "percentile",
) -> nn.Module:
    """`members` U-Nets built from the same `unet` arguments (`networks.monai_unet`)."""
    return SoftmaxEnsemble([monai_unet(**unet) for _ in range(int(members))], intensity_range, intensity_mode)
