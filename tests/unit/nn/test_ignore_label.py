"""The ignore label (SIFA release value 5 -> IGNORE_INDEX) is excluded from every training loss."""

from __future__ import annotations

import pytest
import torch
from monai.losses import DiceCELoss

from xmodseg.labels import IGNORE_INDEX
from xmodseg.methods.sifa_losses import dice_loss, segmentation_loss, weighted_cross_entropy
from xmodseg.nn.ignore_label import DiceCE

K = 4


def _batch(seed: int = 0, b: int = 2, h: int = 6, w: int = 7) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(b, K, h, w, generator=g)
    labels = torch.randint(K, (b, h, w), generator=g)
    return logits, labels


LOSSES = {
    "baselines' Dice+CE": DiceCE(),
    "SIFA weighted CE": weighted_cross_entropy,
    "SIFA Dice": dice_loss,
    "SIFA WCE + Dice": segmentation_loss,
}


@pytest.mark.parametrize("name", LOSSES)
def test_ignored_pixels_count_for_nothing(name):
    """Ignoring the last column gives exactly the loss of the image without that column, whatever
    the logits there; their gradient is zero."""
    loss = LOSSES[name]
    logits, labels = _batch()
    labels[..., -1] = IGNORE_INDEX
    expected = loss(logits[..., :-1].contiguous(), labels[..., :-1].contiguous())
    x = logits.clone().requires_grad_(True)
    got = loss(x, labels)
    assert torch.allclose(got, expected, rtol=1e-6, atol=1e-7)
    got.backward()
    assert torch.count_nonzero(x.grad[..., -1]) == 0
    assert torch.count_nonzero(x.grad[..., :-1]) > 0
    other = logits.clone()
    other[..., -1] = 50.0 * torch.randn_like(other[..., -1])  # wild predictions where nothing counts
    assert torch.allclose(loss(other, labels), got.detach(), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("name", LOSSES)
def test_ignored_pixels_are_not_background(name):
    """Calling the ignored pixels background would change the loss: they are really excluded."""
    loss = LOSSES[name]
    logits, labels = _batch(seed=1)
    labels[:, :2] = IGNORE_INDEX
    as_background = labels.masked_fill(labels == IGNORE_INDEX, 0)
    assert not torch.allclose(loss(logits, labels), loss(logits, as_background))


def test_without_ignored_pixels_the_baseline_loss_is_monai_unchanged():
    logits, labels = _batch(seed=2)
    assert torch.equal(DiceCE()(logits, labels), DiceCELoss(to_onehot_y=True, softmax=True)(logits, labels.unsqueeze(1)))
