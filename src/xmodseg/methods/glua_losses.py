"""GLUA's step-B loss terms, as the official code computes them (methods.md §3.5).

* Segmentation on translated source slices: 0.5 * cross-entropy + 0.5 * Dice, the Dice averaged
  over all classes (background included) of 1 - (2 sum(p y) + 1e-5) / (sum p^2 + sum y^2 + 1e-5)
  over the whole batch (TransUNet's form; MONAI's `DiceLoss` with squared predictions and 1e-5
  smoothing on both sides is exactly that).
* Adversarial, least squares, source = 0 and target = 1: the segmenter wants its target features
  and target predictions scored as source, `adversarial_target`; the discriminators learn both
  labels, `discriminator_loss` (no 1/2 factor, as the official code).

Pixels with the ignore label (the SIFA release's value 5, `xmodseg.labels.IGNORE_INDEX`) add
nothing to either segmentation term, as in every method here (xmodseg.nn.ignore_label).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from monai.losses import DiceLoss

from xmodseg.labels import IGNORE_INDEX
from xmodseg.nn.gan_losses import least_squares
from xmodseg.nn.ignore_label import masked_onehot, valid_mask

SOURCE_LABEL = 0.0
TARGET_LABEL = 1.0

_dice = DiceLoss(include_background=True, to_onehot_y=True, softmax=True, squared_pred=True, batch=True, smooth_nr=1e-5, smooth_dr=1e-5)
_dice_of_probabilities = DiceLoss(include_background=True, squared_pred=True, batch=True, smooth_nr=1e-5, smooth_dr=1e-5)


def segmentation_loss(logits: torch.Tensor, labels: torch.Tensor, ce_weight: float = 0.5, dice_weight: float = 0.5) -> torch.Tensor:
    """logits [B, K, H, W], labels [B, H, W] (int64, IGNORE_INDEX allowed)."""
    if bool(valid_mask(labels).all()):  # the official computation, unchanged
        return ce_weight * F.cross_entropy(logits, labels) + dice_weight * _dice(logits, labels.unsqueeze(1))
    onehot, mask = masked_onehot(labels, logits.shape[1], logits.dtype)
    ce = F.cross_entropy(logits, labels, ignore_index=IGNORE_INDEX)
    return ce_weight * ce + dice_weight * _dice_of_probabilities(torch.softmax(logits, dim=1) * mask, onehot)


def adversarial_target(*scores: torch.Tensor) -> torch.Tensor:
    """Sum over the discriminators' scores of target inputs of mean (D - source)^2."""
    return torch.stack([least_squares(s, SOURCE_LABEL) for s in scores]).sum()


def discriminator_loss(source_scores: torch.Tensor, target_scores: torch.Tensor) -> torch.Tensor:
    """mean D(source)^2 + mean (D(target) - 1)^2 (inputs detached from the segmenter by the caller)."""
    return least_squares(source_scores, SOURCE_LABEL) + least_squares(target_scores, TARGET_LABEL)
