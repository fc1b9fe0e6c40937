"""SIFA's segmentation loss, as the official code computes it (methods.md §2.4).

* Weighted cross-entropy: per batch, w_c = 1 - (pixels of class c)/(all pixels); pixel mean of
  -sum_c w_c y_c log(clip(p_c, 0.005, 1)). Rare classes weigh more without any fixed table.
* Dice: 1 - mean over classes (background included) of 2 sum(p y) / (sum p^2 + sum y + 1e-7),
  over the whole batch; MONAI's `DiceLoss` with squared predictions and no numerator smoothing is
  exactly that.

Pixels labelled `IGNORE_INDEX` (the release's value 5, which SIFA's depth-5 one-hot turns into an
all-zero vector) are excluded from both terms: from the class weights, the cross-entropy mean and
every Dice sum. (SIFA's own code still counts them in the CE mean's denominator and their p^2 in the
Dice denominator; excluding them makes "belongs to no class" exact.)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from monai.losses import DiceLoss

from xmodseg.nn.ignore_label import masked_onehot, valid_mask

PROB_FLOOR = 0.005

_dice = DiceLoss(include_background=True, to_onehot_y=True, softmax=True, squared_pred=True, batch=True, smooth_nr=0.0, smooth_dr=1e-7)
_dice_masked = DiceLoss(include_background=True, to_onehot_y=False, softmax=False, squared_pred=True, batch=True, smooth_nr=0.0, smooth_dr=1e-7)


def weighted_cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """logits [B, K, H, W], labels [B, H, W] (int; IGNORE_INDEX pixels excluded)."""
    k = logits.shape[1]
    valid = valid_mask(labels)
    logp = torch.log(torch.softmax(logits, dim=1).clamp(PROB_FLOOR, 1.0))
    if bool(valid.all()):
        onehot = F.one_hot(labels, k).permute(0, 3, 1, 2).to(logits.dtype)
        weights = 1.0 - onehot.sum(dim=(0, 2, 3)) / labels.numel()
        return -(weights.view(1, k, 1, 1) * onehot * logp).sum(dim=1).mean()
    onehot, _ = masked_onehot(labels, k, logits.dtype)
    n_valid = valid.sum().clamp(min=1)
    weights = 1.0 - onehot.sum(dim=(0, 2, 3)) / n_valid
    return -(weights.view(1, k, 1, 1) * onehot * logp).sum(dim=1)[valid].sum() / n_valid


def dice_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    if bool(valid_mask(labels).all()):
        return _dice(logits, labels.unsqueeze(1))
    onehot, mask = masked_onehot(labels, logits.shape[1], logits.dtype)
    return _dice_masked(torch.softmax(logits, dim=1) * mask, onehot)


def segmentation_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """WCE + Dice with weight 1 (the code's alpha)."""
    logits = logits.float()
    return weighted_cross_entropy(logits, labels) + dice_loss(logits, labels)


def l2_weight_decay(modules: list[torch.nn.Module]) -> torch.Tensor:
    """1/2 sum w^2 over convolution kernels (TF `l2_loss`); multiplied by 1e-4 by the caller."""
    terms = [0.5 * (m.weight.float() ** 2).sum() for mod in modules for m in mod.modules() if isinstance(m, torch.nn.Conv2d)]
    return torch.stack(terms).sum()
