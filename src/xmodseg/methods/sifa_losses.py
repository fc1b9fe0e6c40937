"""SIFA's segmentation loss, as the official code computes it (methods.md §2.4).

* Weighted cross-entropy: per batch, w_c = 1 - (pixels of class c)/(all pixels); pixel mean of
  -sum_c w_c y_c log(clip(p_c, 0.005, 1)). Rare classes weigh more without any fixed table.
* Dice: 1 - mean over classes (background included) of 2 sum(p y) / (sum p^2 + sum y + 1e-7),
  over the whole batch; MONAI's `DiceLoss` with squared predictions and no numerator smoothing is
  exactly that.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from monai.losses import DiceLoss

PROB_FLOOR = 0.005

_dice = DiceLoss(include_background=True, to_onehot_y=True, softmax=True, squared_pred=True, batch=True, smooth_nr=0.0, smooth_dr=1e-7)


def weighted_cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """logits [B, K, H, W], labels [B, H, W] (int)."""
    k = logits.shape[1]
    onehot = F.one_hot(labels, k).permute(0, 3, 1, 2).to(logits.dtype)
    weights = 1.0 - onehot.sum(dim=(0, 2, 3)) / labels.numel()
    logp = torch.log(torch.softmax(logits, dim=1).clamp(PROB_FLOOR, 1.0))
    return -(weights.view(1, k, 1, 1) * onehot * logp).sum(dim=1).mean()


def dice_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return _dice(logits, labels.unsqueeze(1))


def segmentation_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """WCE + Dice with weight 1 (the code's alpha)."""
    logits = logits.float()
    return weighted_cross_entropy(logits, labels) + dice_loss(logits, labels)


def l2_weight_decay(modules: list[torch.nn.Module]) -> torch.Tensor:
    """1/2 sum w^2 over convolution kernels (TF `l2_loss`); multiplied by 1e-4 by the caller."""
    terms = [0.5 * (m.weight.float() ** 2).sum() for mod in modules for m in mod.modules() if isinstance(m, torch.nn.Conv2d)]
    return torch.stack(terms).sum()
