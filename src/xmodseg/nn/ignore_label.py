"""Segmentation losses that exclude the ignore label (`xmodseg.labels.IGNORE_INDEX`).

Pixels labelled IGNORE_INDEX belong to no class (the SIFA release's value 5): they add nothing to
cross-entropy (numerator or mean) and nothing to Dice (intersection, prediction or label sums),
so a network is neither rewarded nor punished for what it predicts there. Batches without ignored
pixels take exactly the computation they took before the ignore label existed.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from monai.losses import DiceCELoss, DiceLoss

from xmodseg.labels import IGNORE_INDEX


def valid_mask(labels: torch.Tensor) -> torch.Tensor:
    """[B, H, W] bool: pixels that belong to a class."""
    return labels != IGNORE_INDEX


def masked_onehot(labels: torch.Tensor, num_classes: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """([B, K, H, W] one-hot with all-zero vectors at ignored pixels, [B, 1, H, W] valid mask)."""
    valid = valid_mask(labels)
    onehot = F.one_hot(labels.masked_fill(~valid, 0), num_classes).permute(0, 3, 1, 2).to(dtype)
    mask = valid.unsqueeze(1).to(dtype)
    return onehot * mask, mask


class DiceCE:
    """MONAI's `DiceCELoss(to_onehot_y=True, softmax=True)` (Dice + cross-entropy, the baselines'
    loss), with ignored pixels excluded from both terms."""

    def __init__(self) -> None:
        self._plain = DiceCELoss(to_onehot_y=True, softmax=True)
        self._dice = DiceLoss(to_onehot_y=False, softmax=False)  # same smoothing and reduction as DiceCELoss's Dice

    def __call__(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """logits [B, K, H, W] (float), labels [B, H, W] (int, IGNORE_INDEX allowed)."""
        if bool(valid_mask(labels).all()):
            return self._plain(logits, labels.unsqueeze(1))
        onehot, mask = masked_onehot(labels, logits.shape[1], logits.dtype)
        ce = F.cross_entropy(logits, labels, ignore_index=IGNORE_INDEX)
        return self._dice(torch.softmax(logits, dim=1) * mask, onehot) + ce
