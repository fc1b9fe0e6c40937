"""An ensemble's inference network: the mean of its members' softmax maps.

It returns the log of the mean probability, so argmax gives the ensemble's labels and softmax gives
the mean probabilities back (evaluation treats it like any segmenter's logits). Used by the
semi-supervised co-training methods (CPS, Co-DA: model A alone or the mean of A and B) on cached
intensities as they are; MKD's ensemble (`xmodseg.nn.mkd`) maps intensities to [-1, 1] first.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from xmodseg.nn.networks import architecture, monai_unet


class MeanSoftmax(nn.Module):
    def __init__(self, members: Sequence[nn.Module]) -> None:
        super().__init__()
        self.members = nn.ModuleList(members)

    def inputs(self, x: torch.Tensor) -> torch.Tensor:
        """What the members see of cached intensities (as they are here)."""
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Images [B, C, H, W] -> log mean softmax [B, K, H, W]."""
        x = self.inputs(x)
        probs = torch.stack([torch.softmax(m(x).float(), dim=1) for m in self.members]).mean(dim=0)
        return torch.log(probs.clamp_min(1e-12))


@architecture("unet_ensemble")
def unet_ensemble(unet: Mapping[str, Any], members: int = 2) -> nn.Module:
    """`members` U-Nets built from the same `unet` arguments (`networks.monai_unet`)."""
    return MeanSoftmax([monai_unet(**unet) for _ in range(int(members))])
